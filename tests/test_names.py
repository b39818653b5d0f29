"""One kernel vocabulary: kebab-case ids with aliases, and the ``--env-option`` grammar."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from agentlab.errors import UsageError
from agentlab.kernels import make, option_defaults, registered_kernels
from agentlab.kernels.names import ALIASES, KERNEL_IDS, canonical_id, options_record, parse_env_options, parse_value


def test_ids_are_the_registry_and_kebab_case():
    assert tuple(sorted(KERNEL_IDS)) == registered_kernels()
    assert all(name == name.lower() and "_" not in name for name in KERNEL_IDS)
    assert all(canonical_id(alias) in KERNEL_IDS and alias not in KERNEL_IDS for alias in ALIASES)


def test_an_alias_builds_the_same_kernel():
    env_a, params_a = make("space_invaders", auto_reset=False)
    env_b, params_b = make("space-invaders", auto_reset=False)
    assert env_a.name == env_b.name == "space-invaders" and params_a == params_b


def test_values_are_typed():
    assert parse_value("true") is True and parse_value("False") is False and parse_value("none") is None
    assert parse_value("5") == 5 and isinstance(parse_value("5"), int)
    assert parse_value("-0.5") == -0.5 and parse_value("1e-3") == 1e-3 and isinstance(parse_value("2."), float)
    assert parse_value("medium") == "medium" and parse_value("inf") == "inf" and parse_value("nan") == "nan"


@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), st.integers(-(10**6), 10**6), max_size=5))
def test_options_round_trip_through_text(options):
    """Written as ``k=v`` items, split over one or two flags, the options come back unchanged."""
    items = [f"{k}={v}" for k, v in options.items()]
    half = len(items) // 2
    texts = [",".join(items[:half]), ",".join(items[half:])]
    assert parse_env_options(texts) == options
    assert dict(options_record(options)) == options and options_record(options) == tuple(sorted(options.items()))


@pytest.mark.parametrize(
    "texts, message",
    [
        (["size"], "write key=value"),
        (["size="], "write key=value"),
        (["Size=3"], "option name"),
        (["size=3,size=4"], "given twice"),
        (["max_steps=3"], "sets it from"),
    ],
)
def test_bad_option_text_is_one_line(texts, message):
    with pytest.raises(UsageError, match=message):
        parse_env_options(texts, {"max_steps": "--max-steps"})


def test_make_checks_option_names_types_and_bounds():
    with pytest.raises(UsageError, match="unknown option 'size'"):
        make("coordination", size=3)
    with pytest.raises(UsageError, match="must be int"):
        make("coordination", num_agents=2.5)
    with pytest.raises(UsageError, match="must be int"):
        make("coordination", num_agents=True)
    with pytest.raises(UsageError, match=r"num_agents of coordination must be"):
        make("coordination", num_agents=10**9)
    env, _ = make("coordination", num_agents=2, num_choices=3)
    assert env.num_agents == 2 and env.num_choices == 3
    assert option_defaults("coordination") == {"num_agents": 3, "num_choices": 4, "max_steps": 32}


def test_train_records_env_options_and_eval_rebuilds_them(tmp_path):
    from agentlab.cli.app import app
    from agentlab.rl.evaluate import make_eval_env, run_config

    out = tmp_path / "run"
    args = ["train", "ppo", "--env", "coordination", "--env-option", "num_agents=2", "--env-option", "num_choices=3"]
    result = CliRunner().invoke(app, [*args, "--steps", "2048", "--out", str(out), "--quiet", "--json"])
    assert result.exit_code == 0, result.output
    record = orjson.loads((out / "config.json").read_bytes())
    assert record["config"]["env_options"] == {"num_agents": 2, "num_choices": 3}
    config = run_config(out)
    env, _ = make_eval_env(config, "plain")
    assert (env.num_agents, env.num_choices) == (2, 3)


def test_cli_refuses_bad_options_before_writing(tmp_path):
    out = tmp_path / "run"
    for option in ("bogus=1", "max_steps=3", "num_agents=1e9", "num_agents"):
        result = subprocess.run(
            [sys.executable, "-m", "agentlab.cli.app", "train", "ppo", "--env", "coordination"]
            + ["--env-option", option, "--steps", "1000", "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr
        assert not out.exists()


def test_cli_import_does_not_load_jax():
    code = "import sys, agentlab.cli.app, agentlab.kernels.names; print('jax' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
