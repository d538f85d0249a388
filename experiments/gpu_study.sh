#!/usr/bin/env bash
# One GRPO run of the decontaminated study at GPU scale, on the device tool's bare CUDA machine (its own
# jax, no network, at most 64 MiB carried per call; ignored files stay between calls to a warm machine).
# Carried beside the tree (git-ignored via .git/info/exclude):
#   .whl/       wheels the image lacks: ml_collections, ijson, tensorflow-datasets + array_record and their
#               small dependencies (dm-tree, immutabledict, promise, toml, tensorflow-metadata,
#               googleapis-common-protos), and flax / optax / orbax at the versions pyproject.toml pins
#   .devdata/   the benchmark's JSON files (../shared/data/complexfuncbench), read as TOOLRL_DATA_DIR
#   .devstudy/  tfds/toolrl_traces/synthetic of the decontaminated study ($TOOLRL_HOME/study/tfds here)
#   .devstart/  the SFT start as an HF directory in bf16 (experiments/export_start.py --piece_mb=60):
#               its model.safetensors.part<k> pieces each moved into a top-level folder .devp<k>/ of
#               their own, one carried per call (64 MiB per call); `run` joins them in order
# The working tree, carried folders included, is replaced at every call, but /tmp of a warm machine
# stays: each call carries what fits and runs `bash experiments/gpu_study.sh stash`, which copies every
# .whl / .dev* folder present to /tmp/stash; `run` first brings back from there what the tree lacks.
# Settings (environment): ARM (graduated), SEED (0), GROUP (8), PROMPTS (4), STEPS (96), EVERY (12),
# EVAL_TURNS (48), TRAIN_S (wall-clock cap of the training process; the last evaluation reached stands),
# EVAL100_S (0 = no eval_100 pass after training). The config is the CPU study's (configs/study.py)
# with only the group, the prompts per step, the step count and the evaluation schedule changed.
#   bash experiments/gpu_study.sh stash    # keep this call's carried folders on the machine
#   bash experiments/gpu_study.sh env      # install + import + data check only
#   bash experiments/gpu_study.sh run
set -u
OUT=${OUT:-/tmp/gpu_study}
STASH=${STASH:-/tmp/stash}
mkdir -p "$OUT" "$STASH"
if [ "${1:-run}" = stash ]; then
  for d in .whl .dev*; do [ -d "$d" ] && cp -r "$d" "$STASH/"; done
  ls -la "$STASH"
  exit 0
fi
for d in "$STASH"/.whl "$STASH"/.dev*; do
  [ -d "$d" ] && [ ! -e "$(basename "$d")" ] && cp -r "$d" .
done
# Compiled programs kept between calls to the same machine: the pilot spent most of its minutes in XLA
# compiling each new padded shape.
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$STASH/jax_cache}
ARM=${ARM:-graduated} SEED=${SEED:-0} GROUP=${GROUP:-8} PROMPTS=${PROMPTS:-4} STEPS=${STEPS:-96}
EVERY=${EVERY:-12} EVAL_TURNS=${EVAL_TURNS:-48} TRAIN_S=${TRAIN_S:-420} EVAL100_S=${EVAL100_S:-0}
PY=${PY:-python3}
WORK=${WORK:-/tmp/gpu_study_run}

[ -n "${SKIP_WHEELS:-}" ] || source benchmarks/device_wheels.sh
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOOLRL_DATA_DIR=$PWD/.devdata
export TOOLRL_HOME=${TOOLRL_HOME_DIR:-/tmp/toolrl_home}
mkdir -p "$TOOLRL_HOME/study"
ln -sfn "$PWD/.devstudy/tfds" "$TOOLRL_HOME/study/tfds"

case ${1:-run} in
  env)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
    $PY - <<'EOF' 2>&1 | tee "$OUT/env.log"
import os, jax, flax, optax, tensorflow_datasets as tfds
from toolrl.data.golden import load_samples
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__, "tfds", tfds.__version__, jax.devices())
synth = os.path.join(os.environ["TOOLRL_HOME"], "study", "tfds")
for source in ("synthetic:train", "synthetic:test", "bfcl_training", "eval_100"):
    print(source, len(load_samples(source, synth_dir=synth)))
EOF
    ls -la .devstart ;;
  run)
    if [ ! -f .devstart/model.safetensors ]; then
      # Pieces part0, part1, ... in order, wherever each was carried (.devstart/ or a .devp*/ folder).
      for k in $(seq 0 99); do
        piece=$(ls .devstart/model.safetensors.part$k .devp*/model.safetensors.part$k 2>/dev/null | head -n 1)
        [ -n "$piece" ] || break
        cat "$piece"
      done > .devstart/model.safetensors
    fi
    ls -la .devstart/model.safetensors
    t0=$SECONDS
    timeout "$TRAIN_S" $PY -m toolrl.main --config=configs/study.py:"$ARM" --config.mode=grpo \
      --config.model.path="$PWD/.devstart" --config.workdir="$WORK" --config.seed="$SEED" \
      --config.rollout.group_size="$GROUP" --config.rollout.prompts_per_step="$PROMPTS" \
      --config.grpo.micro_batches="$PROMPTS" --config.train.num_steps="$STEPS" \
      --config.train.save_every=100000 --config.train.progress=False --config.sft.num_steps=0 \
      --config.eval.at_start=True --config.eval.every="$EVERY" --config.eval.max_turns="$EVAL_TURNS" \
      --config.eval.source=synthetic:test --config.optim.learning_rate=1e-5 ${EXTRA:-} > "$OUT/train.log" 2>&1
    echo "== train: rc=$? in $((SECONDS - t0)) s"
    tail -n 30 "$OUT/train.log"
    if [ "$EVAL100_S" -gt 0 ] && [ -d "$WORK/checkpoints" ]; then
      t0=$SECONDS
      timeout "$EVAL100_S" $PY -m toolrl.main --config=configs/study.py:"$ARM" --config.mode=eval \
        --config.workdir="$WORK" --config.seed="$SEED" --config.eval.source=eval_100 \
        --config.eval.max_turns="$EVAL_TURNS" --config.eval.output_dir="$WORK/eval_eval_100" > "$OUT/eval_100.log" 2>&1
      echo "== eval_100: rc=$? in $((SECONDS - t0)) s"
      tail -n 15 "$OUT/eval_100.log"
    fi
    # Everything but the checkpoints comes back (8 files at most).
    tar -czf "$OUT/run.tar.gz" -C "$WORK" --exclude=checkpoints --exclude=reference . && ls -la "$OUT" ;;
esac
