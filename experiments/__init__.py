"""Experiments on top of toolrl: the study runner (the reward ablation by default).

``python -m experiments.run_ablation --study=NAME`` runs a study locally (resumable; the runs are
``python -m toolrl.main`` subprocesses), ``--report`` tables it from the small result files in
``experiments/results/<study>/``; ``experiments/sweep.yaml`` is the W&B sweep for a cluster;
``notebooks/ablations.ipynb`` plots a study; ``experiments/RESULTS.md`` holds the earlier CPU-scale
results (produced with the runner as of commit 7ebeafc).
"""
