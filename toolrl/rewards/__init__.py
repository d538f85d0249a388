"""Graduated rewards for multi-step tool orchestration (docs/design.md, "Rewards").

parse.py (text -> calls, `safe_json_loads`), episode.py (text + responses -> episode), types.py
(inputs, limits, `depends_on` validation), bfcl.py (the paper's BFCL value rules), reference.py
(oracle), encode.py (fixed-shape arrays), kernels.py (jit + vmap), registry.py (families by name,
host batch API), corruptions.py (sanity checks).  `paper` has two settings, `PAPER_COMPAT`; see
docs/paper_reward_differences.md.
"""

import importlib

# The package's names, loaded on first use (PEP 562): encode and registry import jax, and importing a light
# submodule (parse, types) must not pull them in (toolrl.data.chat and toolrl.data.golden import those).
_HOMES = {
    "toolrl.rewards.encode": ("EncodeConfig", "encode_episodes", "encode_turns"),
    "toolrl.rewards.episode": ("episode_from_text", "episodes_from_texts", "golden_steps"),
    "toolrl.rewards.parse": ("ParseError", "ParseResult", "ToolCall", "parse_tool_calls", "parse_tool_calls_official",
                             "safe_json_loads"),
    "toolrl.rewards.registry": ("Reward", "RewardOutput", "get_reward", "register_reward", "registered_families",
                                "score_episodes", "score_turns"),
    "toolrl.rewards.types": ("PAPER_COMPAT", "EpisodeInput", "ErrorCode", "GoldenStep", "PredictedCall",
                             "RewardWeights", "TurnInput", "argument_problem", "semantic_success",
                             "validate_depends_on"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str):
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME_OF))


__all__ = [name for names in _HOMES.values() for name in names]
