"""The fit report: how many tasks can be solved at all within a run's budgets, counted before training.

A task fits when its golden trajectory — the prompt, every golden assistant turn and every
environment segment, rendered by the same chat format the rollout uses — needs at most
`rollout.max_turns` turns (rounds in turn mode), at most `rollout.max_new_tokens` tokens in any one
turn, at most `rollout.max_seq_len` tokens in all, every turn starting where the rollout still
generates one (`rollout.turn_fits`: at most max_seq_len - max_new_tokens tokens before it), and when every argument value its golden calls
copy from an earlier response is still in the prompt's view of that response (`data.response_*` cut
long responses; a value cut away can only be guessed). A task that does not fit is unsolvable by
construction (the budget, not the policy, would end it), so it is dropped and counted; fewer than
`data.min_fit` fitting is a configuration error naming the fields to raise.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any, Callable, Generic, Sequence, TypeVar

from toolrl.rl.config import ConfigError
from toolrl.rl.rollout import TrajectoryBudget, turn_fits

T = TypeVar("T")

# Which budget a task exceeds -> the config field that sets it.
BUDGET_FIELDS = {"turns": "rollout.max_turns", "turn_tokens": "rollout.max_new_tokens",
                 "total_tokens": "rollout.max_seq_len",
                 "turn_start": "rollout.max_seq_len - rollout.max_new_tokens",
                 "hidden_values": "data.response_keep / data.response_max_chars"}


@dataclasses.dataclass
class FitReport(Generic[T]):
    """Which tasks fit the budgets.

    Attributes:
      what: the kind of task ("episodes", "scored turns", "SFT episodes").
      kept: the tasks that fit, in order.
      total: tasks considered.
      exceeded: budget name (a key of `BUDGET_FIELDS`) -> tasks exceeding it.
      largest: the largest need seen for each budget (turns, turn_tokens, total_tokens, and with the
        rollout rule turn_start: the most tokens before a golden turn).
    """

    what: str
    kept: list[T]
    total: int
    exceeded: Counter
    largest: dict[str, int]

    @property
    def fit(self) -> int:
        return len(self.kept)

    @property
    def share(self) -> float:
        return self.fit / self.total if self.total else 0.0

    def line(self) -> str:
        return f"fit: {self.fit}/{self.total} tasks ({100 * self.share:.0f}%)"

    def describe(self) -> str:
        """A few lines: the fit figure, what the others exceed, the largest needs."""
        lines = [f"{self.what}: {self.fit}/{self.total} fit ({100 * self.share:.1f}%)"]
        for budget, count in sorted(self.exceeded.items()):
            if budget == "hidden_values":
                lines.append(f"  {count} need a response value the view cuts ({BUDGET_FIELDS[budget]})")
            else:
                lines.append(f"  {count} exceed {BUDGET_FIELDS[budget]}")
        need = ", ".join(f"{k} {v}" for k, v in self.largest.items())
        lines.append(f"  largest need: {need}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, "fit": self.fit, "total": self.total, "share": self.share,
                "exceeded": dict(self.exceeded), "largest": dict(self.largest)}


def fit_report(what: str, tasks: Sequence[T], budget_of: Callable[[T], TrajectoryBudget], *, max_turns: int,
               max_new_tokens: int, max_seq_len: int, rollout_rule: bool = True) -> FitReport[T]:
    """Measures every task's golden trajectory against the budgets (`budget_of` renders it).

    With `rollout_rule` (GRPO tasks) the golden turns must also start where a rollout still generates
    one (`turn_fits`, the rule the rollout itself applies); SFT episodes, never rolled out, pass False."""
    kept, exceeded = [], Counter()
    largest = {"turns": 0, "turn_tokens": 0, "total_tokens": 0}
    if rollout_rule:
        largest["turn_start"] = 0
    for task in tasks:
        need = budget_of(task)
        over = [name for name, value, limit in (("turns", need.turns, max_turns),
                                                ("turn_tokens", need.longest_turn, max_new_tokens),
                                                ("total_tokens", need.total, max_seq_len),
                                                ("hidden_values", need.hidden_values, 0)) if value > limit]
        if rollout_rule and not turn_fits(need.last_start, max_new_tokens, max_seq_len):
            over.append("turn_start")
        exceeded.update(over)
        largest["turns"] = max(largest["turns"], need.turns)
        largest["turn_tokens"] = max(largest["turn_tokens"], need.longest_turn)
        largest["total_tokens"] = max(largest["total_tokens"], need.total)
        if rollout_rule:
            largest["turn_start"] = max(largest["turn_start"], need.last_start)
        if not over:
            kept.append(task)
    return FitReport(what, kept, len(tasks), exceeded, largest)


def require_fit(report: FitReport, min_fit: float) -> None:
    """Raises ConfigError naming the budget fields when fewer than `min_fit` of the tasks fit."""
    if report.total and report.share >= min_fit and report.fit > 0:
        return
    fields = ", ".join(f"{BUDGET_FIELDS[b]} ({n} tasks)" for b, n in report.exceeded.most_common())
    raise ConfigError(
        f"only {report.fit}/{report.total} {report.what} ({100 * report.share:.0f}%) fit the budgets, below "
        f"data.min_fit={min_fit}: raise {fields or 'the budgets'} (largest need: "
        f"{', '.join(f'{k} {v}' for k, v in report.largest.items())}), or select shorter tasks "
        f"(data.max_steps_per_sample)")
