"""MAMQL (Haynam, Khoja, Kumar, Myers, Biyik 2025, arXiv 2503.04679): multi-agent inverse soft-Q
learning with marginalised critics, and two baselines in the same harness, in JAX.

    learner = MAMQL(MAMQLConfig(algo="mamql"), env, env_params)   # env: a multi-agent kernel
    data = prepare_data(numpy_dataset, learner)                     # dict of device arrays
    state = learner.init(key)                                       # key: raw uint32[2]
    state, metrics = compiler.jit(learner.chunk)(state, data)      # `updates_per_chunk` updates (lax.scan)
    returns = learner.evaluate(key, state.params, env, env_params, episodes=32)   # (agents,)

Seeds: `init_seeds(keys)` stacks states on a leading axis and ``jax.vmap(learner.chunk, in_axes=(0,
None))`` trains them side by side (the data are shared). The state (`MAMQLState`) is a pytree of
plain arrays (parameters, Adam's moments, the replay buffer, the rollout environments, raw keys), so
`agentlab.rl.checkpoint` saves it whole.

**Algorithms** (`MAMQLConfig.algo`), with ``lambda`` the temperature, ``gamma`` the discount,
``d`` the transition's `terminated` flag (a truncated step bootstraps from its next observation),
``phi(x) = x - x^2 / (4 alpha)`` (``phi = "chi2"``) or ``phi(x) = x`` (``phi = "linear"``):

- ``"mamql"``: per agent i a *marginalised* critic ``Qbar_i(o_i, .)`` over agent i's own actions: it
  sees agent i's observation only and never the other agents' actions. Boltzmann policy
  ``pi_i = softmax(Qbar_i / lambda)``, soft value ``V_i = lambda logsumexp(Qbar_i / lambda)``, and
  the loss, minimised, per agent::

      L_i = E_policy[V_i(s) - gamma (1 - d) V_i(s')] - E_expert[phi(Qbar_i(s, a_i) - gamma (1 - d) V_i(s'))]
            + l2 * sum of squares of agent i's weights

  Online (``online=True``, the authors' setup 4): the first expectation is over a batch from a replay
  buffer filled by rollouts of the current joint Boltzmann policy on the kernel. Offline
  (``online=False``): over the expert batch's own ``(s, s', d)``: the IQ-Learn telescoping form
  (``(1 - gamma) E V(s0)`` replaced by the same expression over visited states), which needs no
  environment steps. Recovered reward: ``r_i(s, a_i) = Qbar_i(s, a_i) - gamma (1 - d) V_i(s')``
  (`recovered_reward`).
- ``"iq-joint"``: IQ-Learn with a joint-action critic per agent, ``Q_i(o_i, a_0, a_1)`` (an output
  of ``num_actions ** 2``, index ``a_0 * num_actions + a_1``), the same loss over joint actions
  (``V_i = lambda logsumexp`` over all joint actions, the expert term at the expert's joint action).
  It *acts* by marginalising its joint critic over a behaviour-cloned model of the other agent:
  ``Qbar_i(o_i, a_i) = sum_{a_j} pi_hat_j(a_j | o_i) Q_i(o_i, a_i, a_j)``, then
  ``softmax(Qbar_i / lambda)``. Agent i's model of the other agent sees agent i's own observation
  (decentralised execution) and is trained beside the critic by cross-entropy on the expert's
  actions (its own network, its own term in the loss). Two agents only. The authors' joint-critic
  baseline (their setup 1) instead feeds the expert's joint action as an *input* and, when acting,
  feeds zeros; agentlab does not reproduce that.
- ``"bc"``: behaviour cloning, per agent a network ``o_i -> logits`` trained by cross-entropy on the
  expert's action; its policy is ``softmax(logits)``. It never rolls out (``online`` is ignored), and
  `recovered_reward` applies the formula to its logits (not a reward estimate).

Where a kernel restricts an agent's actions (``env.action_mask``), the forbidden entries of every
softmax and logsumexp are excluded (logits -1e9), for the joint critic the pairs where either action
is forbidden.

**Networks and what the authors did.** Facts read in the authors' code (USC-Lira/ma-mql, PyTorch,
no licence to copy; nothing copied):

- ``models.py``, ``Critic_Gems``: Conv2d(5 -> 64, kernel 5, stride 1, no padding), ReLU, Dropout 0.2,
  Conv2d(64 -> 64, kernel 3, stride 1), ReLU, Dropout 0.2, flatten (5184 = 64 x 9 x 9 on 15 x 15),
  Linear -> 1024, ELU, Linear 1024 -> 1024, ELU, Linear -> 5. ``Critic_Intersection``: MLP 256, 256
  (ELU) -> 3; ``Critic_OC``: MLP 2048, 4096, 2048 (ELU, Dropout 0.5) -> 6.
- ``gems/train_gem.py``: one critic object (its own weights, its own Adam) per agent; for MAMQL
  (setup 4) the critic sees only the state (the five 15 x 15 planes, the same global planes for both
  agents), never an action. Each training iteration shuffles the agents, and per agent takes one Adam
  step on its own loss (L2 penalty ``1e-5 * sum ||param||^2``) followed by one evaluation episode
  (at most 45 steps) of the two critics' Boltzmann policies (``softmax(Q)``, sampled), whose
  transitions are pushed into a replay buffer (capacity 16600, pre-filled from a file); every 100th
  iteration's 10 episodes are evaluation only. No target network. A LinearLR schedule is built but
  never stepped (constant lr).
- ``gems/configs/setup2.json``: batch 256, critic_lr 1e-3, gamma 0.99, capacity 16600.
- ``train_update.py``, ``mamql_online``: the policy term is ``mean(logsumexp Q(s) - gamma (1 - d)
  logsumexp Q(s'))`` over a replay batch, the expert term ``mean(y - 0.25 y^2)`` with
  ``y = Q(s, a_i) - gamma (1 - d) logsumexp Q(s')`` (temperature 1, chi^2 with alpha = 1).

agentlab's choices: per-agent weights (a leading agent axis in every parameter, `vmap` over agents),
as the authors' separate critics; the same conv torso and ELU head where an agent's observation has
three trailing axes (read as channels, height, width, the gems layout), an MLP of `hidden` with ELU
otherwise; no dropout (the authors' 0.2 after each conv is left out: the update is deterministic
given its key). One update samples one expert batch (and one replay batch) shared by all agents and
takes one Adam step on the sum of the agents' losses; since the agents' weights are disjoint and
Adam acts per coordinate, that equals one Adam step per agent on its own loss (the authors' step),
taken simultaneously rather than in a shuffled order with a rollout between the agents. The online
variant then rolls out ``rollout_envs x rollout_steps`` joint steps of the updated Boltzmann
policies (default 2 x 45: about the authors' two episodes per iteration) into the buffer; `init`
pre-fills the buffer with one such rollout of the initial policies (the authors load a file).

**Randomness.** Every draw is a counter hash (`agentlab.hashing`) of the seed's raw key: initial
weights (flax through `hashing.HASH_PRNG`), each update's batch indices (``word % rows``: a bias of
at most rows / 2**32), actions (Gumbel-max), the rollout environments' keys (`derive_key`). Threefry
is used only inside kernels that use it (their resets). The same config, key and data give the same
state.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agentlab import compiler, hashing, limits
from agentlab.errors import UsageError, choices
from agentlab.kernels.environment import AutoReset
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Discrete
from agentlab.rl import names
from agentlab.rl import networks as nets

ALGOS = names.MAMQL_ALGOS
PHIS = ("chi2", "linear")
NEG = -1e9  # the logit of a forbidden action

SIZE_BOUNDS = {
    "batch_size": limits.Bound("batch_size", int, low=1, high=2**20, unit="transitions per agent per update"),
    "seeds": limits.Bound("seeds (--seeds)", int, low=1, high=1024),
    "updates_per_chunk": limits.Bound("updates_per_chunk", int, low=1, high=10**6),
    "total_updates": limits.Bound("total_updates", int, low=1, high=limits.MAX_INDEX),
    "buffer_size": limits.Bound("buffer_size", int, low=1, high=2**26, unit="joint transitions"),
    "rollout_envs": limits.Bound("rollout_envs", int, low=1, high=2**16),
    "rollout_steps": limits.Bound("rollout_steps", int, low=1, high=2**16),
}
NUMBER_BOUNDS = {
    "gamma": limits.Bound("gamma", float, low=0, high=1),
    "lr": limits.Bound("lr", float, low=0, high=1, low_open=True),
    "temperature": limits.Bound("temperature", float, low=0, high=1e6, low_open=True),
    "l2": limits.Bound("l2", float, low=0, high=1e3),
    "chi2_alpha": limits.Bound("chi2_alpha", float, low=0, high=1e9, low_open=True),
}
SEED = limits.Bound("seed", int, low=0, high=2**31 - 1)
WIDTH = limits.Bound("layer width", int, low=1, high=2**16)
KERNEL = limits.Bound("conv kernel", int, low=1, high=64)


@dataclasses.dataclass(frozen=True)
class MAMQLConfig:
    """Everything a run depends on besides the environment and the data (with the seed, enough to
    reproduce it). Defaults: the authors' Gems settings (setup 4, ``gems/configs/setup2.json`` and
    ``models.py::Critic_Gems``; see the module docstring)."""

    algo: str = "mamql"  # "mamql", "iq-joint" or "bc"
    online: bool = True  # policy term over a replay buffer of rollouts (True) or over expert states
    gamma: float = 0.99
    lr: float = 1e-3  # Adam, constant
    batch_size: int = 256  # expert transitions per update (and replay transitions, online)
    temperature: float = 1.0  # lambda of the Boltzmann policy and the soft value
    l2: float = 1e-5  # weight of the sum of squared weights (biases included, as the authors)
    phi: str = "chi2"  # "chi2": phi(x) = x - x^2 / (4 chi2_alpha); "linear": phi(x) = x
    chi2_alpha: float = 1.0
    conv_channels: tuple[int, ...] = (64, 64)  # image observations only (three trailing axes)
    conv_kernels: tuple[int, ...] = (5, 3)
    hidden: tuple[int, ...] = (1024, 1024)  # ELU layers after the torso (authors' Gems head)
    buffer_size: int = 16600  # replay capacity in joint transitions (authors' capacity)
    rollout_envs: int = 2  # online: parallel environments per rollout
    rollout_steps: int = 45  # online: joint steps per environment per update
    total_updates: int = 22000  # the authors' Gems iterations (setup2.json "episodes")
    updates_per_chunk: int = 100
    seeds: int = 1
    seed: int = 0

    @property
    def num_updates(self) -> int:
        """`total_updates` rounded up to whole chunks."""
        chunk = max(1, min(self.updates_per_chunk, self.total_updates))
        return -(-self.total_updates // chunk) * chunk

    @property
    def rolls_out(self) -> bool:
        return self.online and self.algo != "bc"

    def validate(self) -> MAMQLConfig:
        """Raise `UsageError` naming the first bad field; return self."""
        if self.algo not in ALGOS:
            raise UsageError(f"unknown algo {self.algo!r}: valid values are {choices(ALGOS)}")
        if self.phi not in PHIS:
            raise UsageError(f"unknown phi {self.phi!r}: valid values are {choices(PHIS)}")
        if not isinstance(self.online, bool):
            raise UsageError(f"online must be true or false, got {self.online!r}")
        for name, bound in SIZE_BOUNDS.items():
            bound.check(getattr(self, name))
        for name, bound in NUMBER_BOUNDS.items():
            bound.check(getattr(self, name))
        SEED.check(self.seed)
        SEED.check(self.seed + self.seeds - 1, "seed + seeds - 1")
        for name in ("conv_channels", "conv_kernels", "hidden"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise UsageError(f"{name} must be a tuple of integers, got {value!r}")
            for width in value:
                (KERNEL if name == "conv_kernels" else WIDTH).check(width, f"each of {name}")
        if len(self.conv_channels) != len(self.conv_kernels):
            raise UsageError("conv_channels and conv_kernels must have the same length")
        if self.rolls_out and self.rollout_envs * self.rollout_steps > self.buffer_size:
            raise UsageError(
                f"rollout_envs x rollout_steps = {self.rollout_envs * self.rollout_steps} exceeds buffer_size="
                f"{self.buffer_size}"
            )
        return self


# ---------------------------------------------------------------------------------------------- networks
class Critic(nn.Module):
    """``apply(params, obs) -> (..., num_outputs)`` for one agent: a conv torso (ReLU, no padding,
    stride 1; computed as `patches` and a dense layer) when `obs_ndim` is 3, the observation read as
    (channels, height, width); then ELU
    layers of `hidden` and a linear head."""

    num_outputs: int
    obs_ndim: int
    conv_channels: Sequence[int] = (64, 64)
    conv_kernels: Sequence[int] = (5, 3)
    hidden: Sequence[int] = (1024, 1024)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        batch = obs.shape[: obs.ndim - self.obs_ndim]
        x = obs.astype(jnp.float32).reshape(-1, *obs.shape[obs.ndim - self.obs_ndim :])
        if self.obs_ndim == 3:
            x = jnp.moveaxis(x, 1, -1)  # (N, C, H, W) -> (N, H, W, C)
            for channels, kernel in zip(self.conv_channels, self.conv_kernels, strict=True):
                x = nn.relu(nn.Dense(channels)(patches(x, kernel)))
        x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = nn.elu(nn.Dense(width)(x))
        return nn.Dense(self.num_outputs)(x).reshape(*batch, self.num_outputs)


def patches(x: jax.Array, kernel: int) -> jax.Array:
    """``(N, H - k + 1, W - k + 1, k * k * C)``: every ``k x k`` window of ``x (N, H, W, C)`` (valid
    padding, stride 1), so that a convolution is one dense layer on them. Measured on a 2-core CPU
    (JAX 0.10, gems shapes, batch 256, offline mamql): with ``nn.Conv`` an update took 3.4 s alone and
    22 s inside a `lax.scan` (a chunk); as windows and a dense layer, 1.7 s alone and 1.1 s in a scan."""
    h, w = x.shape[1] - kernel + 1, x.shape[2] - kernel + 1
    windows = [x[:, i : i + h, j : j + w, :] for i in range(kernel) for j in range(kernel)]
    return jnp.concatenate(windows, axis=-1)


# ------------------------------------------------------------------------------------------------- state
@pytree_dataclass
class Buffer:
    """Replay of joint transitions (online): ``obs``/``next_obs`` ``(M, agents, *obs_shape)``,
    ``terminated`` ``(M,)``, ``count`` (transitions written so far; the ring's next slot is
    ``count % M``)."""

    obs: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    count: jax.Array


@pytree_dataclass
class MAMQLState:
    params: Any  # {"critic": per-agent leaves (agents, ...), "model": iq-joint's other-agent models}
    opt_state: Any
    buffer: Buffer | None  # None offline
    env_state: Any  # rollout environments (online), else None
    obs: jax.Array | None  # rollout environments' observations (envs, agents, *obs_shape)
    episode_return: jax.Array | None  # (envs, agents) running returns of the rollout episodes
    key: jax.Array  # raw uint32[2]
    update: jax.Array  # int32 ()


# -------------------------------------------------------------------------------------------------- data
DATA_FIELDS = ("obs", "action", "next_obs", "terminated")


def prepare_data(data: Mapping[str, Any], learner: MAMQL | None = None) -> dict[str, jax.Array]:
    """The device arrays an update reads from a dataset of NumPy arrays: ``obs`` and ``next_obs``
    float32 ``(N, agents, *obs_shape)``, ``action`` int32 ``(N, agents)``, ``terminated`` bool
    ``(N,)`` (``reward`` and ``truncated`` may be present and are not used for learning). Shapes are
    checked (against `learner`'s kernel when given); a bad dataset -> `UsageError`."""
    missing = [name for name in DATA_FIELDS if name not in data]
    if missing:
        raise UsageError(f"the dataset lacks {choices(missing)}")
    obs = np.asarray(data["obs"], np.float32)
    out = {
        "obs": obs,
        "next_obs": np.asarray(data["next_obs"], np.float32),
        "action": np.asarray(data["action"]),
        "terminated": np.asarray(data["terminated"]).astype(bool),
    }
    if obs.ndim < 3 or obs.shape[0] < 1:
        raise UsageError(f"obs must be (N, agents, *obs_shape) with N >= 1, got {obs.shape}")
    n, agents = obs.shape[:2]
    if out["next_obs"].shape != obs.shape:
        raise UsageError(f"next_obs {out['next_obs'].shape} must have obs's shape {obs.shape}")
    if out["action"].shape != (n, agents) or not np.issubdtype(out["action"].dtype, np.integer):
        raise UsageError(f"action must be integer ({n}, {agents}), got {out['action'].dtype} {out['action'].shape}")
    if out["terminated"].shape != (n,):
        raise UsageError(f"terminated must be ({n},), got {out['terminated'].shape}")
    if n > limits.MAX_INDEX:
        raise UsageError(f"a dataset of {n} rows is too large")
    if learner is not None:
        if (agents, *obs.shape[2:]) != (learner.num_agents, *learner.obs_shape):
            raise UsageError(
                f"the dataset's observations are {obs.shape[1:]}, the kernel's "
                f"{(learner.num_agents, *learner.obs_shape)}"
            )
        if out["action"].min() < 0 or out["action"].max() >= learner.num_actions:
            raise UsageError(f"actions must lie in [0, {learner.num_actions})")
    out["action"] = out["action"].astype(np.int32)
    for name in ("obs", "next_obs"):
        if not np.isfinite(out[name]).all():
            raise UsageError(f"{name} has non-finite values")
    return {name: jnp.asarray(value) for name, value in out.items()}


def sample_indices(key: jax.Array, rows: jax.Array | int, size: int) -> jax.Array:
    """int32 ``(size,)``: uniform row indices in ``[0, rows)`` with replacement (counter-hash words
    modulo `rows`; `rows` may be traced)."""
    words = hashing.key_words(key, (size,))
    return (words % jnp.asarray(rows, jnp.uint32)).astype(jnp.int32)


def phi_fn(x: jax.Array, phi: str, alpha: float) -> jax.Array:
    return x - x**2 / (4.0 * alpha) if phi == "chi2" else x


# ----------------------------------------------------------------------------------------------- learner
class MAMQL:
    """The learner for one configuration and kernel; all methods are pure and jittable.

    `env` is a multi-agent kernel with discrete actions (``env.num_agents``, ``env.num_actions``,
    observations ``(agents, *obs_shape)``); online rollouts wrap it in `AutoReset` if it is not."""

    def __init__(self, config: MAMQLConfig, env, env_params):
        self.config = config.validate()
        if not isinstance(env.action_space(env_params), Discrete):
            raise UsageError(f"{env.name} has continuous actions; MAMQL needs discrete ones")
        if env.num_agents < 2:
            raise UsageError(f"{env.name} has one agent; MAMQL needs a multi-agent kernel")
        if config.algo == "iq-joint" and env.num_agents != 2:
            raise UsageError(f"iq-joint is for two agents, {env.name} has {env.num_agents}")
        self.env = env if isinstance(env, AutoReset) or not config.rolls_out else AutoReset(env)
        self.env_params = env_params
        self.num_agents = int(env.num_agents)
        self.num_actions = int(env.num_actions)
        self.obs_shape = tuple(env.observation_space(env_params).shape[1:])
        mask = env.action_mask(env_params)
        self.action_mask = (
            jnp.ones((self.num_agents, self.num_actions), bool) if mask is None else jnp.asarray(mask, bool)
        )
        k = self.num_actions
        outputs = k * k if config.algo == "iq-joint" else k
        net = functools.partial(
            Critic,
            obs_ndim=len(self.obs_shape),
            conv_channels=tuple(config.conv_channels),
            conv_kernels=tuple(config.conv_kernels),
            hidden=tuple(config.hidden),
        )
        self.critic = net(num_outputs=outputs)
        self.model = net(num_outputs=k)  # iq-joint's model of the other agent
        self.optimizer = optax.adam(config.lr)
        check_memory(self)

    # -- networks ----------------------------------------------------------------------------------
    def _apply(self, module: Critic, params: Any, obs: jax.Array) -> jax.Array:
        """Per-agent outputs ``(..., agents, outputs)`` of ``obs (..., agents, *obs_shape)``: agent i's
        network on agent i's observation (`vmap` over the agent axis of weights and observations)."""
        axis = obs.ndim - len(self.obs_shape) - 1
        out = jax.vmap(module.apply, in_axes=(0, axis), out_axes=axis)(params, obs)
        return out

    def _joint_mask(self) -> jax.Array:
        m = self.action_mask
        return (m[0][:, None] & m[1][None, :]).reshape(-1)  # (k * k,), index a0 * k + a1

    def _critic_mask(self) -> jax.Array:
        """bool ``(agents, outputs)``: the allowed entries of each agent's critic."""
        if self.config.algo == "iq-joint":
            return jnp.broadcast_to(self._joint_mask(), (self.num_agents, self.num_actions**2))
        return self.action_mask

    def q_values(self, params: Any, obs: jax.Array) -> jax.Array:
        """The critics' outputs ``(..., agents, outputs)`` with forbidden entries at -1e9 (outputs:
        ``num_actions``, or ``num_actions ** 2`` joint actions for iq-joint; bc: logits)."""
        q = self._apply(self.critic, params["critic"], obs)
        return jnp.where(self._critic_mask(), q, NEG)

    def soft_value(self, q: jax.Array) -> jax.Array:
        lam = self.config.temperature
        return lam * jax.nn.logsumexp(q / lam, axis=-1)

    def logits(self, params: Any, obs: jax.Array) -> jax.Array:
        """Each agent's policy logits ``(..., agents, num_actions)`` (forbidden actions -1e9):
        ``Qbar_i / lambda`` (mamql), the joint critic marginalised over the model of the other agent
        (iq-joint), the network's logits (bc)."""
        q = self.q_values(params, obs)
        return self._policy_logits(q, self._model_logits(params, obs) if self.config.algo == "iq-joint" else None)

    def _policy_logits(self, q: jax.Array, model_logits: jax.Array | None) -> jax.Array:
        """`logits` from the critics' outputs (and, iq-joint, the other-agent models' logits)."""
        cfg = self.config
        if cfg.algo == "bc":
            return q
        if cfg.algo == "iq-joint":
            k = self.num_actions
            joint = jnp.where(self._joint_mask(), q, 0.0).reshape(*q.shape[:-1], k, k)  # [..., i, a0, a1]
            other = jax.nn.softmax(model_logits, axis=-1)  # [..., i, a_j]
            q0 = jnp.einsum("...xy,...y->...x", joint[..., 0, :, :], other[..., 0, :])  # agent 0: a0 over a1
            q1 = jnp.einsum("...xy,...x->...y", joint[..., 1, :, :], other[..., 1, :])  # agent 1: a1 over a0
            q = jnp.stack([q0, q1], axis=-2)
        return jnp.where(self.action_mask, q / cfg.temperature, NEG)

    def _model_logits(self, params: Any, obs: jax.Array) -> jax.Array:
        """iq-joint: agent i's model of the other agent's action, from agent i's observation."""
        other_mask = self.action_mask[::-1]  # two agents: agent i models agent 1 - i
        return jnp.where(other_mask, self._apply(self.model, params["model"], obs), NEG)

    def log_probs(self, params: Any, obs: jax.Array) -> jax.Array:
        """float32 ``(..., agents, num_actions)``: each agent's log-probabilities of its actions at
        `obs` ``(..., agents, *obs_shape)`` under the learned policy (for KL against known experts)."""
        return jax.nn.log_softmax(self.logits(params, obs), axis=-1)

    def act(self, params: Any, key: jax.Array, obs: jax.Array, greedy: bool = False) -> jax.Array:
        """int32 ``(..., agents)``: sampled from the Boltzmann policies, or their argmax."""
        logits = self.logits(params, obs)
        if greedy:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return nets.categorical_sample(key, logits)

    # -- losses ------------------------------------------------------------------------------------
    def _expert_q(self, q: jax.Array, action: jax.Array, joint: bool = False) -> jax.Array:
        """``q (B, agents, outputs)`` at the expert's action per agent, ``(B, agents)``: agent i's own
        action, or with `joint` the joint action (iq-joint's critic)."""
        if joint:
            index = action[:, 0] * self.num_actions + action[:, 1]
            return jnp.take_along_axis(q, jnp.broadcast_to(index[:, None, None], (*q.shape[:2], 1)), axis=-1)[..., 0]
        return jnp.take_along_axis(q, action[..., None], axis=-1)[..., 0]

    def recovered_reward(self, params: Any, batch: Mapping[str, jax.Array]) -> jax.Array:
        """float32 ``(B, agents)``: ``r_i = Q_i(s, a) - gamma (1 - d) V_i(s')`` on the transitions of
        `batch` (``obs``, ``action``, ``next_obs``, ``terminated``); ``a`` is agent i's action (mamql)
        or the joint action (iq-joint)."""
        q = self.q_values(params, batch["obs"])
        v_next = self.soft_value(self.q_values(params, batch["next_obs"]))
        live = 1.0 - batch["terminated"].astype(jnp.float32)[:, None]
        joint = self.config.algo == "iq-joint"
        return self._expert_q(q, batch["action"], joint) - self.config.gamma * live * v_next

    def loss(self, params: Any, expert: Mapping[str, jax.Array], policy: Mapping[str, jax.Array] | None = None):
        """``(total, per-agent terms)``: the sum over agents of each agent's loss (module docstring),
        with the terms ``(agents,)`` (``accuracy``: the greedy policy's agreement with the expert's
        actions on the batch, before the step),
        on an expert batch (``obs``, ``action``, ``next_obs``, ``terminated``) and, online, a policy
        batch (``obs``, ``next_obs``, ``terminated``; None: the expert batch's states)."""
        cfg = self.config
        l2 = jax.tree.map(lambda w: jnp.sum(w**2, axis=tuple(range(1, w.ndim))), params)
        l2 = sum(jax.tree.leaves(l2))  # (agents,)
        if cfg.algo == "bc":
            logits = self.q_values(params, expert["obs"])
            ce = -jnp.mean(self._expert_q(jax.nn.log_softmax(logits, axis=-1), expert["action"]), axis=0)
            per_agent = ce + cfg.l2 * l2
            terms = {"loss": per_agent, "cross_entropy": ce, "accuracy": self._accuracy(logits, expert["action"])}
            return per_agent.sum(), terms
        b = expert["obs"].shape[0]
        if policy is None:
            q_all = self.q_values(params, jnp.concatenate([expert["obs"], expert["next_obs"]]))
            q, q_next = q_all[:b], q_all[b:]
            v_all = self.soft_value(q_all)
            v_pol, v_pol_next, pol_term = v_all[:b], v_all[b:], expert["terminated"]
        else:
            p = policy["obs"].shape[0]
            states = jnp.concatenate([expert["obs"], expert["next_obs"], policy["obs"], policy["next_obs"]])
            q_all = self.q_values(params, states)
            v_all = self.soft_value(q_all)
            q, q_next = q_all[:b], q_all[b : 2 * b]
            v_pol, v_pol_next = v_all[2 * b : 2 * b + p], v_all[2 * b + p :]
            pol_term = policy["terminated"]
        v_next = self.soft_value(q_next)
        live = 1.0 - expert["terminated"].astype(jnp.float32)[:, None]
        reward = self._expert_q(q, expert["action"], cfg.algo == "iq-joint") - cfg.gamma * live * v_next  # (B, agents)
        pol_live = 1.0 - pol_term.astype(jnp.float32)[:, None]
        policy_term = jnp.mean(v_pol - cfg.gamma * pol_live * v_pol_next, axis=0)
        expert_term = jnp.mean(phi_fn(reward, cfg.phi, cfg.chi2_alpha), axis=0)
        per_agent = policy_term - expert_term + cfg.l2 * l2
        terms = {
            "loss": per_agent,
            "policy_term": policy_term,
            "expert_term": expert_term,
            "recovered_reward": jnp.mean(reward, axis=0),
        }
        model_logits = None
        if cfg.algo == "iq-joint":  # the other-agent models' cross-entropy, on the expert batch
            model_logits = self._model_logits(params, expert["obs"])
            model_logp = jax.nn.log_softmax(model_logits, axis=-1)
            ce = -jnp.mean(self._expert_q(model_logp, expert["action"][:, ::-1]), axis=0)
            terms["model_cross_entropy"] = ce
            per_agent = per_agent + ce
            terms["loss"] = per_agent
        terms["accuracy"] = self._accuracy(self._policy_logits(q, model_logits), expert["action"])
        return per_agent.sum(), terms

    @staticmethod
    def _accuracy(logits: jax.Array, action: jax.Array) -> jax.Array:
        """``(agents,)``: the share of the batch where the greedy action is the expert's (a metric:
        no gradient flows through it)."""
        greedy = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
        return jnp.mean(greedy == action, axis=0)

    # -- state -------------------------------------------------------------------------------------
    def init_params(self, key: jax.Array) -> Any:
        """Per-agent weights (leading agent axis) from a raw key, drawn by the counter hash."""
        dummy = jnp.zeros((1, *self.obs_shape), jnp.float32)

        def one(module: Critic, k: jax.Array) -> Any:
            return module.init(jax.random.wrap_key_data(hashing.seed_words(k), impl=hashing.HASH_PRNG), dummy)

        k_critic, k_model = hashing.split_key(key, 2)
        params = {"critic": jax.vmap(functools.partial(one, self.critic))(hashing.split_key(k_critic, self.num_agents))}
        if self.config.algo == "iq-joint":
            params["model"] = jax.vmap(functools.partial(one, self.model))(hashing.split_key(k_model, self.num_agents))
        return params

    def init(self, key: jax.Array) -> MAMQLState:
        """A fresh state from a raw ``uint32[2]`` key; online, the buffer holds one rollout of the
        initial policies."""
        cfg = self.config
        key, k_net, k_env = hashing.split_key(key, 3)
        params = self.init_params(k_net)
        state = MAMQLState(
            params=params,
            opt_state=self.optimizer.init(params),
            buffer=None,
            env_state=None,
            obs=None,
            episode_return=None,
            key=key,
            update=jnp.zeros((), jnp.int32),
        )
        if not cfg.rolls_out:
            return state
        reset = jax.vmap(self.env.reset, in_axes=(0, None))
        obs, env_state = reset(hashing.split_key(k_env, cfg.rollout_envs), self.env_params)
        m = cfg.buffer_size
        state = state.replace(
            buffer=Buffer(
                obs=jnp.zeros((m, self.num_agents, *self.obs_shape), jnp.float32),
                next_obs=jnp.zeros((m, self.num_agents, *self.obs_shape), jnp.float32),
                terminated=jnp.zeros((m,), bool),
                count=jnp.zeros((), jnp.int32),
            ),
            env_state=env_state,
            obs=obs.astype(jnp.float32),
            episode_return=jnp.zeros((cfg.rollout_envs, self.num_agents), jnp.float32),
        )
        state, _ = self._rollout(state)
        return state

    def init_seeds(self, keys: jax.Array) -> MAMQLState:
        """States for several seeds (``keys`` uint32 ``(seeds, 2)``) stacked on a leading axis."""
        return jax.vmap(self.init)(keys)

    # -- rollout -----------------------------------------------------------------------------------
    def _rollout(self, state: MAMQLState) -> tuple[MAMQLState, dict[str, jax.Array]]:
        """`rollout_steps` joint steps of the current Boltzmann policies in each rollout environment,
        written to the buffer; returns the mean return of the episodes that finished (per agent)."""
        cfg = self.config
        step = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))
        key, k_roll = hashing.split_key(state.key)
        streams = jnp.arange(1, cfg.rollout_envs + 1, dtype=jnp.uint32)

        def one_step(carry, t):
            env_state, obs, ep_return = carry
            k_step = hashing.derive_key(k_roll, t)
            action = self.act(state.params, hashing.derive_key(k_step, 0), obs)
            env_keys = hashing.derive_key(jnp.broadcast_to(k_step, (cfg.rollout_envs, 2)), streams)
            next_obs, env_state, reward, terminated, truncated, info = step(
                env_keys, env_state, action, self.env_params
            )
            done = terminated | truncated
            final = info["final_observation"].astype(jnp.float32)
            ep_return = ep_return + reward
            out = {
                "obs": obs,
                "next_obs": final,
                "terminated": terminated,
                "finished": done,
                "finished_return": jnp.where(done[:, None], ep_return, 0.0),
            }
            ep_return = jnp.where(done[:, None], 0.0, ep_return)
            return (env_state, next_obs.astype(jnp.float32), ep_return), out

        (env_state, obs, ep_return), traj = jax.lax.scan(
            one_step,
            (state.env_state, state.obs, state.episode_return),
            jnp.arange(cfg.rollout_steps, dtype=jnp.uint32),
        )
        rows = cfg.rollout_steps * cfg.rollout_envs
        buf = state.buffer
        slots = (buf.count + jnp.arange(rows, dtype=jnp.int32)) % cfg.buffer_size
        flat = lambda x: x.reshape(rows, *x.shape[2:])  # noqa: E731
        buf = Buffer(
            obs=buf.obs.at[slots].set(flat(traj["obs"])),
            next_obs=buf.next_obs.at[slots].set(flat(traj["next_obs"])),
            terminated=buf.terminated.at[slots].set(flat(traj["terminated"])),
            count=jnp.minimum(buf.count + rows, limits.MAX_INDEX - rows),
        )
        finished = traj["finished"].sum()
        mean_return = jnp.where(
            finished > 0, traj["finished_return"].sum(axis=(0, 1)) / jnp.maximum(finished, 1), jnp.nan
        )
        state = state.replace(buffer=buf, env_state=env_state, obs=obs, episode_return=ep_return, key=key)
        return state, {"rollout_return": mean_return, "episodes": finished}

    # -- one update --------------------------------------------------------------------------------
    def update(self, state: MAMQLState, data: Mapping[str, jax.Array]) -> tuple[MAMQLState, dict[str, jax.Array]]:
        """One Adam step on every agent's loss (batches drawn from `data` and, online, the buffer),
        then, online, one rollout into the buffer. Metrics: per-agent ``(agents,)`` arrays."""
        cfg = self.config
        key, k_expert, k_policy = hashing.split_key(state.key, 3)
        n = data["obs"].shape[0]
        idx = sample_indices(k_expert, n, cfg.batch_size)
        expert = {name: data[name][idx] for name in DATA_FIELDS}
        policy = None
        if cfg.rolls_out:
            buf = state.buffer
            pidx = sample_indices(k_policy, jnp.minimum(buf.count, cfg.buffer_size), cfg.batch_size)
            policy = {"obs": buf.obs[pidx], "next_obs": buf.next_obs[pidx], "terminated": buf.terminated[pidx]}
        (_, terms), grads = jax.value_and_grad(self.loss, has_aux=True)(state.params, expert, policy)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(terms)
        state = state.replace(params=params, opt_state=opt_state, key=key, update=state.update + 1)
        if cfg.rolls_out:
            state, rollout = self._rollout(state)
            metrics.update(rollout)
        return state, metrics

    def chunk(self, state: MAMQLState, data: Mapping[str, jax.Array]) -> tuple[MAMQLState, dict[str, jax.Array]]:
        """`updates_per_chunk` updates in one `lax.scan`; metrics stacked on a leading axis."""
        return jax.lax.scan(lambda s, _: self.update(s, data), state, None, length=self.config.updates_per_chunk)

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(
        self,
        key: jax.Array,
        params: Any,
        env,
        env_params,
        episodes: int,
        *,
        greedy: bool = False,
        max_steps: int | None = None,
    ) -> jax.Array:
        """float32 ``(agents,)``: each agent's mean undiscounted return over `episodes` fresh episodes
        of the joint policy (Boltzmann samples by default, as the authors evaluate; argmax with
        `greedy`). An episode runs until it terminates or is truncated, or for `max_steps` steps
        (default the kernel's ``params.max_steps``). Jit with `env`, `episodes`, `greedy` and
        `max_steps` static (`env_params` may be traced)."""
        horizon = max_steps if max_steps is not None else env_params.max_steps  # may be traced
        if horizon is None:
            raise UsageError(f"{env.name} has no time limit: pass max_steps")
        keys = hashing.split_key(key, episodes)

        def episode(k):
            k_reset, k_run = hashing.split_key(k)
            obs, env_state = env.reset(k_reset, env_params)

            def alive(carry):
                t, _, _, done, _ = carry
                return ~done & (t < horizon)

            def one(carry):
                t, env_state, obs, _, total = carry
                k_step = hashing.derive_key(k_run, t.astype(jnp.uint32))
                action = self.act(params, hashing.derive_key(k_step, 0), obs.astype(jnp.float32), greedy)
                obs, env_state, reward, terminated, truncated, _ = env.step(
                    hashing.derive_key(k_step, 1), env_state, action, env_params
                )
                return t + 1, env_state, obs, terminated | truncated, total + reward

            init = (
                jnp.zeros((), jnp.int32),
                env_state,
                obs,
                jnp.asarray(False),
                jnp.zeros(self.num_agents, jnp.float32),
            )
            return jax.lax.while_loop(alive, one, init)[-1]

        return jnp.mean(jax.vmap(episode)(keys), axis=0)


