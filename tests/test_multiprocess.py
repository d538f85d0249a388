"""Two processes x 4 simulated CPU devices, joined by jax.distributed on localhost, train the tiny model
through `toolrl.main` as one process with 8 devices does.

Both runs use the same (data=2, fsdp=4) mesh and train three GRPO steps. The two-process
run is the job a cluster would start (``--config.distributed=True``, the coordinator, process count and
id in the environment, `toolrl.distributed`); it is stopped by a SIGTERM to one of its processes after
its first step, and the same command resumes it. Checked against the
one-process run: each step's loss, gradient norm, tasks and sampled-token count, and the final
checkpoint's parameters (equal within float tolerance: another partitioning sums in another order);
that process 0 alone wrote the run's records (metrics, W&B, summary); that both processes stopped after
the same step and saved it, and the resumed steps continue the run.

The tiny random model never earns the registry's reward, so the runs' trainer gets a reward that varies
within a group (a hash of the sampled tokens): the GRPO steps are real updates. The rest is
`toolrl.main` as the command line runs it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SFT_STEPS, GRPO_STEPS = 0, 3
ARGS = ["--config=configs/tiny.py", "--config.mode=grpo", f"--config.sft.num_steps={SFT_STEPS}",
        f"--config.train.num_steps={GRPO_STEPS}", "--config.sft.batch_size=8", "--config.mesh.data=2",
        "--config.mesh.fsdp=4", "--config.rollout.max_turns=1", "--config.rollout.max_new_tokens=32",
        # One prompt width for every step: one sampler and one update program to compile.
        "--config.rollout.pad_multiple=1024", "--config.data.drop_unfit=False"]

# toolrl.main's command line with the trainer's reward replaced (`train(config, reward_fn=...)`).
DRIVER = r'''
import sys
import numpy as np
import toolrl.main as entry

def varied_reward(batch):
    from toolrl.rewards.registry import RewardOutput
    n = len(batch.rows)
    reward = np.asarray([(sum(i * t for i, t in enumerate(ids)) % 13) / 13.0 for ids, _ in batch.rows], np.float32)
    return RewardOutput(reward, {}, np.zeros((n, 1), np.int32), np.zeros(n, np.int32))

train = entry.train
entry.train = lambda config, reward_fn=None, stop_after=None: train(config, varied_reward, stop_after)
entry.run()
'''

TIMEOUT_S = 1200  # all three starts together; a hung collective would otherwise wait forever


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(processes: int, workdir: Path) -> list[tuple[subprocess.Popen, Path]]:
    """`processes` processes of one job, 8 simulated devices in all, distributed when more than one;
    each with its stderr file (a pipe that nobody reads while another process is awaited could fill
    and stall a collective)."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", WANDB_MODE="offline", WANDB_SILENT="true",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={8 // processes}")
    args = [*ARGS, f"--config.workdir={workdir}"]
    if processes > 1:
        args.append("--config.distributed=True")
        env["JAX_COORDINATOR_ADDRESS"] = f"127.0.0.1:{_port()}"
    started = []
    for i in range(processes):
        if processes > 1:
            env = dict(env, TOOLRL_NUM_PROCESSES=str(processes), TOOLRL_PROCESS_ID=str(i))
        log = workdir.parent / f"{workdir.name}.{time.monotonic_ns()}.{i}.stderr"
        with open(log, "w") as stderr:
            started.append((subprocess.Popen([sys.executable, "-c", DRIVER, *args], cwd=REPO, env=env,
                                             stdout=subprocess.DEVNULL, stderr=stderr), log))
    return started


def _wait(started: list[tuple[subprocess.Popen, Path]], deadline: float) -> list[tuple[int | None, str]]:
    """(exit status, stderr) of each process. When one fails, or time runs out, the others are killed:
    they would wait for it in their next collective."""
    procs = [p for p, _ in started]
    try:
        while any(p.poll() is None for p in procs) and time.time() < deadline:
            if any(p.poll() not in (None, 0, 128 + signal.SIGTERM) for p in procs):
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [(p.returncode, log.read_text()) for p, log in started]


def _records(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    deadline = time.time() + TIMEOUT_S
    one, two = root / "one", root / "two"
    clock = time.perf_counter()
    # The one-process run beside the first two-process start: on 2 cores each is often single-threaded.
    alone = _start(1, one)
    started = _start(2, two)
    # SIGTERM to process 1 alone once the first GRPO step is logged: both must stop after the same step
    # (a scheduler signals every task, but not at the same instant), and the resume restores GRPO's
    # optimizer state.
    while len(_records(two)) <= SFT_STEPS:
        if any(p.poll() is not None for p, _ in started) or time.time() > deadline:
            stopped = _wait(started, time.time())
            pytest.fail("the two-process run ended before it could be stopped: "
                        + " | ".join(f"exit {rc}: {stderr[-2000:]}" for rc, stderr in stopped))
        time.sleep(0.05)
    started[1][0].send_signal(signal.SIGTERM)
    stopped = _wait(started, deadline)
    stopped_records = _records(two)
    finished = _wait(alone, deadline)
    assert [rc for rc, _ in finished] == [0], finished[0][1][-3000:]
    resumed = _wait(_start(2, two), deadline)
    assert [rc for rc, _ in resumed] == [0, 0], " | ".join(stderr[-3000:] for _, stderr in resumed)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nmultiprocess runs: {time.perf_counter() - clock:.0f} s wall, "
          f"{children.ru_utime + children.ru_stime:.0f} s CPU")
    return {"one": one, "two": two, "stopped": stopped, "stopped_records": stopped_records}


def _params(workdir: Path) -> dict[str, np.ndarray]:
    """The latest checkpoint's parameters as host arrays, whatever devices saved them."""
    import jax
    import orbax.checkpoint as ocp

    step = max(int(name) for name in os.listdir(workdir / "checkpoints") if name.isdigit())
    path = workdir / "checkpoints" / str(step) / "params"
    with ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        params = checkpointer.restore(path, restore_args=jax.tree.map(
            lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree))
    return {jax.tree_util.keystr(key): value for key, value in jax.tree_util.tree_leaves_with_path(params)}


def test_two_processes_train_as_one_process(runs):
    one, two = _records(runs["one"]), _records(runs["two"])
    steps = list(range(1, SFT_STEPS + GRPO_STEPS + 1))
    assert [r["step"] for r in one] == steps and [r["step"] for r in two] == steps
    for a, b in zip(two, one):
        phase = b["phase"]
        assert a["phase"] == phase and a["data/tasks"] == b["data/tasks"], a["step"]
        for key in (f"{phase}/loss", f"{phase}/grad_norm"):
            np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=f"step {a['step']} {key}")
        if phase == "grpo":  # the same tokens sampled, the same rewards
            assert a["rollout/generated_tokens"] == b["rollout/generated_tokens"], a["step"]
            assert a["data/group_rewards"] == b["data/group_rewards"], a["step"]
    grpo = [r for r in one if r["phase"] == "grpo"]
    assert all(r["grpo/live_rows"] > 0 and r["grpo/grad_norm"] > 0 for r in grpo)  # real updates
    assert len({r["grpo/loss"] for r in grpo}) == GRPO_STEPS

    a, b = _params(runs["two"]), _params(runs["one"])
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        # Adam's normalised steps (1e-3 each) magnify the rounding of near-zero gradients to ~1e-6.
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-5, err_msg=name)


