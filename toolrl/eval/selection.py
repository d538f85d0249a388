"""Which scored turns an evaluation uses: novel turns only, and seeded subsets stratified by domain.

* :func:`turn_id`: ``<sample_id>#<turn index>``, the name every evaluation record lists its turns by.
* :func:`novel_tasks`: held-out means unseen: a scored turn is *novel* when its required call set
  (function + canonical arguments of its non-free golden calls) is the call set of no training turn.
  Turns that repeat a training turn measure recall, not generalisation.
* :func:`stratified_subset`: ``n`` turns drawn per domain in proportion to the domain's share (largest
  remainder; every domain with turns gets at least one while ``n`` allows), at random with a seed, then
  put back in source order. Never the first ``n`` in file order: eval_100's file order is domain by
  domain, so its first 48 complete turns held no Attraction turn.
* :func:`balanced_subset`: ``n`` items spread as evenly as the domains allow (eval_100's own mix is
  20 samples per domain), for a small training pool such as the main job's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from toolrl.env.canonical import cache_key


def turn_id(task: Any) -> str:
    return f"{task.sample_id}#{task.turn}"


def call_set(calls: Iterable[Any]) -> frozenset[str]:
    return frozenset(cache_key(c.function, c.arguments) for c in calls)


def training_turn_sets(samples: Iterable[Any]) -> set[frozenset[str]]:
    """The required call set of every golden turn of the training samples (free lookups left out, as a
    scored turn's required set leaves them out)."""
    out = set()
    for sample in samples:
        for turn in sample.turns:
            required = [c for c in turn.calls if not c.is_free]
            if required:
                out.add(call_set(required))
    return out


def novel_tasks(tasks: Sequence[Any], train_sets: set[frozenset[str]]) -> list[Any]:
    """The tasks whose required call set is no training turn's."""
    return [task for task in tasks if call_set(task.required) not in train_sets]


def stratified_subset(tasks: Sequence[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` tasks stratified by ``task.domain`` (see the module docstring); all of them when ``n`` >= len."""
    if n <= 0 or n >= len(tasks):
        return list(tasks)
    by_domain: dict[str, list[int]] = defaultdict(list)
    for position, task in enumerate(tasks):
        by_domain[task.domain].append(position)
    domains = sorted(by_domain)
    exact = {d: n * len(by_domain[d]) / len(tasks) for d in domains}
    quota = {d: min(len(by_domain[d]), int(exact[d])) for d in domains}
    if n >= len(domains):
        for d in domains:
            quota[d] = max(quota[d], 1)
    # Largest remainders fill what is left (and over-assignment from the minimum of one is taken back).
    order = sorted(domains, key=lambda d: (-(exact[d] - int(exact[d])), d))
    while sum(quota.values()) < n:
        for d in order:
            if sum(quota.values()) < n and quota[d] < len(by_domain[d]):
                quota[d] += 1
    floor = 1 if n >= len(domains) else 0
    while sum(quota.values()) > n:
        d = max((d for d in domains if quota[d] > floor), key=lambda d: (quota[d] - exact[d], d))
        quota[d] -= 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for d in domains:
        picks = rng.permutation(len(by_domain[d]))[: quota[d]]
        chosen += [by_domain[d][int(i)] for i in picks]
    return [tasks[i] for i in sorted(chosen)]


def balanced_subset(items: Sequence[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` items taken round-robin over their domains (``item.domain``, sorted), each domain's items
    shuffled with ``seed``; a domain that runs out leaves its turn to the others. Source order kept."""
    if n <= 0 or n >= len(items):
        return list(items)
    by_domain: dict[str, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        by_domain[item.domain].append(position)
    rng = np.random.default_rng(seed)
    queues = {d: [by_domain[d][int(i)] for i in rng.permutation(len(by_domain[d]))] for d in sorted(by_domain)}
    chosen: list[int] = []
    while len(chosen) < n:
        for domain, queue in queues.items():
            if queue and len(chosen) < n:
                chosen.append(queue.pop(0))
    return [items[i] for i in sorted(chosen)]
