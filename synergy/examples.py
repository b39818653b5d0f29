"""The two example data sets shipped in ``synergy/data/`` and the generators behind them.

Regenerate with ``agentlab calibrate examples --out DIR`` (`regenerate`: these two and
``confidence_example.parquet``, into a run directory whose summary says whether each matches the shipped
file; copy them into ``synergy/data/`` to update the package). Each file has a JSON sidecar with its
generator, seed and parameters. NumPy's ``default_rng(seed)`` draws everything, so a file depends only
on its seed and parameters.

- ``homogeneous.parquet`` (agentlab's homogeneous generator, reference): item i at compute x_i is
  answered by every agent; with probability rho all agents give one shared answer, otherwise
  independent answers, each correct with probability ``(1 + kappa x**beta) / 2``; each answer is sent
  as a message of length m (cycled over `message_lengths`) flipped with probability
  ``(1 - gamma(m)) / 2``, ``gamma(m) = 1 - exp(-m / m0)``. Calibration must recover kappa, beta, rho, m0.
- ``agent_level.parquet`` (the agent-level generator, `agentlab.synergy.agents`): correctness from
  item difficulty, agent ability and shared item noise; rho is whatever the data show, and the
  homogeneous theory mispredicts large votes (accuracy rises, then falls).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from agentlab.synergy.agents import AgentLevelModel

DATA = Path(__file__).parent / "data"


@dataclasses.dataclass(frozen=True)
class HomogeneousGenerator:
    seed: int = 20260117
    kappa: float = 0.03
    beta: float = 0.3
    rho: float = 0.3
    m0: float = 100.0
    computes: tuple[float, ...] = (100.0, 300.0, 1000.0, 3000.0, 10000.0)
    items_per_compute: int = 600
    agents: int = 9
    message_lengths: tuple[float, ...] = (25.0, 50.0, 100.0, 200.0, 400.0)


@dataclasses.dataclass(frozen=True)
class AgentLevelGenerator:
    seed: int = 20260118
    model: AgentLevelModel = AgentLevelModel()
    computes: tuple[float, ...] = (500.0, 1000.0, 2000.0)
    items_per_compute: int = 500
    agents: int = 15


def generate_homogeneous(config: HomogeneousGenerator = HomogeneousGenerator()):
    """A polars DataFrame (item, agent, compute, correct, message_length, relayed_correct)."""
    import polars as pl

    rng = np.random.default_rng(config.seed)
    x = np.repeat(np.asarray(config.computes), config.items_per_compute)
    n_items, n_agents = x.size, config.agents
    p = (1 + np.minimum(config.kappa * x**config.beta, 1.0)) / 2
    shared = rng.random(n_items) < config.rho
    shared_answer = rng.random(n_items) < p
    own = rng.random((n_items, n_agents)) < p[:, None]
    correct = np.where(shared[:, None], shared_answer[:, None], own)
    lengths = np.resize(np.asarray(config.message_lengths), correct.size).reshape(correct.shape)
    gamma = 1 - np.exp(-lengths / config.m0)
    relayed = correct ^ (rng.random(correct.shape) < (1 - gamma) / 2)
    return pl.DataFrame(
        {
            "item": np.repeat(np.arange(n_items), n_agents).astype(np.int32),
            "agent": np.tile(np.arange(n_agents), n_items).astype(np.int32),
            "compute": np.repeat(x, n_agents),
            "correct": correct.ravel().astype(np.int8),
            "message_length": lengths.ravel(),
            "relayed_correct": relayed.ravel().astype(np.int8),
        }
    )


def generate_agent_level(config: AgentLevelGenerator = AgentLevelGenerator()):
    """A polars DataFrame (item, agent, compute, correct) from the agent-level model (NumPy draws)."""
    import polars as pl

    model = config.model
    rng = np.random.default_rng(config.seed)
    theta = model.ability_sd * rng.standard_normal(config.agents)
    x = np.repeat(np.asarray(config.computes), config.items_per_compute)
    component = rng.choice(len(model.weights), size=x.size, p=np.asarray(model.weights))
    d = np.asarray(model.difficulties)[component] + model.difficulty_sd * rng.standard_normal(x.size)
    z = rng.standard_normal(x.size)
    e = rng.standard_normal((x.size, config.agents))
    latent = theta[None, :] + model.beta_c * np.log(x)[:, None] - d[:, None] + np.sqrt(model.shared) * z[:, None]
    correct = latent + np.sqrt(1 - model.shared) * e > 0
    return pl.DataFrame(
        {
            "item": np.repeat(np.arange(x.size), config.agents).astype(np.int32),
            "agent": np.tile(np.arange(config.agents), x.size).astype(np.int32),
            "compute": np.repeat(x, config.agents),
            "correct": correct.ravel().astype(np.int8),
        }
    )


def write_examples(folder: Path = DATA) -> list[Path]:
    """Write both data sets and their JSON sidecars into `folder`."""
    from agentlab.rundir import write_json, write_parquet

    folder = Path(folder)
    written = []
    for name, config, generate in (
        ("homogeneous", HomogeneousGenerator(), generate_homogeneous),
        ("agent_level", AgentLevelGenerator(), generate_agent_level),
    ):
        written.append(write_parquet(folder / f"{name}.parquet", generate(config)))
        meta = {"generator": f"agentlab.synergy.examples.generate_{name}", "parameters": dataclasses.asdict(config)}
        written.append(write_json(folder / f"{name}.json", meta))
    return written


def regenerate(folder: Path) -> list[Path]:
    """Write every shipped example data set into `folder`: both of this module's (`write_examples`) and the
    confidence example (`agentlab.synergy.confidence.write_example`), each with its JSON sidecar."""
    from agentlab.synergy.confidence import write_example

    folder = Path(folder)
    return write_examples(folder) + write_example(folder / "confidence_example.parquet")


def compare_with_shipped(path: Path) -> dict:
    """``{"file", "rows", "matches_shipped"}`` of a regenerated Parquet file against the file of the same name in
    ``synergy/data/`` (equal columns and values; False where none is shipped)."""
    import polars as pl

    path = Path(path)
    frame = pl.read_parquet(path)
    shipped = DATA / path.name
    same = shipped.is_file() and pl.read_parquet(shipped).equals(frame)
    return {"file": path.name, "rows": frame.height, "matches_shipped": bool(same)}
