"""Graduated rewards for multi-step tool orchestration (docs/design.md, "Rewards").

parse.py (text -> calls, `safe_json_loads`), episode.py (text + responses -> episode), types.py
(inputs, limits, `depends_on` validation), bfcl.py (the paper's BFCL value rules), reference.py
(oracle), encode.py (fixed-shape arrays), kernels.py (jit + vmap), registry.py (families by name,
host batch API), corruptions.py (sanity checks).  `paper` has two settings, `PAPER_COMPAT`; see
docs/paper_reward_differences.md.
"""

from toolrl.rewards.encode import EncodeConfig, encode_episodes, encode_turns
from toolrl.rewards.episode import episode_from_text, episodes_from_texts, golden_steps
from toolrl.rewards.parse import (
    ParseError,
    ParseResult,
    ToolCall,
    parse_tool_calls,
    parse_tool_calls_official,
    safe_json_loads,
)
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
    PAPER_COMPAT,
    EpisodeInput,
    ErrorCode,
    GoldenStep,
    PredictedCall,
    RewardWeights,
    TurnInput,
    argument_problem,
    semantic_success,
    validate_depends_on,
)

__all__ = [
    "EncodeConfig", "encode_episodes", "encode_turns",
    "episode_from_text", "episodes_from_texts", "golden_steps",
    "ParseError", "ParseResult", "ToolCall", "parse_tool_calls", "parse_tool_calls_official", "safe_json_loads",
    "Reward", "RewardOutput", "get_reward", "register_reward", "registered_families", "score_episodes", "score_turns",
    "PAPER_COMPAT", "EpisodeInput", "ErrorCode", "GoldenStep", "PredictedCall", "RewardWeights", "TurnInput",
    "argument_problem", "semantic_success", "validate_depends_on",
]  # fmt: skip
