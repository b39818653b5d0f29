"""PPO (Schulman et al. 2017) on any agentlab kernel, jitted end to end, in the spirit of PureJaxRL.

    learner = PPO(PPOConfig(env="breakout"))
    state = learner.init(jax.random.PRNGKey(0))          # one seed; learner.init_seeds(keys) for several
    state, metrics = learner.chunk(state)                # `updates_per_chunk` updates in one lax.scan
    final, metrics = jax.jit(learner.train)(key)         # the whole run, chunks scanned to the end

One update collects ``num_steps`` steps from ``num_envs`` auto-resetting environments, computes GAE
advantages (bootstrapping truncated episodes from ``info["final_observation"]``), and takes
``update_epochs x num_minibatches`` clipped-surrogate steps with optax's Adam. Multi-agent kernels are
trained as independent PPO with one shared network: every agent is a row of the batch. Keys are raw
``uint32[2]`` arrays so that the whole learner state saves to ``.npz`` (`agentlab.rl.checkpoint`).

Randomness: every draw is a counter-based hash (`agentlab.hashing`) of the seed's key: the
initial weights (flax through the `HASH_PRNG` implementation), the environments' first keys, each
update's rollout and epoch keys (`split_key` of the learner's key), the action of each step
(Gumbel-max), the key of each environment at each step (`derive_key`) and each epoch's minibatch
order (one sort of hashed words). On the CPU, JAX runs a threefry call as a rolled loop of tens of
microseconds and compiles each call site separately (about a quarter of a second each), and
``jax.random.permutation`` as two sorts: per step and per epoch they were about a tenth of an
update's work, and the threefry call sites about a quarter of the compile time. The draws are tested
against their distributions (tests/test_sampling.py).

Devices: with ``devices > 1`` each update runs under `jax.shard_map` over a one-axis mesh (`agentlab.devices`):
the environments are split into equal blocks that keep their one-device keys and action draws, the rollout is
gathered once per update, and each minibatch (the one-device minibatch) is split into equal slices whose gradients
are averaged (`PPO.update`). Rollouts are the one-device rollouts; parameters and losses agree to float
reassociation (1e-5 relative after two updates, tests/test_devices.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax

from agentlab import compiler, hashing, limits
from agentlab import devices as agentlab_devices
from agentlab.errors import UsageError, choices
from agentlab.kernels import make
from agentlab.kernels.names import canonical_id
from agentlab.kernels.pytree import pytree_dataclass
from agentlab.kernels.spaces import Discrete
from agentlab.rl import networks as nets

#: Training's default time limit where a kernel has none (the Atari-style games, as MinAtar): 1000
#: steps, like gymnax's MinAtar ports; Freeway gets 3000 so that its own end at 2501 steps decides.
DEFAULT_TIME_LIMIT = 1000
TIME_LIMITS = {"freeway": 3000}

#: Upper ends of PPOConfig's counts: the step and update counters are int32 inside the learner, and
#: beyond these a run would not finish (or compile) on any machine agentlab targets.
SIZE_BOUNDS = {
    "total_steps": limits.Bound("total_steps (--steps)", int, low=1, high=10**12, unit="environment steps per seed"),
    "num_envs": limits.Bound("num_envs", int, low=1, high=2**20),
    "num_steps": limits.Bound("num_steps", int, low=1, high=2**16),
    "update_epochs": limits.Bound("update_epochs", int, low=1, high=1000),
    "num_minibatches": limits.Bound("num_minibatches", int, low=1, high=2**20),
    "seeds": limits.Bound("seeds (--seeds)", int, low=1, high=1024),
    "updates_per_chunk": limits.Bound("updates_per_chunk", int, low=1, high=10**6),
}
MAX_EPISODE_STEPS = limits.Bound("max_episode_steps", int, low=1, high=limits.MAX_INDEX)
# kernel options PPO sets from its own fields, and where to set them
RESERVED_OPTIONS = {"max_steps": "max_episode_steps (--config)", "stochasticity": "--stochasticity"}
SEED = limits.Bound("seed", int, low=0, high=2**31 - 1)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Everything a PPO run depends on (with the seed, enough to reproduce it).

    The defaults are PureJaxRL's MinAtar settings (64 envs x 128 steps, 4 epochs x 8 minibatches,
    Adam with lr 5e-3 annealed linearly to 0, relu 64x64 MLPs, entropy 0.01) with two changes measured
    on Breakout (bench/README.md): one shared trunk for actor and critic instead of two MLPs (half the
    network cost per step: 1.3-1.4x the training throughput), and a value coefficient of 0.25 instead
    of 0.5 (with a shared trunk the value loss's gradient reaches the policy's layers and dominates
    the clipped global norm; at 1.3e6 steps on 12 seeds the mean return was 30.8 against 27.6 for
    0.5 with entropy 0.03 on 6). `agentlab.bench.ppo.PUREJAXRL_SETTINGS` restores PureJaxRL's.
    """

    env: str = "breakout"  # a registered kernel id (an alias is stored as its id)
    env_options: tuple[tuple[str, Any], ...] = ()  # the kernel's make() options (``--env-option``), sorted pairs
    stochasticity: str = "plain"  # taxonomy profiles of the training environment (generic kinds on other kernels)
    max_episode_steps: int | None = None  # None: the kernel's own limit, else 1000 (3000 for freeway)
    total_steps: int = 1_000_000  # environment steps per seed
    num_envs: int = 64
    num_steps: int = 128  # rollout length per update
    update_epochs: int = 4
    num_minibatches: int = 8
    lr: float = 5e-3
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.25  # PureJaxRL: 0.5 (separate MLPs)
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    shared_layers: int = 2  # leading hidden layers actor and critic share; PureJaxRL: 0 (separate MLPs)
    seeds: int = 1  # seeds trained side by side (vmap)
    seed: int = 0  # seed s of the K trained is seed + s
    updates_per_chunk: int = 8  # updates per jitted call (progress, checkpoints and resume happen between)
    devices: int = 1  # devices the environments and each minibatch are split over (`agentlab.devices`); 1: one

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", canonical_id(self.env))

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates of the run: at least `total_steps` environment steps per seed, in whole chunks of
        `updates_per_chunk` (a chunk shorter than that when the run is), so a run never trains fewer
        steps than asked; ``num_updates x batch_size`` is what it trains (`steps_per_seed`)."""
        updates = -(-self.total_steps // self.batch_size)
        chunk = max(1, min(self.updates_per_chunk, updates))
        return -(-updates // chunk) * chunk

    @property
    def time_limit(self) -> int:
        """`max_episode_steps`, else the kernel's own limit (coordination 32, point 20), else 1000
        (Freeway 3000)."""
        if self.max_episode_steps is not None:
            return self.max_episode_steps
        own = make(self.env, auto_reset=False, **dict(self.env_options))[1].max_steps
        return own if own is not None else TIME_LIMITS.get(self.env, DEFAULT_TIME_LIMIT)

    def validate(self) -> PPOConfig:
        """Raise `UsageError` naming the first bad field (its `SIZE_BOUNDS` or the checks below); also
        refuse a run whose rollout buffers would not fit in memory; return self."""
        for name, bound in SIZE_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{name} must be a positive integer, got {value!r}")
            bound.check(value)
        if self.max_episode_steps is not None:
            MAX_EPISODE_STEPS.check(self.max_episode_steps)
        SEED.check(self.seed)
        SEED.check(self.seed + self.seeds - 1, "seed + seeds - 1")
        if self.batch_size % self.num_minibatches:
            raise UsageError(
                f"num_envs x num_steps = {self.batch_size} is not divisible by num_minibatches={self.num_minibatches}"
            )
        for name in ("lr", "gamma", "gae_lambda", "clip_eps", "vf_coef", "ent_coef", "max_grad_norm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UsageError(f"{name} must be a non-negative number, got {value!r}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise UsageError("gamma and gae_lambda must lie in [0, 1]")
        if self.activation not in nets.ACTIVATIONS:
            raise UsageError(f"unknown activation {self.activation!r}: valid values are {choices(nets.ACTIVATIONS)}")
        if not self.hidden or any((not isinstance(h, int)) or h < 1 for h in self.hidden):
            raise UsageError(f"hidden must be a list of positive layer widths, got {self.hidden!r}")
        if isinstance(self.shared_layers, bool) or not isinstance(self.shared_layers, int):
            raise UsageError(f"shared_layers must be an integer, got {self.shared_layers!r}")
        if not 0 <= self.shared_layers <= len(self.hidden):
            raise UsageError(
                f"shared_layers must lie in [0, {len(self.hidden)}] (the hidden layers), got {self.shared_layers}"
            )
        if not isinstance(self.env_options, tuple) or any(
            not isinstance(pair, tuple) or len(pair) != 2 or pair[0] in RESERVED_OPTIONS for pair in self.env_options
        ):
            raise UsageError(
                f"env_options must be (name, value) pairs of kernel options other than "
                f"{', '.join(RESERVED_OPTIONS)}, got {self.env_options!r}"
            )
        agentlab_devices.check(self.devices, self.num_envs, "num_envs")
        if self.devices > 1 and (self.batch_size // self.num_minibatches) % self.devices:
            raise UsageError(
                f"--devices {self.devices} does not divide the minibatch of num_envs x num_steps / num_minibatches = "
                f"{self.batch_size // self.num_minibatches} rows: use a number of devices that divides it"
            )
        env, params = make_env(self)  # an unknown kernel or a bad stochasticity string raises here
        check_memory(self, env, params)
        return self


def check_memory(config: PPOConfig, env, params) -> None:
    """Refuse a run whose rollout buffers cannot fit: per seed, ``num_envs x num_steps`` transitions of
    float32 observations (plus next observations for truncation and about 64 bytes of scalars) per
    agent, and the minibatch gradients' activations; a lower bound, so a refusal is certain to be right."""
    obs = math.prod(env.observation_space(params).shape)
    transitions = config.seeds * config.batch_size
    activations = transitions * sum(config.hidden) * 4 * 3
    limits.check_memory(
        transitions * (obs * 4 * 2 + 64) + activations,
        f"PPO with {config.seeds} seed(s) x {config.num_envs} envs x {config.num_steps} steps",
        "lower --seeds, num_envs or num_steps",
    )


