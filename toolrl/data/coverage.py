"""What a training set teaches against what the benchmark asks: coverage, novelty and query overlap.

Pure functions over golden samples (no I/O); ``experiments/data_report.py`` writes them to
``experiments/results/<study>/data_report.json``.

* :func:`coverage_tables`: domain x (training turns, eval turns) and function x (training calls, eval
  calls), and the functions the eval turns need that training never calls.
* :func:`novel_counts`: per domain, how many scored turns of a held-out set are *novel* (their required
  call set is no training turn's; :mod:`toolrl.eval.selection`).
* :func:`query_overlap`: how close training queries come to the benchmark's queries, two ways:
  the longest run of words a training query shares with any eval query (and the most word 5-grams one
  pair shares), and *template families*: a query's family is its text, lower-cased, with every value
  masked (the golden calls' argument strings, numbers and number words, month names, capitalised
  words after the first word of a sentence), punctuation dropped. Two queries share a family when
  their masked texts are equal: the same sentence with other values, e.g. ComplexFuncBench's "Check
  out the most trending tourist spots in Manchester for my family trip." and its Oxford twin.
  The target is 0 training queries sharing a family with an eval query.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from toolrl.eval.protocol import build_turn_tasks
from toolrl.eval.selection import novel_tasks, training_turn_sets
from toolrl.synth.surface import MONTHS, NUMBER_WORDS

CROSS = "Cross"


def sample_domain(sample: Any, tool_domains: Mapping[str, str]) -> str:
    """The sample's own domain, or (for the authors' synthesized samples, domain "synthetic" or "") the
    domain of its tools: one domain when all agree, else Cross."""
    if sample.domain and sample.domain != "synthetic":
        return sample.domain
    found = {tool_domains.get(c.function, CROSS) for c in sample.calls}
    return found.pop() if len(found) == 1 else CROSS


def scored_turns(samples: Iterable[Any], complete: bool = True) -> list[Any]:
    return [t for s in samples for t in build_turn_tasks(s) if t.complete or not complete]


def coverage_tables(train: Sequence[Any], evaluation: Sequence[Any], tool_domains: Mapping[str, str],
                    cache_functions: Iterable[str] = ()) -> dict[str, Any]:
    """Domain and function tables of training turns/calls against the eval set's scored turns/calls."""
    train_turns = scored_turns(train)
    eval_turns = scored_turns(evaluation)
    domain_of = {s.sample_id: sample_domain(s, tool_domains) for s in [*train, *evaluation]}
    domains: dict[str, dict[str, int]] = defaultdict(lambda: {"training_turns": 0, "eval_turns": 0})
    for task in train_turns:
        domains[domain_of[task.sample_id]]["training_turns"] += 1
    for task in eval_turns:
        domains[domain_of[task.sample_id]]["eval_turns"] += 1
    train_calls = Counter(c.function for t in train_turns for c in t.required)
    eval_calls = Counter(c.function for t in eval_turns for c in t.required)
    functions = {f: {"training_calls": train_calls.get(f, 0), "eval_calls": eval_calls.get(f, 0)}
                 for f in sorted(set(train_calls) | set(eval_calls))}
    cached = set(cache_functions)
    uncovered = sorted(f for f in eval_calls if not train_calls.get(f))
    return {
        "domains": dict(sorted(domains.items())),
        "functions": functions,
        "eval_functions_not_in_training": uncovered,
        "eval_functions_not_in_cache": sorted(f for f in uncovered if cached and f not in cached),
        "eval_turns_needing_an_untrained_function": sum(
            1 for t in eval_turns if any(not train_calls.get(c.function) for c in t.required)),
    }


