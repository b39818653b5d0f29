#!/usr/bin/env bash
# Device figures for bench/README.md ("More than one device"): kernel throughput, PPO training and two
# simulations on 1 device and on every device JAX sees (--devices N), one after the other, each command's
# summary as JSON under $OUT and its run directory under $OUT/runs/.
#
#   pip install -e '.[bench]' 'jax[cuda12]==0.10.2'       # or jax[tpu]; the same jax version as the CPU figures
#   OUT=/tmp/device-check bench/device_check.sh          # a GPU or TPU machine: about 10-20 minutes
#   OUT=/tmp/dc QUICK=1 XLA_FLAGS=--xla_force_host_platform_device_count=4 bench/device_check.sh   # a CPU smoke run
#
# Environment: OUT (required), DEVICES (default: every device JAX sees), QUICK=1 (tiny sizes, to check the script),
# AGENTLAB (default: the `agentlab` console script, else `python -c 'from agentlab.cli.app import main; main()'`),
# PYTHON (default: python).
set -euo pipefail

OUT=${OUT:?set OUT to a folder for the results}
PYTHON=${PYTHON:-python}
if [[ -z "${AGENTLAB:-}" ]]; then
    if command -v agentlab >/dev/null; then AGENTLAB=agentlab; else AGENTLAB="$PYTHON -c 'from agentlab.cli.app import main; main()'"; fi
fi
mkdir -p "$OUT/runs"

"$PYTHON" - "$OUT/devices.json" <<'EOF'
import json, platform, subprocess, sys
import jax
devices = jax.devices()
try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
except OSError:
    commit = None
record = {"backend": jax.default_backend(), "count": len(devices), "kinds": sorted({d.device_kind for d in devices}),
          "jax": jax.__version__, "python": platform.python_version(), "commit": commit}
json.dump(record, open(sys.argv[1], "w"), indent=1)
print(record, file=sys.stderr)
EOF
N=${DEVICES:-$("$PYTHON" -c 'import jax; print(len(jax.devices()))')}

if [[ "${QUICK:-0}" == 1 ]]; then
    BATCHES=64,256 STEPS=16 REPEATS=2 PPO_STEPS=4096 PPO_ENVS=64 MARKETS=256 DAYS=10
else
    BATCHES=1024,16384,262144,1048576 STEPS=128 REPEATS=5 PPO_STEPS=20000000 PPO_ENVS=4096 MARKETS=65536 DAYS=100
fi
cat >"$OUT/ppo.toml" <<EOF
num_envs = $PPO_ENVS
num_steps = 128
num_minibatches = 8
updates_per_chunk = 4
EOF

run() {  # run NAME COMMAND...: the command's --json summary into $OUT/NAME.json, its wall time on stderr
    local name=$1
    shift
    local start=$SECONDS
    eval "$AGENTLAB $* --out '$OUT/runs/$name' --force --json --quiet" >"$OUT/$name.json"
    echo "$name: $((SECONDS - start)) s" >&2
}

for D in $(printf '%s\n' 1 "$N" | sort -un); do
    run "kernels-d$D" bench kernels --envs breakout,asterix,seaquest --batch-sizes "$BATCHES" --steps "$STEPS" \
        --repeats "$REPEATS" --devices "$D"
    run "ppo-breakout-d$D" train ppo --env breakout --steps "$PPO_STEPS" --config "$OUT/ppo.toml" --devices "$D"
    run "simulate-crash-d$D" simulate market-crash --markets "$MARKETS" --steps "$DAYS" --devices "$D"
    run "simulate-grid-d$D" simulate grid-curtailment --events "$MARKETS" --devices "$D"
done
echo "wrote $OUT" >&2
