"""The input boundary of `simulate`, `sweep synergy`, `calibrate` and `bench kernels`: bad input is one line on
stderr, exit code 2, and nothing written; every kernel params field is declared once (`agentlab.limits.Bound`) and
refused out of range by both the kernel's validate function and ``--param``."""

from __future__ import annotations

import math
import shutil
import sys

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from agentlab.cli import app as cli_app
from agentlab.cli.app import app
from agentlab.errors import UsageError
from agentlab.kernels.grid import curtailment, policies
from agentlab.kernels.markets import crash, lemons
from agentlab.synergy.sweep import SweepConfig

runner = CliRunner()


def listing(root) -> list[tuple[str, int, int]]:
    """Every path under `root` with its size and modification time: what "nothing touched" compares."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    )


def refused(args: list[str], fragment: str, root) -> str:
    """Run the command in `root` (the working directory) and check the refusal: exit code 2, one stderr line
    holding `fragment`, nothing on stdout, `root` unchanged. Returns the line."""
    before = listing(root)
    result = runner.invoke(app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert listing(root) == before
    return lines[0]


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def out_of_range(bound) -> float:
    """A value just outside `bound` (above its high end)."""
    return bound.high * 10 + 1


# -- simulate ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["market-crash", "--param", "shock_cost=nan"], "--param shock_cost must be a finite number in (0, 1e+09]"),
        (["grid-curtailment", "--param", "shortfall=nan"], "--param shortfall must be a finite number in [0, 1]"),
        (["market-crash", "--param", "nonexistent=1"], "--param 'nonexistent': valid keys are"),
        (["market-lemons", "--param", "nonexistent=1"], "--param 'nonexistent': valid keys are"),
        (["grid-curtailment", "--param", "nonexistent=1"], "--param 'nonexistent': valid keys are"),
        (["market-crash", "--param", "shock_day=2.5"], "--param shock_day must be an integer"),
        (["market-crash", "--param", "shock_cost"], "expected key=value"),
        (["market-crash", "--dlc", "1000"], "--dlc must be an integer in [1, 64]"),
        (["market-crash", "--dlc", "6"], "--dlc 6 is larger than the number of firms (5)"),
        (["market-crash", "--dlc", "0"], "--dlc must be an integer"),
        (["market-crash", "--policies", "undercut"], "--dlc 3 is larger than the number of firms (1)"),
        (["market-crash", "--policies", "undercut:1000"], "at most 64 agents"),
        (["market-crash", "--policies", "greedy:3"], "unknown policy 'greedy'"),
        (["market-lemons", "--policies", "undercut"], "unknown policy 'undercut'"),
        (["market-lemons", "--dlc", "13"], "--dlc 13 is larger than the number of sellers (12)"),
        (["market-lemons", "--buyers", "naive:-1"], "count of 'naive' must be >= 0"),
        (["market-crash", "--markets", str(10**12)], "--episodes (--markets, --events) must be an integer"),
        (["market-crash", "--markets", "0"], "--episodes (--markets, --events) must be an integer in [1,"),
        (["market-crash", "--markets", "2000000000"], "needs about"),
        (["market-lemons", "--episodes", "2000000000"], "needs about"),
        (["grid-curtailment", "--events", "2000000000"], "needs about"),
        (["market-crash", "--steps", str(10**12)], "--steps (--deadline) must be an integer"),
        (["market-crash", "--steps", "-1"], "--steps (--deadline) must be an integer"),
        (["market-crash", "--steps", "2000000000"], "needs about"),
        (["market-lemons", "--steps", "2000000000"], "needs about"),
        (["grid-curtailment", "--deadline", "20000"], "--deadline (--steps) must be an integer in [1, 10000]"),
        (["grid-curtailment", "--policies", "solver:1"], "needs 2 to 4096 participants"),
    ],
)
def test_simulate_refuses_bad_input_before_the_run(args, fragment, cwd):
    refused(["simulate", *args], fragment, cwd)


@pytest.mark.parametrize(
    ("kernel", "absent", "present"),
    [
        ("market-crash", ("--buyers", "(unused)"), ("--dlc", "--policies")),
        ("market-lemons", ("(unused)",), ("--buyers", "--dlc")),
        ("grid-curtailment", ("--buyers", "--dlc", "(unused)"), ("--policies", "--param")),
    ],
)
def test_each_simulator_has_only_the_options_that_apply(kernel, absent, present):
    result = runner.invoke(app, ["simulate", kernel, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in absent:
        assert option not in result.stdout, option
    for option in present:
        assert option in result.stdout, option


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["simulate", "grid-curtailment", "--buyers", "naive:3"], "No such option: --buyers"),
        (["simulate", "grid-curtailment", "--dlc", "3"], "No such option: --dlc"),
        (["simulate", "market-crash", "--buyers", "naive:3"], "No such option: --buyers"),
    ],
)
def test_options_that_do_not_apply_are_usage_errors(args, fragment, cwd, monkeypatch, capsys):
    """Through the console script (`main`), which turns Click's usage errors into one line too."""
    before = listing(cwd)
    monkeypatch.setattr(sys, "argv", ["agentlab", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert listing(cwd) == before


# -- kernel params: one Bound per field, used by the validate function and by --param ----------------------------

CRASH = sorted(crash.CRASH_BOUNDS)
LEMONS = sorted(lemons.LEMONS_BOUNDS)
GRID = sorted(curtailment.GRID_BOUNDS)
POLICY = sorted(policies.POLICY_BOUNDS)
CLASSES = sorted(curtailment.CLASS_BOUNDS)
BAD = ("nan", "out of range")


def _bad(bound, which: str) -> float:
    return math.nan if which == "nan" else out_of_range(bound)


def test_every_scalar_params_field_is_declared():
    array_fields = {"price_multipliers", "supply_fractions", "tier_quality", "price_low", "price_high",
                    "class_load_mw", "class_voll", "relay_hz", "relay_shed", "max_steps"}  # fmt: skip
    for params, bounds in (
        (crash.default_crash_params(), crash.CRASH_BOUNDS),
        (lemons.default_lemons_params(), lemons.LEMONS_BOUNDS),
        (curtailment.default_grid_params(), curtailment.GRID_BOUNDS),
        (policies.PolicyParams(), policies.POLICY_BOUNDS),
    ):
        fields = {name for name in type(params).__dataclass_fields__} - array_fields
        assert fields == set(bounds)
        for name, bound in bounds.items():
            assert bound.name == name and bound.high is not None
            bound.check(np.asarray(getattr(params, name)).item())  # every default is valid
    assert set(curtailment.CLASS_BOUNDS) == {f"{kind}_{c}" for kind in ("load", "voll") for c in curtailment.CLASSES}


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("name", CRASH)
def test_crash_validate_refuses(name, which):
    params = crash.default_crash_params().replace(**{name: _bad(crash.CRASH_BOUNDS[name], which)})
    with pytest.raises(UsageError, match=f"^{name} must be"):
        crash.validate_crash_params(params, 5)


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("name", LEMONS)
def test_lemons_validate_refuses(name, which):
    params = lemons.default_lemons_params().replace(**{name: _bad(lemons.LEMONS_BOUNDS[name], which)})
    with pytest.raises(UsageError, match=f"^{name} must be"):
        lemons.validate_lemons_params(params, 12)


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("name", GRID)
def test_grid_validate_refuses(name, which):
    params = curtailment.default_grid_params(**{name: _bad(curtailment.GRID_BOUNDS[name], which)})
    with pytest.raises(UsageError, match=f"^{name} must be"):
        curtailment.validate_grid_params(params)


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("name", CLASSES)
def test_grid_validate_refuses_a_class_value(name, which):
    kind, cls = name.split("_", 1)
    field = "class_load_mw" if kind == "load" else "class_voll"
    params = curtailment.default_grid_params()
    values = np.asarray(getattr(params, field), np.float32).copy()
    values[curtailment.CLASSES.index(cls)] = _bad(curtailment.CLASS_BOUNDS[name], which)
    with pytest.raises(UsageError, match=rf"^{field}\[\d\] \({name}\) must be"):
        curtailment.validate_grid_params(params.replace(**{field: values}))


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize("name", POLICY)
def test_policy_validate_refuses(name, which):
    with pytest.raises(UsageError, match=f"^{name} must be"):
        policies.validate_policy_params(policies.PolicyParams(**{name: _bad(policies.POLICY_BOUNDS[name], which)}))


def test_kernel_relations_are_checked_too():
    with pytest.raises(UsageError, match=r"dlc must be an integer in \[1, 5\]"):
        crash.validate_crash_params(crash.default_crash_params(dlc=6), 5)
    with pytest.raises(UsageError, match=r"num_sybil must be an integer in \[0, 4\]"):
        lemons.validate_lemons_params(lemons.default_lemons_params(num_sybil=5, dlc=1), 4)
    with pytest.raises(UsageError, match="shortfall_min <= shortfall_max"):
        curtailment.validate_grid_params(curtailment.default_grid_params(shortfall_min=0.2, shortfall_max=0.1))
    with pytest.raises(UsageError, match="emergency_hz"):
        curtailment.validate_grid_params(curtailment.default_grid_params(emergency_hz=61.0))


CLI_PARAMS = (
    [("market-crash", name, crash.CRASH_BOUNDS[name]) for name in CRASH]
    + [("market-lemons", name, lemons.LEMONS_BOUNDS[name]) for name in LEMONS if name not in ("num_sybil", "dlc")]
    + [("grid-curtailment", name, curtailment.GRID_BOUNDS[name]) for name in GRID]
    + [("grid-curtailment", name, policies.POLICY_BOUNDS[name]) for name in POLICY]
    + [("grid-curtailment", name, curtailment.CLASS_BOUNDS[name]) for name in CLASSES]
    + [("grid-curtailment", "shortfall", curtailment.SHORTFALL)]
)


@pytest.mark.parametrize("which", BAD)
@pytest.mark.parametrize(("kernel", "name", "bound"), CLI_PARAMS, ids=[f"{k}-{n}" for k, n, _ in CLI_PARAMS])
def test_every_param_is_refused_via_the_command_line(kernel, name, bound, which, cwd):
    value = _bad(bound, which)
    refused(["simulate", kernel, "--param", f"{name}={value!r}"], f"--param {name} must be", cwd)


# -- sweep synergy -------------------------------------------------------------------------------------------------

SMALL = ["--fan-in", "3", "--rho", "0", "--gamma", "0.7,1", "--depth", "0:2:3", "--trials", "64", "--budget", "1000"]


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--kappa", "nan"], "--kappa must be a finite number"),
        (["--kappa", "-1"], "--kappa must be a finite number"),
        (["--kappa", "inf"], "--kappa must be a finite number"),
        (["--budget-message-length", "-1"], "--budget-message-length must be a finite number"),
        (["--budget-message-length", "nan"], "--budget-message-length must be a finite number"),
        (["--m0", "nan"], "--m0 must be a finite number"),
        (["--m0", "0"], "--m0 must be a finite number"),
        (["--depth", "1000000"], "--depth must be an integer in [0, 1000]"),
        (["--depth", "-1"], "--depth must be an integer in [0, 1000]"),
        (["--rho", "0:0.8:0"], "--rho '0:0.8:0': a range's count must be >= 1, got 0"),
        (["--rho", "0:0.8:1000000000"], "a range's count must be <= 100,000"),
        (["--rho", "0:0.8:x"], "a range's count must be an integer"),
        (["--rho", "nan"], "is not a finite number"),
        (["--rho", "0:inf:3"], "is not a finite number"),
        (["--rho", "1"], "--rho must be a finite number in [0, 1)"),
        (["--gamma", "1.5"], "--gamma must be a finite number in (0, 1]"),
        (["--mu0", "2"], "--mu0 must be a finite number in [-1, 1]"),
        (["--beta", "0"], "--beta must be a finite number in (0, 10]"),
        (["--budget", "0"], "--budget must be a finite number"),
        (["--budget", "1e300"], "--budget must be a finite number"),
        (["--message-length", "-1"], "--message-length must be a finite number"),
        (["--fan-in", "1001"], "--fan-in must be an integer in [3, 99]"),
        (["--fan-in", "4"], "odd integer >= 3, got 4"),
        (["--trials", "0"], "--trials must be an integer"),
        (["--trials", "1000000000", "--depth", "1000"], "trial-levels, more than the 1e+11"),
    ],
)
def test_sweep_refuses_bad_input(flags, fragment, cwd):
    refused(["sweep", "synergy", *SMALL, *flags, "--quiet"], fragment, cwd)


