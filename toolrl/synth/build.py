"""Loading the synthesis inputs and generating trace collections (no TFDS here: pure Python).

* :func:`load_pool`: cache + traces + templates + schemas -> :class:`EntryPool`.
* :func:`synthesize`: a deduplicated, deterministic list of traces for a mix of knob settings.
* :func:`split_by_workflow`: train / validation / test, the test split holding out whole workflows.
* :func:`authors_traces`: the authors' files (bfcl_training, eval_100) as :class:`Trace` objects.
* :func:`require_traces`: refuses an empty synthesis (naming the knob) and reports every shortfall.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from toolrl.cli import UserError
from toolrl.data import paths
from toolrl.data.schemas import load_tool_schemas
from toolrl.data.traces import TraceSample, load_trace_file, load_trace_files
from toolrl.data.workflows import load_workflow_templates
from toolrl.env.cache import ResponseCache, open_default_cache
from toolrl.env.canonical import cache_key
from toolrl.synth.llm_writer import LLMQueryWriter
from toolrl.synth.phrasebook import PhrasebookWriter
from toolrl.synth.phrasebook_clauses import LOOKUPS
from toolrl.synth.pool import CROSS_DOMAIN, DOMAINS, EntryPool, build_pool
from toolrl.synth.query import OpenAIParaphraser, QueryRenderer
from toolrl.synth.query_writer import WriterChain, is_step_list, missing_values
from toolrl.synth.real_queries import RealQueryWriter, benchmark_templates
from toolrl.synth.sampler import ConstrainedSampler, CrossSampler, SynthKnobs
from toolrl.synth.types import Call, Trace, call_levels, workflow_id_of


def load_pool(data_dir: str | os.PathLike | None = None, cache_path: str | os.PathLike | None = None,
              cache: ResponseCache | None = None) -> EntryPool:
    """The entry pool over the (default) cache, with the graph mined from the bundled traces and templates."""
    cache = cache or open_default_cache(data_dir, cache_path)
    samples = [s for group in load_trace_files(data_dir).values() for s in group]
    templates = load_workflow_templates(paths.data_file(paths.WORKFLOW_TEMPLATES, data_dir))
    schemas = load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir))
    return build_pool(cache, samples, templates, schemas)


class SynthConfigError(UserError):
    """A synthesis setting is contradictory, or cannot produce any trace; the message names the knob."""


@dataclasses.dataclass(frozen=True)
class Mix:
    """How many traces to keep at one knob setting."""

    knobs: SynthKnobs
    count: int


def synthesize(pool: EntryPool, mixes: Sequence[Mix], seed: int = 0, max_attempt_factor: int = 20,
               progress: Callable[[int], None] | None = None, renderer: Any | None = None) -> list[Trace]:
    """Traces for each mix, deduplicated across mixes (by calls + dependencies).

    Deterministic: mix ``m`` uses sampler seed ``(seed, m)`` and attempts 0, 1, ... in order, stopping
    at ``count`` new traces or ``max_attempt_factor * count`` attempts (a small cache runs out of
    distinct traces at some settings; the shortfall shows in the returned length).
    """
    seen: set[str] = set()
    out: list[Trace] = []
    for number, mix in enumerate(mixes):
        if mix.knobs.domains == (CROSS_DOMAIN,) and mix.knobs.bind == "opaque":
            # Under "opaque" bindings no cached chain crosses domains; Cross traces join two domains' parts.
            sampler = CrossSampler(pool, mix.knobs, seed=_mix_seed(seed, number), renderer=renderer)
        else:
            sampler = ConstrainedSampler(pool, mix.knobs, seed=_mix_seed(seed, number), renderer=renderer)
        kept = 0
        for attempt in range(mix.count * max_attempt_factor):
            if kept >= mix.count:
                break
            trace = sampler.sample(attempt)
            if trace is None or trace.trace_id in seen:
                continue
            seen.add(trace.trace_id)
            out.append(trace)
            kept += 1
            if progress:
                progress(1)
    return out


def shortfall(mixes: Sequence[Mix], traces: Sequence[Trace]) -> dict[int, tuple[int, int]]:
    """calls per trace -> (traces kept, traces asked for), for every complexity that fell short."""
    asked: dict[int, int] = {}
    for mix in mixes:
        asked[mix.knobs.n_calls] = asked.get(mix.knobs.n_calls, 0) + mix.count
    kept: dict[int, int] = {}
    for trace in traces:
        kept[trace.n_calls] = kept.get(trace.n_calls, 0) + 1
    return {n: (kept.get(n, 0), want) for n, want in sorted(asked.items()) if kept.get(n, 0) < want}


def domain_shortfall(mixes: Sequence[Mix], traces: Sequence[Trace]) -> dict[str, tuple[int, int]]:
    """trace domain -> (traces kept, traces asked for), for every domain that fell short (mixes that pin
    one domain only)."""
    asked: dict[str, int] = {}
    for mix in mixes:
        if len(mix.knobs.domains) == 1:
            asked[mix.knobs.domains[0]] = asked.get(mix.knobs.domains[0], 0) + mix.count
    kept: dict[str, int] = {}
    for trace in traces:
        kept[trace.domain] = kept.get(trace.domain, 0) + 1
    return {d: (kept.get(d, 0), want) for d, want in sorted(asked.items()) if kept.get(d, 0) < want}


def require_traces(traces: Sequence[Trace], mixes: Sequence[Mix]) -> list[str]:
    """Raises SynthConfigError when nothing was synthesized (an empty dataset would be written, and
    TFDS would then reuse it); otherwise returns one warning line per complexity that fell short."""
    short = shortfall(mixes, traces)
    complexities = tuple(sorted({m.knobs.n_calls for m in mixes}))
    if not traces:
        raise SynthConfigError(
            f"0 traces synthesized: the cache's dependency graph holds no valid trace with complexities="
            f"{complexities} calls per trace; lower --config.complexities (e.g. (2, 3, 4)) or point "
            f"--config.cache_path at a larger cache. Nothing was written.")
    lines = [f"complexity {n}: {got} of {want} traces (the cache holds no more distinct valid traces of {n} calls)"
             for n, (got, want) in short.items()]
    lines += [f"domain {d}: {got} of {want} traces (the cache holds no more distinct valid {d} traces at these "
              f"complexities)" for d, (got, want) in domain_shortfall(mixes, traces).items()]
    return lines


def _mix_seed(seed: int, number: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}/{number}".encode(), digest_size=4).digest(), "little")


def _unit(text: str, seed: int) -> float:
    """A deterministic number in [0, 1) for a string (stable across runs and machines)."""
    digest = hashlib.blake2b(f"{seed}/{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64


def split_by_workflow(traces: Sequence[Trace], test_fraction: float = 0.15, validation_fraction: float = 0.1,
                      seed: int = 0) -> dict[str, list[Trace]]:
    """``test`` holds whole workflows (tool patterns) out; ``validation`` is drawn per trace from the rest.

    Workflows are ranked by a seeded hash and taken into test until it holds ``test_fraction`` of the
    traces (at least one workflow when there are two or more), so no test workflow appears in train.
    """
    by_workflow: dict[str, list[Trace]] = {}
    for trace in traces:
        by_workflow.setdefault(trace.workflow_id, []).append(trace)
    ranked = sorted(by_workflow, key=lambda w: _unit(w, seed))
    test_workflows: set[str] = set()
    held = 0
    for workflow in ranked:
        if len(by_workflow) < 2 or held >= test_fraction * len(traces):
            break
        if len(test_workflows) == len(by_workflow) - 1:
            break  # keep at least one workflow for training
        test_workflows.add(workflow)
        held += len(by_workflow[workflow])
    splits: dict[str, list[Trace]] = {"train": [], "validation": [], "test": []}
    for trace in traces:
        if trace.workflow_id in test_workflows:
            splits["test"].append(trace)
        elif _unit(trace.trace_id, seed + 1) < validation_fraction:
            splits["validation"].append(trace)
        else:
            splits["train"].append(trace)
    return splits


def split_by_entries(traces: Sequence[Trace], heldout_fraction: float = 0.2, validation_share: float = 0.4,
                     seed: int = 0) -> dict[str, list[Trace]]:
    """Held-out splits whose turns are unseen in training, in every domain.

    Distinct calls (function + canonical arguments; location lookups excepted, they are free in every
    turn) are reserved one at a time, per trace domain in turn, in a seeded order, until at least
    ``heldout_fraction`` of that domain's traces call a reserved call (a domain whose traces share few
    calls, like car rentals, needs few, and may overshoot: one rental search feeds many traces). A trace with a reserved call is held out (``validation_share`` of
    those, by a hash of the trace, to validation, the rest to test); every other trace trains. No training
    trace then calls a reserved call, so a held-out turn that requires one is novel by construction (its
    required call set is no training turn's). A held-out turn's tools are seen in training, its calls are not.
    """
    keys = [{cache_key(c.name, c.arguments) for c in trace.calls if c.name not in LOOKUPS} for trace in traces]
    by_domain: dict[str, list[int]] = {}
    for position, trace in enumerate(traces):
        by_domain.setdefault(trace.domain, []).append(position)
    reserved: set[str] = set()
    for domain in sorted(by_domain):
        members = by_domain[domain]
        candidates = sorted({k for p in members for k in keys[p]}, key=lambda k: _unit(f"{domain}/{k}", seed))
        for key in candidates:
            held = sum(1 for p in members if keys[p] & reserved)
            if held >= heldout_fraction * len(members):
                break
            reserved.add(key)
    splits: dict[str, list[Trace]] = {"train": [], "validation": [], "test": []}
    for trace, trace_keys in zip(traces, keys):
        if trace_keys & reserved:
            splits["validation" if _unit(trace.trace_id, seed + 1) < validation_share else "test"].append(trace)
        else:
            splits["train"].append(trace)
    return splits


def sample_to_trace(sample: TraceSample) -> Trace:
    """One of the authors' samples as a :class:`Trace`: its steps scheduled into turns by ``depends_on``.

    Responses are kept as recorded (``""`` where the benchmark lost them). Bindings are not known for
    these files (the steps only say which earlier steps they need), so ``bindings`` is empty.
    """
    deps = [tuple(step.depends_on) for step in sample.steps]
    levels = call_levels(deps)
    order = sorted(range(len(deps)), key=lambda i: (levels[i], i))
    new_index = {old: new for new, old in enumerate(order)}
    turns: list[list[Call]] = []
    for old in order:
        step = sample.steps[old]
        if len(turns) < levels[old]:
            turns.append([])
        turns[-1].append(Call(step.function, dict(step.arguments), step.response))
    candidates: list[str] = []
    for step in sample.steps:
        for tool in step.candidate_tools or (step.function,):
            if tool not in candidates:
                candidates.append(tool)
    domain = sample.domain if sample.domain != "synthetic" else ""
    trace = Trace(
        query=sample.query,
        candidate_tools=tuple(candidates),
        turns=tuple(tuple(t) for t in turns),
        depends_on=tuple(tuple(sorted(new_index[d] for d in deps[old])) for old in order),
        workflow_id=sample.workflow_id,
        domain=domain,
        bindings=tuple(() for _ in order),
        template_id=sample.workflow_id if sample.workflow_id.startswith("workflow_") else "",
        source=sample.source,
        trace_id=sample.sample_id,
    )
    return trace


def authors_traces(name: str, data_dir: str | os.PathLike | None = None,
                   domains: dict[str, str] | None = None) -> list[Trace]:
    """``bfcl_training`` or ``eval_100`` as traces. ``domains`` (tool -> domain) fills the domain of
    synthesized-by-the-authors samples, whose ids carry none."""
    file = {"bfcl_training": paths.BFCL_TRAINING, "eval_100": paths.EVAL_100}[name]
    traces = [sample_to_trace(s) for s in load_trace_file(paths.data_file(file, data_dir))]
    if domains:
        fixed = []
        for trace in traces:
            if not trace.domain:
                found = {domains.get(c.name, CROSS_DOMAIN) for c in trace.calls}
                trace = dataclasses.replace(trace, domain=found.pop() if len(found) == 1 else CROSS_DOMAIN)
            fixed.append(trace)
        traces = fixed
    return traces


def default_mixes(n_traces: int, complexities: Iterable[int] = (2, 3, 4, 5, 6, 8), n_distractors: int = 3,
                  template_share: float = 0.3, domains: Sequence[str] = (), bind: str = "all",
                  max_position: int | None = None) -> list[Mix]:
    """An even spread over complexities and over ``domains`` (each a trace domain; () = unconstrained);
    ``template_share`` of each cell grown along workflow templates."""
    complexities = list(complexities)
    cells = [(n, (d,) if d else ()) for n in complexities for d in (list(domains) or [""])]
    per = max(1, n_traces // len(cells))
    mixes = []
    for n_calls, allowed in cells:
        guided = int(round(per * template_share))
        knobs = SynthKnobs(n_calls=n_calls, n_distractors=n_distractors, domains=allowed, bind=bind,
                           max_position=max_position)
        mixes.append(Mix(dataclasses.replace(knobs, template_choice="frequency"), guided))
        mixes.append(Mix(knobs, per - guided))
    return mixes


def pattern_workflow_id(trace: Trace) -> str:
    return workflow_id_of(trace.pattern)


def dependency_rows(trace: Trace) -> np.ndarray:
    """The flattened ``[n * n]`` golden dependency matrix."""
    return trace.dependency_matrix().reshape(-1)


def validate_config(config: Any) -> None:
    """Reject contradictory settings of configs/synth.py with a message naming the fields."""
    if config.n_traces < 1:
        raise SynthConfigError(f"n_traces must be >= 1, got {config.n_traces}")
    if not config.complexities or min(config.complexities) < 1:
        raise SynthConfigError(f"complexities must be calls per trace >= 1, got {config.complexities}")
    if not 0 <= config.template_share <= 1:
        raise SynthConfigError(f"template_share must be in [0, 1], got {config.template_share}")
    if not (0 <= config.test_fraction < 1 and 0 <= config.validation_fraction < 1):
        raise SynthConfigError("test_fraction and validation_fraction must be in [0, 1)")
    if config.get("split", "workflows") not in ("workflows", "entries"):
        raise SynthConfigError(f"split must be 'workflows' or 'entries', got {config.split!r}")
    if not 0 < config.get("heldout_fraction", 0.2) < 1:
        raise SynthConfigError(f"heldout_fraction must be in (0, 1), got {config.heldout_fraction}")
    if config.paraphrase.enabled and not (config.paraphrase.base_url and config.paraphrase.model):
        raise SynthConfigError("paraphrase.enabled needs paraphrase.base_url and paraphrase.model")
    writers = writer_names(config)
    unknown = [w for w in writers if w not in WRITERS]
    if unknown or not writers:
        raise SynthConfigError(f"writer={config.get('writer')!r}: unknown writer(s) {unknown}; known: {', '.join(WRITERS)}")
    if "steps" in writers and len(writers) > 1:
        raise SynthConfigError("writer 'steps' (numbered step lists) stands alone: the other writers' chain "
                               "rejects step lists")
    if "llm" in writers and not (config.llm.base_url and config.llm.model):
        raise SynthConfigError("writer 'llm' needs llm.base_url and llm.model")
    if config.get("bind", "all") not in ("all", "opaque"):
        raise SynthConfigError(f"bind must be 'all' or 'opaque', got {config.bind!r}")

    unknown_domains = set(config.get("domains", ())) - set(DOMAINS) - {CROSS_DOMAIN}
    if unknown_domains:
        raise SynthConfigError(f"domains: unknown {sorted(unknown_domains)}; known: {DOMAINS + (CROSS_DOMAIN,)}")


WRITERS = ("real", "phrasebook", "llm", "steps")


def writer_names(config: Any) -> list[str]:
    """``config.writer`` ("llm,phrasebook") as a list; configs saved before the field existed: "steps"."""
    return [name.strip() for name in str(config.get("writer", "steps")).split(",") if name.strip()]


def make_renderer(config: Any, output_dir: str | os.PathLike | None = None) -> Any:
    """The query renderer of a synthesis config: a :class:`~toolrl.synth.query_writer.WriterChain` of the
    named writers, or the numbered step-list renderer alone (``writer="steps"``)."""
    names = writer_names(config)
    if names == ["steps"]:
        paraphraser = None
        if config.paraphrase.enabled:
            paraphraser = OpenAIParaphraser(config.paraphrase.base_url, config.paraphrase.model,
                                            os.environ.get(config.paraphrase.api_key_env, ""))
        return QueryRenderer(paraphraser)
    writers: list[Any] = []
    for name in names:
        if name == "phrasebook":
            writers.append(PhrasebookWriter())
        elif name == "real":
            writers.append(RealQueryWriter(benchmark_templates(config.data_dir or None)))
        elif name == "llm":
            cache = config.llm.cache_path or (os.path.join(output_dir, "llm_answers.sqlite") if output_dir else None)
            writers.append(LLMQueryWriter(config.llm.base_url, config.llm.model,
                                          api_key=os.environ.get(config.llm.api_key_env, ""), cache_path=cache,
                                          validate=missing_values))
    return WriterChain(writers)


SYNTHESIS_RECORD = "synthesis.json"


def write_synthesis_record(out: str | os.PathLike, config: Any, traces: Sequence[Trace],
                           splits: dict[str, list[Trace]], warnings: Sequence[str], writer_stats: dict[str, int]) -> None:
    """``<out>/toolrl_traces/synthesis.json``: the settings, what each query writer wrote and rejected, the
    shortfalls and the split sizes of one synthesis (read by the study's data report)."""
    record = {
        "settings": {key: (list(value) if isinstance(value, tuple) else value)
                     for key, value in config.to_dict().items() if key not in ("llm", "paraphrase")},
        "traces": len(traces),
        "by_domain": dict(sorted(Counter(t.domain for t in traces).items())),
        "by_calls": {str(k): v for k, v in sorted(Counter(t.n_calls for t in traces).items())},
        "splits": {name: len(items) for name, items in splits.items()},
        "queries": writer_stats,
        "step_list_share": (sum(is_step_list(t.query) for t in traces) / len(traces)) if traces else 0.0,
        "warnings": list(warnings),
    }
    path = Path(out) / "toolrl_traces" / SYNTHESIS_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