def check_memory(learner: MAMQL) -> None:
    """Refuse a run whose replay buffers (per seed ``buffer_size`` x 2 float32 joint observations) and
    batch activations cannot fit; a lower bound."""
    cfg = learner.config
    obs_bytes = 4 * learner.num_agents * math.prod(learner.obs_shape)
    buffer = cfg.buffer_size * (2 * obs_bytes + 1) if cfg.rolls_out else 0
    activations = 4 * cfg.batch_size * learner.num_agents * (sum(cfg.hidden) + obs_bytes) * 4
    limits.check_memory(
        cfg.seeds * (buffer + activations),
        f"{cfg.algo} with {cfg.seeds} seed(s), buffer {cfg.buffer_size}, batch {cfg.batch_size}",
        "lower --seeds, buffer_size or batch_size",
    )


def seed_keys(config: MAMQLConfig) -> jax.Array:
    """uint32 ``(seeds, 2)``: the raw key of each seed (``PRNGKey(seed + s)``)."""
    return jnp.stack([jax.random.PRNGKey(config.seed + s) for s in range(config.seeds)])


def updates_per_second(
    learner: MAMQL, data: Mapping[str, jax.Array], key: jax.Array | None = None, repeats: int = 3
) -> dict[str, float]:
    """Throughput of `learner.chunk` on `data` for one seed: compile (timed separately), then
    `repeats` timed chunks, blocking on their results. Returns ``updates_per_second`` (the best
    chunk), ``compile_seconds``."""
    key = jax.random.PRNGKey(0) if key is None else key
    state = compiler.jit(learner.init)(key)
    chunk = compiler.jit(learner.chunk)
    start = time.perf_counter()
    compiled = chunk.lower(state, data).compile()
    compile_seconds = time.perf_counter() - start
    state, _ = jax.block_until_ready(compiled(state, data))  # warm
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, data))
        best = min(best, time.perf_counter() - start)
    return {"updates_per_second": learner.config.updates_per_chunk / best, "compile_seconds": compile_seconds}
