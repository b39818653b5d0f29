"""The tabular MAMQL run (``agentlab train mamql --tabular``): exact recovery on the gems export, measured.

Input: a gems kernel in its tabular setting (``layout=tabular``: fixed gems, never collected, no termination) and
either a dataset of its rows (``--data DIR``, e.g. ``agentlab data collect --policy qre``) or, without data, the
exact discounted occupancy of the QRE experts from uniform initial states (full coverage). The experts' true
rewards and policies are known there, so every figure is a measurement against the truth:

- ``policy_kl``: mean over agents and over expert-visited states (the dataset's states; all states with exact
  occupancies) of ``KL(pi_expert(.|s) || pi_learned(.|s))``;
- ``reward_epic``: mean over agents of the EPIC distance between the learned and the true reward in their soft-lift
  form ``Q(s,a) - gamma V(s')`` (`rl.reward_distance`: the representation in which IRL's expected shaping is an
  exact potential shaping), coverage uniform over the expert-visited states' actions, ``s'`` from the true marginal
  dynamics; behaviour cloning recovers no reward (None);
- ``reward_pearson``: Pearson correlation of the recovered state-action reward ``r_i(s, a_i)`` with the true
  marginal reward ``rbar_i`` over the same states (shaping included, so it is a looser check than EPIC);
- ``mean_return`` / ``agent_returns``: the exact expected episode return (undiscounted, ``max_steps`` steps, agents
  placed uniformly, as the kernel resets) of the learned joint Boltzmann policy, by dynamic programming on the
  export; ``expert_return`` the same for the experts. `tests/test_mamql_training.py` checks this against Monte Carlo
  episodes of the JAX kernel.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import rundir
from agentlab.errors import UsageError


@dataclasses.dataclass(frozen=True)
class TabularProblem:
    """The tabular game: ``next_state (S, A, A)``, ``reward (2, S, A, A)``, the QRE experts, the time limit."""

    next_state: np.ndarray
    reward: np.ndarray
    expert: Any  # mamql_tabular.Equilibrium
    max_steps: int
    size: int


def tabular_problem(env, params, gamma: float, temperature: float) -> TabularProblem:
    """Export the gems kernel `env`/`params` (tabular setting) and solve its QRE (`UsageError` if not tabular)."""
    from agentlab.kernels.multi import gems_tabular
    from agentlab.rl import mamql_tabular

    if getattr(env, "name", "") != "gems" or params.collect or params.gem_cells is None:
        raise UsageError("--tabular needs gems in its tabular setting: --env gems --env-option layout=tabular,size=5")
    cells = np.asarray(params.gem_cells)
    blue, red = env.num_blue, env.num_red
    layout = gems_tabular.make_layout(env.size, cells[:blue], cells[blue : blue + red], cells[blue + red :])
    next_state, reward = gems_tabular.export(layout, purple_quirk=bool(params.purple_quirk))
    expert = mamql_tabular.quantal_response_equilibrium(next_state, reward, gamma=gamma, lam=temperature)
    return TabularProblem(next_state, reward, expert, int(params.max_steps), env.size)


def states_of(obs: np.ndarray, size: int) -> np.ndarray:
    """Joint state index ``((x0*size + y0)*size + x1)*size + y1`` of gems observations ``(N, 2, 5, size, size)``:
    agent 0's view holds agent 0 in plane 0 and agent 1 in plane 1 in both plane orders."""
    flat0 = obs[:, 0, 0].reshape(len(obs), -1).argmax(axis=1)
    flat1 = obs[:, 0, 1].reshape(len(obs), -1).argmax(axis=1)
    return (flat0 * size * size + flat1).astype(np.int64)  # x0*size + y0 is the flat cell index


def expected_return(problem: TabularProblem, policy: np.ndarray) -> np.ndarray:
    """float64 ``(2,)``: each agent's expected undiscounted return over `max_steps` steps of the joint policy
    ``policy (2, S, A)`` (independent agents) from a uniform joint state."""
    n, a, _ = problem.next_state.shape
    joint = policy[0][:, :, None] * policy[1][:, None, :]  # (S, A, A)
    step_reward = np.einsum("sxy,isxy->is", joint, problem.reward)  # (2, S)
    value = np.zeros((2, n))
    flat_next = problem.next_state.reshape(n, a * a)
    flat_joint = joint.reshape(n, a * a)
    for _ in range(problem.max_steps):
        value = step_reward + np.einsum("sk,isk->is", flat_joint, value[:, flat_next])
    return value.mean(axis=1)


