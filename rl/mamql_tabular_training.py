"""The tabular MAMQL run (``agentlab train mamql --tabular``): exact recovery on the gems export or on Calvano's
pricing game (calvano), measured.

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

**Calvano** (``--env calvano``, data from ``agentlab data collect --policy qtable:RUN_DIR[,session=K]``): the states
are the Q-learner's ``s = a_0 m + a_1`` (last prices, `rl.qlearn`'s encoding, recomputed from the observed prices),
15 actions per firm, ``s' = a_0 m + a_1``, reward the one-period profit (`calvano.payoff_table`); the experts are
the Boltzmann policies ``softmax(Q_i / T)`` of the saved Q tables at the dataset's temperature T (known, not an
equilibrium: ``qre_residual`` is None), gamma defaults to the Q-learning run's delta (0.95). ``true_reward`` is
firm i's profit marginalised over the other firm's expert policy, ``rbar_i(s, a) = sum_b pi_-i(b|s) pi_i(a, b)``, and
``reward_epic`` compares with the soft-optimal Q of that profit. `calvano_figures` adds what the question "what
reward are colluding Q-learning firms acting as if they had?" needs: ``expert_q_epic`` (soft lift of the learned Q
against the experts' own Q tables: recovery of the experts' implied reward), and over the dataset's (s, a) pairs
the Pearson correlations of the recovered ``r_i(s, a)``, raw and within state (each state's mean removed), with the
profit ``rbar``, the continuation value of the state reached ``gamma sum_b pi_-i(b|s) V_i(a, b)`` (``V_i`` the
expert's soft value of its Q table) and ``Q_i - rbar_i``, and a within-state regression on profit and continuation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentlab import rundir
from agentlab.errors import UsageError


@dataclasses.dataclass(frozen=True)
class TabularProblem:
    """The tabular game: ``next_state (S, A, A)``, ``reward (2, S, A, A)``, the experts (gems: the QRE), the time
    limit; `kind` ("gems" or "calvano"), `states` (observations ``(N, ...)`` -> joint state indices) and, for
    calvano, `facts` (the experts' Q tables ``q (2, S, A)``, their temperature, the session's facts)."""

    next_state: np.ndarray
    reward: np.ndarray
    expert: Any  # mamql_tabular.Equilibrium (gems) or CalvanoExperts
    max_steps: int
    size: int
    kind: str = "gems"
    states: Callable[[np.ndarray], np.ndarray] | None = None
    facts: dict | None = None

    def state_index(self, obs: np.ndarray) -> np.ndarray:
        return self.states(obs) if self.states is not None else states_of(obs, self.size)


@dataclasses.dataclass(frozen=True)
class CalvanoExperts:
    """Known experts that are not an equilibrium: ``policy`` (2, S, A), the true marginal reward ``rbar`` (2, S, A),
    ``q`` (2, S, A) the soft-optimal Q of ``rbar`` in each firm's marginal MDP (for EPIC), ``v`` (2, S)."""

    policy: np.ndarray
    rbar: np.ndarray
    q: np.ndarray
    v: np.ndarray
    residual: float = float("nan")


def check_inputs(config, env, params, dataset):
    """`config` with its tabular defaults filled in (gamma: the QRE dataset's, or calvano's Q-learning delta) once
    the tabular problem is known to be buildable (`UsageError`, one line, otherwise: a kernel without a tabular
    form, calvano without --data)."""
    record = dataset.record if dataset is not None else {}
    gamma = config.gamma
    if gamma is None and record.get("policy") == "qre":
        gamma = float(record.get("gamma", 0.9))
    if getattr(env, "name", "") == "calvano":
        problem = tabular_problem(env, params, config.gamma_or(0.95), config.temperature, dataset)
        gamma = gamma if gamma is not None else problem.facts["discount"]
    else:
        tabular_problem(env, params, 0.9, config.temperature)
    return dataclasses.replace(config, gamma=gamma) if gamma is not None else config


