"""Write a run's checkpointed parameters as an HF directory (config, safetensors, tokenizer).

A study's SFT start lives in an orbax checkpoint under its workdir; a machine without that workdir
(the GPU machine of the device tool, which takes files in pieces of at most 64 MiB and has no network)
can still start from it through ``--config.model.path``. ``--dtype=bfloat16`` halves the file
(270 MB instead of 540 MB for SmolLM2-135M); loading upcasts to fp32 again, so the start then differs
from the checkpoint by bf16 rounding, and must be re-evaluated where it is used.

    python -m experiments.export_start --workdir=runs/studies/decontaminated/sft/work --out=.devstart \
        --dtype=bfloat16 --piece_mb=60
"""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's workdir (holds config.json and checkpoints/).", required=True)
flags.DEFINE_string("out", None, "Output directory (config.json, model.safetensors, tokenizer files).", required=True)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Stored weight dtype.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = latest).")
flags.DEFINE_integer("piece_mb", 0, "Also cut model.safetensors into pieces of this many MB (0 = no).")


def export(workdir: Path, out: Path, dtype: str = "float32", step: int | None = None) -> Path:
    """The checkpoint's parameters as ``out/model.safetensors`` in HF layout; returns ``out``.

    The model preset and path come from the run's saved ``config.json``, so the tensors are those
    :func:`toolrl.models.checkpoint_io.load_params` reads back.
    """
    from safetensors.numpy import save_file

    from toolrl.models.checkpoint_io import model_to_hf_tensors
    from toolrl.policy.runtime import Policy

    saved = json.loads((workdir / "config.json").read_text()).get("model", {})
    policy = Policy.load(preset=saved.get("preset", ""), path=saved.get("path", ""))
    restored = policy.restore_params(workdir, step)
    model, config, tokenizer = policy.model, policy.model_config, policy.tokenizer
    tensors = model_to_hf_tensors(model, config)
    if dtype == "bfloat16":
        tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    hf_config = dict(config.to_hf_config(), torch_dtype=dtype)
    (out / "config.json").write_text(json.dumps(hf_config, indent=2))
    save_file(tensors, str(out / "model.safetensors"),
              metadata={"format": "pt", "source_workdir": str(workdir), "source_step": str(restored)})
    if hasattr(tokenizer, "save_pretrained"):  # the test presets' character tokenizer has no files
        tokenizer.save_pretrained(str(out))
    return out


def cut(path: Path, piece_bytes: int) -> list[Path]:
    """``path`` in consecutive pieces ``<path>.part<k>`` (joined again with ``cat``); the whole is removed."""
    pieces = []
    with open(path, "rb") as f:
        while chunk := f.read(piece_bytes):
            piece = path.with_name(f"{path.name}.part{len(pieces)}")
            piece.write_bytes(chunk)
            pieces.append(piece)
    path.unlink()
    return pieces


def main(argv: list[str]) -> None:
    del argv
    out = export(Path(FLAGS.workdir), Path(FLAGS.out), FLAGS.dtype, None if FLAGS.step < 0 else FLAGS.step)
    weights = out / "model.safetensors"
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB, {FLAGS.dtype})")
    if FLAGS.piece_mb:
        for piece in cut(weights, FLAGS.piece_mb * 1_000_000):
            print(f"  {piece} ({piece.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    app.run(main)
