#!/usr/bin/env bash
# The natural reward study on one GPU: the CPU study's design (experiments/results/natural/design.md: arms,
# seeds, SFT and GRPO steps, held-out sources, evaluation settings, analysis), run by the same resumable
# study runner (experiments/run_ablation.py) into a study of its own, so its results never mix with the
# CPU study's. The command comes from experiments/study/gpu_estimate.py (DESIGN, checked against
# design.md by tests/test_gpu_study.py), which also prints the expected wall time before anything runs.
#
#   bash experiments/gpu_study.sh            # on a GPU node: checks, the expected wall time, the study
#   bash experiments/gpu_study.sh estimate   # the plan's expected wall time only (any machine, no GPU)
#   bash experiments/gpu_study.sh dry_run    # the command and run_ablation's plan (--dry_run); runs nothing
#   bash experiments/gpu_study.sh report     # summary.json and report.md again from the result files
# Further arguments go to run_ablation, e.g. `bash experiments/gpu_study.sh run --max_runs=3`.
#
# The node: the repo installed (pip install -e .) with jax[cuda12], the benchmark's data where toolrl
# finds it (TOOLRL_DATA_DIR). The natural data ($TOOLRL_HOME/study) is built if missing
# (python -m experiments.study_data, about a minute) and must carry the CPU study's stamp (the same
# response cache, so the same traces and held-out turns); the run refuses otherwise.
#
# Settings (environment):
#   STUDY       natural_gpu: results in experiments/results/$STUDY, runs in runs/studies/$STUDY
#   STEPS, LR   GRPO steps per run and learning rate; default the design's (DESIGN). LR=3e-5 runs every arm
#               as <arm>+lr3e-5 (configs/grpo.py VARIANTS). Changing either mid-study mixes runs: new STUDY.
#   EVAL_BATCH, PAD, CACHE_DIR   below;  PY  the interpreter (python)
# Resumable: the same command again skips finished runs (their result files) and continues an unfinished
# one from its last checkpoint; SIGTERM / Ctrl-C reach the running step, which saves first.
#
# What the GPU command sets otherwise than the CPU one. Each changes shapes or speed, not what is computed
# (padding is masked; results differ by float rounding only, as the GPU's do anyway):
# * --config.compile.cache_dir=$CACHE_DIR (runs/studies/$STUDY/jax_cache, the directory the runner also
#   gives JAX): one persistent compilation cache for every process of the study. The GPU pilot spent
#   nearly all its time compiling (experiments/results/gpu_pilot/README.md); an evaluation's programs are
#   the same in every run (weights are arguments), so each compiles once per study.
# * --config.rollout.pad_multiple=$PAD (256; the CPU's 64): the field that bounds padded widths. Prompts
#   of every generation call, in rollouts and in evaluations (toolrl/policy/runtime.py), are left-padded
#   to a multiple of it, and the update's width ladder (toolrl/rl/update.py bucket: 2^k and 1.5 * 2^k)
#   starts at it. Rollout prompts fit max_seq_len - max_new_tokens = 1,792 tokens: 7 widths instead of
#   28, and 6 update widths up to 2,048 instead of 10. Padding 255 tokens at most costs the GPU little.
# * --config.eval.batch_size=$EVAL_BATCH (32; the CPU's 8): requests per generate call. An evaluation
#   call always has this many rows (the last chunk is padded with repeats), so an evaluation compiles one
#   program per width, and fewer, fuller calls. Memory: the CPU's process reached 18.6 GB at 16 rows on
#   the longest validation turns (design.md), at most 1.2 GB a row; 32 rows stay under 38 GB, within the
#   75 % of an 80 GB GPU that XLA preallocates; 64 would not be safe by that bound.
# No config field buckets the rollout's row count (a round's live rows, 1 to prompts x group = 8) or
# the update's loss positions (multiples of 16): those stay bounded by the batch, not by a setting.
# The device tool's one-run pilot version of this script (wheels, carried start) is in git history
# (commit 82d7784).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-run}
[ $# -gt 0 ] && shift
PY=${PY:-python}
command -v "$PY" > /dev/null || PY=python3
STUDY=${STUDY:-natural_gpu}
EST=(--study="$STUDY" --eval_batch="${EVAL_BATCH:-32}" --pad_multiple="${PAD:-256}" --cache_dir="${CACHE_DIR:-}")
[ -n "${STEPS:-}" ] && EST+=(--steps="$STEPS")
[ -n "${LR+x}" ] && EST+=(--lr="$LR")
export PYTHONUNBUFFERED=1
if [ "$MODE" = estimate ]; then
  exec "$PY" -m experiments.study.gpu_estimate "${EST[@]}"
fi
ARGS=()
while IFS= read -r line; do ARGS+=("$line"); done < <("$PY" -m experiments.study.gpu_estimate "${EST[@]}" --argv)
[ ${#ARGS[@]} -gt 0 ] || { echo "gpu_study: no command from experiments.study.gpu_estimate" >&2; exit 2; }

case $MODE in
  dry_run)
    echo "\$ $PY -m experiments.run_ablation ${ARGS[*]} --dry_run $*"
    exec "$PY" -m experiments.run_ablation "${ARGS[@]}" --dry_run "$@" ;;
  report)
    exec "$PY" -m experiments.run_ablation "${ARGS[@]}" --report "$@" ;;
  run)
    "$PY" -m experiments.study.gpu_estimate "${EST[@]}"  # the expected wall time, and the command, first
    [ $# -eq 0 ] || echo "  with: $*"
    "$PY" - <<'EOF'
import os, jax
devices = jax.devices()
print("devices:", devices)
if jax.default_backend() != "gpu" and not os.environ.get("ALLOW_CPU"):
    raise SystemExit(f"gpu_study: jax's backend is {jax.default_backend()!r}, not a GPU; the CPU study is "
                     "design.md's command (ALLOW_CPU=1 runs this one anyway)")
EOF
    if ! "$PY" -c 'import sys; from toolrl.data import natural; sys.exit(not natural.is_current(natural.natural_dir()))'; then
      "$PY" -m experiments.study_data --study="$STUDY"
    fi
    "$PY" - <<'EOF'
import json
from toolrl.data import natural, provenance
want = json.load(open("experiments/results/natural/data_report.json"))["stamp"]
have = provenance.read_stamp(natural.natural_dir()) or {}
diff = [k for k in ("id", "cache_sha256", "seed", "n_traces", "writer", "bind") if have.get(k) != want.get(k)]
if diff:
    raise SystemExit(f"gpu_study: {natural.natural_dir()} is not the CPU study's data: {diff} differ from "
                     "experiments/results/natural/data_report.json's stamp")
print(f"data: {natural.natural_dir()} carries the CPU study's stamp ({want['id']}, cache {want['cache_sha256'][:12]})")
EOF
    exec "$PY" -m experiments.run_ablation "${ARGS[@]}" "$@" ;;
  *)
    echo "usage: bash experiments/gpu_study.sh [run|estimate|dry_run|report] [run_ablation flags]" >&2
    exit 2 ;;
esac
