#!/usr/bin/env bash
# Before/after capture of the deterministic outputs of the README's and bench/docs' commands (issue 13).
#
#   bench/capture.sh BEFORE_AGENTLAB AFTER_AGENTLAB OUT [--compare-only]
#
# Runs every command below with both agentlab executables (each side in its own process, the two sides at the
# same time) into OUT/before/NAME and OUT/after/NAME (stdout, stderr, rc, seconds, and the run directory `run`),
# then compares them (the Python heredoc at the end): JSON summaries key by key, Parquet tables column by
# column, text tables cell by cell, image frames pixel by pixel, and prints one line per command:
# `same`, `intended` (item 8: --steps rounded up to whole chunks; the id renames) or `differs` (which keys,
# by how much; CAPTURE_VERBOSE=1 lists every difference). --compare-only skips the runs and compares what OUT
# already holds.
#
# Where BEFORE (agentlab 0.1.0) had no `agentlab` sub-command for a job (the bench and study side doors,
# `python -m agentlab.bench.markets` etc.), the BEFORE side runs that module with the python beside
# BEFORE_AGENTLAB. CAPTURE_ONLY=name,name runs only those commands. Sizes are the docs' commands scaled down
# (the same flags on both sides) so that both sides together take minutes on a loaded 2-core machine.
# Results, commits and the causes of the differences: docs/capture.md.
set -u
if [ $# -lt 3 ]; then
    echo "usage: bench/capture.sh BEFORE_AGENTLAB AFTER_AGENTLAB OUT [--compare-only]" >&2
    exit 2
fi
BEFORE=$(realpath "$1")
AFTER=$(realpath "$2")
OUT=$(realpath -m "$3")
MODE=${4:-run}
for exe in "$BEFORE" "$AFTER"; do
    [ -x "$exe" ] || { echo "error: $exe is not an executable agentlab" >&2; exit 2; }
done
PER_COMMAND_TIMEOUT=${CAPTURE_TIMEOUT:-1200}
RESULTS=$(dirname "$(realpath "$0")")/results
export JAX_PLATFORMS=cpu AGENTLAB_DEBUG=1 PYTHONHASHSEED=0

# name|agentlab arguments ({run}: the run directory, {dir}: the command's folder, {side}: the side's folder)
COMMANDS=(
    "envs|envs --json"
    "render-torch|render breakout --stochasticity mask:kind=torch,radius=2,centre=agent,p=1 --steps 40 --out {dir}/torch.gif --json"
    "render-strip|render space_invaders --stochasticity event:mode=respawn,p=0.2 --steps 30 --out {dir}/strip.png --json"
    "render-actions|render freeway --actions 1,1,1,0 --steps 40 --out {dir}/up.gif --json"
    "ppo-breakout|train ppo --env breakout --stochasticity action:p=0.3 --steps 4096 --seeds 2 --seed 0 --config {side}/small.toml --out {run} --json"
    "eval-breakout|eval {side}/ppo-breakout/run --stochasticity-grid {side}/profiles.txt --episodes 4 --out {run} --json"
    "ppo-catch|train ppo --env catch --steps 3000 --seed 0 --config {side}/small.toml --out {run} --json"
    "ppo-catch-2048|train ppo --env catch --steps 2048 --seed 0 --config {side}/small.toml --out {run} --json"
    "qlearn|train qlearn --env calvano --sessions 8 --threads 2 --seed 0 --out {run} --json"
    "qlearn-jax|train qlearn --env calvano --backend jax --sessions 2 --beta 2e-5 --max-periods 300000 --seed 0 --out {run} --json"
    "crash|simulate market-crash --policies undercut:3,stabilise:2 --dlc 3 --markets 256 --out {run} --json"
    "lemons|simulate market-lemons --policies honest:9,sybil:3 --buyers naive:6,guardian:6 --dlc 3 --markets 256 --out {run} --json"
    "grid|simulate grid-curtailment --policies solver:2,bounded:3 --events 256 --param shortfall=0.06 --out {run} --json"
    "sweep-synergy|sweep synergy --fan-in 3,5 --rho 0:0.8:5 --gamma 0.6:1:5 --depth 0:8:9 --trials 4096 --out {run} --json"
    "calibrate-homogeneous|calibrate synergy example:homogeneous --out {run} -B 1e6 -m 200 --json"
    "calibrate-agent-level|calibrate synergy example:agent_level --out {run} --json"
    "calibrate-confidence|calibrate confidence example:confidence --out {run} --json"
    "calibrate-confidence-features|calibrate confidence example:confidence --features self_consistency,tool_errors,log_steps --out {run} --json"
    "calibrate-examples|calibrate examples --out {run} --json"
    "bench-report|bench report {side}/report-input --json"
    "bench-markets|bench markets --markets 32 --throughput-markets 32 --days 365 --out {run} --json"
    "bench-lemons|bench lemons --markets 32 --out {run} --json"
    "bench-grid-study|bench grid-study --events 64 --out {run} --json"
)

# The 0.1.0 side doors for the sub-commands BEFORE lacks (same sizes; each writes its own format).
side_door() {  # name dir side -> the python arguments (PY: that python again)
    case "$1" in
        calibrate-examples) echo "-m agentlab.synergy.examples $2/run && PY -m agentlab.synergy.confidence $2/run/confidence_example.parquet" ;;
        bench-report) echo "-m agentlab.bench.report $3/report-input" ;;
        bench-markets) echo "-m agentlab.bench.markets --markets 32 --throughput-markets 32 --days 365" ;;
        bench-lemons) echo "-m agentlab.cli.simulate_lemons --markets 32" ;;
        bench-grid-study) echo "-m agentlab.bench.grid study --events 64 --out $2/run" ;;
    esac
}

