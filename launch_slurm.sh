#!/usr/bin/env bash
# Launch toolrl training on a SLURM GPU cluster: one process per GPU, all processes one JAX mesh.
#
# Usage (from the repository root, on a login node):
#   NODES=2 GPUS_PER_NODE=8 PARTITION=gpu TIME=24:00:00 WORKDIR=/shared/runs/qwen3_8b \
#     ./launch_slurm.sh --config=configs/grpo.py --config.model.preset=qwen3_8b \
#         --config.model.dtype=bfloat16 --config.mesh.fsdp=-1
#
# The script submits itself with sbatch (when SLURM_JOB_ID is unset) and, as the batch script, starts
# `srun` with NODES x GPUS_PER_NODE tasks. Every task runs
#   python -m toolrl.main ARGS --config.distributed=True --config.workdir=$WORKDIR
# and `jax.distributed.initialize()` (toolrl.main, config.distributed) reads the rest from SLURM
# (jax/_src/clusters/slurm_cluster.py): process count = SLURM_NTASKS, process id = SLURM_PROCID, and the
# GPU of each process = SLURM_LOCALID (local_device_ids=[SLURM_LOCALID]), so every task must see all of
# its node's GPUs: the GPUs are requested per node (--gres) and tasks are not bound to one GPU each
# (--gpus-per-task would leave task 3 a single GPU numbered 0). The coordinator is the job's first node;
# JAX_COORDINATOR_ADDRESS is set here explicitly (host from `scontrol show hostnames`, port
# COORD_PORT or jax's own default 61440 + SLURM_JOB_ID % 4096) so that an odd node-list format cannot
# break jax's parser.
#
# Preemption and time limits: `--requeue`, and `--signal=TERM@$GRACE` sends SIGTERM to every task GRACE
# seconds before the time limit. The trainer finishes its step, saves a checkpoint and exits with
# 128 + 15; the batch script then requeues the job (`scontrol requeue`), and the requeued job resumes from
# the latest checkpoint in WORKDIR (same path: it is derived from WORKDIR, never from the job id). A
# requeued job that finds its workdir holding other settings is refused (toolrl.rl.workdir), so a changed
# command line cannot silently continue a run.
#
# Environment:
#   WORKDIR (required; a shared file system every node sees, not gs://), NODES (1), GPUS_PER_NODE (8),
#   PARTITION, ACCOUNT (optional), TIME (24:00:00), GRACE (seconds, 300), JOB_NAME (toolrl),
#   VENV (.venv), COORD_PORT (optional), XLA_CACHE (optional: --config.compile.cache_dir, e.g. on the
#   shared file system so that every process and every requeue reuses compiled programs).
# Check: bash -n launch_slurm.sh
set -euo pipefail

: "${WORKDIR:?set WORKDIR to the run directory on a shared file system}"
NODES="${NODES:-1}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
TIME="${TIME:-24:00:00}"
GRACE="${GRACE:-300}"
JOB_NAME="${JOB_NAME:-toolrl}"
VENV="${VENV:-.venv}"

if [[ -z "${SLURM_JOB_ID:-}" ]]; then
  # Login node: submit this script as the batch script, with the same arguments and environment.
  OPTS=(--job-name "$JOB_NAME" --nodes "$NODES" --ntasks-per-node "$GPUS_PER_NODE"
        --gres "gpu:$GPUS_PER_NODE" --cpus-per-task "${CPUS_PER_TASK:-8}" --time "$TIME"
        --requeue --signal "TERM@$GRACE" --open-mode append
        --output "$WORKDIR/slurm-%j.out" --export ALL)
  if [[ -n "${PARTITION:-}" ]]; then OPTS+=(--partition "$PARTITION"); fi
  if [[ -n "${ACCOUNT:-}" ]]; then OPTS+=(--account "$ACCOUNT"); fi
  mkdir -p "$WORKDIR"
  exec sbatch "${OPTS[@]}" "$0" "$@"
fi

# Batch script (first node of the allocation).
cd "${SLURM_SUBMIT_DIR:-.}"
HEAD_NODE="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p)"  # sed reads all: no SIGPIPE under pipefail
PORT="${COORD_PORT:-$(( SLURM_JOB_ID % 4096 + 61440 ))}"
export JAX_COORDINATOR_ADDRESS="$HEAD_NODE:$PORT"
CACHE_ARGS=()
if [[ -n "${XLA_CACHE:-}" ]]; then CACHE_ARGS=(--config.compile.cache_dir="$XLA_CACHE"); fi

echo "toolrl: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_JOB_NUM_NODES node(s), $SLURM_NTASKS processes, coordinator $JAX_COORDINATOR_ADDRESS"

set +e
srun --kill-on-bad-exit=1 --gpu-bind=none \
  "$VENV/bin/python" -m toolrl.main "$@" --config.distributed=True --config.workdir="$WORKDIR" "${CACHE_ARGS[@]}"
status=$?
set -e

# 143 = 128 + SIGTERM: the trainer saved and stopped on the scheduler's notice (time limit or preemption).
if [[ $status -eq 143 || $status -eq 137 ]]; then
  echo "toolrl: stopped by a signal (exit $status); requeueing job $SLURM_JOB_ID to resume from $WORKDIR"
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
exit $status
