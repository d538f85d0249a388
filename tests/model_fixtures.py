"""Helpers shared by the model tests: random tiny models with every parameter randomised, HF twins."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toolrl.models.checkpoint_io import save_pretrained
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import Decoder, init_model


def random_model(config: ModelConfig, seed: int = 0) -> Decoder:
    """A decoder whose norms and biases are random too (init leaves them at 1 / 0, hiding layout bugs)."""
    model = init_model(config, seed)
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    new = [x + 0.1 * jax.random.normal(k, x.shape, jnp.float32).astype(x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


def saved_random_model(config: ModelConfig, directory: Path, seed: int = 0) -> tuple[Decoder, Path]:
    """Random model written as an HF directory."""
    model = random_model(config, seed)
    save_pretrained(model, config, directory)
    return model, directory


def hf_causal_lm(directory: Path):
    """HF transformers' torch model for the directory, fp32, eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=torch.float32).eval()


def hf_logits(hf_model, tokens: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[B, T, V] float32 logits from the torch model."""
    import torch

    with torch.no_grad():
        out = hf_model(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        )
    return out.logits.float().numpy()