def calvano_states(obs: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Q-learning state index ``a_0 m + a_1`` of calvano observations ``(N, 2, 2)`` (firm 0's row: last prices in
    firm order), each price mapped to its grid index (the nearest grid price)."""
    grid = np.asarray(grid, np.float64)
    idx = np.abs(np.asarray(obs[:, 0, :], np.float64)[:, :, None] - grid[None, None, :]).argmin(axis=2)
    m = len(grid)
    return (idx[:, 0] * m + idx[:, 1]).astype(np.int64)


def calvano_problem(env, params, dataset, gamma: float) -> TabularProblem:
    """Calvano's 2-firm stage game as a tabular game and the Boltzmann experts of the dataset's Q tables."""
    from agentlab.kernels.markets.calvano import payoff_table
    from agentlab.rl import collect, mamql_tabular

    if env.num_agents != 2:
        raise UsageError(f"--tabular MAMQL is for two agents; this calvano kernel has {env.num_agents} firms")
    policy = "" if dataset is None else str(dataset.record.get("policy", ""))
    if not policy.startswith("qtable:"):
        raise UsageError(
            "--tabular on calvano needs --data from `agentlab data collect --env calvano --policy qtable:RUN_DIR` "
            "(the experts are that run's Q tables)"
        )
    m = env.num_prices
    table = collect.load_qtable(policy.removeprefix("qtable:"), 2, m)
    temperature = float(dataset.record.get("temperature", 1.0))
    n = m * m
    next_state = np.broadcast_to((np.arange(m)[:, None] * m + np.arange(m)[None, :])[None], (n, m, m)).astype(np.int32)
    payoff = payoff_table(2, params)  # (m*m, 2)
    reward = np.broadcast_to(np.moveaxis(payoff.reshape(m, m, 2), 2, 0)[:, None], (2, n, m, m)).astype(np.float64)
    policy_e = np.exp(collect.boltzmann(table["q"], temperature))  # (2, S, A)
    rbar, q, v = [], [], []
    for i in range(2):
        succ, prob, rb = mamql_tabular.marginal_mdp(next_state, reward, policy_e[1 - i], i)
        qi, vi, _, _ = mamql_tabular.soft_best_response(rb, succ, prob, gamma, temperature, tol=1e-10)
        rbar.append(rb)
        q.append(qi)
        v.append(vi)
    expert = CalvanoExperts(policy_e, np.stack(rbar), np.stack(q), np.stack(v))
    grid = np.asarray(params.prices, np.float64)
    facts = {**table, "temperature": temperature, "payoff": payoff}
    return TabularProblem(
        next_state, reward, expert, int(params.max_steps), m, "calvano", lambda obs: calvano_states(obs, grid), facts
    )


def tabular_problem(env, params, gamma: float, temperature: float, dataset=None) -> TabularProblem:
    """Export the gems kernel `env`/`params` (tabular setting) and solve its QRE, or (calvano) the pricing game and
    the dataset's Q-table experts (`UsageError` if neither)."""
    from agentlab.kernels.multi import gems_tabular
    from agentlab.rl import mamql_tabular

    if getattr(env, "name", "") == "calvano":
        return calvano_problem(env, params, dataset, gamma)
    if getattr(env, "name", "") != "gems" or params.collect or params.gem_cells is None:
        raise UsageError(
            "--tabular needs gems in its tabular setting (--env gems --env-option layout=tabular,size=5) or calvano "
            "data from a train qlearn run's Q tables"
        )
    next_state, reward = gems_tabular.export(
        gems_tabular.layout_of(env, params), purple_quirk=bool(params.purple_quirk)
    )
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

    s = problem.state_index(dataset["obs"])
    s_next = problem.state_index(dataset["next_obs"])
    action = dataset["action"]
    n, a = problem.next_state.shape[:2]
    if not np.array_equal(problem.next_state[s, action[:, 0], action[:, 1]], s_next):
        rules = "the tabular gems rules of --env-option (another layout?)" if problem.kind == "gems" else "calvano's"
        raise UsageError(f"--data: its transitions do not follow {rules}")
    data = mamql_tabular.from_transitions(s, action[:, 0], action[:, 1], s_next, n, a, gamma, temperature)
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
        "qre_residual": None if np.isnan(expert.residual) else float(expert.residual),
    }


