"""Joining the processes of a multi-process job into one JAX runtime (``--config.distributed=True``).

Where the cluster says who is who (SLURM, a Cloud TPU slice, Open MPI, Kubernetes), `initialize` lets
`jax.distributed.initialize` detect it. Elsewhere (several processes on one machine, a cluster JAX
does not know) three environment variables name the job explicitly:

    JAX_COORDINATOR_ADDRESS=host:port   # process 0's host and a free port (read by JAX itself)
    TOOLRL_NUM_PROCESSES=N              # how many processes join
    TOOLRL_PROCESS_ID=i                 # this process, 0 <= i < N

They are given together or not at all (ValueError otherwise). On CPU, the collectives between
processes go through gloo (jax's ``jax_cpu_collectives_implementation``); without it a CPU job of
several processes cannot all-reduce.

Call it before anything asks JAX for devices: the backends start with the first such call and cannot
join a distributed runtime afterwards.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

NUM_PROCESSES = "TOOLRL_NUM_PROCESSES"
PROCESS_ID = "TOOLRL_PROCESS_ID"
COORDINATOR = "JAX_COORDINATOR_ADDRESS"


def explicit_job(environ: Mapping[str, str]) -> tuple[str, int, int] | None:
    """(coordinator address, process count, process id) from `environ`, or None when
    TOOLRL_NUM_PROCESSES and TOOLRL_PROCESS_ID are both unset (the cluster is detected instead).

    Raises ValueError naming the variables when the set is incomplete or out of range."""
    count, index = environ.get(NUM_PROCESSES), environ.get(PROCESS_ID)
    if count is None and index is None:
        return None
    address = environ.get(COORDINATOR)
    if count is None or index is None or not address:
        raise ValueError(f"distributed: set {COORDINATOR}, {NUM_PROCESSES} and {PROCESS_ID} together "
                         f"(have {COORDINATOR}={address!r}, {NUM_PROCESSES}={count!r}, {PROCESS_ID}={index!r})")
    try:
        processes, process_id = int(count), int(index)
    except ValueError:
        raise ValueError(f"distributed: {NUM_PROCESSES}={count!r} and {PROCESS_ID}={index!r} must be integers") from None
    if not 0 <= process_id < processes:
        raise ValueError(f"distributed: {PROCESS_ID}={process_id} must be in [0, {NUM_PROCESSES}={processes})")
    return address, processes, process_id


def initialize(environ: Mapping[str, str] | None = None) -> None:
    """Joins this process to the job (`jax.distributed.initialize`): the explicit job of `environ`
    (default os.environ) when it names one, else the cluster JAX detects."""
    import jax

    job = explicit_job(os.environ if environ is None else environ)
    # Before the CPU backend starts: its cross-process collectives (a CPU job, or host-side arrays).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if job is None:
        jax.distributed.initialize()
        return
    address, processes, process_id = job
    jax.distributed.initialize(address, processes, process_id)