def novel_counts(train: Sequence[Any], heldout: Sequence[Any], tool_domains: Mapping[str, str]) -> dict[str, Any]:
    """Scored turns (complete history) of ``heldout``, and how many are novel, per domain and in all."""
    seen = training_turn_sets(train)
    turns = scored_turns(heldout)
    novel = novel_tasks(turns, seen)
    domain_of = {s.sample_id: sample_domain(s, tool_domains) for s in heldout}
    by_domain: dict[str, dict[str, int]] = defaultdict(lambda: {"turns": 0, "novel": 0})
    for task in turns:
        by_domain[domain_of[task.sample_id]]["turns"] += 1
    for task in novel:
        by_domain[domain_of[task.sample_id]]["novel"] += 1
    return {"turns": len(turns), "novel": len(novel), "by_domain": dict(sorted(by_domain.items()))}


# ---------------------------------------------------------------------- query overlap
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_MONTH_WORDS = {m.lower() for m in MONTHS} | {m[:3].lower() for m in MONTHS}
_NUMBER_WORDS = set(NUMBER_WORDS)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _values(sample: Any) -> list[str]:
    out = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value.strip()) >= 3:
            out.append(value.strip())

    for call in sample.calls:
        walk(call.arguments)
    return sorted(set(out), key=len, reverse=True)


def family_key(query: str, values: Iterable[str] = ()) -> str:
    """The query's template family (see the module docstring)."""
    text = query
    for value in values:
        text = re.sub(re.escape(value), " VALUE ", text, flags=re.I)
    tokens = []
    sentence_start = True
    for raw in re.findall(r"[A-Za-z]+(?:'[a-z]+)?|\d+(?:[.:]\d+)?(?:st|nd|rd|th)?|[.!?]", text):
        if raw in ".!?":
            sentence_start = True
            continue
        lowered = raw.lower()
        if raw == "VALUE" or raw[0].isdigit() or lowered in _NUMBER_WORDS or lowered in _MONTH_WORDS:
            tokens.append("#")
        elif raw[0].isupper() and not sentence_start and lowered not in ("i", "i'm", "i'd", "i'll", "i've"):
            tokens.append("#")
        else:
            tokens.append(lowered)
        sentence_start = False
    collapsed = []
    for token in tokens:  # runs of masked words are one value ("New York City")
        if token == "#" and collapsed and collapsed[-1] == "#":
            continue
        collapsed.append(token)
    return " ".join(collapsed)


def _ngrams(tokens: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def query_overlap(train: Sequence[Any], evaluation: Sequence[Any], n: int = 5) -> dict[str, Any]:
    """Word n-gram and template-family overlap of training queries with eval queries."""
    eval_words = [words(s.query) for s in evaluation]
    eval_grams: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for position, tokens in enumerate(eval_words):
        for gram in _ngrams(tokens, n):
            eval_grams[gram].add(position)
    longest, longest_pair, most_shared, sharing = 0, None, 0, 0
    for sample in train:
        tokens = words(sample.query)
        hits = [gram for gram in _ngrams(tokens, n) if gram in eval_grams]
        if not hits:
            continue
        sharing += 1
        per_eval = Counter(p for gram in hits for p in eval_grams[gram])
        most_shared = max(most_shared, max(per_eval.values()))
        for position in per_eval:
            run = _longest_common_run(tokens, eval_words[position])
            if run > longest:
                longest, longest_pair = run, (sample.sample_id, evaluation[position].sample_id)
    eval_families = Counter(family_key(s.query, _values(s)) for s in evaluation)
    shared_family = [s.sample_id for s in train if family_key(s.query, _values(s)) in eval_families]
    return {
        f"training_queries_sharing_a_word_{n}gram": sharing,
        f"most_word_{n}grams_one_pair_shares": most_shared,
        "longest_shared_word_run": longest,
        "longest_shared_word_run_pair": list(longest_pair) if longest_pair else None,
        "training_queries_sharing_a_template_family": len(shared_family),
        "template_family_examples": shared_family[:5],
        "training_queries": len(train),
        "eval_queries": len(evaluation),
        "eval_template_families": len(eval_families),
    }


def _longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for i in range(1, len(a) + 1):
        current = [0] * (len(b) + 1)
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best
