"""A peer implementation in its own process: the side of a side-by-side benchmark that cannot share agentlab's
(another framework, another JAX), driven by one JSON request per line on its stdin and answering one JSON line.

`PeerProcess` writes the driver script into a temporary folder, starts it with the peer's python in the peer's
checkout, sends the setup `spec` (the answer is the peer's facts, plus ``setup_and_warm_up_seconds``) and then timing
requests; a driver that stops is one `RuntimeError` with the last line of its stderr. Used by bench/mamql.py and
bench/pgd.py.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


class PeerProcess:
    """A context manager around the driver process; subclasses say how to start it (`python`, `cwd`, `env`,
    `spec`) and what to ask (`time`)."""

    label = "peer"  # named in the error when the driver stops
    driver = ""  # the driver script's source
    script_name = "driver.py"

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.info: dict = {}
        self._dir = tempfile.TemporaryDirectory(prefix=f"agentlab-{self.label}-peer-")
        self._stderr = open(Path(self._dir.name) / "stderr.txt", "w+")  # noqa: SIM115 - closed in close()

    def start(self, python: Path, cwd: Path, env: dict[str, str], spec: dict[str, Any]) -> PeerProcess:
        """Start the driver with `python` in `cwd` and send it `spec`; `info` is its answer."""
        script = Path(self._dir.name) / self.script_name
        script.write_text(self.driver)
        self.process = subprocess.Popen(
            [str(python), str(script)],
            cwd=str(cwd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        tick = time.perf_counter()
        self.info = self.ask(spec)
        self.info["setup_and_warm_up_seconds"] = time.perf_counter() - tick
        return self

    def ask(self, request: Any) -> dict:
        """Send one request, return the driver's answer (`RuntimeError` with its last stderr line if it stopped)."""
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.process.wait(timeout=60)
            self._stderr.seek(0)
            messages = [text for text in self._stderr.read().strip().splitlines() if text.strip()]
            last = messages[-1] if messages else "no message"
            raise RuntimeError(f"the {self.label} driver stopped (exit {self.process.returncode}): {last}")
        return json.loads(line)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write(json.dumps("quit") + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.SubprocessError):
                self.process.kill()
                self.process.wait()
        self._stderr.close()
        self._dir.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.close()


def spread(values: list[float]) -> dict:
    """The median, min, max and values of a benchmark's rounds."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": values}


def environment(**extra: str) -> dict[str, str]:
    """This process's environment with `extra` set (the peer's thread counts or JAX platform)."""
    return {**os.environ, **extra}


def git_head(path: Path | None) -> str | None:
    """The commit checked out at `path` (the peer's checkout), or None where it is not a git work tree."""
    if path is None:
        return None
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def check_checkout(path: Path, flag: str, files: tuple[str, ...], url: str) -> None:
    """A peer's checkout must hold `files`; otherwise one-line `UsageError` naming `flag` and where to get it."""
    from agentlab.errors import UsageError

    missing = [name for name in files if not (Path(path) / name).is_file()]
    if missing:
        raise UsageError(f"{flag} {path}: no {', '.join(missing)} there (give a checkout of {url})")


def probe_python(python: Path, flag: str, modules: tuple[str, ...], timeout: float) -> list[str]:
    """The ``__version__`` of each of `modules` under the peer's `python` (an executable file that imports them);
    otherwise one-line `UsageError` naming `flag`."""
    from agentlab.errors import UsageError

    python = Path(python)
    if not python.is_file() or not os.access(python, os.X_OK):
        raise UsageError(f"{flag} {python}: not an executable file")
    probe = f"import {', '.join(modules)}; print({', '.join(f'{m}.__version__' for m in modules)})"
    try:
        done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as error:
        raise UsageError(f"{flag} {python}: cannot run it ({error})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        names = ", ".join(modules[:-1]) + f" and {modules[-1]}" if len(modules) > 1 else modules[0]
        raise UsageError(f"{flag} {python}: cannot import {names} ({last})")
    return done.stdout.split()