def test_sweep_config_refuses_python_callers_too():
    with pytest.raises(UsageError, match="--kappa must be"):
        SweepConfig(kappa=math.nan).validate()
    with pytest.raises(UsageError, match="--rho is empty"):
        SweepConfig(rhos=()).validate()
    with pytest.raises(UsageError, match="--trials must be an integer"):
        SweepConfig(trials=True).validate()


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "run"
    result = runner.invoke(app, ["sweep", "synergy", *SMALL, "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other table"])
def test_a_damaged_unit_file_on_resume_is_named(damage, finished_sweep, cwd):
    run = cwd / "run"
    shutil.copytree(finished_sweep, run)
    unit = run / "cells" / "b3-u0000.parquet"
    if damage == "truncated":
        unit.write_bytes(unit.read_bytes()[:200])
    elif damage == "garbage":
        unit.write_bytes(b"PAR1" + b"\x07" * 64 + b"PAR1")
    else:
        pl.DataFrame({"cell": [0]}).write_parquet(unit)
    line = refused(["sweep", "synergy", *SMALL, "--out", "run", "--resume", "--quiet"], "--resume: unit file", cwd)
    assert "b3-u0000.parquet" in line and "delete it" in line


# -- calibrate -------------------------------------------------------------------------------------------------------

GOOD_SYNERGY = {
    "item": [1, 1, 2, 2],
    "agent": [1, 2, 1, 2],
    "compute": [10.0, 10.0, 20.0, 20.0],
    "correct": [1, 0, 1, 1],
}
GOOD_CONFIDENCE = {"confidence": [0.1, 0.9, 0.5, 0.4, 0.7, 0.2], "outcome": [0, 1, 0, 1, 1, 0]}


