"""Checkpoints: one atomic commit point (a crash at any write resumes to exactly the uninterrupted run), and
every problem with a checkpoint, its metrics or a Q-learning batch file is a one-line error naming the file."""

from __future__ import annotations

import io
import os
import shutil
import struct
import types
import zipfile
from pathlib import Path

import jax
import numpy as np
import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab import compiler
from agentlab.cli.app import app
from agentlab.errors import RunInterrupted, UsageError
from agentlab.rl import checkpoint, training
from agentlab.rl.ppo import PPO, PPOConfig

CONFIG = PPOConfig(
    env="catch",
    total_steps=4 * 8 * 3,  # three updates, one per chunk: three checkpoints
    num_envs=4,
    num_steps=8,
    num_minibatches=2,
    update_epochs=1,
    updates_per_chunk=1,
    hidden=(8,),
    shared_layers=0,
    seeds=2,
)
TIMING = ("wall_seconds", "steps_per_second")
_COMPILED: dict = {}
_INITIAL: dict = {}


class _Learner(PPO):
    """PPO whose initial states are computed once per config (a fresh learner re-jits `init`)."""

    def init_seeds(self, keys):
        if self.config not in _INITIAL:
            _INITIAL[self.config] = super().init_seeds(keys)
        return _INITIAL[self.config]


class _Chunk:
    """Stands in for ``compiler.jit(chunk)``: every run of a config reuses one compiled executable."""

    def __init__(self, fn):
        self.fn = fn

    def lower(self, state):
        self.state = state
        return self

    def compile(self):
        config = jax.tree.leaves(self.state)[0].shape  # one config per test module; the key only guards
        if config not in _COMPILED:
            _COMPILED[config] = compiler.jit(self.fn).lower(self.state).compile()
        return _COMPILED[config]


@pytest.fixture(autouse=True)
def compile_once(monkeypatch):
    """Training compiles its chunk once for the whole module (compiling is most of a tiny run's time)."""
    monkeypatch.setattr(training, "PPO", _Learner)
    monkeypatch.setattr(training, "compiler", types.SimpleNamespace(jit=lambda fn, **kwargs: _Chunk(fn)))


def _rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "metrics.parquet").drop(*TIMING)


def _state(out: Path):
    template = _Learner(CONFIG).init_seeds(training.seed_keys(CONFIG))
    state, _ = checkpoint.load(out / training.CHECKPOINT, template)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state)]