def continuation(problem: TabularProblem, gamma: float | None = None) -> np.ndarray:
    """``(2, S, A)``: the continuation value of the state reached, ``gamma sum_b pi_-i(b|s) V_i(s'(a, b))``, with
    ``V_i = T logsumexp(Q_i / T)`` the expert's soft value of its own Q table (gamma: the Q-learning run's delta)."""
    gamma = problem.facts["discount"] if gamma is None else gamma
    t = problem.facts["temperature"]
    q = problem.facts["q"]
    top = q.max(axis=2)
    v = top + t * np.log(np.exp((q - top[..., None]) / t).sum(axis=2))  # (2, S)
    m = problem.next_state.shape[1]
    v_next = v.reshape(2, m, m)  # V_i(a0 * m + a1)
    pol = problem.expert.policy
    own0 = np.einsum("sb,ab->sa", pol[1], v_next[0])  # firm 0 plays a, firm 1 b ~ pi_1(.|s)
    own1 = np.einsum("sb,ba->sa", pol[0], v_next[1])  # firm 1 plays a, firm 0 b ~ pi_0(.|s)
    return gamma * np.stack([own0, own1])


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else None


def shaping_fit(r: np.ndarray, signal: np.ndarray, problem, gamma: float) -> dict:
    """Is the recovered reward `r` (S, A) the `signal` (S, A) up to potential shaping? Weighted least squares over
    the dataset's (s, a) pairs (weights ``problem.rho``) of ``r(s, a) = alpha signal(s, a) + k + gamma (P c)(s, a) -
    c(s)`` with ``P`` the empirical model the learner used and a free potential ``c``: ``{"alpha", "r2"`` (with the
    signal), ``"r2_shaping_only"`` (alpha = 0)``}``."""
    rho = problem.rho
    pairs = np.argwhere(rho > 0)
    n = rho.shape[0]
    basis = np.zeros((len(pairs), n))
    for row, (s, a) in enumerate(pairs):
        np.add.at(basis[row], problem.succ[s, a], gamma * problem.prob[s, a])
        basis[row, s] -= 1.0
    w = np.sqrt(rho[pairs[:, 0], pairs[:, 1]])
    y = r[pairs[:, 0], pairs[:, 1]]
    ybar = np.sum(w**2 * y) / np.sum(w**2)
    total = np.sum(w**2 * (y - ybar) ** 2)

    def fit(columns):
        x = np.column_stack([np.ones(len(y)), *columns, basis])
        coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
        return coef, 1.0 - np.sum(w**2 * (y - x @ coef) ** 2) / total

    coef, r2 = fit([signal[pairs[:, 0], pairs[:, 1]]])
    _, r2_shaping = fit([])
    return {"alpha": float(coef[1]), "r2": float(r2), "r2_shaping_only": float(r2_shaping)}


