"""Name-keyed registry of reward families and the host-level batch API the trainer calls.

    reward = get_reward("episode", "graduated")
    reward.reference(episode)          # -> reference.Score (the oracle, plain Python)
    reward.kernel(encode_episodes(eps)) # -> {"reward": [B], "levels": {...}, "error_codes": [B, C]}

    out = score_episodes("paper", "graduated", episodes, EncodeConfig())
    out.reward, out.levels["atomic"], out.error_codes, out.overflow

A family is registered with `@register_reward("name")` on a function returning its
`RewardFamily` (reference, per-example kernel, encoder, input kind); modes are shared by all
families (`types.MODES`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Sequence

import numpy as np

from toolrl.rewards import encode as encode_lib
from toolrl.rewards import kernels, reference
from toolrl.rewards.encode import EncodeConfig
from toolrl.rewards.types import MODES, EpisodeInput, ErrorCode, RewardWeights, TurnInput

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
    """

    reference: Callable[..., reference.Score]
    single: Callable[..., dict[str, Any]]
    encoder: Callable[[Sequence[Any], EncodeConfig], dict[str, np.ndarray]]
    input_kind: InputKind


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
    return RewardFamily(reference.paper_reward, kernels.paper_single, encode_lib.encode_episodes, "episode")


@register_reward("episode")
def _episode() -> RewardFamily:
    return RewardFamily(reference.episode_reward, kernels.episode_single, encode_lib.encode_episodes, "episode")


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


@dataclasses.dataclass(frozen=True)
class Reward:
    """A family in one mode with fixed weights."""

    family: str
    mode: str
    weights: RewardWeights = RewardWeights()

    @property
    def input_kind(self) -> InputKind:
        return _family(self.family).input_kind

    def reference(self, inputs: EpisodeInput | TurnInput) -> reference.Score:
        """The plain-Python oracle on one episode/turn."""
        return _family(self.family).reference(inputs, self.mode, self.weights)

    def encode(self, inputs: Sequence[EpisodeInput | TurnInput], config: EncodeConfig = EncodeConfig()) -> dict[str, np.ndarray]:
        return _family(self.family).encoder(inputs, config)

    def kernel(self, encoded_batch: dict[str, Any]) -> dict[str, Any]:
        """The jitted kernel on an encoded batch: reward [B], levels {name: [B]}, error_codes [B, C]."""
        return kernels.make_kernel(self.family, self.mode, self.weights)(encoded_batch)


def get_reward(family: str, mode: str = "graduated", weights: RewardWeights = RewardWeights()) -> Reward:
    """The reward of `family` in `mode`; ValueError naming the registered ones otherwise."""
    _family(family)
    _check_mode(mode)
    return Reward(family, mode, weights)


@dataclasses.dataclass(frozen=True)
class RewardOutput:
    """Host-side result of a batch.

    Attributes:
      reward: float32 [B].
      levels: {name: float32 [B]} (atomic, orchestration; turn: + frontier_f1, premature).
      error_codes: int32 [B, C] (`ErrorCode`, PADDING beyond each row's calls; for a row whose calls
        overflowed C, the first C calls).
      overflow: int32 [B], items beyond the encode config (see encode.py); 0 when it all fit.
    """

    reward: np.ndarray
    levels: dict[str, np.ndarray]
    error_codes: np.ndarray
    overflow: np.ndarray


def _bucket(n: int) -> int:
    """Batch sizes are padded to powers of two (>= 8) so the jitted kernel compiles a few times only."""
    return max(8, 1 << max(0, n - 1).bit_length())


def _score(
    family: str,
    mode: str,
    inputs: Sequence[Any],
    encode_config: EncodeConfig,
    weights: RewardWeights,
    overflow: OverflowPolicy,
    kind: InputKind,
    empty: Any,
) -> RewardOutput:
    fam = _family(family)
    _check_mode(mode)
    if fam.input_kind != kind:
        other = "score_turns" if fam.input_kind == "turn" else "score_episodes"
        raise ValueError(f"reward family {family!r} scores {fam.input_kind}s: call {other}")
    n = len(inputs)
    padded = list(inputs) + [empty] * (_bucket(n) - n)
    enc = fam.encoder(padded, encode_config)
    out = kernels.make_kernel(family, mode, weights)(enc)
    reward = np.array(out["reward"][:n], np.float32)
    levels = {k: np.array(v[:n], np.float32) for k, v in out["levels"].items()}
    codes = np.array(out["error_codes"][:n], np.int32)
    over = np.asarray(enc["overflow"][:n], np.int32)
    rows = np.flatnonzero(over)
    if rows.size and overflow == "raise":
        raise ValueError(f"{rows.size} inputs exceed {encode_config} (rows {rows[:10].tolist()}...)")
    if rows.size and overflow == "reference":
        # Exact result for the few rows that did not fit, from the oracle.
        for b in rows:
            score = fam.reference(inputs[b], mode, weights)
            reward[b] = score.reward
            for k, v in score.levels.items():
                levels[k][b] = v
            c = codes.shape[1]
            row = list(score.error_codes[:c]) + [int(ErrorCode.PADDING)] * max(0, c - len(score.error_codes))
            codes[b] = row
    return RewardOutput(reward, levels, codes, over)


def score_episodes(
    family: str,
    mode: str,
    episodes: Sequence[EpisodeInput],
    encode_config: EncodeConfig = EncodeConfig(),
    weights: RewardWeights = RewardWeights(),
    overflow: OverflowPolicy = "reference",
) -> RewardOutput:
    """Scores whole rollouts with the `paper` or `episode` family (encode + jitted kernel).

    Args:
      overflow: what to do with rows that exceed `encode_config`: "reference" (default) rescores
        them exactly with the reference, "report" keeps the truncated kernel result, "raise"
        raises ValueError.  `RewardOutput.overflow` flags them in every case.
    """
    return _score(family, mode, episodes, encode_config, weights, overflow, "episode", EpisodeInput((), ()))


def score_turns(
    family: str,
    mode: str,
    turns: Sequence[TurnInput],
    encode_config: EncodeConfig = EncodeConfig(),
    weights: RewardWeights = RewardWeights(),
    overflow: OverflowPolicy = "reference",
) -> RewardOutput:
    """Scores assistant turns with the `turn` family; see `score_episodes`."""
    return _score(family, mode, turns, encode_config, weights, overflow, "turn", TurnInput((), (), ()))