def _write(path, content) -> str:
    """Make the DATA file `path` from `content`: bytes, a dict of columns (written as the suffix says), or
    "directory"."""
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif path.suffix == ".csv":
        pl.DataFrame(content).write_csv(path)
    else:
        pl.DataFrame(content).write_parquet(path)
    return path.name


def _truncated_parquet(columns) -> bytes:
    import io

    buffer = io.BytesIO()
    pl.DataFrame(columns).write_parquet(buffer)
    return buffer.getvalue()[:-20]


DATA_CASES = [
    ("data.parquet", None, "no such file"),
    ("data.parquet", "directory", "is a directory"),
    ("data.parquet", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "is not a Parquet file"),
    ("data.csv", b"item,agent\x00\x01\x02\xff", "is binary (NUL bytes), not CSV text"),
    ("data.csv", b"", "is empty (0 bytes)"),
    ("data.parquet", b"", "is empty (0 bytes)"),
    ("data.txt", b"item,agent\n", "expected a .parquet or .csv file"),
    ("data.csv", b'a,b\n1,"2\n', "cannot read it as CSV"),
]


@pytest.mark.parametrize(("name", "content", "fragment"), DATA_CASES)
@pytest.mark.parametrize("command", ["synergy", "confidence"])
def test_calibrate_refuses_unreadable_data(command, name, content, fragment, cwd):
    if content is not None:
        _write(cwd / name, content)
    line = refused(["calibrate", command, name], fragment, cwd)
    assert name in line


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.parquet", _truncated_parquet(GOOD_SYNERGY), "truncated Parquet file"),
        ("data.csv", {"item": [1], "agent": [1], "correct": [1]}, "missing column 'compute'"),
        ("data.csv", {**GOOD_SYNERGY, "compute": ["a", "b", "c", "d"]}, "'compute' must be positive numbers"),
        ("data.parquet", {**GOOD_SYNERGY, "compute": [10.0, math.nan, 20.0, 20.0]}, "finite numbers > 0 (tokens)"),
        ("data.parquet", {**GOOD_SYNERGY, "compute": [10.0, math.inf, 20.0, 20.0]}, "finite numbers > 0 (tokens)"),
        ("data.parquet", {**GOOD_SYNERGY, "compute": [10.0, -1.0, 20.0, 20.0]}, "finite numbers > 0 (tokens)"),
        ("data.parquet", {**GOOD_SYNERGY, "correct": [1.0, math.nan, 1.0, 0.0]}, "'correct' must be 0/1"),
        ("data.parquet", {**GOOD_SYNERGY, "correct": ["yes", "no", "yes", "no"]}, "'correct' must be 0/1"),
        ("data.parquet", {**GOOD_SYNERGY, "item": [1, None, 2, 2]}, "'item' has 1 missing values"),
        ("data.parquet", {k: v[:0] for k, v in GOOD_SYNERGY.items()}, "no rows"),
        ("data.csv", {**GOOD_SYNERGY, "message_length": [5.0, 5.0, 5.0, 5.0]}, "needs column 'relayed_correct'"),
        (
            "data.parquet",
            {**GOOD_SYNERGY, "message_length": [5.0, math.nan, 5.0, 5.0], "relayed_correct": [1, 1, 1, 1]},
            "'message_length' must be finite numbers > 0",
        ),
    ],
)
def test_calibrate_synergy_refuses_bad_tables(name, content, fragment, cwd):
    line = refused(["calibrate", "synergy", _write(cwd / name, content)], fragment, cwd)
    assert name in line


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.parquet", _truncated_parquet(GOOD_CONFIDENCE), "truncated Parquet file"),
        ("data.csv", {"confidence": GOOD_CONFIDENCE["confidence"]}, "missing column 'outcome'"),
        ("data.csv", {"outcome": GOOD_CONFIDENCE["outcome"]}, "missing column 'confidence'"),
        ("data.parquet", {**GOOD_CONFIDENCE, "confidence": [0.1, math.nan, 0.5, 0.4, 0.7, 0.2]}, "non-finite"),
        ("data.parquet", {**GOOD_CONFIDENCE, "outcome": [0.0, 1.0, math.nan, 1.0, 1.0, 0.0]}, "non-finite"),
        ("data.parquet", {**GOOD_CONFIDENCE, "confidence": ["a", "b", "c", "d", "e", "f"]}, "must be numeric"),
        ("data.parquet", {k: v[:0] for k, v in GOOD_CONFIDENCE.items()}, "0 rows"),
    ],
)
def test_calibrate_confidence_refuses_bad_tables(name, content, fragment, cwd):
    line = refused(["calibrate", "confidence", _write(cwd / name, content)], fragment, cwd)
    assert name in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        *[
            (["synergy", "example:homogeneous", flag, value], f"{flag} must be a finite number")
            for flag in ("--budget", "--context-window", "--message-length", "--m0")
            for value in ("nan", "inf", "-1", "0")
        ],
        (["synergy", "example:homogeneous", "--bootstrap", "5"], "--bootstrap must be an integer in [10, 100000]"),
        (["synergy", "example:homogeneous", "--bootstrap", "10000000"], "--bootstrap must be an integer"),
        (["confidence", "example:confidence", "--bins", "0"], "--bins must be an integer in [1, 10000]"),
        (["confidence", "example:confidence", "--bins", "1000000"], "--bins must be an integer in [1, 10000]"),
        *[
            (["confidence", "example:confidence", "--test-fraction", value], "--test-fraction must be a finite number")
            for value in ("nan", "inf", "-0.5", "0", "1")
        ],
    ],
)
def test_calibrate_refuses_bad_numbers(args, fragment, cwd):
    refused(["calibrate", *args], fragment, cwd)


