"""The frozen KL reference of GRPO (docs/design.md, "Runtime architecture"): the policy's parameters when
GRPO starts, and their log-probs through the policy's own log-prob functions.

    reference = Reference.frozen_at(policy, workdir / "reference", save=True)
    ref_logp = reference.logprobs(temperature, tokens, mask)   # [B, L-1]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from toolrl.models.lora import has_lora
from toolrl.policy.checkpoint import load_params, save_params
from toolrl.policy.runtime import Policy


class Reference:
    """The frozen KL reference: the policy's parameters at one moment (when GRPO starts), and their
    log-probs through the policy's own log-prob functions (the same model, layout and temperature).

    With LoRA adapters (`toolrl.models.lora`) the optimizer moves only the adapters, so the base weights
    at GRPO's start are the live model's at every later step: the reference keeps (and saves) only the
    adapters' leaves and takes the base from the live model, not a second copy of the weights.

    Args:
      policy: the policy whose model (graph, non-parameter state) the reference runs in.
      params: the frozen leaves: every `nnx.Param` (`Policy.params()` structure), or with LoRA only the
        `nnx.LoRAParam` ones (`Reference.frozen_filter`).
    """

    def __init__(self, policy: Policy, params: nnx.State):
        self.policy = policy
        self.params = params

    @staticmethod
    def frozen_filter(policy: Policy) -> Any:
        """The variables a reference freezes: the adapters when the model has LoRA (its base never
        changes), else every parameter."""
        return nnx.LoRAParam if has_lora(policy.model) else nnx.Param

    @classmethod
    def frozen_at(cls, policy: Policy, path: str | Path, save: bool = False) -> "Reference":
        """The reference kept at `path`: with `save` (GRPO starts now) the policy's current frozen leaves
        (`frozen_filter`) are written there first unless it exists. Read back from disk when it exists, so
        that a resumed run uses the leaves the killed one froze; else a copy of the current ones."""
        path = Path(path)
        params = nnx.state(policy.model, cls.frozen_filter(policy))
        if save and not path.exists():
            save_params(path, params)
        if not path.exists():
            return cls(policy, jax.tree.map(jnp.copy, params))
        return cls(policy, _load_frozen(path, params, policy))

    @property
    def nbytes(self) -> int:
        """Bytes of the frozen leaves this reference holds."""
        return sum(int(x.nbytes) for x in jax.tree.leaves(self.params))

    def state(self, model_state: nnx.State | None = None) -> nnx.State:
        """The policy's model state (`model_state`, default the current one) with the frozen parameters."""
        return nnx.merge_state(nnx.state(self.policy.model) if model_state is None else model_state, self.params)

    def logprobs(self, temperature: float, tokens: jax.Array, attention_mask: jax.Array,
                 model_state: nnx.State | None = None) -> jax.Array:
        """[B, L-1] reference log-probs of a plain batch (`Policy.logprobs_fn`)."""
        return self.policy.logprobs_fn(temperature)(self.state(model_state), tokens, attention_mask)

    def packed_logprobs(self, temperature: float, shared: bool, batch: dict[str, jax.Array],
                        model_state: nnx.State | None = None) -> jax.Array:
        """[R, S, K] reference log-probs of a packed batch (`Policy.packed_logprobs_fn`)."""
        return self.policy.packed_logprobs_fn(temperature, shared)(self.state(model_state), batch)


def _load_frozen(path: Path, template: nnx.State, policy: Policy) -> nnx.State:
    """The frozen leaves saved at `path` in the layout of `template`. A LoRA run's reference saved as a
    copy of every parameter (before the reference kept only the adapters) is read whole and cut to the
    adapters: its base equals the live model's, which LoRA training never changes."""
    try:
        return load_params(path, template)
    except ValueError:
        if Reference.frozen_filter(policy) is nnx.Param:
            raise
        full = load_params(path, policy.params())
        return nnx.filter_state(full, nnx.LoRAParam)
