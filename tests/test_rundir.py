"""Run directories: --force replaces only agentlab runs, a failed command leaves nothing behind, an old run
survives a failed replacement, an interrupted resumable run stays resumable, files honour the umask."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlab import rundir
from agentlab.errors import RunInterrupted, UsageError


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (relative) with its bytes (None for folders)."""
    out: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        out[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return out


def make_run(path: Path, marker: str = "old") -> Path:
    with rundir.open_run(path, "test", {"marker": marker}) as work:
        (work / "result.txt").write_text(marker)
    return path


def test_new_run_appears_only_when_complete(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with rundir.open_run(out, "test", {"x": 1}) as work:
        assert work != out and not out.exists()  # built beside --out
        assert (work / "config.json").exists() and (work / "plots").is_dir()
        (work / "summary.json").write_text("{}")
    assert rundir.is_run_directory(out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "plots", "summary.json"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # no staging folder left


@pytest.mark.parametrize("resumable", [False, True])
def test_failure_leaves_nothing_behind(tmp_path, resumable):
    out = tmp_path / "deep" / "er" / "run"
    with pytest.raises(RuntimeError), rundir.open_run(out, "test", {}, resumable=resumable) as work:
        (work / "metrics.parquet").write_text("partial")
        raise RuntimeError("out of memory")
    assert list(tmp_path.iterdir()) == []  # the run and the folders made for it are gone


def test_failure_in_an_empty_existing_folder_keeps_the_folder(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    with pytest.raises(RuntimeError), rundir.open_run(out, "test", {}) as work:
        assert work == out
        raise RuntimeError
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.parametrize("resumable", [False, True])
def test_failed_replacement_keeps_the_old_run(tmp_path, resumable):
    out = make_run(tmp_path / "run")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError), rundir.open_run(out, "test", {"marker": "new"}, force=True, resumable=resumable):
        raise UsageError("bad --param")
    assert snapshot(tmp_path) == before


def test_force_replaces_a_run_when_the_new_one_is_complete(tmp_path):
    out = make_run(tmp_path / "run", "old")
    with rundir.open_run(out, "test", {"marker": "new"}, force=True) as work:
        (work / "result.txt").write_text("new")
        assert (out / "result.txt").read_text() == "old"  # the old run is intact until the end
    assert (out / "result.txt").read_text() == "new"
    assert rundir.run_record(out)["config"] == {"marker": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


@pytest.mark.parametrize(
    "contents",
    [
        {"notes.txt": "mine"},
        {"sub/notes.txt": "mine"},
        {"config.json": "{not json"},
        {"config.json": '{"command": "x"}'},  # JSON, but not what agentlab writes
        {"config.json": '["command", "config", "versions"]'},
    ],
)
def test_force_never_replaces_a_folder_that_is_not_a_run(tmp_path, contents):
    victim = tmp_path / "victim"
    for name, text in contents.items():
        (victim / name).parent.mkdir(parents=True, exist_ok=True)
        (victim / name).write_text(text)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match="not an agentlab run directory"):
        rundir.check_out(victim, force=True)
    with pytest.raises(UsageError), rundir.open_run(victim, "test", {}, force=True):
        pass
    assert snapshot(tmp_path) == before


def test_force_never_replaces_the_current_directory_or_its_parents(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run")
    inner = run / "plots"
    (inner / "figure.png").write_bytes(b"png")
    monkeypatch.chdir(inner)
    before = snapshot(tmp_path)
    for target in (Path("."), Path(".."), Path(os.getcwd())):
        with pytest.raises(UsageError, match="current directory|parent of the current|not an agentlab run"):
            rundir.check_out(target, force=True)
    with pytest.raises(UsageError, match="parent of the current directory"):
        rundir.check_out(Path(".."), force=True)
    assert snapshot(tmp_path) == before


def test_force_never_replaces_home(tmp_path, monkeypatch):
    home = make_run(tmp_path / "home")
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(UsageError, match="home directory"):
        rundir.check_out(home, force=True)


def test_symlinked_run_is_not_replaced(tmp_path):
    run = make_run(tmp_path / "run")
    (tmp_path / "link").symlink_to(run)
    with pytest.raises(UsageError, match="symbolic link"):
        rundir.check_out(tmp_path / "link", force=True)


def test_existing_folder_without_flags_is_refused_with_the_right_hint(tmp_path):
    run = make_run(tmp_path / "run")
    with pytest.raises(UsageError, match="--resume to continue it or --force"):
        rundir.check_out(run)
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    with pytest.raises(UsageError, match="not an agentlab run directory: choose another"):
        rundir.check_out(other)
    with pytest.raises(UsageError, match="cannot resume"):
        rundir.check_out(other, resume=True)


def test_out_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file, not a directory"):
        rundir.check_out(tmp_path / "file" / "run")
    with pytest.raises(UsageError, match="exists and is not a directory"):
        rundir.check_out(tmp_path / "file")
    with pytest.raises(UsageError, match="bytes long"):
        rundir.check_out(tmp_path / ("x" * 300))
    with pytest.raises(UsageError, match="exclude each other"):
        rundir.check_out(tmp_path / "new", resume=True, force=True)
    with pytest.raises(UsageError, match="does not exist or is empty"):
        rundir.check_out(tmp_path / "new", resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_interrupted_resumable_run_stays_and_says_resume(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RunInterrupted, match="--resume"), rundir.open_run(out, "test", {"a": 1}, resumable=True) as w:
        (w / "metrics.parquet").write_text("rows")
        raise KeyboardInterrupt
    assert (out / "metrics.parquet").read_text() == "rows" and rundir.is_run_directory(out)
    with rundir.open_run(out, "test", {"a": 1}, resume=True) as work:  # and it resumes in place
        assert work == out
    with pytest.raises(UsageError, match="config differs"), rundir.open_run(out, "test", {"a": 2}, resume=True):
        pass


def test_interrupted_run_without_resume_leaves_nothing(tmp_path):
    old = make_run(tmp_path / "run")
    before = snapshot(tmp_path)
    with pytest.raises(RunInterrupted, match="unchanged"), rundir.open_run(old, "test", {}, force=True):
        raise KeyboardInterrupt
    assert snapshot(tmp_path) == before
    with pytest.raises(RunInterrupted, match="nothing was written"), rundir.open_run(tmp_path / "new", "test", {}):
        raise KeyboardInterrupt
    assert snapshot(tmp_path) == before


def test_stale_staging_of_a_dead_process_is_removed(tmp_path):
    dead = tmp_path / f".run{rundir.STAGING}999999999-abc"  # no such process
    alive = tmp_path / f".run{rundir.STAGING}{os.getpid()}-abc"
    foreign = tmp_path / ".run.mine"
    for folder in (dead, alive, foreign):
        folder.mkdir()
    make_run(tmp_path / "run")
    assert not dead.exists() and alive.exists() and foreign.exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_honour_the_umask(tmp_path, monkeypatch, mask):
    monkeypatch.setattr(rundir, "UMASK", mask)
    out = make_run(tmp_path / "run")
    for path in (out / "config.json", out):
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == want, path


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    layout=st.sampled_from(["missing", "empty", "run", "foreign"]),
    force=st.booleans(),
    resumable=st.booleans(),
    outcome=st.sampled_from(["ok", "error", "interrupt"]),
)
def test_nothing_that_is_not_a_run_is_ever_removed(tmp_path_factory, layout, force, resumable, outcome):
    """Whatever the folder holds, the flags and how the command ends: a folder that is not a run is never
    changed, an old run changes only when a new run completes (or a resumable one is interrupted), and a
    failure leaves exactly what was there."""
    root = tmp_path_factory.mktemp("prop")
    out = root / "out"
    if layout == "empty":
        out.mkdir()
    elif layout == "run":
        make_run(out)
    elif layout == "foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    before = snapshot(root)
    try:
        with rundir.open_run(out, "test", {"marker": "new"}, force=force, resumable=resumable) as work:
            (work / "result.txt").write_text("new")
            if outcome == "error":
                raise RuntimeError
            if outcome == "interrupt":
                raise KeyboardInterrupt
    except UsageError:
        assert snapshot(root) == before
        assert layout in ("run", "foreign") and (layout == "foreign" or not force)
        return
    except RuntimeError:
        assert snapshot(root) == before
        return
    except RunInterrupted:
        if resumable:
            assert (out / "result.txt").read_text() == "new"
        else:
            assert snapshot(root) == before
        return
    assert outcome == "ok" and (out / "result.txt").read_text() == "new"
    assert [p.name for p in root.iterdir()] == ["out"]
