"""Prompt tokens an evaluation's first round pads to, with requests in run order against shortest first.

    python benchmarks/eval_padding.py [--config=configs/study.py] [--sources=synthetic:validation,...]

The batched driver (`toolrl.eval.protocol.drive_batched`) cuts a round's requests into calls of
``eval.batch_size``; each call's prompts are padded to its longest (rounded up to
``rollout.pad_multiple``), and the last call is filled with repeats (`EvalPolicy`). Prefill costs in
proportion to the padded tokens. This counts them for the first round of each source's scored turns
(novel held-out turns, as the study evaluates them) in the order of the turns, sorted by characters
(`request_size`, the driver's key for a policy without its own) and sorted by prompt tokens (the key of
`EvalPolicy.request_size`, what a model's evaluation uses), with the policy's real tokenizer and chat
format. No model runs. Writes ``benchmarks/results/eval_padding.json``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # configs/ imports configs.grpo

from toolrl.eval.evaluator import Evaluation
from toolrl.eval.protocol import history_messages, request_size
from toolrl.eval.types import PolicyRequest
from toolrl.policy.runtime import Policy

REPO = Path(__file__).resolve().parents[1]
_CONFIG = config_flags.DEFINE_config_file("config", str(REPO / "configs" / "study.py"), "Training config.")
_SOURCES = flags.DEFINE_list("sources", ["synthetic:validation", "synthetic:test", "eval_100"], "Eval sources.")
_OUT = flags.DEFINE_string("out", str(REPO / "benchmarks" / "results" / "eval_padding.json"), "Result JSON.")


def padded_tokens(lengths: list[int], batch_size: int, pad_multiple: int) -> int:
    """Tokens the calls of `lengths` (in call order) are padded to: each call of `batch_size` rows (the
    last filled up) at its longest prompt rounded up to `pad_multiple`."""
    total = 0
    for start in range(0, len(lengths), batch_size):
        longest = max(lengths[start:start + batch_size])
        total += batch_size * pad_multiple * math.ceil(longest / pad_multiple)
    return total


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    config.eval.heldout, config.eval.max_turns, config.eval.complete_only = "novel", 0, True
    policy = Policy.from_config(config)
    batch, multiple = int(config.eval.batch_size), int(config.rollout.pad_multiple)
    rows = {}
    for source in _SOURCES.value:
        config.eval.source = source
        evaluation = Evaluation(config)
        requests = [PolicyRequest(t.sample_id, t.turn, 0, tuple(history_messages(t, evaluation.render)), t.tools)
                    for t in evaluation.tasks]
        lengths = [len(policy.prompt_ids(r.messages, r.tools, config.data.tool_view)) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: request_size(requests[i]))
        plain = padded_tokens(lengths, batch, multiple)
        by_size = padded_tokens([lengths[i] for i in order], batch, multiple)
        by_tokens = padded_tokens(sorted(lengths), batch, multiple)
        rows[source] = {"turns": len(lengths), "prompt_tokens": sum(lengths), "padded_run_order": plain,
                        "padded_shortest_first": by_size,
                        "padded_by_token_count": by_tokens,
                        "run_order_over_by_token_count": round(plain / by_tokens, 3)}
        print(f"{source:22s} {len(lengths):4d} turns  prompt tokens {sum(lengths):7d}  padded: run order {plain:7d}, "
              f"by characters {by_size:7d}, by tokens {by_tokens:7d} ({plain / by_tokens:.2f}x fewer than run order)")
    out = {"command": " ".join(["python benchmarks/eval_padding.py",
                                *sys.argv[1:]]),
           "batch_size": batch, "pad_multiple": multiple, "model": str(config.model.preset), "sources": rows}
    Path(_OUT.value).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main)
