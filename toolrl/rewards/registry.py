"""Name-keyed registry of reward families and the host-level batch API the trainer calls.

    reward = get_reward("episode", "graduated")
    reward.reference(episode)          # -> reference.Score (the oracle, plain Python)
    reward.kernel(encode_episodes(eps)) # -> {"reward": [B], "levels": {...}, "error_codes": [B, C]}

    out = score_episodes("paper", "graduated", episodes, EncodeConfig())
    out.reward, out.levels["atomic"], out.error_codes, out.overflow, out.call_levels["score"]
    score_episodes("paper", "graduated", episodes, paper_compat="official")  # the authors' scorer

A family is registered with `@register_reward("name")` on a function returning its
`RewardFamily` (reference, per-example kernel, encoder, input kind); modes are shared by all
families (`types.MODES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Sequence

import numpy as np

import functools

from toolrl.rewards import encode as encode_lib
from toolrl.rewards import kernels, reference
from toolrl.rewards.encode import EncodeConfig
from toolrl.rewards.types import MODES, EpisodeInput, ErrorCode, RewardWeights, TurnInput, check_paper_compat

InputKind = Literal["episode", "turn"]
OverflowPolicy = Literal["reference", "report", "raise"]


@dataclasses.dataclass(frozen=True)
class RewardFamily:
    """What a family provides.

    Attributes:
      reference: (input, mode, weights) -> reference.Score.
      single: per-example kernel (arrays of one example, mode, weights) -> dict (see kernels.py).
      encoder: (inputs, EncodeConfig) -> dict of numpy arrays.
      input_kind: "episode" (EpisodeInput) or "turn" (TurnInput).
      takes_paper_compat: whether reference and single take the `paper_compat` setting (keyword
        `paper_compat` / `compat`); other families accept the setting and ignore it.
    """

    reference: Callable[..., reference.Score]
    single: Callable[..., dict[str, Any]]
    encoder: Callable[[Sequence[Any], EncodeConfig], dict[str, np.ndarray]]
    input_kind: InputKind
    takes_paper_compat: bool = False


_FAMILIES: dict[str, RewardFamily] = {}


def register_reward(name: str) -> Callable[[Callable[[], RewardFamily]], Callable[[], RewardFamily]]:
    """Registers the family returned by the decorated factory under `name`."""

    def wrap(factory: Callable[[], RewardFamily]) -> Callable[[], RewardFamily]:
        if name in _FAMILIES:
            raise ValueError(f"reward family {name!r} is already registered")
        _FAMILIES[name] = factory()
        kernels.SINGLE.setdefault(name, _FAMILIES[name].single)
        kernels._INPUT_KEYS.setdefault(name, kernels._INPUT_KEYS[_FAMILIES[name].input_kind])
        return factory

    return wrap


@register_reward("paper")
def _paper() -> RewardFamily:
    encoder = functools.partial(encode_lib.encode_episodes, paper=True, episode=False)
    return RewardFamily(reference.paper_reward, kernels.paper_single, encoder, "episode", True)


@register_reward("episode")
def _episode() -> RewardFamily:
    encoder = functools.partial(encode_lib.encode_episodes, paper=False)
    return RewardFamily(reference.episode_reward, kernels.episode_single, encoder, "episode")


@register_reward("turn")
def _turn() -> RewardFamily:
    return RewardFamily(reference.turn_reward, kernels.turn_single, encode_lib.encode_turns, "turn")


def registered_families() -> tuple[str, ...]:
    return tuple(sorted(_FAMILIES))


def _family(name: str) -> RewardFamily:
    if name not in _FAMILIES:
        raise ValueError(f"unknown reward family {name!r}; registered: {', '.join(registered_families())}")
    return _FAMILIES[name]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown reward mode {mode!r}; available: {', '.join(MODES)}")


def _reference_score(fam: RewardFamily, inputs: Any, mode: str, weights: RewardWeights, paper_compat: str) -> reference.Score:
    if fam.takes_paper_compat:
        return fam.reference(inputs, mode, weights, paper_compat=paper_compat)
    return fam.reference(inputs, mode, weights)


@dataclasses.dataclass(frozen=True)
class Reward:
    """A family in one mode with fixed weights (and, for `paper`, a `paper_compat` setting)."""

    family: str
    mode: str
    weights: RewardWeights = RewardWeights()
    paper_compat: str = "ours"

    @property
    def input_kind(self) -> InputKind:
        return _family(self.family).input_kind

    def reference(self, inputs: EpisodeInput | TurnInput) -> reference.Score:
        """The plain-Python oracle on one episode/turn."""
        return _reference_score(_family(self.family), inputs, self.mode, self.weights, self.paper_compat)

    def encode(self, inputs: Sequence[EpisodeInput | TurnInput], config: EncodeConfig = EncodeConfig()) -> dict[str, np.ndarray]:
        return _family(self.family).encoder(inputs, config)

    def kernel(self, encoded_batch: dict[str, Any]) -> dict[str, Any]:
        """The jitted kernel on an encoded batch: reward [B], levels {name: [B]}, calls {name: [B, C]},
        error_codes [B, C]."""
        return kernels.make_kernel(self.family, self.mode, self.weights, self.paper_compat)(encoded_batch)


def get_reward(
    family: str, mode: str = "graduated", weights: RewardWeights = RewardWeights(), paper_compat: str = "ours"
) -> Reward:
    """The reward of `family` in `mode`; ValueError naming the registered ones otherwise.

    Args:
      paper_compat: `types.PAPER_COMPAT`: "ours" (default) or "official" (the authors' scorer
        exactly); used by `paper`, validated and ignored by the other families.
    """
    _family(family)
    _check_mode(mode)
    check_paper_compat(paper_compat)
    return Reward(family, mode, weights, paper_compat)


@dataclasses.dataclass(frozen=True)
class RewardOutput:
    """Host-side result of a batch.

    Attributes:
      reward: float32 [B].
      levels: {name: float32 [B]} (atomic, orchestration, name, structure, values, semantic; turn:
        + format, frontier_f1, premature; paper official: + `reference_paper.OFFICIAL_KEYS`).
      error_codes: int32 [B, C] (`ErrorCode`, PADDING beyond each row's calls; for a row whose calls
        overflowed C, the first C calls).
      overflow: int32 [B], items beyond the encode config (see encode.py); 0 when it all fit.
      call_levels: {name: float32 [B, C]} per-call levels (score, name, structure, values,
        semantic; turn: + format), 0 beyond each row's calls.
    """

    reward: np.ndarray
    levels: dict[str, np.ndarray]
    error_codes: np.ndarray
    overflow: np.ndarray
    call_levels: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def _bucket(n: int, pad_multiple: int) -> int:
    """Batch size the kernel runs at: n rounded up to a multiple of `pad_multiple` (at most
    pad_multiple - 1 dead rows; 1 runs at exactly n).  One compile per distinct bucket."""
    if pad_multiple < 1:
        raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
    return max(pad_multiple, -(-n // pad_multiple) * pad_multiple)


def _score(
    family: str,
    mode: str,
    inputs: Sequence[Any],
    encode_config: EncodeConfig,
    weights: RewardWeights,
    overflow: OverflowPolicy,
    kind: InputKind,
    empty: Any,
    paper_compat: str,
    pad_multiple: int,
) -> RewardOutput:
    fam = _family(family)
    _check_mode(mode)
    check_paper_compat(paper_compat)
    if fam.input_kind != kind:
        other = "score_turns" if fam.input_kind == "turn" else "score_episodes"
        raise ValueError(f"reward family {family!r} scores {fam.input_kind}s: call {other}")
    n = len(inputs)
    padded = list(inputs) + [empty] * (_bucket(n, pad_multiple) - n)
    enc = fam.encoder(padded, encode_config)  # validates depends_on (sample index and step named)
    out = kernels.make_kernel(family, mode, weights, paper_compat)(enc)
    reward = np.array(out["reward"][:n], np.float32)
    levels = {k: np.array(v[:n], np.float32) for k, v in out["levels"].items()}
    call_levels = {k: np.array(v[:n], np.float32) for k, v in out.get("calls", {}).items()}
    codes = np.array(out["error_codes"][:n], np.int32)
    over = np.asarray(enc["overflow"][:n], np.int32)
    rows = np.flatnonzero(over)
    if rows.size and overflow == "raise":
        raise ValueError(f"{rows.size} inputs exceed {encode_config} (rows {rows[:10].tolist()}...)")
    if rows.size and overflow == "reference":
        # Exact result for the few rows that did not fit, from the oracle.
        c = codes.shape[1]
        for b in rows:
            score = _reference_score(fam, inputs[b], mode, weights, paper_compat)
            reward[b] = score.reward
            for k, v in score.levels.items():
                if k in levels:
                    levels[k][b] = v
            row = list(score.error_codes[:c]) + [int(ErrorCode.PADDING)] * max(0, c - len(score.error_codes))
            codes[b] = row
            for k, v in score.call_levels.items():
                if k in call_levels:
                    call_levels[k][b] = (list(v[:c]) + [0.0] * max(0, c - len(v)))
    return RewardOutput(reward, levels, codes, over, call_levels)


def score_episodes(
    family: str,
    mode: str,
    episodes: Sequence[EpisodeInput],
    encode_config: EncodeConfig = EncodeConfig(),
    weights: RewardWeights = RewardWeights(),
    overflow: OverflowPolicy = "reference",
    paper_compat: str = "ours",
    pad_multiple: int = 64,
) -> RewardOutput:
    """Scores whole rollouts with the `paper` or `episode` family (encode + jitted kernel).

    Args:
      overflow: what to do with rows that exceed `encode_config`: "reference" (default) rescores
        them exactly with the reference, "report" keeps the truncated kernel result, "raise"
        raises ValueError.  `RewardOutput.overflow` flags them in every case.
      paper_compat: "ours" or "official" (`types.PAPER_COMPAT`), the `paper` setting; validated and
        ignored by other families.
      pad_multiple: the batch is padded to a multiple of this (one kernel compile per bucket; at
        most pad_multiple - 1 dead rows); 1 runs at the caller's size.

    Raises:
      ValueError for an unknown family / mode / paper_compat, or a golden `depends_on` that is not
      an earlier step (the message names the sample index and the step).
    """
    return _score(
        family, mode, episodes, encode_config, weights, overflow, "episode", EpisodeInput((), ()), paper_compat, pad_multiple
    )


def score_turns(
    family: str,
    mode: str,
    turns: Sequence[TurnInput],
    encode_config: EncodeConfig = EncodeConfig(),
    weights: RewardWeights = RewardWeights(),
    overflow: OverflowPolicy = "reference",
    paper_compat: str = "ours",
    pad_multiple: int = 64,
) -> RewardOutput:
    """Scores assistant turns with the `turn` family; see `score_episodes`."""
    return _score(family, mode, turns, encode_config, weights, overflow, "turn", TurnInput((), (), ()), paper_compat, pad_multiple)
