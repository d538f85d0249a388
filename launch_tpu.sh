#!/usr/bin/env bash
# Launch toolrl training on every worker of a Cloud TPU VM slice (multi-host).
#
# Usage:
#   TPU_NAME=my-v5e-32 ZONE=us-west4-a ./launch_tpu.sh --config=configs/grpo.py \
#       --config.model.dtype=bfloat16 --config.mesh.fsdp=-1 --config.rollout.group_size=8
#
# What it does: `gcloud compute tpus tpu-vm ssh --worker=all` runs the SAME command on every host of
# the slice, in the checkout at $REMOTE_DIR (clone it and create .venv there first, e.g. with
# SETUP=1). Each host runs `python -m toolrl.main ... --config.distributed=True`, which calls
# jax.distributed.initialize() (the TPU runtime supplies coordinator address, process count and id),
# so all hosts form one mesh over all chips; the config's mesh (data, fsdp, tensor) with one -1 axis
# takes whatever the slice has. Process 0 writes the workdir (checkpoints, metrics, lock): give it a
# local disk or a mounted bucket (gcsfuse /mnt/run, then --config.workdir=/mnt/run/NAME); a gs:// URL is
# refused in one line (the workdir is flock-ed and written by atomic renames). Only process 0 needs W&B
# credentials. A persistent XLA cache (--config.compile.cache_dir) on the shared mount saves recompiles.
#
# Environment:
#   TPU_NAME (required), ZONE (required), PROJECT (optional, gcloud default otherwise),
#   REMOTE_DIR (default: ~/toolrl), SETUP=1 to install the package on every worker first.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
REMOTE_DIR="${REMOTE_DIR:-~/toolrl}"
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then PROJECT_FLAG=(--project "$PROJECT"); fi

ARGS=""
for arg in "$@"; do ARGS+=" $(printf '%q' "$arg")"; done

SETUP_CMD=""
if [[ "${SETUP:-0}" == "1" ]]; then
  SETUP_CMD="python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]' && "
fi

gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone "$ZONE" "${PROJECT_FLAG[@]}" --worker=all --command \
  "cd $REMOTE_DIR && ${SETUP_CMD}.venv/bin/python -m toolrl.main${ARGS} --config.distributed=True"
