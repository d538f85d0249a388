"""Training tasks (query + tools + golden steps) and the deterministic order they are served in.

A `Task` is what one GRPO group is about: the user query, the candidate tools, the golden steps
(for the reward) grouped into golden turns (for turn mode and the SFT warm start), with the real
recorded responses. Tasks come from the authors' trace files (`toolrl.data.traces`) or from
synthesized traces (`toolrl.synth.types.Trace`).

`TaskStream` serves task i of an infinite stream: epoch e = i // n is a permutation of the tasks
seeded by (seed, e). Its state is one integer (the position), stored in checkpoints, so a resumed
run sees exactly the data it would have seen.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from toolrl.rewards.types import GoldenStep


@dataclasses.dataclass(frozen=True)
class Task:
    """One training prompt with its golden solution.

    Attributes:
      task_id: sample id.
      query: the user request.
      tools: raw JSON schemas of the candidate tools, in a stable order.
      steps: golden steps (function, arguments, depends_on) in order.
      turns: golden turns as tuples of step indices (independent steps share a turn).
      responses: the real response of each golden step (for golden histories and SFT).
    """

    task_id: str
    query: str
    tools: tuple[Mapping[str, Any], ...]
    steps: tuple[GoldenStep, ...]
    turns: tuple[tuple[int, ...], ...]
    responses: tuple[Any, ...]


def golden_turns(depends_on: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """Groups steps into turns: a step's turn is one after the latest turn of its dependencies.

    Args:
      depends_on: per step, indices of earlier steps it needs.

    Returns:
      Turns in order, each a tuple of step indices (ascending).
    """
    level: list[int] = []
    for deps in depends_on:
        level.append(1 + max((level[d] for d in deps), default=-1))
    n_turns = max(level, default=-1) + 1
    return tuple(tuple(i for i, lv in enumerate(level) if lv == t) for t in range(n_turns))


def tasks_from_trace_samples(samples: Iterable[Any], schemas: Mapping[str, Any], max_steps: int = 0,
                             max_distractors: int = -1) -> list[Task]:
    """Tasks from `toolrl.data.traces.TraceSample`s; the tools are the union of the steps' candidates.

    Args:
      samples: TraceSample objects.
      schemas: tool name -> ToolSchema (its `.raw` dict is shown to the model).
      max_steps: drop samples with more golden steps (0 = keep all).
      max_distractors: keep at most this many candidate tools that no golden step uses (-1 = all).
    """
    tasks = []
    for sample in samples:
        if max_steps and len(sample.steps) > max_steps:
            continue
        names = [n for n in dict.fromkeys(s.function for s in sample.steps) if n in schemas]
        distractors = [n for n in dict.fromkeys(c for s in sample.steps for c in s.candidate_tools)
                       if n in schemas and n not in names]
        names += distractors if max_distractors < 0 else distractors[:max_distractors]
        steps = tuple(GoldenStep(s.function, dict(s.arguments), tuple(s.depends_on)) for s in sample.steps)
        tasks.append(Task(
            task_id=sample.sample_id,
            query=sample.query,
            tools=tuple(schemas[n].raw for n in sorted(names)),
            steps=steps,
            turns=golden_turns([s.depends_on for s in steps]),
            responses=tuple(s.response for s in sample.steps),
        ))
    return tasks


def tasks_from_synth_traces(traces: Iterable[Any], schemas: Mapping[str, Any], max_steps: int = 0,
                            max_distractors: int = -1) -> list[Task]:
    """Tasks from `toolrl.synth.types.Trace`s (turns given by the synthesizer).

    Args:
      traces: Trace objects (e.g. `toolrl.synth.tfds_builder.load_golden_traces(split)`).
      schemas: tool name -> ToolSchema.
      max_steps: drop traces with more calls (0 = keep all).
      max_distractors: keep at most this many candidate tools that no call uses (-1 = all).
    """
    tasks = []
    for trace in traces:
        calls = trace.calls
        if max_steps and len(calls) > max_steps:
            continue
        names = [n for n in dict.fromkeys(c.name for c in calls) if n in schemas]
        distractors = [n for n in trace.candidate_tools if n in schemas and n not in names]
        names += distractors if max_distractors < 0 else distractors[:max_distractors]
        steps = tuple(GoldenStep(c.name, dict(c.arguments), tuple(d)) for c, d in zip(calls, trace.depends_on))
        turns, start = [], 0
        for turn in trace.turns:
            turns.append(tuple(range(start, start + len(turn))))
            start += len(turn)
        tasks.append(Task(
            task_id=trace.trace_id or trace.workflow_id,
            query=trace.query,
            tools=tuple(schemas[n].raw for n in sorted(names)),
            steps=steps,
            turns=tuple(turns),
            responses=tuple(c.response for c in calls),
        ))
    return tasks


SYNTHETIC_PREFIX = "synthetic:"


def load_tasks(data_dir: str = "", train_file: str = "bfcl_training_3_per_workflow.json",
               max_samples: int = 0, max_steps: int = 0, max_distractors: int = -1,
               synth_dir: str = "") -> list[Task]:
    """The training tasks (first `max_samples` after filtering; 0 = all).

    `train_file` is a bundled trace file name, or ``synthetic:SPLIT`` for a split of the synthesized
    `toolrl_traces` TFDS dataset in `synth_dir` (default: where `python -m toolrl.synth` writes it;
    TFDS builds the default dataset there on first use when it is absent).
    """
    from toolrl.data import paths
    from toolrl.data.schemas import load_tool_schemas

    schemas = load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir or None))
    if train_file.startswith(SYNTHETIC_PREFIX):
        from toolrl.synth.tfds_builder import load_golden_traces

        split = train_file[len(SYNTHETIC_PREFIX):]
        try:
            traces = load_golden_traces(split, synth_dir or None)
        except Exception as err:  # TFDS raises several types for a missing dataset or split
            raise FileNotFoundError(
                f"cannot read split {split!r} of the synthesized dataset in {synth_dir or 'the default TFDS dir'} "
                f"({type(err).__name__}: {err}); build it with `python -m toolrl.synth --config=configs/synth.py`"
            ) from err
        tasks = tasks_from_synth_traces(traces, schemas, max_steps, max_distractors)
    else:
        from toolrl.data.traces import load_trace_file

        samples = load_trace_file(paths.data_file(train_file, data_dir or None))
        tasks = tasks_from_trace_samples(samples, schemas, max_steps, max_distractors)
    if max_samples:
        tasks = tasks[:max_samples]
    if not tasks:
        raise ValueError(f"no training tasks in {train_file} (max_steps={max_steps}, max_samples={max_samples})")
    return tasks


class TaskStream:
    """An infinite, reproducible order over tasks; position = number of tasks served so far."""

    def __init__(self, tasks: Sequence[Task], seed: int, shuffle: bool = True):
        self.tasks = list(tasks)
        self.seed = seed
        self.shuffle = shuffle
        self._epoch_cache: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._epoch_cache:
            n = len(self.tasks)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            self._epoch_cache = {epoch: order}
        return self._epoch_cache[epoch]

    def index(self, position: int) -> int:
        """Index into `tasks` of the task served at `position`."""
        n = len(self.tasks)
        return int(self._order(position // n)[position % n])

    def take(self, position: int, count: int) -> list[Task]:
        """The `count` tasks served from `position` on."""
        return [self.tasks[self.index(p)] for p in range(position, position + count)]


# ----------------------------------------------------------------------------- prompt text


def compact_tool(schema: Mapping[str, Any], describe: bool = True) -> str:
    """One line per tool: ``Name(param: type, opt?: type) - first sentence of the description``."""
    params = schema.get("parameters", {}) or {}
    required = set(params.get("required", []) or [])
    parts = []
    for name, spec in (params.get("properties", {}) or {}).items():
        parts.append(f"{name}{'' if name in required else '?'}: {spec.get('type', 'any')}")
    head = f"{schema['name']}({', '.join(parts)})"
    if not describe:
        return head
    description = str(schema.get("description", "")).split("Tool description:")[-1].strip()
    return f"{head} - {description.split('. ')[0][:80]}"


SYSTEM_TEMPLATE = (
    "You call tools to solve the user's request. Tools:\n{tools}\n"
    'Call a tool as <tool_call>{{"name": "...", "arguments": {{...}}}}</tool_call>. Calls in one '
    "message must not need each other's results; use the responses you get. When done, answer "
    "without a tool call."
)


def system_prompt(tools: Sequence[Mapping[str, Any]], view: str = "compact") -> str:
    """The system message listing the tools: "compact" one-liners, "signature" (no descriptions), or
    "full" JSON schemas."""
    if view in ("compact", "signature"):
        listing = "\n".join(compact_tool(t, describe=view == "compact") for t in tools)
    else:
        listing = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return SYSTEM_TEMPLATE.format(tools=listing)


def render_call(function: str, arguments: Mapping[str, Any]) -> str:
    """A golden call as the policy should write it."""
    payload = json.dumps({"name": function, "arguments": dict(arguments)}, ensure_ascii=False)
    return f"<tool_call>{payload}</tool_call>"


def golden_turn_text(task: Task, turn: int) -> str:
    """The assistant message of golden turn `turn`: its calls, one block per line."""
    return "\n".join(render_call(task.steps[i].function, task.steps[i].arguments) for i in task.turns[turn])
