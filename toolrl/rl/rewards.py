"""Rewards for rollouts, by name (family + ablation mode) from the config.

Uses the reward registry (`toolrl.rewards.registry.score_episodes` / `score_turns`: encoder + JAX
kernels) when it is available, else the plain-Python reference (`toolrl.rewards.reference`), which
the kernels are tested to equal. Either way the trainer gets a `RewardBatch` of numpy arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from toolrl.rewards.types import EpisodeInput, ErrorCode, RewardWeights, TurnInput

N_ERROR_CODES = max(int(c) for c in ErrorCode) + 1  # histogram bins 0..max (PADDING dropped)


@dataclasses.dataclass(frozen=True)
class RewardBatch:
    """Scores of a batch of rollouts.

    Attributes:
      reward: [B] float32.
      levels: per-level scores, name -> [B] float32.
      error_counts: [N_ERROR_CODES] int, how often each ErrorCode occurred over all calls.
    """

    reward: np.ndarray
    levels: dict[str, np.ndarray]
    error_counts: np.ndarray


def _histogram(codes: Sequence[Sequence[int]]) -> np.ndarray:
    counts = np.zeros(N_ERROR_CODES, np.int64)
    for row in codes:
        for c in np.asarray(row).ravel().tolist():
            if 0 <= c < N_ERROR_CODES:
                counts[c] += 1
    return counts


def _from_registry(family: str, mode: str, inputs: Sequence[Any], weights: RewardWeights) -> RewardBatch | None:
    try:
        from toolrl.rewards import registry  # type: ignore[attr-defined]
    except ImportError:
        return None
    fn = registry.score_turns if family == "turn" else registry.score_episodes
    try:
        out = fn(family, mode, list(inputs), weights=weights)
    except TypeError:  # registry without a weights argument
        out = fn(family, mode, list(inputs))
    levels = {k: np.asarray(v, np.float32) for k, v in dict(out.levels).items()}
    return RewardBatch(np.asarray(out.reward, np.float32), levels, _histogram(np.asarray(out.error_codes)))


def _from_reference(family: str, mode: str, inputs: Sequence[Any], weights: RewardWeights) -> RewardBatch:
    from toolrl.rewards.reference import REFERENCES

    scores = [REFERENCES[family](x, mode, weights) for x in inputs]
    names = sorted({k for s in scores for k in s.levels})
    levels = {k: np.asarray([s.levels.get(k, 0.0) for s in scores], np.float32) for k in names}
    return RewardBatch(np.asarray([s.reward for s in scores], np.float32), levels,
                       _histogram([s.error_codes for s in scores]))


def score(family: str, mode: str, inputs: Sequence[EpisodeInput] | Sequence[TurnInput],
          weights: RewardWeights = RewardWeights(), backend: str = "auto") -> RewardBatch:
    """Scores a batch of episodes (families "paper", "episode") or turns ("turn").

    Args:
      family, mode: the reward's registry name and ablation mode.
      inputs: one EpisodeInput / TurnInput per rollout.
      weights: reward weights (atomic / orchestration from the config).
      backend: "auto" (registry if present), "registry" or "reference".
    """
    if backend in ("auto", "registry"):
        out = _from_registry(family, mode, inputs, weights)
        if out is not None:
            return out
        if backend == "registry":
            raise ImportError("toolrl.rewards.registry is not available")
    return _from_reference(family, mode, inputs, weights)
