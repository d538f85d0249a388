"""Games: the registry of multi-turn games between a policy and a judge (docs/design.md, "Games").

A game says what a task is (made from golden samples), what the policy is shown, when the task
ends and what it is scored on. Training rolls a game out (`Game.rollout`, token rows and reward
inputs); evaluation plays it (`Game.evaluate`, verdicts) and aggregates the verdicts
(`Game.aggregate`). Each game is registered once, here, with everything the rest of the code would
otherwise decide by comparing its name:

  ========== ================================ ========== ========= =============== ==============
  game       task                             trainable  evaluable result unit     reward input
  ========== ================================ ========== ========= =============== ==============
  episode    a sample, free-running against   yes        no        -               episode
             the cached environment
  turn       one scored turn after its golden yes        yes       turns           turn
             history (`toolrl.eval.protocol`)
  benchmark  a sample, free-running under the no         yes       samples         -
             benchmark's own runner and rules
             (`toolrl.eval.official`)
  ========== ================================ ========== ========= =============== ==============

The `turn` game is one object for training and evaluation: the rollout steps the same `TurnState`
the evaluator steps, on the same prompts (`toolrl.rl.rollout`, `toolrl.policy.runtime.EvalPolicy`).

Names: ``official`` is the old name of ``benchmark`` (``eval.protocol="official"``, result files
written before games had names); `get` accepts it. Reports keep writing ``"protocol": "official"``
for the benchmark game (`Game.report_name`) so that readers of earlier result files read new ones.

Reward compatibility is derived: a game that trains declares the reward input it produces
(`Game.reward_input`), each reward family declares the input it scores
(`toolrl.rewards.registry`, ``input_kind``), and `reward_families_for` pairs them.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

# Modules, not names: toolrl.rl.rollout imports toolrl.eval (whose package imports the evaluator,
# which imports this module), so the names are looked up when a game is played, not at import.
from toolrl.eval import metrics as metrics_lib
from toolrl.eval import official as official_lib
from toolrl.eval import protocol as protocol_lib
from toolrl.rewards.registry import Reward, registered_families, score_episodes, score_turns
from toolrl.rl import rollout as rollout_lib


@dataclasses.dataclass(frozen=True)
class RolloutContext:
    """What a rollout needs besides its tasks: the policy, the judge and the budgets.

    Attributes:
      policy: the run-time `Policy` (generation and prompts).
      settings: its `SamplingSettings`.
      max_turns: assistant turns per episode, rounds per scored turn (`rollout.max_turns`).
      max_seq_len: tokens of a whole row.
      tool_view: `data.tool_view`.
      render: the view of a tool response in a prompt.
      env: the cached environment (the episode game's judge).
      matcher: the evaluator's call matcher (the turn game's judge).
    """

    policy: Any
    settings: Any
    max_turns: int
    max_seq_len: int
    tool_view: str
    render: Callable[[Any], str]
    env: Any = None
    matcher: Any = None


@dataclasses.dataclass(frozen=True)
class Game:
    """One registered game; a hook left None means the game does not do that (trains / evaluates).

    Attributes:
      name: the registry key (`rollout.game`, `eval.game`).
      description: one line, for messages and tables.
      training_tasks: samples -> the tasks a run trains on (a sample, or a (sample, scored turn) pair).
      task_id: a training task -> its id in the metrics log (``data/tasks``).
      fit_what: what the fit report calls the training tasks.
      budget: (task, policy, tool_view, render) -> `rollout.TrajectoryBudget` of its golden solution.
      rollout: (tasks, group_size, context, key) -> `rollout.RolloutBatch`.
      reward_input: the reward input its rollout produces ("episode" / "turn"; None: not trainable).
      score_rewards: the reward registry's scorer of that input (`score_episodes` / `score_turns`).
      needs_matcher: its rollout is judged by the evaluator's call matcher (`RolloutContext.matcher`).
      eval_units: (samples, selected scored turns, subset) -> what an evaluation plays: the turns, or
        the samples (those of the selected turns when `subset`, else all).
      evaluate: (units, policy, matcher, *, max_rounds, batch_size, render, progress=None) -> results
        (``progress``: `toolrl.eval.protocol.Progress`).
      aggregate: results -> bucket -> domain -> `toolrl.eval.metrics.Metrics`.
      unit: what one result is: "turns" or "samples" (the report's JSON key and table layout).
      headline_bucket: the bucket a report quotes by default.
      report_name: the name reports write as ``"protocol"`` (kept for readers of older result files).
      title: the line reports and plots name the game with.
      benchmark_records: its results can be written in the benchmark's own result format.
    """

    name: str
    description: str
    training_tasks: Callable[[Sequence[Any]], list[Any]] | None = None
    task_id: Callable[[Any], str] | None = None
    fit_what: str = ""
    budget: Callable[..., Any] | None = None
    rollout: Callable[..., Any] | None = None
    reward_input: str | None = None
    score_rewards: Callable[..., Any] | None = None
    needs_matcher: bool = False
    eval_units: Callable[..., list[Any]] | None = None
    evaluate: Callable[..., list[Any]] | None = None
    aggregate: Callable[[Sequence[Any]], dict[str, dict[str, Any]]] | None = None
    unit: str = "turns"
    headline_bucket: str = "complete"
    report_name: str = ""
    title: str = ""
    benchmark_records: bool = False

    @property
    def trainable(self) -> bool:
        return self.rollout is not None

    @property
    def evaluable(self) -> bool:
        return self.evaluate is not None

    def reward_families(self) -> tuple[str, ...]:
        """The registered reward families that score this game's rollouts."""
        return reward_families_for(self)


_GAMES: dict[str, Game] = {}
# The games a config plays when it names none (`rollout.game`, `eval.game` in toolrl.rl.config).
DEFAULT_ROLLOUT_GAME = "episode"
DEFAULT_EVAL_GAME = "turn"
# Old name -> registered name, accepted for one release (with a warning where a config names it).
ALIASES = {"official": "benchmark"}


def register_game(game: Game) -> Game:
    if game.name in _GAMES or game.name in ALIASES:
        raise ValueError(f"game {game.name!r} is already registered")
    _GAMES[game.name] = dataclasses.replace(game, report_name=game.report_name or game.name)
    return _GAMES[game.name]


def registered_games(*, trainable: bool = False, evaluable: bool = False) -> tuple[str, ...]:
    """Names of the registered games (only those that train / evaluate when asked), sorted."""
    return tuple(sorted(name for name, g in _GAMES.items()
                        if (g.trainable or not trainable) and (g.evaluable or not evaluable)))


def canonical(name: str) -> str:
    """The registered name of `name` (an alias maps onto its game); unknown names are returned as is."""
    return ALIASES.get(str(name), str(name))


def get(name: str, *, field: str = "game", trainable: bool = False, evaluable: bool = False) -> Game:
    """The game registered under `name` (or an alias of it). Raises ValueError naming `field` and
    the games that would do when it is unknown, does not train (`trainable`) or evaluate (`evaluable`)."""
    game = _GAMES.get(canonical(name))
    ok = game is not None and (game.trainable or not trainable) and (game.evaluable or not evaluable)
    if not ok:
        what = "a trainable" if trainable else "an evaluation" if evaluable else "a"
        raise ValueError(f"{field}={name!r} is not {what} game: expected one of "
                         f"{', '.join(registered_games(trainable=trainable, evaluable=evaluable))}")
    return game


def reward_families_for(game: Game) -> tuple[str, ...]:
    """Reward families whose input kind is what `game`'s rollout produces (none for an untrainable game)."""
    if game.reward_input is None:
        return ()
    return tuple(f for f in registered_families() if Reward(f, "graduated").input_kind == game.reward_input)


# ----------------------------------------------------------------------------- configs


def _section_value(section: Any, new: str, old: str, default: str) -> str:
    """A section's game: the deprecated field when set (a config `validate` has not seen), else the new one."""
    value = str(section.get(old, "") or "") if section is not None else ""
    return value or (str(section.get(new, default) or default) if section is not None else default)


def rollout_game(config: Any) -> Game:
    """The trainable game of a config (`rollout.game`; the deprecated `rollout.mode` when set)."""
    return get(_section_value(config.get("rollout"), "game", "mode", DEFAULT_ROLLOUT_GAME), field="rollout.game",
               trainable=True)


def eval_game(config: Any) -> Game:
    """The evaluation game of a config (`eval.game`; the deprecated `eval.protocol` when set)."""
    return get(_section_value(config.get("eval"), "game", "protocol", DEFAULT_EVAL_GAME), field="eval.game",
               evaluable=True)


def _deprecated(message: str) -> None:
    """One line on stderr (a FutureWarning, shown by default): no source line, since the old name comes
    from a config file or a --config flag, not from the line that validates it."""
    warnings.warn_explicit(message, FutureWarning, filename="config", lineno=0)


def resolve_config_names(config: Any, errors: list[str]) -> None:
    """`validate`'s part: maps the deprecated `rollout.mode` / `eval.protocol` onto `rollout.game` /
    `eval.game` (one warning line each), an alias onto its game, and appends to `errors` what is wrong:
    an unknown game, both names set to different games, a reward family that does not score the
    rollout's game (derived from the registries)."""
    for section, new, old, default, need in (("rollout", "game", "mode", DEFAULT_ROLLOUT_GAME, "trainable"),
                                             ("eval", "game", "protocol", DEFAULT_EVAL_GAME, "evaluable")):
        s = config.get(section)
        if s is None:
            continue
        before, value = str(s.get(old, "") or ""), str(s.get(new, default) or default)
        if before:
            if new in s and value != default and canonical(value) != canonical(before):
                errors.append(f"{section}.{old}={before!r} (deprecated) and {section}.{new}={value!r} name different "
                              f"games: set only {section}.{new}")
                continue
            _deprecated(f"{section}.{old} is deprecated: use {section}.{new}={canonical(before)!r}")
            value = before
        elif value in ALIASES:
            _deprecated(f"{section}.{new}={value!r} is an old name: use {canonical(value)!r}")
        try:
            game = get(value, field=f"{section}.{old if before else new}", **{need: True})
        except ValueError as err:
            errors.append(str(err))
            continue
        if new in s:
            s[new] = game.name
        if old in s:
            s[old] = ""
    rollout, reward = config.get("rollout"), config.get("reward")
    if rollout is None or reward is None:
        return
    try:
        game = rollout_game(config)
    except ValueError:
        return  # already reported
    families = reward_families_for(game)
    if reward.family in registered_families() and reward.family not in families:
        article = "an" if str(game.reward_input)[:1] in "aeiou" else "a"
        errors.append(f"rollout.game={game.name!r} needs {article} {game.reward_input} reward: reward.family must be "
                      f"{' or '.join(repr(f) for f in families)}, not {reward.family!r}")


# ----------------------------------------------------------------------------- the registrations


def _turn_pairs(samples: Sequence[Any]) -> list[tuple[Any, Any]]:
    """The turn game's training tasks: (sample, scored turn) for every scored turn with a complete history."""
    return [(s, t) for s in samples for t in protocol_lib.build_turn_tasks(s) if t.complete]


def _turn_id(task: tuple[Any, Any]) -> str:
    sample, turn = task
    return f"{sample.sample_id}@{turn.turn}"


def _turn_budget(task: tuple[Any, Any], policy: Any, tool_view: str, render: Callable[[Any], str]) -> Any:
    return rollout_lib.turn_budget(task[1], policy, tool_view, render)


def _turn_rollout(tasks: Sequence[Any], group_size: int, context: RolloutContext, key: Any) -> Any:
    return rollout_lib.rollout_turns(tasks, group_size, context.policy, context.matcher, key, context.settings,
                                     max_rounds=context.max_turns, max_seq_len=context.max_seq_len,
                                     tool_view=context.tool_view, render=context.render)


def _turn_units(samples: Sequence[Any], tasks: Sequence[Any], subset: bool) -> list[Any]:
    del samples, subset
    return list(tasks)


def _turn_evaluate(units: Sequence[Any], policy: Any, matcher: Any, *, max_rounds: int, batch_size: int,
                   render: Callable[[Any], str], progress: Any = None) -> list[Any]:
    return protocol_lib.run_protocol(units, policy, matcher, max_rounds=max_rounds, batch_size=batch_size,
                                     render=render, progress=progress)


def _episode_tasks(samples: Sequence[Any]) -> list[Any]:
    return list(samples)


def _episode_budget(sample: Any, policy: Any, tool_view: str, render: Callable[[Any], str]) -> Any:
    return rollout_lib.episode_budget(sample, policy, tool_view, render, False)


def _episode_rollout(tasks: Sequence[Any], group_size: int, context: RolloutContext, key: Any) -> Any:
    return rollout_lib.rollout_episodes(tasks, group_size, context.policy, context.env, key, context.settings,
                                        max_turns=context.max_turns, max_seq_len=context.max_seq_len,
                                        tool_view=context.tool_view)


def _benchmark_units(samples: Sequence[Any], tasks: Sequence[Any], subset: bool) -> list[Any]:
    """Whole samples: with a subset of turns, the samples those turns belong to."""
    if not subset:
        return list(samples)
    kept = {t.sample_id for t in tasks}
    return [s for s in samples if s.sample_id in kept]


def _benchmark_evaluate(units: Sequence[Any], policy: Any, matcher: Any, *, max_rounds: int, batch_size: int,
                        render: Callable[[Any], str], progress: Any = None) -> list[Any]:
    return official_lib.run_official(units, policy, official_lib.OfficialRules.from_matcher(matcher),
                                     max_rounds=max_rounds, batch_size=batch_size, render=render, progress=progress)


def _aggregate_turns(results: Sequence[Any]) -> dict[str, dict[str, Any]]:
    return metrics_lib.aggregate(results)


def _aggregate_samples(results: Sequence[Any]) -> dict[str, dict[str, Any]]:
    return metrics_lib.aggregate_samples(results)


EPISODE = register_game(Game(
    name="episode", description="a sample free-running against the cached environment (training)",
    training_tasks=_episode_tasks, task_id=lambda sample: sample.sample_id, fit_what="episodes",
    budget=_episode_budget, rollout=_episode_rollout, reward_input="episode", score_rewards=score_episodes))

TURN = register_game(Game(
    name="turn", description="one scored turn after its golden history (training and evaluation)",
    training_tasks=_turn_pairs, task_id=_turn_id, fit_what="scored turns", budget=_turn_budget,
    rollout=_turn_rollout, reward_input="turn", score_rewards=score_turns, needs_matcher=True,
    eval_units=_turn_units, evaluate=_turn_evaluate, aggregate=_aggregate_turns, unit="turns",
    headline_bucket="complete", title="protocol: turn (teacher-forced per scored turn)"))

BENCHMARK = register_game(Game(
    name="benchmark", description="a sample free-running under the benchmark's own runner and rules (evaluation)",
    eval_units=_benchmark_units, evaluate=_benchmark_evaluate, aggregate=_aggregate_samples, unit="samples",
    headline_bucket="all", report_name="official", benchmark_records=True,
    title="protocol: official (the benchmark's free-running runner)"))
