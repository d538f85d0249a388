"""Write a run's checkpointed parameters as an HF directory (config, safetensors, tokenizer).

A thin wrapper over ``toolrl export RUN --out DIR`` (:mod:`toolrl.export`) that can also cut the
weights into pieces.

A study's SFT start lives in an orbax checkpoint under its workdir; a machine without that workdir
(the GPU machine of the device tool, which takes files in pieces of at most 64 MiB and has no network)
can still start from it through ``--config.model.path``. ``--dtype=bfloat16`` halves the file
(270 MB instead of 540 MB for SmolLM2-135M); loading upcasts to fp32 again, so the start then differs
from the checkpoint by bf16 rounding, and must be re-evaluated where it is used.

    python -m experiments.export_start --workdir=runs/studies/decontaminated/sft/work --out=.devstart \
        --dtype=bfloat16 --piece_mb=60
"""

from __future__ import annotations

from pathlib import Path

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The run's workdir (holds config.json and checkpoints/).", required=True)
flags.DEFINE_string("out", None, "Output directory (config.json, model.safetensors, tokenizer files).", required=True)
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Stored weight dtype.")
flags.DEFINE_integer("step", -1, "Checkpoint step (-1 = latest).")
flags.DEFINE_integer("piece_mb", 0, "Also cut model.safetensors into pieces of this many MB (0 = no).")


def export(workdir: Path, out: Path, dtype: str = "float32", step: int | None = None) -> Path:
    """The checkpoint's parameters as ``out/model.safetensors`` in HF layout (with config, tokenizer and
    chat template); returns ``out``. The one implementation is :func:`toolrl.export.export`."""
    from toolrl.export import export as export_run

    return export_run(workdir, out, dtype, step)


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
