"""Temporary re-export (removed once every caller imports toolrl.policy.tokenizers)."""
from toolrl.policy.tokenizers import CharTokenizer  # noqa: F401
