"""Experiments on top of toolrl: the reward-ablation sweep (runner, evaluation, aggregation).

``python -m experiments.run_ablation`` runs it locally (resumable); ``experiments/sweep.yaml`` is the
W&B sweep for a cluster; ``notebooks/ablations.ipynb`` plots it; ``experiments/RESULTS.md`` holds the
CPU-scale results.
"""
