"""The decontaminated data of the study (configs/study.py), built once, and its contamination figure.

    python -m experiments.study_data [--study=decontaminated] [--n_traces=2000]

1. A response cache from bfcl_training with every key eval_100 calls left out
   (``python -m toolrl.env.cache build --exclude``), so synthesis cannot produce an eval_100 call.
2. The ``toolrl_traces`` dataset synthesized from that cache (configs/synth.py settings) into
   ``$TOOLRL_HOME/study/tfds``, the directory configs/study.py reads.
3. The contamination of eval_100 by the training sources, before and after the ``data.decontaminate``
   filter (:mod:`toolrl.data.contamination`), written to ``experiments/results/<study>/contamination.json``
   (committed with the study's results). Exits non-zero when the filtered figure is not 0.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from absl import app, flags

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

FLAGS = flags.FLAGS
flags.DEFINE_string("study", "natural", "Results go to experiments/results/<study>/ (contamination.json, data_report.json).")
flags.DEFINE_integer("n_traces", 2000, "Traces to synthesize (fewer when the cache holds fewer distinct ones).")
flags.DEFINE_bool("rebuild", False, "Rebuild the cache and the traces even when present.")


def main(argv: list[str]) -> None:
    del argv
    from configs import study
    from toolrl.data import paths
    from toolrl.data.contamination import contamination_report, drop_overlapping, sample_keys
    from toolrl.data.golden import load_samples
    from toolrl.data.natural import build_natural_data

    config = study.get_config()
    tfds_dir = Path(config.data.synth_dir)
    build_natural_data(tfds_dir, n_traces=FLAGS.n_traces, rebuild=FLAGS.rebuild, builder="experiments.study_data")
    test_source = config.data.decontaminate
    test = load_samples(test_source)
    sources = [s.strip() for s in config.data.train_file.split(",")]
    train = [s for source in sources for s in load_samples(source, synth_dir=tfds_dir)]
    before = contamination_report(train, test, sources, test_source)
    kept, dropped = drop_overlapping(train, sample_keys(test))
    after = contamination_report(kept, test, sources, test_source)
    print("before the filter: " + before.format())
    print(f"data.decontaminate={test_source!r} drops {dropped} training samples")
    print("after the filter (what the study trains on): " + after.format())
    out = REPO_ROOT / "experiments" / "results" / FLAGS.study / "contamination.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"cache": {"sources": [paths.BFCL_TRAINING], "excluded": [paths.EVAL_100]},
              "train_sources": sources, "test_source": test_source, "dropped_training_samples": dropped,
              "before_filter": before.as_dict(), "after_filter": after.as_dict(),
              "check": "every golden call key (function + canonical arguments) of the test samples, "
                       "looked up among every golden call of the training samples"}
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    if after.exact_turns or after.calls:
        sys.exit("contamination remains after the filter")


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    app.run(main)
