"""``python -m toolrl.synth --config=configs/synth.py``: synthesize traces and write the TFDS dataset.

Refuses (one line on stderr, exit 2; ``--verbose`` for the traceback) contradictory settings and a
synthesis that produced no trace (e.g. ``--config.complexities=(1000,)``): nothing is written, so
TFDS never caches an empty dataset. A complexity that falls short of its share is reported.
"""

from __future__ import annotations

import sys

from absl import app
from ml_collections import config_flags

from toolrl.synth.run import synthesize_dataset

_CONFIG = config_flags.DEFINE_config_file("config", "configs/synth.py", "synthesis config (configs/synth.py)")


def main(argv: list[str]) -> None:
    del argv
    synthesize_dataset(_CONFIG.value)


def cli(argv: list[str]) -> None:
    app.run(main, argv=[sys.argv[0], *argv])


if __name__ == "__main__":
    from toolrl.cli import run_cli

    run_cli(cli, prog="python -m toolrl.synth")