def _files(workdir: Path) -> set[str]:
    """The workdir's files, without the compilation cache (its keys name the devices), W&B's run
    directories and the checkpoints (orbax writes a part of each array per process)."""
    skip = ("xla_cache", "wandb", "checkpoints")
    return {str(p.relative_to(workdir)) for p in workdir.rglob("*")
            if p.is_file() and p.relative_to(workdir).parts[0] not in skip}


def test_only_process_0_writes_the_records(runs):
    one, two = runs["one"], runs["two"]
    assert _files(two) == _files(one) and "summary.json" in _files(one)
    lines = (two / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines)) == SFT_STEPS + GRPO_STEPS  # no record twice
    # One W&B run, resumed: one offline directory per start of process 0, all of the one id.
    run_id = (two / "wandb_id").read_text().strip()
    offline = sorted(p.name for p in (two / "wandb").iterdir() if p.name.startswith("offline-run-"))
    assert len(offline) == 2 and all(name.endswith(run_id) for name in offline), offline
    assert sorted(os.listdir(two / "checkpoints")) == sorted(os.listdir(one / "checkpoints"))


def test_sigterm_to_one_process_stops_both_after_one_step_and_the_run_resumes(runs):
    assert [rc for rc, _ in runs["stopped"]] == [128 + signal.SIGTERM] * 2, runs["stopped"]
    stopped_at = [int(stderr.split("saved step ")[1].split()[0]) for _, stderr in runs["stopped"]]
    assert stopped_at[0] == stopped_at[1], stopped_at  # both saved the same step
    before = runs["stopped_records"]
    assert 1 <= stopped_at[0] < SFT_STEPS + GRPO_STEPS and max(r["step"] for r in before) == stopped_at[0]
    after = _records(runs["two"])
    assert after[:stopped_at[0]] == before  # what the stopped run logged stays; the rest was resumed
