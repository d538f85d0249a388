"""The policy at run time: ONE object that loads, generates, scores log-probs, saves and restores.

Training rollouts and the evaluator both call it (docs/design.md, "Runtime architecture").
"""
