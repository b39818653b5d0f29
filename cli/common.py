"""What every command shares: options defined once, error handling, config files, output."""

from __future__ import annotations

import contextlib
import enum
import functools
import os
import sys
import tomllib
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from agentlab.errors import UsageError, choices

DEBUG_VARIABLE = "AGENTLAB_DEBUG"

# Shared options (one flag vocabulary, CONTRACT.md).
Stochasticity = Annotated[
    str,
    typer.Option(
        "--stochasticity",
        "-s",
        help="Stochasticity profiles, e.g. 'action:p=0.3' or 'sticky:p=0.1+mask:kind=crop,region=left,p=0.75'; "
        "'plain' for none. Atari-style games: the whole taxonomy (`agentlab envs` lists each game's event modes and "
        "mask regions); every other kernel: action, sticky, drift and mask:kind=dropout,p=P (vector observations).",
    ),
]
Out = Annotated[
    Path | None, typer.Option("--out", "-o", help="Run directory to write (default: runs/<command>-<time>).")
]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the run in an existing --out directory.")]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Replace the agentlab run in --out once the new run has finished (a folder that is not an agentlab "
        "run is never replaced).",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print summary.json on stdout (human text goes to stderr).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or tables on stderr.")]
Tensorboard = Annotated[
    bool,
    typer.Option(
        "--tensorboard",
        help="Also write the metrics as TensorBoard scalars under RUN/tensorboard/ (one folder per seed); needs the "
        "tensorboard extra. A resumed run that had it keeps it.",
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --executor ray: the Ray cluster to join (host:port, ray://host:port or auto); default "
        "$RAY_ADDRESS, else a local Ray instance sized for this machine.",
    ),
]
Config = Annotated[
    Path | None,
    typer.Option("--config", help="A TOML file with option values (flag names in snake_case); flags given win."),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env-option",
        help="A kernel option key=value (comma-separated or repeated), e.g. size=5,num_purple=1: the keyword "
        "arguments of the kernel's make() that `agentlab envs` lists.",
    ),
]
Seed = Annotated[
    int,
    typer.Option("--seed", min=0, max=2**31 - 1, help="Seed of every random draw (same seed, same numbers)."),
]


def one_line(message: object) -> str:
    """`message` as one printable line: control characters (a newline inside a user's path, ...) and text that
    is not valid UTF-8 (a file name's undecodable bytes) are escaped, so an error is always exactly one line."""
    text = str(message)
    text = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fail(message: str) -> None:
    """Raise the bad-input error: one line on stderr, exit code 2."""
    raise UsageError(message)