def data_problem(dataset, problem: TabularProblem, gamma: float, temperature: float):
    """``(ExpertData, visited states)`` from a dataset's rows (plug-in estimator of `mamql_tabular`)."""
    from agentlab.rl import mamql_tabular

    s = states_of(dataset["obs"], problem.size)
    s_next = states_of(dataset["next_obs"], problem.size)
    action = dataset["action"]
    n = problem.next_state.shape[0]
    if not np.array_equal(problem.next_state[s, action[:, 0], action[:, 1]], s_next):
        raise UsageError(
            "--data: its transitions do not follow the tabular gems rules of --env-option (another layout?)"
        )
    data = mamql_tabular.from_transitions(s, action[:, 0], action[:, 1], s_next, n, 5, gamma, temperature)
    return data, np.unique(s)


def exact_problem(problem: TabularProblem, gamma: float, temperature: float):
    """``(ExpertData, all states)``: the experts' exact occupancy from uniform initial states."""
    from agentlab.rl import mamql_tabular

    occ = mamql_tabular.occupancy(problem.next_state, problem.expert.policy, gamma)
    data = mamql_tabular.from_occupancy(problem.next_state, problem.expert.policy, occ, gamma, temperature)
    return data, np.arange(problem.next_state.shape[0])


def learn(algo: str, mode: str, data, updates: int, rows: int | None = None, backend: str = "numba") -> dict:
    """``{"policy" (2,S,A), "q" (2,S,A) or None, "reward" (2,S,A) or None}`` of one algorithm.

    Behaviour cloning from `rows` samples uses the Krichevsky-Trofimov estimate ``(n(s,a) + 1/2) / (n(s) + A/2)``
    (add-half smoothing: a raw frequency gives actions never seen probability 0, hence an infinite KL from the
    experts); from exact occupancies (``rows=None``) the conditional frequencies themselves."""
    from agentlab.rl import mamql_tabular

    if algo == "mamql":
        results = mamql_tabular.mamql(data, mode, steps=updates, backend=backend)
        return {
            "policy": np.stack([r.policy for r in results]),
            "q": np.stack([r.q for r in results]),
            "reward": np.stack([r.reward for r in results]),
        }
    if algo == "iq-joint":
        result = mamql_tabular.joint_critic(data, mode, steps=updates)
        return {"policy": result.policy, "q": result.qbar, "reward": result.reward}
    if algo == "bc":
        if rows is None:
            return {"policy": data.bc, "q": None, "reward": None}
        counts = np.stack([data.joint.sum(axis=2), data.joint.sum(axis=1)]) * rows  # (2, S, A)
        a = counts.shape[2]
        policy = (counts + 0.5) / (counts.sum(axis=2, keepdims=True) + a / 2)
        return {"policy": policy, "q": None, "reward": None}
    raise UsageError(f"unknown --algo {algo!r}: valid algorithms are 'mamql', 'iq-joint' or 'bc'")


def measure(problem: TabularProblem, learned: dict, visited: np.ndarray, gamma: float, temperature: float) -> dict:
    """The figures of the module docstring (per agent and their means)."""
    from agentlab.rl import mamql_tabular, reward_distance

    expert = problem.expert
    floor = np.maximum(learned["policy"], 1e-300)
    kl = [mamql_tabular.policy_kl(expert.policy[i][visited], floor[i][visited]) for i in range(2)]
    epic, pearson = [None, None], [None, None]
    if learned["q"] is not None:
        for i in range(2):
            succ, prob, _ = mamql_tabular.marginal_mdp(problem.next_state, problem.reward, expert.policy[1 - i], i)
            n, a = expert.q[i].shape
            dense = reward_distance.dense_transitions(succ, prob)
            coverage = np.zeros_like(dense)
            coverage[visited] = dense[visited]
            coverage /= coverage.sum()
            epic[i] = reward_distance.epic_distance(
                reward_distance.soft_lift(learned["q"][i], gamma, temperature),
                reward_distance.soft_lift(expert.q[i], gamma, temperature),
                gamma,
                coverage,
            )
            x = learned["reward"][i][visited].ravel()
            y = expert.rbar[i][visited].ravel()
            pearson[i] = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else 0.0
    returns = expected_return(problem, learned["policy"])
    expert_returns = expected_return(problem, expert.policy)
    mean = lambda values: None if values[0] is None else float(np.mean(values))  # noqa: E731
    return {
        "mean_return": float(returns.mean()),
        "agent_returns": [float(r) for r in returns],
        "expert_return": float(expert_returns.mean()),
        "expert_agent_returns": [float(r) for r in expert_returns],
        "policy_kl": float(np.mean(kl)),
        "agent_policy_kl": [float(k) for k in kl],
        "reward_epic": mean(epic),
        "agent_reward_epic": epic,
        "reward_pearson": mean(pearson),
        "agent_reward_pearson": pearson,
        "visited_states": int(len(visited)),
        "qre_residual": float(expert.residual),
    }


