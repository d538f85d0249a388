"""Graduated rewards for multi-step tool orchestration (DESIGN.md, "Graduated reward").

parse.py (text -> calls), types.py (inputs), reference.py (oracle), encode.py (fixed-shape arrays),
kernels.py (jit + vmap), registry.py (families by name, host batch API), corruptions.py (sanity
checks).
"""

from toolrl.rewards.encode import EncodeConfig, encode_episodes, encode_turns
from toolrl.rewards.parse import ParseError, ParseResult, ToolCall, parse_tool_calls
from toolrl.rewards.registry import (
    Reward,
    RewardOutput,
    get_reward,
    register_reward,
    registered_families,
    score_episodes,
    score_turns,
)
from toolrl.rewards.types import (
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    TurnInput,
    semantic_success,
)

__all__ = [
    "EncodeConfig", "encode_episodes", "encode_turns",
    "ParseError", "ParseResult", "ToolCall", "parse_tool_calls",
    "Reward", "RewardOutput", "get_reward", "register_reward", "registered_families", "score_episodes", "score_turns",
    "EpisodeInput", "ErrorCode", "GoldenStep", "PredictedCall", "RewardWeights", "TurnInput", "semantic_success",
]  # fmt: skip
