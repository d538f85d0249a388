#!/usr/bin/env bash
# One prepared GPU session (the device tool: a bare CUDA machine with its own jax, no network, at most
# 64 MiB carried). Run from the repository root with, carried beside the tree (git-ignored via
# .git/info/exclude):
#   .whl/      wheels the image lacks: ml_collections, ijson, and flax / optax / orbax-checkpoint at the
#              versions pyproject.toml pins from below (pip download --python-version 3.12 ...)
#   .devdata/  the benchmark's JSON files (../shared/data/complexfuncbench), read as TOOLRL_DATA_DIR
#   .devmodel/ SmolLM2-135M's config.json and tokenizer files (no weights: 540 MB do not travel)
# Every part has its own time limit and writes its log under $OUT, so one failure costs only its part.
#   bash benchmarks/gpu_check.sh [parts...]   (default: env weights tiny compare generation)
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
source benchmarks/device_wheels.sh
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export TOOLRL_DATA_DIR=$PWD/.devdata TOOLRL_HOME=/tmp/toolrl_home
MODEL=/tmp/smollm2_random
parts=${*:-env weights tiny compare generation}  # compare32: fp32 too

part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, report the status
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: rc=$rc in $((SECONDS - t0)) s"
  tail -n 25 "$OUT/$name.log"
}

for p in $parts; do
  case $p in
    env)
      part env 45 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; python3 -c "
import jax, flax, optax, orbax.checkpoint as ocp, transformers, numpy
print(\"jax\", jax.__version__, \"flax\", flax.__version__, \"optax\", optax.__version__, \"orbax\", ocp.__version__,
      \"transformers\", transformers.__version__, \"numpy\", numpy.__version__)
print(jax.devices())"' ;;
    weights)
      part weights 90 python3 benchmarks/random_weights.py --src .devmodel --out "$MODEL" ;;
    tiny)
      # The whole program (SFT, GRPO on a one-device mesh, orbax checkpoints, evaluation) on the GPU, then
      # the same run on the CPU: the SFT losses are teacher-forced, so they must agree closely.
      part tiny_gpu 120 python3 -m toolrl.main --config=configs/tiny.py --config.workdir=/tmp/tiny_gpu \
        --config.sft.num_steps=3 --config.train.num_steps=2 --config.wandb.mode=disabled
      part tiny_cpu 90 env JAX_PLATFORMS=cpu python3 -m toolrl.main --config=configs/tiny.py \
        --config.workdir=/tmp/tiny_cpu --config.sft.num_steps=3 --config.train.num_steps=2 --config.wandb.mode=disabled
      python3 - <<'EOF' 2>&1 | tee "$OUT/tiny_parity.log"
import json
def rows(p):
    return [json.loads(l) for l in open(p)]
gpu, cpu = rows("/tmp/tiny_gpu/metrics.jsonl"), rows("/tmp/tiny_cpu/metrics.jsonl")
for g, c in zip(gpu, cpu):
    keys = [k for k in ("sft/nll", "sft/loss", "reward/mean", "grpo/loss", "grpo/grad_norm") if k in g and k in c]
    print(g.get("phase"), g.get("step"), {k: (round(g[k], 6), round(c[k], 6)) for k in keys})
EOF
      ;;
    compare)
      # Issue 11's old-vs-new update comparison, whole updates (every path from the same parameters, so
      # grad norms agree), the whole batch in one backward pass, no remat.
      part compare_bf16 180 python3 benchmarks/train_step.py --compare --model="$MODEL" --dtype=bfloat16 \
        --modes=turn,episode --max_chunks=0 --rows_per_pass=${ROWS_PER_PASS:-8} --remat=False --repeats=5 --old_repeats=5
      ;;
    compare32)
      part compare_fp32 150 python3 benchmarks/train_step.py --compare --model="$MODEL" --dtype=float32 \
        --modes=turn --max_chunks=0 --rows_per_pass=${ROWS_PER_PASS:-8} --remat=False --repeats=5 --old_repeats=5 ;;
    generation)
      part generation 120 env JAX_PLATFORMS=cuda python3 benchmarks/generation.py --model "$MODEL" \
        --batches 16 64 --new-tokens 128 --repeats 3 --group-size 8 --group-new-tokens 128 --torch-device cuda ;;
    step)
      # Whole GRPO steps of configs/grpo.py (rollout, reward, update) with the random weights: they rarely
      # stop or call a tool, so each rollout runs one turn to the token budget.
      part step 240 python3 benchmarks/train_step.py --model="$MODEL" --steps=3 --warmup=1 ;;
    *) echo "unknown part $p" ;;
  esac
done