# -- bench kernels ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('ctx = "x"\n', "unknown key 'ctx'"),
        ('out = "elsewhere"\n', "unknown key 'out'"),
        ("config = 'other.toml'\n", "unknown key 'config'"),
        ("resume = true\n", "unknown key 'resume'"),
        ("force = true\n", "unknown key 'force'"),
        ("json = true\n", "unknown key 'json'"),
        ("quiet = true\n", "unknown key 'quiet'"),
        ("steps = true\n", "steps must be int, got bool"),
        ("steps = nan\n", "steps must be int, got float nan"),
        ("steps = 0\n", "--steps must be an integer in [1,"),
        ("repeats = -3\n", "--repeats must be an integer in [1, 10000]"),
        ("steps = [1\n", "is not valid TOML"),
        (b"\xff\xfe\x00\x01binary", "is not a text file (not UTF-8)"),
        ("directory", "is a directory, not a TOML file"),
        (None, "no such file"),
    ],
)
def test_bench_config_file_is_checked(content, fragment, cwd):
    path = cwd / "bench.toml"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    line = refused(["bench", "kernels", "--config", "bench.toml"], fragment, cwd)
    assert "bench.toml" in line or "--steps" in line or "--repeats" in line


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--steps", "0"], "--steps must be an integer in [1,"),
        (["--steps", str(10**12)], "--steps must be an integer in [1,"),
        (["--repeats", "0"], "--repeats must be an integer in [1, 10000]"),
        (["--batch-sizes", str(10**12)], "--batch-sizes must be an integer in [1,"),
        (["--batch-sizes", "100000000", "--steps", "1000000000"], "needs about"),
    ],
)
def test_bench_refuses_bad_numbers(args, fragment, cwd):
    refused(["bench", "kernels", "--envs", "breakout", *args], fragment, cwd)
