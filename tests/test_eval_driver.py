"""The batched driver sends each round's requests shortest first and hands every answer to its own run."""

from __future__ import annotations

import dataclasses

from toolrl.eval.protocol import drive_batched, request_size


@dataclasses.dataclass
class Run:
    """A game run that asks `rounds` times with a message of `length` characters, and keeps its answers."""

    name: str
    length: int
    rounds: int
    answers: list = dataclasses.field(default_factory=list)

    @property
    def done(self):
        return len(self.answers) >= self.rounds

    def request(self):
        return Request(self.name, ({"role": "user", "content": "x" * self.length},))

    def step(self, text):
        self.answers.append(text)


@dataclasses.dataclass(frozen=True)
class Request:
    name: str
    messages: tuple
    tools: tuple = ()


class EchoPolicy:
    """Answers each request with its run's name; records the calls."""

    def __init__(self, sizes=None):
        self.calls = []
        if sizes is not None:
            self.request_size = lambda request: sizes[request.name]

    def __call__(self, requests):
        self.calls.append([r.name for r in requests])
        return [f"answer of {r.name}" for r in requests]


def test_shortest_first_and_each_answer_to_its_run():
    runs = [Run("a", 50, 2), Run("b", 10, 1), Run("c", 30, 2), Run("d", 20, 1), Run("e", 30, 1)]
    policy = EchoPolicy()
    drive_batched(runs, policy, 2, lambda run, text: run.step(text))
    # round 1 by characters: b(10) d(20) c(30) e(30, after c: ties keep run order) a(50); round 2: c, a
    assert policy.calls == [["b", "d"], ["c", "e"], ["a"], ["c", "a"]]
    assert all(run.answers == [f"answer of {run.name}"] * run.rounds for run in runs)


def test_the_policys_own_size_wins():
    runs = [Run("a", 50, 1), Run("b", 10, 1), Run("c", 30, 1)]
    policy = EchoPolicy(sizes={"a": 1, "b": 3, "c": 2})  # e.g. prompt tokens, disagreeing with characters
    drive_batched(runs, policy, 2, lambda run, text: run.step(text))
    assert policy.calls == [["a", "c"], ["b"]]


def test_request_size_counts_messages_and_tools():
    short, long = Request("s", ({"role": "user", "content": "hi"},)), Request("l", ({"role": "user", "content": "hi"},),
                                                                           ({"name": "Search_Hotels"},))
    assert request_size(long) > request_size(short) > 0