def run(config, out: Path, env, params, dataset, started: float) -> dict[str, Any]:
    """Train and measure one tabular run into the open run directory `out`; return the summary."""
    import polars as pl

    gamma, temperature = config.gamma_or(0.9), config.temperature
    problem = tabular_problem(env, params, gamma, temperature)
    if dataset is not None:
        data, visited = data_problem(dataset, problem, gamma, temperature)
    else:
        data, visited = exact_problem(problem, gamma, temperature)
    tick = time.perf_counter()
    rows = len(dataset) if dataset is not None else None
    learned = learn(config.algo, config.mode, data, config.total_updates, rows=rows)
    seconds = time.perf_counter() - tick
    summary = {
        "algorithm": config.algo,
        "tabular": True,
        "mode": config.mode,
        "data": "exact occupancy (full coverage)" if dataset is None else str(config.data),
        "expert_steps": None if dataset is None else len(dataset),
        "gamma": gamma,
        "temperature": temperature,
        **measure(problem, learned, visited, gamma, temperature),
        "updates": config.total_updates if config.algo != "bc" else 0,
        "solve_seconds": seconds,
        "updates_per_second": (config.total_updates * (2 if config.algo == "mamql" else 1)) / seconds
        if config.algo != "bc" and seconds > 0
        else None,
        "wall_seconds": time.perf_counter() - started,
    }
    n, a = problem.next_state.shape[:2]
    rows = []
    for i in range(2):
        frame = {
            "agent": np.full(n * a, i, np.int8),
            "state": np.repeat(np.arange(n), a),
            "action": np.tile(np.arange(a), n),
            "true_reward": problem.expert.rbar[i].ravel(),
            "expert_policy": problem.expert.policy[i].ravel(),
            "learned_policy": learned["policy"][i].ravel(),
        }
        if learned["reward"] is not None:
            frame["recovered_reward"] = learned["reward"][i].ravel()
        rows.append(pl.DataFrame(frame))
    rundir.write_parquet(out / "rewards.parquet", pl.concat(rows))
    rundir.write_json(out / "summary.json", summary)
    plot(out, problem, learned, visited)
    return summary


def plot(out: Path, problem: TabularProblem, learned: dict, visited: np.ndarray) -> None:
    """plots/reward_scatter.png (recovered vs true marginal reward, both agents) and plots/reward_heatmap.png
    (agent 0's reward of staying, by its own cell, averaged over agent 1's cells: true and recovered)."""
    if learned["reward"] is None:
        return
    plt = rundir.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for i, ax in enumerate(axes):
        x = problem.expert.rbar[i][visited].ravel()
        y = learned["reward"][i][visited].ravel()
        ax.scatter(x, y, s=3, alpha=0.4)
        ax.set_xlabel("true marginal reward rbar(s, a)")
        ax.set_ylabel("recovered r(s, a) (up to shaping)")
        ax.set_title(f"agent {i}")
    fig.tight_layout()
    rundir.save_figure(out / "plots" / "reward_scatter.png", fig)
    size = problem.size
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, (title, table) in zip(axes, (("true", problem.expert.rbar[0]), ("recovered", learned["reward"][0]))):
        stay = table[:, 4].reshape(size, size, size * size).mean(axis=2)  # (x0, y0)
        image = ax.imshow(stay.T, origin="lower", cmap="viridis")
        ax.set_title(f"agent 0, {title} reward of staying")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    rundir.save_figure(out / "plots" / "reward_heatmap.png", fig)