class _Renames:
    """``os.replace`` that counts the renames into `out` and simulates a kill at the `crash_at`-th one."""

    def __init__(self, out: Path, crash_at: int | None = None):
        self.out, self.crash_at, self.count, self.real = str(out), crash_at, 0, os.replace

    def __call__(self, src, dst, **kwargs):
        if os.path.abspath(dst).startswith(self.out + os.sep):
            self.count += 1
            if self.count == self.crash_at:
                raise KeyboardInterrupt  # the run directory stays as a SIGKILL leaves it
        return self.real(src, dst, **kwargs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: its directory, metrics rows, final state and how many renames it makes."""
    out = tmp_path_factory.mktemp("reference") / "run"
    renames = _Renames(out)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "PPO", _Learner)
        patch.setattr(training, "compiler", types.SimpleNamespace(jit=lambda fn, **kwargs: _Chunk(fn)))
        patch.setattr(os, "replace", renames)
        training.train(CONFIG, out)
    rows = _rows(out)
    assert rows.height == 3 * CONFIG.seeds
    return out, rows, _state(out), renames.count


def test_a_kill_at_any_write_resumes_to_exactly_the_uninterrupted_run(reference, tmp_path, monkeypatch):
    """Kill the run at every rename it makes (metrics, checkpoint, its JSON copy, summary, plot): resuming
    gives the uninterrupted run's metrics rows and learner state exactly."""
    _, want_rows, want_state, renames = reference
    assert renames >= 1 + 3 * 3  # config.json, then per chunk metrics.parquet, latest.npz and latest.json
    for k in range(2, renames + 1):  # the first rename is config.json: before it there is no run to resume
        out = tmp_path / f"killed-at-{k}"
        with monkeypatch.context() as patch:
            patch.setattr(os, "replace", _Renames(out, crash_at=k))
            with pytest.raises(RunInterrupted):
                training.train(CONFIG, out)
        training.train(CONFIG, out, resume=True)
        got = _rows(out)
        assert got.equals(want_rows), f"killed at rename {k}: {got.height} rows, want {want_rows.height}"
        for i, (a, b) in enumerate(zip(_state(out), want_state)):
            np.testing.assert_array_equal(a, b, err_msg=f"killed at rename {k}: state leaf {i}")


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the progress callback's return, before any episode ends
def test_a_run_of_agentlab_0_1_0_killed_between_its_two_checkpoint_files_resumes_exactly(reference, tmp_path):
    """agentlab <= 0.1.0 wrote the leaves (latest.npz) and then the metadata (latest.json); a kill in
    between left the metadata one chunk behind. Such a run resumes from the state's own update."""
    _, want_rows, want_state, _ = reference

    def stop_after_two_chunks(info):
        if info["step"] == 2 * CONFIG.batch_size:
            raise KeyboardInterrupt

    out = tmp_path / "old"
    with pytest.raises(RunInterrupted):
        training.train(CONFIG, out, on_chunk=stop_after_two_chunks)
    npz = out / training.CHECKPOINT
    with np.load(npz, allow_pickle=False) as data:
        leaves = {name: data[name] for name in data.files if name.startswith("leaf_")}
    npz.write_bytes(_npz(**leaves))  # the old layout: leaves only
    meta = orjson.loads(npz.with_suffix(".json").read_bytes())
    old = {"update": 1, "step": CONFIG.batch_size, "wall_seconds": 1.0, "compile_seconds": 1.0, "leaves": len(leaves)}
    assert meta["update"] == 2
    npz.with_suffix(".json").write_bytes(orjson.dumps(old))  # one chunk behind the leaves
    training.train(CONFIG, out, resume=True)
    assert _rows(out).equals(want_rows)
    for a, b in zip(_state(out), want_state):
        np.testing.assert_array_equal(a, b)


# -- damaged files: one line naming the file ---------------------------------------------------------------------


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _with_metadata(path: Path, metadata: bytes) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["metadata"] = np.frombuffer(metadata, np.uint8)
    path.write_bytes(_npz(**arrays))


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _flip_a_data_byte(path: Path) -> None:
    """Flip the last byte of the largest array's data: the archive still opens, its CRC no longer matches."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda member: member.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_length + extra_length + info.file_size - 1] ^= 0xFF
    path.write_bytes(bytes(data))


def _without_a_leaf(path: Path) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    last = max(name for name in arrays if name.startswith("leaf_"))
    del arrays[last]
    path.write_bytes(_npz(**arrays))


def _old_layout(path: Path) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "metadata"}
    path.write_bytes(_npz(**arrays))


NPZ = training.CHECKPOINT
JSON = str(Path(training.CHECKPOINT).with_suffix(".json"))
DAMAGE = {
    "truncated": (NPZ, lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or corrupt"),
    "empty": (NPZ, lambda p: p.write_bytes(b""), "truncated or corrupt"),
    "not a zip": (NPZ, lambda p: p.write_bytes(b"hello, not an archive"), "not an .npz archive"),
    "an .npy": (NPZ, lambda p: p.write_bytes(_npy(np.arange(3))), "single .npy array"),
    "a flipped byte": (NPZ, _flip_a_data_byte, "truncated or corrupt"),
    "a directory": (NPZ, lambda p: (p.unlink(), p.mkdir()), "is a directory"),
    "missing": (NPZ, lambda p: p.unlink(), "no such file"),
    "metadata not JSON": (NPZ, lambda p: _with_metadata(p, b'{"update": 3,'), "metadata is not JSON"),
    "metadata not an object": (NPZ, lambda p: _with_metadata(p, b"[3]"), "not a JSON object"),
    "metadata without update": (NPZ, lambda p: _with_metadata(p, b'{"leaves": 35}'), "no number 'update'"),
    "metadata disagreeing with the state": (
        NPZ,
        lambda p: _with_metadata(
            p, b'{"update": 2, "wall_seconds": 1, "compile_seconds": 1, "metrics_rows": 4, "leaves": 35}'
        ),
        "disagrees with its state",
    ),
    "a leaf missing": (NPZ, _without_a_leaf, "metadata says"),
    "old layout, JSON missing": (NPZ, lambda p: (_old_layout(p), p.with_suffix(".json").unlink()), "no such file"),
    "old layout, JSON truncated": (
        NPZ,
        lambda p: (_old_layout(p), p.with_suffix(".json").write_text('{"update": 3, "wall')),
        "not valid JSON",
    ),
    "metrics truncated": (
        "metrics.parquet",
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        "truncated or corrupt",
    ),
    "metrics missing": ("metrics.parquet", lambda p: p.unlink(), "no such file"),
    "metrics missing rows": ("metrics.parquet", lambda p: pl.read_parquet(p).head(5).write_parquet(p), "missing rows"),
}


LOAD_RUN_REFUSES = [
    name for name in DAMAGE if name != "missing" and DAMAGE[name][0] != "metrics.parquet" and "metadata " not in name
] + ["metadata not JSON", "metadata not an object"]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_one_line_naming_the_file_and_exit_2(reference, tmp_path, damage):
    name, spoil, message = DAMAGE[damage]
    out = tmp_path / "run"
    shutil.copytree(reference[0], out)
    spoil(out / name)
    if damage.startswith("old layout"):
        name = JSON
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*"))
    result = CliRunner().invoke(app, ["train", "ppo", "--out", str(out), "--resume", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(out / name) in lines[0], lines
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*")) == before  # left as it was
    if damage in LOAD_RUN_REFUSES:  # what `agentlab eval` reads: the state, not the resume metadata or metrics
        with pytest.raises(UsageError, match=message):
            training.load_run(out)


def test_a_checkpoint_round_trips_its_leaves_and_metadata(tmp_path):
    tree = {"a": np.arange(3, dtype=np.int32), "b": (np.ones((2, 2), np.float32), np.uint32(7))}
    path = tmp_path / "c.npz"
    checkpoint.save(path, tree, {"update": 3, "note": "x"})
    got, meta = checkpoint.load(path, tree)
    assert meta == {"update": 3, "note": "x", "leaves": 3}
    assert orjson.loads(path.with_suffix(".json").read_bytes()) == meta  # the readable copy
    path.with_suffix(".json").unlink()  # not needed to load
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(tree)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert checkpoint.load(path, tree)[1] == meta


# -- Q-learning batch files: a cache, recomputed when damaged -----------------------------------------------------


def _batch(sessions: int = 2):
    return types.SimpleNamespace(
        greedy=np.arange(sessions * 9, dtype=np.int64).reshape(sessions, 9) % 15,
        periods=np.arange(sessions, dtype=np.int64) + 100,
        converged=np.ones(sessions, bool),
        final_state=np.arange(sessions, dtype=np.int64),
        q=np.arange(sessions * 2 * 9 * 3, dtype=np.float64).reshape(sessions, 2, 9, 3),  # (S, firms, states, prices)
    )


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(b"garbage"),
        _flip_a_data_byte,
        lambda p: p.write_bytes(_npy(np.arange(3))),
        lambda p: p.write_bytes(_npz(greedy=np.zeros((2, 9)))),  # keys missing
        lambda p: p.write_bytes(
            _npz(
                greedy=np.zeros((2, 9)),
                periods=np.zeros(3),
                converged=np.zeros(2),
                final_state=np.zeros(2),
                compute_seconds=np.float64(1),
                q=np.zeros((2, 2, 9, 3)),
            )
        ),  # sessions disagree
        lambda p: p.unlink(),
    ],
    ids=["truncated", "empty", "garbage", "flipped-byte", "npy", "keys-missing", "inconsistent", "missing"],
)
def test_a_damaged_qlearn_batch_is_recomputed(tmp_path, spoil):
    from agentlab.rl.qlearn_training import load_batch, save_batch

    save_batch(tmp_path, 4, _batch(), 1.5)
    saved = load_batch(tmp_path, 4)
    assert saved["periods"].tolist() == [100, 101] and float(saved["compute_seconds"]) == 1.5
    np.testing.assert_array_equal(saved["q"], _batch().q)  # the Q tables round-trip exactly
    spoil(tmp_path / "checkpoints" / "sessions-0000004.npz")
    assert load_batch(tmp_path, 4) is None  # the caller computes the batch again and saves it over the damage


def test_an_unreadable_qlearn_batch_path_is_one_line_naming_it(tmp_path):
    from agentlab.rl.qlearn_training import load_batch

    path = tmp_path / "checkpoints" / "sessions-0000000.npz"
    path.mkdir(parents=True)
    with pytest.raises(UsageError, match=str(path)):
        load_batch(tmp_path, 0)