def handle_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command: bad input -> one line and exit 2; a failure while computing -> one line and exit
    1; Ctrl-C -> exit 130. ``AGENTLAB_DEBUG=1`` shows the traceback instead."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except UsageError as error:
            if debug:
                traceback.print_exc()
            typer.echo(f"error: {one_line(error)}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt as interrupt:  # a RunInterrupted says what became of the run directory
            typer.echo(f"interrupted: {one_line(getattr(interrupt, 'message', 'nothing was written'))}", err=True)
            raise typer.Exit(130) from None
        except Exception as error:  # noqa: BLE001 - the command line's last resort
            if debug:
                traceback.print_exc()
            typer.echo(
                f"error: {type(error).__name__}: {one_line(error)} (set {DEBUG_VARIABLE}=1 for the traceback)", err=True
            )
            raise typer.Exit(1) from None

    return wrapper


def parse_int_list(text: str, option: str, minimum: int = 1) -> list[int]:
    """``"1,64,4096"`` -> ``[1, 64, 4096]``; every value must be an integer >= `minimum`."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            fail(f"{option} {text!r}: {part!r} is not an integer (expected a comma-separated list like 1,64,4096)")
        if value < minimum:
            fail(f"{option} {text!r}: every value must be >= {minimum}, got {value}")
        values.append(value)
    return values


def parse_names(text: str, valid: tuple[str, ...], option: str) -> list[str]:
    """``"all"`` or a comma-separated subset of `valid` (kernel ids' aliases mapped to the ids)."""
    from agentlab.kernels.names import canonical_id

    if text.strip() == "all":
        return list(valid)
    names = [canonical_id(n.strip()) for n in text.split(",") if n.strip()]
    for name in names:
        if name not in valid:
            fail(f"{option}: unknown name {name!r}: valid names are {choices(valid)} or 'all'")
    if not names:
        fail(f"{option} is empty: give 'all' or names from {choices(valid)}")
    return names


def load_toml(path: Path) -> dict[str, Any]:
    """The table of a ``--config`` TOML file; a missing, unreadable, binary or malformed file is bad input."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        fail(f"--config {path}: no such file")
    except IsADirectoryError:
        fail(f"--config {path} is a directory, not a TOML file")
    except UnicodeDecodeError:
        fail(f"--config {path} is not a text file (not UTF-8): expected TOML")
    except OSError as error:
        fail(f"--config {path}: cannot read it ({error.strerror or type(error).__name__})")
    except tomllib.TOMLDecodeError as error:
        fail(f"--config {path} is not valid TOML: {error}")
    raise AssertionError("unreachable")


def apply_config_file(ctx: typer.Context, path: Path | None, values: dict[str, Any]) -> dict[str, Any]:
    """Fill options the user did not give on the command line from a TOML file.

    Keys are the flags' names in snake_case, of options that set what is computed (never the file itself,
    where the run goes or how it is shown: ``--config``, ``--out``, ``--resume``, ``--force``, ``--json``,
    ``--quiet``, nor the Typer context); an unknown key or a value of
    the wrong type (a TOML boolean is not a number, a number not a boolean) is bad input. Returns the
    updated `values` with every `choice` option as its plain string; the caller (the library's config) checks
    the values' ranges and a file's choices as it checks flags.
    """
    values = {k: v.value if isinstance(v, enum.Enum) else v for k, v in values.items()}
    if path is None:
        return values
    data = load_toml(path)
    settable = {k for k in values if k not in ("ctx", "config", "out", "resume", "force", "json", "quiet")}
    for key, value in data.items():
        if key not in settable:
            fail(f"--config {path}: unknown key {key!r}: valid keys are {choices(sorted(settable))}")
        value = config_value(key, value, values[key], f"--config {path}")
        source = ctx.get_parameter_source(key)
        if source is None or source.name in ("DEFAULT", "DEFAULT_MAP"):
            values[key] = value
    return values


def config_value(key: str, value: Any, default: Any, source: str) -> Any:
    """A TOML value for the option or config field `key`, checked against its `default`'s type (every command's
    ``--config`` goes through here): a boolean is not a number nor a number a boolean, an int is taken for a
    float, a list or a number for a string option is its comma-separated text (``hidden = [64, 64]`` for
    ``--hidden 64,64``); a None default takes any value (the library checks it). Otherwise one line naming
    `source`, exit 2."""
    expected = type(default) if default is not None else None
    if expected is None:
        return value
    if expected in (int, float) and isinstance(value, bool):
        fail(f"{source}: {key} must be {expected.__name__}, got bool {value!r}")
    if expected is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, expected):
        if expected is str and isinstance(value, (list, int, float)):
            return ",".join(map(str, value)) if isinstance(value, list) else str(value)
        fail(f"{source}: {key} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def choice(name: str, values: Sequence[str]) -> type[enum.Enum]:
    """A string Enum of `values` for an option with fixed choices (``Annotated[choice("Algo", ALGOS), Option]``):
    ``--help`` lists them, a value outside them is one line and exit 2 before anything runs, and
    `apply_config_file` hands the command the plain string. The lists come from JAX-free modules
    (`agentlab.rl.names`, `agentlab.kernels.names`) that the library validates against too."""
    return enum.Enum(name, {value: value for value in values}, type=str)


def checked_out(out: Path | None, name: str, *, record: dict, resume: bool, force: bool, ignore=None) -> Path:
    """The run directory a command writes (`out`, or ``runs/NAME-STAMP``), checked before anything is computed
    or shown (`rundir.check_out`: the --resume / --force rules) and, resuming, its recorded config equal to
    `record` (keys in `ignore` aside, default `rundir.RESUME_IGNORES`)."""
    from agentlab import rundir

    out = Path(out or default_out(name))
    rundir.check_out(out, resume=resume, force=force)
    if resume:
        rundir.check_resume_config(out, record, *(() if ignore is None else (ignore,)))
    return out


def print_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode() + "\n")
    sys.stdout.flush()


def default_out(command: str) -> Path:
    import datetime

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{command}-{stamp}"


def parse_grid(text: str, option: str, kind: type = float, max_count: int = 100_000) -> list:
    """A grid of values: a list ``"3,5,7"``, a range ``"start:stop:count"`` (count values, both ends
    included, like numpy's linspace; 1 <= count <= `max_count`), or both mixed (``"0,0.5:0.9:5"``).
    Every value is finite. Integers with ``kind=int`` (a range must then land on integers). Bad input
    -> one line naming the option. The values' own ranges are the caller's to check."""
    import math

    import numpy as np

    expected = "expected a list like 3,5,7 or a range start:stop:count"
    values: list = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            fail(f"{option} {text!r}: empty entry ({expected})")
        pieces = part.split(":")
        if len(pieces) not in (1, 3):
            fail(f"{option} {text!r}: {part!r} is neither a number nor a range start:stop:count")
        try:
            ends = [float(piece) for piece in pieces[:2]]
        except ValueError:
            fail(f"{option} {text!r}: {part!r} is not a number ({expected})")
        if not all(math.isfinite(end) for end in ends):
            fail(f"{option} {text!r}: {part!r} is not a finite number ({expected})")
        if len(pieces) == 1:
            numbers = ends
        else:
            try:
                count = int(pieces[2])
            except ValueError:
                fail(f"{option} {text!r}: a range's count must be an integer >= 1, got {pieces[2]!r}")
            if count < 1:
                fail(f"{option} {text!r}: a range's count must be >= 1, got {count}")
            if count > max_count:
                fail(f"{option} {text!r}: a range's count must be <= {max_count:,}, got {count:,}")
            numbers = np.linspace(ends[0], ends[1], count).round(12).tolist()
        for number in numbers:
            if kind is int:
                if number != int(number):
                    fail(f"{option} {text!r}: {number:g} is not an integer")
                number = int(number)
            values.append(number)
    return list(dict.fromkeys(values))


def stderr_console():
    """A rich console on stderr, for progress bars and tables: stdout carries only ``--json`` output."""
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def deferred_progress(*columns: Any, quiet: bool):
    """`progress_display` that appears at its first ``start()`` (the command calls it from the library's first
    callback, once the input has been checked), so an error found while loading is the only line on stderr."""
    progress = progress_display(*columns, quiet=quiet)
    try:
        yield progress
    finally:
        if progress.live.is_started:  # stop() prints a line break on a non-interactive console even if never shown
            progress.stop()


def counted_columns(title: str, unit: str, *extra: Any) -> tuple:
    """Progress columns of a counted run: `title` (rich markup), a bar, ``done/total unit``, `extra` columns,
    elapsed time. A `unit` of ``{task.fields[unit]}`` takes the unit from the task."""
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    return (TextColumn(title), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} " + unit), *extra,
            TimeElapsedColumn())  # fmt: skip


def run_with_progress(
    train: Any,
    *,
    title: str,
    unit: str,
    total: int,
    quiet: bool,
    done: str = "update",
    of: str = "total",
    figure: tuple[str, str, str] | None = None,
) -> Any:
    """``train(on_chunk)`` under a counted progress bar that appears at the driver's first callback (so an error in
    the input is the only line on stderr); returns what `train` returns. Every train command's driver reports
    ``info[done]`` of ``info[of]`` `unit` to its callback; `figure` ``(label, key, format)`` shows ``info[key]``
    beside the bar (e.g. ``("loss", "loss", ".4f")``)."""
    from rich.progress import TextColumn

    extra = (TextColumn(f"{figure[0]} {{task.fields[figure]:{figure[2]}}}"),) if figure else ()
    with deferred_progress(*counted_columns(title, unit, *extra), quiet=quiet) as progress:
        task = progress.add_task("run", total=total, figure=float("nan"))

        def on_chunk(info: dict) -> None:
            progress.start()
            shown = {"figure": info[figure[1]]} if figure else {}
            progress.update(task, completed=info[done], total=info.get(of, total), **shown)

        return train(on_chunk)


def progress_display(*columns: Any, quiet: bool, transient: bool = False):
    """A rich progress display on stderr (`stderr_console`), off with `quiet`; without `columns`, a
    counted bar: description, bar, done/total, elapsed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = columns or (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, disable=quiet, transient=transient, console=stderr_console())
