"""Run directories: every command that computes writes one a user can open.

Layout: ``config.json`` (the resolved config plus versions and platform: enough to rerun),
``metrics.parquet`` (tidy rows), ``summary.json`` (flat snake_case keys with units in the names),
``plots/*.png`` and, for training, ``checkpoints/``. Every write is atomic (a temporary file in the
same folder, then a rename), so an interrupted command never leaves a half-written file, and files
honour the user's umask.

Nothing is lost (`open_run`): ``--out`` is checked before anything is written (`check_out`); a new
run is built where a failure cannot hurt and appears at ``--out`` only when the command succeeds;
``--force`` replaces only an agentlab run directory (its ``config.json`` says so), never the current
directory, one of its parents or the home directory, and the old run survives until the new one is
complete; a command that fails leaves nothing behind, except a resumable run (commands with
``--resume``) that was interrupted or killed, which stays at ``--out`` to be resumed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from agentlab.errors import RunInterrupted, UsageError

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
MAX_NAME_BYTES = 200  # --out's last component: room for the staging prefix within the usual 255-byte limit
STAGING = ".agentlab-staging-"  # .<name>.agentlab-staging-<pid>-<random>: a new run being built beside --out
TRASH = ".agentlab-replaced-"  # .<name>.agentlab-replaced-<pid>-<random>: the old run, removed after the swap
RESUME_IGNORES = ("resume", "force", "json", "quiet", "tensorboard")  # options that change no number


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _current_umask()  # read once at import (the umask can only be read by setting it)


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary path next to `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes 0600; a run's files are as readable as the user's others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: Path, obj: Any) -> Path:
    data = orjson.dumps(obj, option=JSON_OPTIONS) + b"\n"
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def read_json(path: Path) -> Any:
    return orjson.loads(Path(path).read_bytes())


def read_json_file(path: Path, what: str = "file") -> Any:
    """`read_json` for a file a user hands us: missing, a directory, unreadable or not JSON -> a
    one-line `UsageError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise file_error(f"{what} {path}", error) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise UsageError(f"{what} {path} is not valid JSON (corrupt or truncated?): {error}") from None


def file_error(label: str, error: OSError) -> UsageError:
    """The one-line `UsageError` for an OS error on a file a user named; `label` names it (``checkpoint
    PATH``, ``--grid PATH``, ...)."""
    label = label.removesuffix(":")
    if isinstance(error, FileNotFoundError):
        return UsageError(f"{label}: no such file")
    if isinstance(error, IsADirectoryError):
        return UsageError(f"{label} is a directory, not a file")
    if isinstance(error, PermissionError):
        return UsageError(f"{label}: permission denied")
    return UsageError(f"{label}: {error.strerror or error}")


def write_parquet(path: Path, frame: Any) -> Path:
    """Write a polars DataFrame atomically."""
    return atomic_write(path, lambda tmp: frame.write_parquet(tmp))


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend: the one place agentlab picks a backend
    (figures are written into run directories, on machines without a display)."""
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: Path, figure: Any) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(figure)


def versions() -> dict[str, str]:
    """agentlab, JAX, jaxlib and numba versions, Python, the platform and JAX's default backend."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()}
    for package in ("agentlab", "jax", "jaxlib", "numba", "numpy"):
        try:
            out[package] = md.version(package)
        except md.PackageNotFoundError:
            out[package] = "not installed"
    try:
        import jax

        out["jax_backend"] = jax.default_backend()
        out["jax_devices"] = ", ".join(str(d) for d in jax.devices())
    except Exception:  # pragma: no cover - informational only
        pass
    return out


# -- what a run directory is -----------------------------------------------------------------------------------


def run_record(path: Path) -> dict | None:
    """The ``config.json`` record of the agentlab run directory `path`, or None if `path` is not one:
    no ``config.json``, or one that is not an object with ``command``, ``config`` and agentlab's
    version, as `write_config` writes it."""
    try:
        record = orjson.loads((Path(path) / "config.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    if (
        isinstance(record, dict)
        and isinstance(record.get("command"), str)
        and isinstance(record.get("config"), dict)
        and isinstance(record.get("versions"), dict)
        and "agentlab" in record["versions"]
    ):
        return record
    return None


def is_run_directory(path: Path) -> bool:
    return Path(path).is_dir() and run_record(path) is not None


def load_record(out: Path, command: str | None = None) -> dict:
    """The ``config.json`` record of the run `out` (for ``--resume`` and for commands that read a run);
    not a run, or a run of another command than `command` -> `UsageError`."""
    out = Path(out)
    if not out.exists():
        raise UsageError(f"{out} does not exist (expected an agentlab run directory)")
    if not out.is_dir():
        raise UsageError(f"{out} is not a directory (expected an agentlab run directory)")
    record = run_record(out)
    if record is None:
        if not (out / "config.json").exists():
            raise UsageError(f"{out} is not an agentlab run directory (no config.json)")
        raise UsageError(f"{out}/config.json is not an agentlab run record (corrupt, truncated or foreign)")
    if command is not None and record["command"] != command:
        raise UsageError(f"{out} is a run of `{record['command']}`, not of `{command}`")
    return record


def check_text(path: Path, what: str) -> Path:
    """Refuse a path whose name is not valid UTF-8 (undecodable bytes in a file name): agentlab records
    paths in JSON and Parquet, which hold text only. Returns `path`."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = str(path).encode("utf-8", "backslashreplace").decode("utf-8")
        raise UsageError(f"{what} {shown}: the name is not valid UTF-8 (agentlab records paths as text)") from None
    return path


def _protected(path: Path) -> str | None:
    """Why `path` may never be replaced (the filesystem root, the home directory, the current
    directory or one of its parents), or None."""
    here = Path(os.path.realpath(os.getcwd()))
    real = Path(os.path.realpath(path))
    if real == Path(real.anchor):
        return "the filesystem root"
    if real == Path(os.path.realpath(Path.home())):
        return "the home directory"
    if real == here:
        return "the current directory"
    if real in here.parents:
        return "a parent of the current directory"
    return None


def _nonempty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return any(True for _ in entries)


# -- checking and opening --out ---------------------------------------------------------------------------------


def check_out(out: Path, *, resume: bool = False, force: bool = False) -> Path:
    """Check ``--out`` before anything is computed or written; returns `out`. Bad -> `UsageError`.

    - ``--resume`` needs an agentlab run directory; ``--resume`` and ``--force`` exclude each other;
    - an existing non-empty directory needs ``--resume`` or ``--force``; ``--force`` replaces only
      an agentlab run directory, never the root, home, current directory or one of its parents;
    - a new run needs a path that can be made: no file on the way, a writable first existing folder
      and a last component of at most `MAX_NAME_BYTES` bytes.
    """
    out = check_text(Path(out), "--out")
    name = Path(os.path.abspath(out)).name
    if resume and force:
        raise UsageError("--resume and --force exclude each other: continue the run, or replace it")
    if not name:
        raise UsageError(f"--out {out}: give a directory below the filesystem root")
    size = len(os.fsencode(name))
    if size > MAX_NAME_BYTES:
        raise UsageError(f"--out: the name {name[:20]!r}... is {size} bytes long; at most {MAX_NAME_BYTES}")
    try:
        exists = out.exists() or out.is_symlink()
        if exists and not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a directory")
        full = exists and _nonempty(out)
    except PermissionError:
        raise UsageError(f"--out {out}: permission denied") from None
    except OSError as error:
        raise UsageError(f"--out {out}: {error.strerror or error}") from None
    if full:
        is_run = is_run_directory(out)
        if resume:
            if not is_run:
                raise UsageError(f"--out {out} is not an agentlab run directory (no valid config.json): cannot resume")
            return out
        if not force:
            if is_run:
                raise UsageError(f"--out {out} already exists: pass --resume to continue it or --force to replace it")
            raise UsageError(f"--out {out} already exists and is not an agentlab run directory: choose another --out")
        if not is_run:
            raise UsageError(f"--force: {out} is not an agentlab run directory (no valid config.json); left as it is")
        if out.is_symlink():
            raise UsageError(f"--force: {out} is a symbolic link; give the run directory itself")
        why = _protected(out)
        if why is not None:
            raise UsageError(f"--force: {out} is {why}; a run is never replaced there")
        return out
    if resume:
        raise UsageError(f"--resume given but {out} does not exist or is empty")
    check_creatable(out)
    return out


def check_creatable(out: Path) -> None:
    """``--out`` (a run folder or a file) can be made: its first existing ancestor is a writable folder."""
    try:
        ancestor = _first_existing(Path(out).parent)
    except OSError as error:
        raise file_error(f"--out {out}:", error) from None
    if not ancestor.is_dir():
        raise UsageError(f"--out {out}: {ancestor} is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write in {ancestor} (permission denied)")


def _first_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not (path.exists() or path.is_symlink()):
        path = path.parent
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Remove staging and replaced-run folders beside `out` that agentlab processes left when they were
    killed: only folders with the names agentlab gives them, whose process is gone."""
    parent = out.parent
    for prefix in (f".{out.name}{STAGING}", f".{out.name}{TRASH}"):
        for entry in parent.glob(f"{prefix}*"):
            pid = entry.name[len(prefix) :].split("-", 1)[0]
            if entry.is_dir() and not entry.is_symlink() and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p`` that returns the folders it made, outermost first."""
    missing = []
    path = Path(os.path.abspath(path))
    while not (path.exists() or path.is_symlink()):
        missing.append(path)
        path = path.parent
    created = []
    for folder in reversed(missing):
        folder.mkdir()
        created.append(folder)
    return created


def _remove_made(folders: list[Path]) -> None:
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            break


def _clear(path: Path) -> None:
    """Remove what a failed run wrote into `path` (a folder that was empty before it)."""
    for entry in list(path.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _swap_in(staging: Path, out: Path) -> None:
    """Put the finished run `staging` at `out`; an old run there is moved aside first, then removed."""
    if out.is_dir() and _nonempty(out):
        trash = Path(tempfile.mkdtemp(prefix=f".{out.name}{TRASH}{os.getpid()}-", dir=out.parent))
        os.replace(out, trash / "run")
        os.replace(staging, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, out)  # onto a missing path or an empty folder


@contextlib.contextmanager
def open_run(
    out: Path,
    command: str,
    config: dict,
    *,
    resume: bool = False,
    force: bool = False,
    resumable: bool = False,
    ignore: tuple[str, ...] = RESUME_IGNORES,
) -> Iterator[Path]:
    """Open the run directory `out` for writing; yields the folder to write into.

    - `resume`: `out` itself; its recorded config must equal `config` (keys in `ignore` aside).
    - A new run: ``config.json`` is written first. It is built in a hidden sibling of `out` and moved
      there when the block ends without an exception; an old run at `out` (with `force`) is replaced
      only then. A `resumable` command writing to a missing or empty `out` writes in place instead,
      so that a killed run can be resumed.
    - An exception removes the new run (and the folders made for it) and leaves an old one as it was.
      Ctrl-C keeps a `resumable` run at `out` and raises `RunInterrupted` saying how to resume it.
    """
    out = check_out(out, resume=resume, force=force)
    if resume:
        check_resume_config(out, config, ignore)
        try:
            yield out
        except KeyboardInterrupt:
            raise RunInterrupted(f"{out} keeps what was finished; rerun with --resume to continue") from None
        return
    existing = out.is_dir() and _nonempty(out)
    in_place = not existing and (resumable or out.is_dir())
    try:
        made = _make_dirs(out if in_place else out.parent)
    except OSError as error:
        raise UsageError(f"--out {out}: cannot create it: {error.strerror or error}") from None
    if in_place:
        work = out
    else:
        _remove_stale(out)
        try:
            work = Path(tempfile.mkdtemp(prefix=f".{out.name}{STAGING}{os.getpid()}-", dir=out.parent))
        except OSError as error:
            _remove_made(made)
            raise UsageError(f"--out {out}: cannot create a folder beside it: {error.strerror or error}") from None
        os.chmod(work, 0o777 & ~UMASK)

    def discard() -> None:
        if in_place:
            _clear(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
        _remove_made(made)

    try:
        write_config(work, command, config)
        (work / "plots").mkdir(exist_ok=True)
        yield work
    except KeyboardInterrupt:
        if not resumable:
            discard()
            raise RunInterrupted(f"nothing was written{f'; {out} is unchanged' if existing else ''}") from None
        if not in_place:
            _swap_in(work, out)
        raise RunInterrupted(f"{out} keeps what was finished; rerun with --resume to continue") from None
    except BaseException:
        discard()
        raise
    if not in_place:
        _swap_in(work, out)


def check_resume_config(out: Path, config: dict, ignore: tuple[str, ...] = RESUME_IGNORES) -> None:
    """Refuse to resume a run whose recorded config differs from `config` (keys in `ignore` aside)."""
    recorded = load_record(out)["config"]
    diffs = [k for k in sorted(set(recorded) | set(config)) if k not in ignore and recorded.get(k) != config.get(k)]
    if diffs:
        shown = ", ".join(f"{k}: {recorded.get(k)!r} -> {config.get(k)!r}" for k in diffs[:4])
        raise UsageError(f"cannot resume {out}: its config differs ({shown}); use --force to start over")


def write_config(out: Path, command: str, config: dict) -> Path:
    return write_json(Path(out) / "config.json", {"command": command, "config": config, "versions": versions()})
