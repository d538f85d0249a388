"""A randomly initialised HF model directory with another model's architecture and tokenizer.

Speed does not depend on the weights' values, and a GPU machine that cannot download may not be able
to receive the bundled weights either (the device tool carries at most 64 MiB: SmolLM2-135M is 98 MB
as Q4_1 GGUF, 540 MB converted). This writes ``config.json``, ``model.safetensors`` (normal(0.02)
weights, `toolrl.models.decoder.init_model`) and the tokenizer files into ``--out``, from a directory
holding only ``config.json`` and the tokenizer files of the real model:

    python benchmarks/random_weights.py --src ~/.cache/toolrl/models/smollm2_135m --out /tmp/smollm2_random

The benchmarks take it as ``--model=/tmp/smollm2_random``. Random weights generate to the token budget
(they rarely emit a stop id): generation timings are then of full-length rows.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def write_random_model(src: Path, out: Path, seed: int = 0) -> Path:
    """``out`` with ``src``'s config and tokenizer files and random weights; returns ``out``."""
    from toolrl.models.checkpoint_io import save_pretrained
    from toolrl.models.config import ModelConfig
    from toolrl.models.decoder import init_model

    if not (src / "config.json").is_file():
        raise FileNotFoundError(f"{src} has no config.json")
    config = ModelConfig.from_hf_config(src)
    save_pretrained(init_model(config, seed), config, out)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, type=Path, help="directory with config.json and tokenizer files")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = write_random_model(args.src, args.out, args.seed)
    print(f"random {args.src.name} weights written to {out}")


if __name__ == "__main__":
    main()
