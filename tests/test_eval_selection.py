"""Which turns an evaluation uses: stratified subsets by domain, novel turns only, turn ids recorded."""

import dataclasses
from collections import Counter

from toolrl.data.golden import load_samples
from toolrl.eval.protocol import build_turn_tasks
from toolrl.eval.selection import call_set, novel_tasks, stratified_subset, training_turn_sets, turn_id


@dataclasses.dataclass(frozen=True)
class _Task:
    sample_id: str
    turn: int
    domain: str


def test_stratified_subset_by_hand():
    tasks = [_Task(f"s{i}", 0, d) for i, d in enumerate(["A"] * 50 + ["B"] * 30 + ["C"] * 20)]
    picked = stratified_subset(tasks, 10, seed=0)
    assert Counter(t.domain for t in picked) == {"A": 5, "B": 3, "C": 2}
    assert [tasks.index(t) for t in picked] == sorted(tasks.index(t) for t in picked)  # source order
    assert picked == stratified_subset(tasks, 10, seed=0)
    assert picked != stratified_subset(tasks, 10, seed=1)
    # every domain gets one while n allows, even a tiny one
    tiny = [_Task(f"t{i}", 0, "A") for i in range(97)] + [_Task("x", 0, "B"), _Task("y", 0, "C"), _Task("z", 0, "C")]
    assert Counter(t.domain for t in stratified_subset(tiny, 5)) == {"A": 3, "B": 1, "C": 1}
    assert stratified_subset(tasks, 0) == tasks and stratified_subset(tasks, 500) == tasks


def test_eval_100_first_48_has_no_attraction_but_stratified_does():
    tasks = [t for s in load_samples("eval_100") for t in build_turn_tasks(s) if t.complete]
    assert len(tasks) == 90
    assert "Attraction" not in {t.domain for t in tasks[:48]}
    counts = Counter(t.domain for t in stratified_subset(tasks, 48, seed=0))
    assert set(counts) == {t.domain for t in tasks} and sum(counts.values()) == 48


def test_novel_tasks_drop_turns_seen_in_training():
    samples = load_samples("bfcl_training")
    tasks = [t for s in samples for t in build_turn_tasks(s) if t.complete]
    seen = training_turn_sets(samples[:50])
    novel = novel_tasks(tasks, seen)
    assert 0 < len(novel) < len(tasks)
    assert all(call_set(t.required) not in seen for t in novel)
    # a training set's own turns are never novel to it
    assert novel_tasks([t for s in samples[:50] for t in build_turn_tasks(s)], seen) == []
    assert turn_id(tasks[0]) == f"{tasks[0].sample_id}#{tasks[0].turn}"