run_side() {  # side exe
    local side=$1 exe=$2 py
    py="$(dirname "$exe")/python"
    local base="$OUT/$side"
    mkdir -p "$base/report-input"
    printf 'num_envs = 16\nnum_steps = 32\nupdates_per_chunk = 2\nnum_minibatches = 4\n' >"$base/small.toml"
    # 0.1.0's default eval grid (now `--grid extended`; the default became STORI's paper profiles), cut to seven
    printf '%s\n' plain action:p=0.3 sticky:p=0.25 event:mode=regenerate,p=0.25 \
        'drift:mode=sudden,at=100,to=(action:p=0.5)' mask:kind=crop,region=left,p=0.75 \
        mask:kind=torch,radius=3,centre=agent,p=1 >"$base/profiles.txt"
    # a fixed bench-kernels run for `bench report`: bench/results/kernels-cpu-2core.* (unchanged since 0.1.0, the
    # tables bench/README.md shows) as a run directory
    cp "$RESULTS/kernels-cpu-2core.parquet" "$base/report-input/metrics.parquet"
    cp "$RESULTS/kernels-cpu-2core.summary.json" "$base/report-input/summary.json"
    echo '{"command": "bench kernels", "config": {}, "versions": {"agentlab": "0.1.0"}}' >"$base/report-input/config.json"
    for entry in "${COMMANDS[@]}"; do
        local name=${entry%%|*} args=${entry#*|}
        if [ -n "${CAPTURE_ONLY:-}" ] && [[ ",$CAPTURE_ONLY," != *",$name,"* ]]; then continue; fi
        local dir="$base/$name"
        rm -rf "$dir" && mkdir -p "$dir"
        args=${args//\{run\}/$dir/run}
        args=${args//\{dir\}/$dir}
        args=${args//\{side\}/$base}
        local words=($args) line
        if [ "${words[0]}" = bench ] || [ "${words[1]:-}" = examples ]; then
            if ! "$exe" "${words[0]}" "${words[1]}" --help >/dev/null 2>&1; then
                line="$py $(side_door "$name" "$dir" "$base")"
                line=${line//PY/$py}
            fi
        fi
        line=${line:-"$exe $args"}
        echo "$line" >"$dir/command"
        local tick=$(date +%s.%N)
        (cd "$dir" && timeout "$PER_COMMAND_TIMEOUT" bash -c "$line" >"$dir/stdout" 2>"$dir/stderr")
        echo $? >"$dir/rc"
        echo "$(date +%s.%N) - $tick" | bc >"$dir/seconds"
        echo "$side $name rc=$(cat "$dir/rc") $(cat "$dir/seconds") s" >&2
        unset line
    done
}

if [ "$MODE" != --compare-only ]; then
    mkdir -p "$OUT"
    run_side before "$BEFORE" &
    run_side after "$AFTER" &
    wait
fi

# -- compare ------------------------------------------------------------------------------------------------------
CAPTURE_OUT="$OUT" CAPTURE_SCRIPT="$0" "$(dirname "$AFTER")/python" - <<'PY'
import math
import os
import re
from pathlib import Path

import numpy as np
import orjson
import polars as pl
from PIL import Image, ImageSequence

OUT = Path(os.environ["CAPTURE_OUT"])
# Keys and columns that measure the machine, not the computation (timing, throughput), or name where and with
# what a run was made (versions, paths, commits): dropped before comparing. Everything else is compared exactly
# (floats bit for bit, NaN equal to NaN) unless TOLERANCE names the command.
DROP_KEYS = {
    "steps_per_second", "aggregate_steps_per_second", "compile_seconds", "train_seconds", "wall_seconds",
    "seconds", "compute_seconds", "unit_seconds", "periods_per_second", "sessions_per_second",
    "event_rounds_per_second", "market_steps_per_second", "agent_steps_per_second", "firm_steps_per_second",
    "participant_rounds_per_second", "vote_evaluations_per_second", "leaf_evaluations_per_second",
    "out", "run", "path", "file", "versions", "version", "agentlab", "commit", "machine", "platform", "python",
    "jax", "jaxlib", "numpy", "numba", "created", "hostname", "cpu",
}  # fmt: skip
DROP_COLUMNS = {
    "steps_per_second", "seconds", "compile_seconds", "wall_seconds", "unit_seconds", "compute_seconds",
    "run",  # eval's robustness.parquet: the run directory's path
}  # fmt: skip
# Printed to 3 decimals by 0.1.0's side doors: a value of AFTER's table matches when it rounds to the printed one.
PRINTED = 0.0005 + 1e-12
RENAMES = {"space_invaders": "space-invaders", "space_invaders_": "space-invaders_"}  # 0.1.0 id -> kebab-case id
# command -> the cause found for its difference (docs/capture.md says how each was found). Printed beside the
# difference; the status stays `differs`.
WELFARE = "63e5ae2 redefined the market scores (crash welfare, lemons welfare and stability); bisected"
KNOWN = {
    "envs": "71df943 added the generic mask:kind=dropout to the grammar's mask line (a new kind, documented)",
    "eval-breakout": "4ca930a: episode keys fold_in(PRNGKey(seed), s) instead of PRNGKey(seed * 7919 + s); "
    "with 0.1.0's keys AFTER's evaluate() gives every mean_return exactly",
    "crash": WELFARE,
    "lemons": WELFARE,
    "bench-markets": WELFARE.replace("; bisected", " (only eas and welfare differ)"),
    "bench-lemons": WELFARE.replace("; bisected", " (only eas, stability and welfare differ)"),
    "grid": "193b2a1 replaced the grid physics (system-frequency-response model); bisected",
    "bench-grid-study": "193b2a1: new physics and the study redefined over shortfall x price cap",
    "bench-report": "a 0.1.0 run records space_invaders; bench/kernels.py::profile_specs looks it up in GAMES "
    "(kebab-case keys since ca1718e) without names.canonical_id; with it the tables equal 0.1.0's line for line",
}


def renamed(value):
    if isinstance(value, str):
        for old, new in RENAMES.items():
            value = value.replace(old, new)
    return value


def flatten(obj, prefix=""):
    """{'a.b[0]': leaf} of a JSON value, keys in DROP_KEYS left out."""
    if isinstance(obj, dict):
        items = {}
        for key, value in obj.items():
            if key in DROP_KEYS:
                continue
            items.update(flatten(value, f"{prefix}.{key}" if prefix else key))
        return items
    if isinstance(obj, list):
        items = {}
        named = all(isinstance(v, dict) and isinstance(v.get("name"), str) for v in obj) and obj
        for i, value in enumerate(obj):  # a list of named records (envs' kernels) is keyed by name, not position
            items.update(flatten(value, f"{prefix}[{value['name'] if named else i}]"))
        return items
    return {prefix: obj}


def equal(a, b, tol=0.0):
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return a == b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tol


def gap(a, b):
    try:
        return f"{a!r} -> {b!r} (|d| {abs(float(a) - float(b)):.3g})"
    except (TypeError, ValueError):
        a, b = str(a), str(b)
        start = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        start = max(0, start - 10)  # from just before the first differing character
        return f"...{a[start : start + 60]!r} -> ...{b[start : start + 60]!r}"


class Result:
    def __init__(self, name):
        self.name, self.diffs, self.renamed, self.added, self.compared, self.notes = name, [], [], [], 0, []

    def value(self, where, a, b, tol=0.0):
        self.compared += 1
        if equal(a, b, tol):
            return
        if equal(renamed(a), b, tol):
            self.renamed.append(where)
        else:
            self.diffs.append(f"{where}: {gap(a, b)}")

    def dicts(self, where, before, after, tol=0.0):
        before, after = flatten(before), flatten(after)
        after_keys = {renamed(k): k for k in after}
        for key, value in before.items():
            target = key if key in after else after_keys.get(renamed(key))
            if target is None:
                self.compared += 1
                self.diffs.append(f"{where}{key}: missing in AFTER")
                continue
            if target != key:
                self.renamed.append(f"{where}{key}")
            self.value(f"{where}{key}", value, after[target], tol)
        known = {renamed(k) for k in before}
        self.added += [f"{where}{k}" for k in after if renamed(k) not in known]

    def frames(self, where, before, after, tol=0.0):
        before = before.drop([c for c in before.columns if c in DROP_COLUMNS])
        after = after.drop([c for c in after.columns if c in DROP_COLUMNS])
        if before.height != after.height:
            self.diffs.append(f"{where}: {before.height} rows -> {after.height}")
            return
        for column in before.columns:
            if column not in after.columns and renamed(column) not in after.columns:
                self.diffs.append(f"{where}{column}: column missing in AFTER")
                continue
            other = after[column if column in after.columns else renamed(column)]
            self.compared += before.height
            a, b = before[column], other
            if a.dtype.is_numeric() and b.dtype.is_numeric():
                x, y = a.to_numpy().astype(float), b.to_numpy().astype(float)
                with np.errstate(invalid="ignore"):
                    bad = ~((x == y) | (np.abs(x - y) <= tol) | (np.isnan(x) & np.isnan(y)))
                    worst = np.abs(x - y)[bad]
                if bad.any():
                    worst = np.nanmax(worst) if np.isfinite(worst).any() else float("nan")
                    self.diffs.append(f"{where}{column}: {int(bad.sum())}/{len(x)} rows, max |d| {worst:.3g}")
            elif a.to_list() != b.to_list():
                if [renamed(v) for v in a.to_list()] == b.to_list():
                    self.renamed.append(f"{where}{column}")
                else:
                    self.diffs.append(f"{where}{column}: values differ")
        self.added += [f"{where}{c}" for c in after.columns if c not in before.columns and c not in
                       {renamed(c) for c in before.columns}]  # fmt: skip


def read_json(path):
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def pixels(path):
    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)]


def generic(result, before, after, tol=0.0):
    """stdout JSON, every JSON and Parquet file of the run directory (config.json aside), checkpoints' arrays,
    and the images the command was asked to write (not the plots)."""
    a, b = read_json(before / "stdout"), read_json(after / "stdout")
    if a is not None or b is not None:
        result.dicts("stdout:", a if a is not None else {}, b if b is not None else {}, tol)
    for side_file in sorted((before / "run").rglob("*")) if (before / "run").is_dir() else []:
        rel = side_file.relative_to(before)
        other = after / rel
        if side_file.suffix not in {".json", ".parquet", ".npz"} or side_file.name == "config.json":
            continue
        if not other.exists():
            result.diffs.append(f"{rel}: missing in AFTER")
        elif side_file.suffix == ".json":
            result.dicts(f"{rel}:", read_json(side_file), read_json(other), tol)
        elif side_file.suffix == ".parquet":
            result.frames(f"{rel}:", pl.read_parquet(side_file), pl.read_parquet(other), tol)
        else:
            x, y = np.load(side_file), np.load(other)
            for key in (k for k in x.files if k not in DROP_KEYS):
                result.compared += 1
                if key not in y.files:
                    result.diffs.append(f"{rel}:{key}: missing in AFTER")
                elif key == "metadata":  # JSON bytes (update, step, timings): compared as JSON
                    result.dicts(f"{rel}:{key}:", orjson.loads(x[key].tobytes()), orjson.loads(y[key].tobytes()))
                elif not np.array_equal(x[key], y[key]):
                    result.diffs.append(f"{rel}:{key}: arrays differ")
    for path in sorted((after / "run").rglob("*")) if (after / "run").is_dir() else []:
        if path.suffix in {".json", ".parquet"} and not (before / path.relative_to(after)).exists():
            result.added.append(str(path.relative_to(after)))
    for image in sorted(before.glob("*.gif")) + sorted(before.glob("*.png")):
        x, y = pixels(image), pixels(after / image.name)
        result.compared += 1
        if len(x) != len(y) or any(f.shape != g.shape or not np.array_equal(f, g) for f, g in zip(x, y)):
            result.diffs.append(f"{image.name}: {len(x)} frames -> {len(y)}, pixels differ")
        else:
            result.notes.append(f"{image.name}: {len(x)} frames equal pixel for pixel")


def text_table(path, header_prefix):
    """Rows of a whitespace or markdown table printed by a 0.1.0 side door."""
    lines = path.read_text().splitlines()
    rows, columns = [], None
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else line.split()
        if columns is None:
            if line.startswith(header_prefix):
                columns = cells
            continue
        if len(cells) != len(columns) or set("".join(cells)) <= set("-:"):
            continue
        rows.append(dict(zip(columns, cells)))
    return rows


def printed(result, where, rows, frame, keys, mapping):
    """A 0.1.0 side door's printed table (3 decimals) against AFTER's Parquet table, rows matched on `keys`."""
    result.compared += 0
    for row in rows:
        match = frame
        for key in keys:
            match = match.filter(pl.col(mapping.get(key, key)).cast(pl.String) == row[key])
        if match.height != 1:
            result.diffs.append(f"{where}{[row[k] for k in keys]}: {match.height} matching rows in AFTER")
            continue
        for column, text in row.items():
            if column in keys or column in DROP_COLUMNS:
                continue
            target = mapping.get(column, column)
            if target not in match.columns:
                result.diffs.append(f"{where}{column}: column missing in AFTER")
                continue
            value = match[target][0]
            try:
                number = float(text.replace(",", ""))
            except ValueError:
                result.value(f"{where}{[row[k] for k in keys]}.{column}", text, str(value))
                continue
            result.value(f"{where}{[row[k] for k in keys]}.{column}", number, float(value), PRINTED)


def bench_markets(result, before, after):
    if not (before / "run").is_dir():
        rows = text_table(before / "stdout", "dlc stabilisers")
        frame = pl.read_parquet(after / "run" / "metrics.parquet")
        result.notes.append(f"0.1.0 side door's table ({len(rows)} rows) against metrics.parquet")
        printed(result, "table:", rows, frame, ["dlc", "stabilisers"], {"collapse_rate": "collapsed"})
    else:
        generic(result, before, after)


def bench_lemons(result, before, after):
    if not (before / "run").is_dir():
        rows = text_table(before / "stdout", "| ")
        frame = pl.read_parquet(after / "run" / "metrics.parquet")
        keys = [k for k in ("buyers", "sybils", "K", "dlc") if rows and k in rows[0]]
        result.notes.append(f"0.1.0 side door's table ({len(rows)} rows) against metrics.parquet")
        printed(result, "table:", rows, frame, keys, {})
    else:
        generic(result, before, after)


def bench_report(result, before, after):
    a = (before / "stdout").read_text()
    b = read_json(after / "stdout")
    if not (before / "run").exists() and b is None:
        result.compared += 1
        result.diffs.append(f"AFTER failed (rc {(after / 'rc').read_text().strip()}): "
                            + (after / "stderr").read_text().strip().splitlines()[-1][:160])  # fmt: skip
        return
    b = b["markdown"] if isinstance(b, dict) else ""
    la, lb = a.strip().splitlines(), b.strip().splitlines()
    result.compared += len(la)
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            result.value(f"line {i + 1}", x, y)
    if len(la) != len(lb):
        result.diffs.append(f"{len(la)} lines -> {len(lb)}")


def calibrate_examples(result, before, after):
    for path in sorted((before / "run").glob("*.parquet")):
        other = after / "run" / path.name
        if not other.exists():
            result.diffs.append(f"{path.name}: missing in AFTER")
        else:
            result.frames(f"{path.name}:", pl.read_parquet(path), pl.read_parquet(other))
    for path in sorted((before / "run").glob("*.json")):
        if (after / "run" / path.name).exists():
            result.dicts(f"{path.name}:", read_json(path), read_json(after / "run" / path.name))


def grid_study(result, before, after):
    """0.1.0's study ran deadline x shortfall at the default price cap; AFTER's (193b2a1) runs shortfall x price
    cap at the default deadline. The cells both ran (deadline 6, price cap 5,000 $/MWh, the mixes in both) are
    compared exactly; the rest is reported as redefined."""
    if not (before / "run" / "study.parquet").exists():
        return generic(result, before, after)
    a = pl.read_parquet(before / "run" / "study.parquet")
    b = pl.read_parquet(after / "run" / "metrics.parquet")
    keys = ["policies", "shortfall"]
    a = a.filter(pl.col("deadline") == 6).drop("deadline")
    b = b.filter(pl.col("price_cap") == 5000.0).drop("price_cap")
    common = a.join(b.select(keys), on=keys, how="semi").sort(keys)
    result.notes.append(f"study redefined (deadline x shortfall -> shortfall x price cap); {common.height} common "
                        "cells (deadline 6, price cap 5,000) compared")  # fmt: skip
    result.frames("common cells:", common, b.join(common.select(keys), on=keys, how="semi").sort(keys))


def ppo_steps(result, before, after):
    """Item 8: 0.1.0 trained --steps rounded down to whole chunks, AFTER rounds up and anneals the learning rate
    over the updates it runs (35f431f), so after the first optimiser step every value may differ. Intended when
    BEFORE ran floor(requested / chunk) chunks and AFTER ceil(requested / chunk), both from the same request;
    the same learner at a whole number of chunks (ppo-breakout, ppo-catch-2048) is compared exactly."""
    generic(result, before, after)
    a, b = (read_json(side / "run" / "summary.json") or {} for side in (before, after))
    config = read_json(after / "run" / "config.json")["config"]
    chunk = config["num_envs"] * config["num_steps"] * config["updates_per_chunk"]
    requested = b.get("steps_requested_per_seed")
    if requested and a.get("steps_per_seed") != b.get("steps_per_seed"):
        floor, ceil = requested // chunk * chunk, -(-requested // chunk) * chunk
        if (a.get("steps_per_seed"), b.get("steps_per_seed")) == (floor, ceil):
            result.intended = (
                f"item 8: --steps {requested} trains {floor} -> {ceil} steps per seed (chunks of {chunk}); the "
                "learning rate anneals over the updates run, so the learning curve differs from the first update"
            )
            result.consequences, result.diffs = result.diffs, []


SPECIAL = {
    "bench-markets": bench_markets,
    "bench-lemons": bench_lemons,
    "bench-report": bench_report,
    "calibrate-examples": calibrate_examples,
    "bench-grid-study": grid_study,
    "ppo-catch": ppo_steps,
    "ppo-catch-2048": ppo_steps,
}

names = sorted(p.name for p in (OUT / "before").iterdir() if (p / "command").exists())
script = Path(os.environ.get("CAPTURE_SCRIPT", "/dev/null")).read_text().splitlines()
order = [line.split("|")[0].strip().strip('"') for line in script if re.match(r'^\s+"[a-z0-9-]+\|', line)]
names = [n for n in order if n in names] + [n for n in names if n not in order]
counts = {}
for name in names:
    before, after = OUT / "before" / name, OUT / "after" / name
    result = Result(name)
    result.intended, result.consequences = "", []
    rcs = [(side / "rc").read_text().strip() if (side / "rc").exists() else "?" for side in (before, after)]
    if rcs[0] != "0":
        line = f"not run (BEFORE rc {rcs[0]})"
    elif rcs[1] != "0" and name != "bench-report":
        tail = (after / "stderr").read_text().strip().splitlines()[-1:] or [""]
        result.compared += 1
        result.diffs.append(f"AFTER failed (rc {rcs[1]}): {tail[0][:160]}")
    else:
        SPECIAL.get(name, generic)(result, before, after)
    if rcs[0] == "0":
        if result.diffs:
            status = "differs"
            line = f"differs: {len(result.diffs)} of {result.compared} values/columns: " + "; ".join(result.diffs[:6])
            if len(result.diffs) > 6 and not os.environ.get("CAPTURE_VERBOSE"):
                line += f"; ... ({len(result.diffs) - 6} more)"
            elif len(result.diffs) > 6:
                line += "; " + "; ".join(result.diffs[6:])
            if name in KNOWN:
                line += f" [cause: {KNOWN[name]}]"
        elif result.intended or result.renamed:
            status = "intended"
            rename = f"id rename only ({len(result.renamed)} values: space_invaders -> space-invaders)"
            line = "intended: " + (result.intended or rename)
            if result.consequences:
                line += f" ({len(result.consequences)} values differ, e.g. " + "; ".join(result.consequences[:2]) + ")"
        else:
            status = "same"
            line = f"same ({result.compared} values/columns/frames)"
        if result.renamed and status != "intended":
            line += f"; {len(result.renamed)} renamed ids"
        if result.added:
            more = ", ..." if len(result.added) > 4 else ""
            line += f"; +{len(result.added)} added in AFTER ({', '.join(result.added[:4])}{more})"
        if result.notes:
            line += "; " + "; ".join(result.notes)
    else:
        status = "not run"
    counts[status] = counts.get(status, 0) + 1
    if status == "differs" and name in KNOWN:
        counts["differs with the cause found"] = counts.get("differs with the cause found", 0) + 1
    print(f"{name:32s} {line}")
print("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
PY