def calvano_figures(problem: TabularProblem, learned: dict, data, gamma: float, temperature: float) -> dict:
    """The question's figures on calvano (module docstring): per firm and their means, over the (s, a) pairs the
    dataset holds; ``within`` = each state's mean (over its observed actions) removed, states with at least two
    observed actions."""
    from agentlab.rl import mamql_tabular, reward_distance

    facts = problem.facts
    expert = problem.expert
    weight = data.joint.sum(axis=(1, 2))  # (S,) the dataset's state frequencies
    kl_w = [
        float(
            np.sum(
                weight
                * np.where(
                    expert.policy[i] > 0,
                    expert.policy[i] * (np.log(expert.policy[i]) - np.log(np.maximum(learned["policy"][i], 1e-300))),
                    0.0,
                ).sum(axis=1)
            )
        )
        for i in range(2)
    ]
    out: dict[str, Any] = {
        "qtable_run": facts["run"],
        "qtable_session": facts["session"],
        "session_delta": facts["delta"],
        "session_converged": facts["converged"],
        "expert_temperature": facts["temperature"],
        "policy_kl_weighted": float(np.mean(kl_w)),
        "agent_policy_kl_weighted": kl_w,
    }
    if learned["reward"] is None:
        return out
    cont = continuation(problem)
    signals = {"profit": expert.rbar, "continuation": cont, "q_minus_profit": facts["q"] - expert.rbar}
    corr: dict[str, list] = {f"{kind}_{name}": [] for kind in ("corr", "within_corr") for name in signals}
    betas, r2, epic_q, fits = [], [], [], []
    for i in range(2):
        seen = data.problems[i].rho > 0  # (S, A) pairs in the data
        r = learned["reward"][i]
        counts = seen.sum(axis=1)
        multi = seen & (counts >= 2)[:, None]

        def within(x, seen=seen, counts=counts, multi=multi):
            mean = np.where(seen, x, 0.0).sum(axis=1) / np.maximum(counts, 1)
            return (x - mean[:, None])[multi]

        for name, sig in signals.items():
            corr[f"corr_{name}"].append(_pearson(r[seen], sig[i][seen]))
            corr[f"within_corr_{name}"].append(_pearson(within(r), within(sig[i])))
        y = within(r)
        x = np.stack([within(expert.rbar[i]), within(cont[i])], axis=1)
        scale = x.std(axis=0)
        if len(y) > 2 and np.all(scale > 0) and y.std() > 0:
            coef, *_ = np.linalg.lstsq(x / scale, y / y.std(), rcond=None)
            fitted = (x / scale) @ coef
            betas.append([float(c) for c in coef])
            r2.append(float(1 - np.sum((y / y.std() - fitted) ** 2) / np.sum((y / y.std()) ** 2)))
        else:
            betas.append(None)
            r2.append(None)
        succ, prob, _ = mamql_tabular.marginal_mdp(problem.next_state, problem.reward, expert.policy[1 - i], i)
        dense = reward_distance.dense_transitions(succ, prob)
        coverage = dense * data.problems[i].rho[:, :, None]  # the dataset's (s, a) pairs, s' ~ the true model
        coverage /= coverage.sum()
        fits.append(shaping_fit(r, expert.rbar[i], data.problems[i], gamma))
        epic_q.append(
            reward_distance.epic_distance(
                reward_distance.soft_lift(learned["q"][i], gamma, temperature),
                reward_distance.soft_lift(facts["q"][i], gamma, facts["temperature"]),
                gamma,
                coverage,
            )
        )
    mean = lambda values: None if any(v is None for v in values) else float(np.mean(values))  # noqa: E731
    for key, values in corr.items():
        out[key] = mean(values)
        out[f"agent_{key}"] = values
    out["within_beta_profit_continuation"] = betas  # per firm: standardised coefficients
    out["within_r2"] = r2
    for key in fits[0]:
        out[f"shaping_fit_{key}"] = [f[key] for f in fits]
    out["expert_q_epic"] = float(np.mean(epic_q))
    out["agent_expert_q_epic"] = [float(e) for e in epic_q]
    return out


def run(config, out: Path, env, params, dataset, started: float) -> dict[str, Any]:
    """Train and measure one tabular run into the open run directory `out`; return the summary."""
    import polars as pl

    gamma, temperature = config.gamma_or(0.9), config.temperature
    problem = tabular_problem(env, params, gamma, temperature, dataset)
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
        **(calvano_figures(problem, learned, data, gamma, temperature) if problem.kind == "calvano" else {}),
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
        if problem.kind == "calvano":
            frame["expert_q"] = problem.facts["q"][i].ravel()
            frame["continuation"] = continuation(problem, gamma)[i].ravel()
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
    if problem.kind != "gems":
        return
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
