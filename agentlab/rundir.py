"""Run directories: every command that computes writes one a user can open.

Layout: ``config.json`` (the resolved config plus versions and platform: enough to rerun),
``metrics.parquet`` (tidy rows), ``summary.json`` (flat snake_case keys with units in the names),
``plots/*.png`` and, for training, ``checkpoints/``. Every write is atomic (a temporary file in the
same folder, then a rename), so an interrupted command never leaves a half-written file.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from agentlab.errors import UsageError

JSON_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` for a temporary path next to `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
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


def write_parquet(path: Path, frame: Any) -> Path:
    """Write a polars DataFrame atomically."""
    return atomic_write(path, lambda tmp: frame.write_parquet(tmp))


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


def prepare(out: Path, *, resume: bool = False, force: bool = False) -> Path:
    """Create the run directory `out`.

    An existing non-empty `out` is refused (`UsageError`) unless `resume` (keep it and continue) or
    `force` (delete it and start again).
    """
    out = Path(out)
    if resume and force:
        raise UsageError("--resume and --force exclude each other: continue the run, or replace it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if force:
            shutil.rmtree(out)
        elif not resume:
            raise UsageError(f"--out {out} already exists: pass --resume to continue it or --force to replace it")
        elif not (out / "config.json").exists():
            raise UsageError(f"--out {out} is not a run directory (no config.json): cannot --resume it")
    elif resume:
        raise UsageError(f"--resume given but {out} does not exist or is empty")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    return out


def check_resume_config(
    out: Path, config: dict, ignore: tuple[str, ...] = ("resume", "force", "json", "quiet")
) -> None:
    """Refuse to resume a run whose recorded config differs from `config` (keys in `ignore` aside)."""
    recorded = read_json(Path(out) / "config.json").get("config", {})
    diffs = [k for k in sorted(set(recorded) | set(config)) if k not in ignore and recorded.get(k) != config.get(k)]
    if diffs:
        shown = ", ".join(f"{k}: {recorded.get(k)!r} -> {config.get(k)!r}" for k in diffs[:4])
        raise UsageError(f"cannot resume {out}: its config differs ({shown}); use --force to start over")


def write_config(out: Path, command: str, config: dict) -> Path:
    return write_json(Path(out) / "config.json", {"command": command, "config": config, "versions": versions()})