def make_env(config: PPOConfig):
    """The training environment (auto-reset on, `config.time_limit`) and its params."""
    options: dict[str, Any] = {**dict(config.env_options), "max_steps": config.time_limit}
    options["stochasticity"] = config.stochasticity  # the taxonomy (Atari games) or the generic kinds (the others)
    return make(config.env, **options)


@pytree_dataclass
class RunnerState:
    """The whole learner state of one seed (everything a checkpoint holds)."""

    params: Any  # network parameters
    opt_state: Any  # optax state
    env_state: Any  # batched kernel state (num_envs, ...)
    obs: jax.Array  # (num_envs, *obs_shape) observation the next action is chosen from
    episode_return: jax.Array  # float32 (num_envs[, agents]) return of the running episodes
    episode_length: jax.Array  # int32 (num_envs,)
    key: jax.Array  # uint32 (2,)
    update: jax.Array  # int32 (): updates done


@pytree_dataclass
class Transition:
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array  # broadcast to the reward's shape
    truncated: jax.Array
    final_value: jax.Array  # value of info["final_observation"] where truncated (bootstraps it), else 0
    finished_return: jax.Array  # return of an episode that ended at this step, else 0
    finished_length: jax.Array
    finished: jax.Array  # bool (num_envs,)
    episode_metrics: dict  # a kernel's info["episode_metrics"] (name -> (num_envs,)), or {} where it has none


def gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float,
    lam: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation (Schulman et al. 2016) over a time axis 0.

    ``next_values[t]`` is the value to bootstrap step t from: the next observation's, or for a
    truncated step the value of its final observation. A terminated step bootstraps nothing; any
    finished step (`done`) stops the advantage from flowing back across the episode boundary.
    Returns ``(advantages, returns)`` with ``returns = advantages + values``.
    """
    terminated = terminated.astype(jnp.float32)
    done = done.astype(jnp.float32)
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values

    def body(advantage, inputs):
        delta, finished = inputs
        advantage = delta + gamma * lam * (1.0 - finished) * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(body, jnp.zeros_like(values[0]), (deltas, done), reverse=True)
    return advantages, advantages + values


def shuffle_order(key: jax.Array, n: int) -> jax.Array:
    """int32 ``(n,)``: a random permutation of ``range(n)`` for one epoch's minibatches: each row gets
    a counter-based uint32 word and rows are ordered by it (`agentlab.hashing.sort_order`: one packed
    single-operand sort, about 13x faster on the CPU than ``jax.random.permutation``, whose two
    threefry-keyed sorts were about a tenth of a PPO update)."""
    return hashing.sort_order(hashing.key_words(key, (n,)))


class PPO:
    """A PPO learner for one configuration; all methods are pure and jittable."""

    def __init__(self, config: PPOConfig):
        self.config = config.validate()
        self.env, self.env_params = make_env(config)
        space = self.env.action_space(self.env_params)
        self.discrete = isinstance(space, Discrete)
        obs_space = self.env.observation_space(self.env_params)
        obs_ndim = len(obs_space.shape) - (1 if self.env.multi_agent else 0)
        outputs = space.n if self.discrete else space.shape[-1]
        self.network = nets.ActorCritic(
            num_outputs=outputs,
            obs_ndim=obs_ndim,
            continuous=not self.discrete,
            hidden=tuple(config.hidden),
            activation=config.activation,
            shared_layers=config.shared_layers,
        )
        steps_per_update = config.update_epochs * config.num_minibatches
        if config.anneal_lr:
            self.schedule = optax.linear_schedule(config.lr, 0.0, config.num_updates * steps_per_update)
        else:
            self.schedule = optax.constant_schedule(config.lr)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm), optax.adam(self.schedule, eps=1e-5)
        )
        self.steps_per_update = steps_per_update
        # Roles that allow different actions (multi-agent kernels): bool (num_agents, num_actions) or None.
        mask = self.env.action_mask(self.env_params) if self.discrete else None
        self.action_mask = None if mask is None else jnp.asarray(mask, bool)

    # -- policy ------------------------------------------------------------------------------------
    def sample(self, key: jax.Array, policy: jax.Array, first_row: int | jax.Array = 0) -> jax.Array:
        """One action per row of `policy`; `first_row`: these are rows ``first_row ..`` of a larger batch (a
        device's block), drawn as that batch draws them."""
        if self.discrete:
            return nets.categorical_sample(key, policy, first_row)
        return nets.gaussian_sample(key, policy, first_row)

    def log_prob(self, policy: jax.Array, action: jax.Array) -> jax.Array:
        return nets.categorical_log_prob(policy, action) if self.discrete else nets.gaussian_log_prob(policy, action)

    def entropy(self, policy: jax.Array) -> jax.Array:
        return nets.categorical_entropy(policy) if self.discrete else nets.gaussian_entropy(policy)

    def policy_value(self, params: Any, obs: jax.Array, mask: jax.Array | None = None):
        """``(policy, value)`` of a batch of observations; logits of actions an agent's role forbids
        are -1e9 (`mask` broadcasts against the logits; default: the kernel's `action_mask`)."""
        policy, value = self.network.apply(params, obs)
        mask = self.action_mask if mask is None else mask
        if mask is not None:
            policy = jnp.where(mask, policy, -1e9)
        return policy, value

    def act(self, params: Any, key: jax.Array, obs: jax.Array, greedy: bool = False) -> jax.Array:
        """An action for `obs` (sampled, or the most likely one with `greedy`)."""
        policy, _ = self.policy_value(params, obs)
        if greedy:
            return jnp.argmax(policy, axis=-1).astype(jnp.int32) if self.discrete else nets.gaussian_split(policy)[0]
        return self.sample(key, policy)

    # -- state -------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> RunnerState:
        """A fresh learner state from a raw ``uint32[2]`` key."""
        cfg = self.config
        key, k_net, k_env = hashing.split_key(key, 3)
        reset = jax.vmap(self.env.reset, in_axes=(0, None))
        obs, env_state = reset(hashing.split_key(k_env, cfg.num_envs), self.env_params)
        # The initial weights come from the counter hash, not threefry: flax folds the key in per
        # layer and draws each kernel, and each threefry call is a separately compiled loop (about
        # a second of compile time for four layers, against microseconds of work).
        params = self.network.init(jax.random.wrap_key_data(hashing.seed_words(k_net), impl=hashing.HASH_PRNG), obs[:1])
        reward_shape = (cfg.num_envs, self.env.num_agents) if self.env.multi_agent else (cfg.num_envs,)
        return RunnerState(
            params=params,
            opt_state=self.optimizer.init(params),
            env_state=env_state,
            obs=obs,
            episode_return=jnp.zeros(reward_shape, jnp.float32),
            episode_length=jnp.zeros(cfg.num_envs, jnp.int32),
            key=key,
            update=jnp.zeros((), jnp.int32),
        )

    def init_seeds(self, keys: jax.Array) -> RunnerState:
        """Learner states for several seeds, stacked on a leading axis (``keys``: uint32 (seeds, 2)).

        Each seed is initialised on its own and the results stacked: a `vmap`-ed `init` (which runs
        the orthogonal initialiser's QR decompositions side by side) hangs JAX 0.10's CPU runtime
        with two or more seeds. Training itself is `vmap`-ed over seeds.
        """
        init = compiler.jit(self.init)
        states = [init(key) for key in keys]
        return jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)

    # -- one update --------------------------------------------------------------------------------
    def _rollout(self, state: RunnerState, shard: bool = False) -> tuple[RunnerState, Transition]:
        """`num_steps` steps of every environment; with `shard` (inside `update`'s `shard_map`), of this device's
        block of ``num_envs / devices`` environments, with the keys and action draws they have on one device."""
        cfg = self.config
        step = jax.vmap(self.env.step, in_axes=(0, 0, 0, None))
        # One key per rollout; each step's keys are cheap counter-based derivations of it
        # (agentlab.hashing): the action draw's stream 0 and one stream per environment.
        key, k_rollout = hashing.split_key(state.key)
        lanes = cfg.num_envs // cfg.devices if shard else cfg.num_envs
        first = jax.lax.axis_index(agentlab_devices.AXIS) * lanes if shard else 0  # this block's first environment
        env_streams = jnp.arange(1, lanes + 1, dtype=jnp.uint32) + jnp.uint32(first)

        def one_step(state: RunnerState, t: jax.Array):
            k_step = hashing.derive_key(k_rollout, t)
            policy, value = self.policy_value(state.params, state.obs)
            # this block's rows of the whole batch's draws (counter words by row; no gather)
            action = self.sample(hashing.derive_key(k_step, 0), policy, first)
            log_prob = self.log_prob(policy, action)
            env_keys = hashing.derive_key(jnp.broadcast_to(k_step, (lanes, *k_step.shape)), env_streams)
            obs, env_state, reward, terminated, truncated, info = step(
                env_keys, state.env_state, action, self.env_params
            )
            done = terminated | truncated
            per_agent = (lambda x: x[:, None]) if self.env.multi_agent else (lambda x: x)
            # The value a truncated episode bootstraps from: evaluated only on steps where some
            # environment was truncated (rare), instead of on every step's final observation.
            final_value = jax.lax.cond(
                truncated.any(),
                lambda: jnp.where(
                    per_agent(truncated), self.network.apply(state.params, info["final_observation"])[1], 0.0
                ),
                lambda: jnp.zeros_like(value),
            )
            episode_return = state.episode_return + reward
            episode_length = state.episode_length + 1
            transition = Transition(
                obs=state.obs,
                action=action,
                log_prob=log_prob,
                value=value,
                reward=reward,
                terminated=jnp.broadcast_to(per_agent(terminated), reward.shape),
                truncated=jnp.broadcast_to(per_agent(truncated), reward.shape),
                final_value=final_value,
                finished_return=jnp.where(per_agent(done), episode_return, 0.0),
                finished_length=jnp.where(done, episode_length, 0),
                finished=done,
                episode_metrics=info.get("episode_metrics", {}),
            )
            state = state.replace(
                env_state=env_state,
                obs=obs,
                episode_return=jnp.where(per_agent(done), 0.0, episode_return),
                episode_length=jnp.where(done, 0, episode_length),
            )
            return state, transition

        state, traj = jax.lax.scan(one_step, state, jnp.arange(cfg.num_steps, dtype=jnp.uint32))
        return state.replace(key=key), traj

    def _loss(self, params, batch: dict[str, jax.Array], shard: bool = False):
        """The clipped-surrogate loss of a minibatch and its parts. With `shard`, `batch` is this device's equal
        slice of the minibatch: the advantages are normalised by the whole minibatch's mean and standard deviation
        (`pmean`), so the mean of the devices' losses (and gradients) is the whole minibatch's."""
        cfg = self.config
        policy, value = self.policy_value(params, batch["obs"], batch.get("mask"))
        log_prob = self.log_prob(policy, batch["action"])
        value_clipped = batch["value"] + jnp.clip(value - batch["value"], -cfg.clip_eps, cfg.clip_eps)
        value_loss = 0.5 * jnp.mean(
            jnp.maximum((value - batch["returns"]) ** 2, (value_clipped - batch["returns"]) ** 2)
        )
        advantages = batch["advantages"]
        if shard:
            mean = jax.lax.pmean(advantages.mean(), agentlab_devices.AXIS)
            std = jnp.sqrt(jax.lax.pmean(jnp.mean(jnp.square(advantages - mean)), agentlab_devices.AXIS))
            advantages = (advantages - mean) / (std + 1e-8)
        else:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        log_ratio = log_prob - batch["log_prob"]
        ratio = jnp.exp(log_ratio)
        actor_loss = -jnp.mean(
            jnp.minimum(ratio * advantages, jnp.clip(ratio, 1.0 - cfg.clip_eps, 1.0 + cfg.clip_eps) * advantages)
        )
        entropy = jnp.mean(self.entropy(policy))
        total = actor_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy
        extras = {
            "actor_loss": actor_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
            "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > cfg.clip_eps),
        }
        return total, extras

    def update(self, state: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One PPO update: rollout, GAE, epochs of minibatch steps. Returns per-update metrics.

        With ``devices > 1`` the update runs under `jax.shard_map` on `agentlab.devices.mesh`: each device steps its
        block of environments (the keys and draws they have on one device) and computes their advantages; the
        rollout is gathered on every device (one all-gather per update), every device draws the same minibatch
        order and takes its equal slice of each minibatch, and the gradients, losses and episode statistics are
        averaged or summed over devices. So the minibatches are the one-device run's and the result is the
        one-device result up to float reassociation in those reductions."""
        if self.config.devices == 1:
            return self._update(state)
        from jax.sharding import PartitionSpec

        lanes, whole = PartitionSpec(agentlab_devices.AXIS), PartitionSpec()
        spec = RunnerState(
            params=whole,
            opt_state=whole,
            env_state=lanes,
            obs=lanes,
            episode_return=lanes,
            episode_length=lanes,
            key=whole,
            update=whole,
        )
        sharded = jax.shard_map(
            lambda s: self._update(s, shard=True),
            mesh=agentlab_devices.mesh(self.config.devices),
            in_specs=(spec,),
            out_specs=(spec, whole),
            # The replicated outputs (parameters, optimiser, keys, metrics) are the same on every device by
            # construction (pmean and psum). JAX 0.10's check fails on a `lax.cond` under `vmap` over seeds.
            check_vma=False,
        )
        return sharded(state)

    def _update(self, state: RunnerState, shard: bool = False) -> tuple[RunnerState, dict[str, jax.Array]]:
        cfg = self.config
        state, traj = self._rollout(state, shard)
        _, last_value = self.network.apply(state.params, state.obs)
        next_value = jnp.concatenate([traj.value[1:], last_value[None]], axis=0)
        next_value = jnp.where(traj.truncated, traj.final_value, next_value)
        done = traj.terminated | traj.truncated
        advantages, returns = gae(traj.reward, traj.value, next_value, traj.terminated, done, cfg.gamma, cfg.gae_lambda)
        rollout = {
            "obs": traj.obs,
            "action": traj.action,
            "log_prob": traj.log_prob,
            "value": traj.value,
            "advantages": advantages,
            "returns": returns,
        }
        if shard:  # every device holds the whole rollout (time, environments, ...) in the one-device order
            rollout = jax.tree.map(lambda x: jax.lax.all_gather(x, agentlab_devices.AXIS, axis=1, tiled=True), rollout)

        # Flatten time, environments (and agents) into one batch of rows.
        rows = math.prod(rollout["value"].shape)
        lead = rollout["value"].ndim

        def flat(x: jax.Array) -> jax.Array:
            return x.reshape(rows, *x.shape[lead:])

        # multi-agent: obs (T, N, agents, ...) flattens like the value's (T, N, agents)
        batch = jax.tree.map(flat, rollout)
        if self.action_mask is not None:  # each row's agent's mask, (rows, num_actions)
            shape = (*rollout["value"].shape, self.action_mask.shape[-1])
            batch["mask"] = flat(jnp.broadcast_to(self.action_mask, shape))
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        slice_rows = rows // cfg.num_minibatches // cfg.devices  # a device's rows of each minibatch (with shard)

        def epoch(carry, index):
            params, opt_state = carry
            order = shuffle_order(hashing.derive_key(k_epochs, index), rows).reshape(cfg.num_minibatches, -1)
            if shard:  # this device's equal slice of every minibatch
                first_row = jax.lax.axis_index(agentlab_devices.AXIS) * slice_rows
                order = jax.lax.dynamic_slice_in_dim(order, first_row, slice_rows, axis=1)
            shuffled = jax.tree.map(lambda x: x[order], batch)

            def minibatch(carry, mb):
                params, opt_state = carry
                (loss, extras), grads = grad_fn(params, mb, shard)
                if shard:  # the whole minibatch's mean loss and gradient: the mean over equal slices
                    (loss, extras, grads) = jax.lax.pmean((loss, extras, grads), agentlab_devices.AXIS)
                updates, opt_state = self.optimizer.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), {"loss": loss, **extras}

            return jax.lax.scan(minibatch, (params, opt_state), shuffled)

        key, k_epochs = hashing.split_key(state.key)
        (params, opt_state), info = jax.lax.scan(
            epoch, (state.params, state.opt_state), jnp.arange(cfg.update_epochs, dtype=jnp.uint32)
        )

        def total(x: jax.Array) -> jax.Array:  # over the whole batch of environments (every device's block)
            return jax.lax.psum(x.sum(), agentlab_devices.AXIS) if shard else x.sum()

        finished = total(traj.finished)
        episodes = jnp.maximum(finished, 1)
        per_env_return = traj.finished_return if not self.env.multi_agent else traj.finished_return.mean(axis=-1)
        metrics = {
            "episode_return": jnp.where(finished > 0, total(per_env_return) / episodes, jnp.nan),
            "episode_length": jnp.where(finished > 0, total(traj.finished_length) / episodes, jnp.nan),
            "episodes": finished,
            "learning_rate": self.schedule(state.update * self.steps_per_update),
            **jax.tree.map(jnp.mean, info),
            # A kernel's per-episode outcome metrics (e.g. grid-curtailment's), averaged over finished episodes.
            **{
                f"episode/{name}": jnp.where(
                    finished > 0, total(jnp.where(traj.finished, value.astype(jnp.float32), 0.0)) / episodes, jnp.nan
                )
                for name, value in traj.episode_metrics.items()
            },
        }
        state = state.replace(params=params, opt_state=opt_state, key=key, update=state.update + 1)
        return state, metrics

    def chunk(self, state: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        """`updates_per_chunk` updates in one `lax.scan`; metrics stacked on a leading axis."""
        return jax.lax.scan(lambda s, _: self.update(s), state, None, length=self.config.updates_per_chunk)

    def train(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole run: `init`, then every update (``num_updates``, whole chunks)."""
        chunks = self.config.num_updates // self.config.updates_per_chunk
        state, metrics = jax.lax.scan(lambda s, _: self.chunk(s), self.init(key), None, length=chunks)
        return state, jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), metrics)


def seed_keys(config: PPOConfig) -> jax.Array:
    """uint32 ``(seeds, 2)``: the raw key of each seed (``PRNGKey(seed + s)``)."""
    return jnp.stack([jax.random.PRNGKey(config.seed + s) for s in range(config.seeds)])
