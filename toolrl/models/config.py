"""Decoder configuration: one frozen dataclass, presets as named constructors, and HF config import.

A :class:`ModelConfig` is plain, hashable data (it is passed as a static argument to jitted
functions). Presets mirror the published HF ``config.json`` files; :meth:`ModelConfig.from_hf_config`
is just another constructor, so any Llama / Qwen2 / Qwen3 (dense) / SmolLM2 checkpoint directory can be
described.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal, Mapping

import jax.numpy as jnp

Architecture = Literal["llama", "qwen2", "qwen3"]
ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "qwen3")

#: HF ``architectures`` / ``model_type`` values we can load, mapped to our architecture family.
HF_ARCHITECTURES: dict[str, Architecture] = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "llama": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class UnknownArchitectureError(ValueError):
    """The HF config names an architecture this decoder does not implement."""


class CheckpointError(ValueError):
    """A checkpoint directory is incomplete, unreadable, or does not match its config.

    Messages name the offending file. (Defined here so that config parsing can raise it too;
    ``toolrl.models.checkpoint_io`` re-exports it.)
    """


#: Attention implementations selectable with ``ModelConfig.attention_impl``.
ATTENTION_IMPLS: tuple[str, ...] = ("xla", "dot_product_attention")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """RoPE frequency scaling.

    ``kind="llama3"`` is Llama 3.1/3.2's piecewise rescaling of the inverse frequencies (wavelengths
    longer than ``original_max_position / low_freq_factor`` are divided by ``factor``, shorter than
    ``original_max_position / high_freq_factor`` kept, smooth interpolation in between).
    ``kind="linear"`` divides every inverse frequency by ``factor`` (position interpolation).
    """

    kind: Literal["llama3", "linear"]
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of a Llama / Qwen2 / Qwen3 family decoder.

    Attributes:
      name: preset name or the source directory's name (informational).
      arch: ``"llama"`` (Llama, SmolLM2), ``"qwen2"`` or ``"qwen3"`` (dense Qwen3); decides the HF
        class written by ``save_pretrained``.
      vocab_size: V, rows of the embedding table.
      hidden_size: D, residual stream width.
      intermediate_size: F, SwiGLU hidden width.
      num_layers: L, decoder blocks.
      num_heads: H, query heads.
      num_kv_heads: K, key/value heads (grouped-query attention; H % K == 0).
      head_dim: Dh, per-head width (not necessarily D / H).
      rms_norm_eps: epsilon inside RMSNorm.
      rope_theta: RoPE base.
      rope_scaling: optional frequency scaling (Llama 3.x), see :class:`RopeScaling`.
      max_position_embeddings: longest context the checkpoint was trained for (informational; the
        KV cache length is chosen by the caller).
      tie_word_embeddings: the LM head reuses the embedding matrix (SmolLM2, Qwen2.5 <= 3B, Llama 3.2).
      qkv_bias: q/k/v projections carry a bias (Qwen2; Qwen3 has none).
      qk_norm: RMSNorm over each head's Dh of q and k, after the projection and before RoPE, with
        one learned [Dh] scale shared by the heads (Qwen3; it replaces Qwen2's q/k/v bias).
      dtype: activation / compute dtype name ("float32" or "bfloat16"). Every weight is cast to it
        at use (embedding, q/k/v/o, MLP, norm scales, LM head); logits are always float32.
      param_dtype: parameter storage dtype name. Mixed precision = ``dtype="bfloat16"`` with
        ``param_dtype="float32"`` (the default of :meth:`with_dtype` and ``load_pretrained``):
        parameters, their gradients and the optimizer moments stay float32.
      attention_impl: ``"xla"`` (explicit einsum + softmax; scores materialised in the compute
        dtype, softmax statistics in float32) or ``"dot_product_attention"``
        (``jax.nn.dot_product_attention``: cuDNN flash attention on GPU, XLA elsewhere).
      attention_query_chunk: C > 0 makes ``"xla"`` attention take the queries C rows at a time (a
        loop), so a prefill of T tokens holds [B, K, G, C, S] scores instead of [B, K, G, T, S] (and a
        gradient keeps one chunk's probabilities: each chunk is recomputed in the backward pass).
        Same outputs (each query row's softmax is its own); 0 = whole (the default), C >= T = whole.
        ``"xla"`` only: with ``"dot_product_attention"`` a chunk > 0 is rejected (its flash kernel
        never holds the scores). See ``decoder.attend`` and docs/performance.md.
      remat: rematerialise each decoder block in the backward pass (the blocks run as a
        ``lax.scan`` under ``jax.checkpoint``, see ``decoder.run_blocks``): activation memory of one
        block plus each block's input instead of L blocks, for about one extra forward of compute.
      bos_token_id, eos_token_ids, pad_token_id: special ids from the HF config (eos may be several).
    """

    name: str = "custom"
    arch: Architecture = "llama"
    vocab_size: int = 32000
    hidden_size: int = 512
    intermediate_size: int = 1024
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 8
    head_dim: int = 64
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    attention_impl: str = "xla"
    attention_query_chunk: int = 0
    remat: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        for field in ("dtype", "param_dtype"):
            if getattr(self, field) not in _DTYPES:
                raise ValueError(f"{field}={getattr(self, field)!r}; expected one of {sorted(_DTYPES)}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ValueError(f"attention_impl={self.attention_impl!r}; expected one of {ATTENTION_IMPLS}")
        chunk = self.attention_query_chunk
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise ValueError(f"attention_query_chunk={chunk!r}; expected an int >= 0 (0 = no chunking)")
        if chunk and self.attention_impl != "xla":
            raise ValueError(f"attention_query_chunk={chunk} applies to attention_impl='xla' only, "
                             f"not {self.attention_impl!r} (set it to 0)")
        if self.arch not in ARCHITECTURES:
            raise UnknownArchitectureError(f"arch={self.arch!r}; expected one of {ARCHITECTURES}")

    # ------------------------------------------------------------------ dtypes
    @property
    def compute_dtype(self) -> jnp.dtype:
        """Activation dtype as a jnp dtype."""
        return jnp.dtype(_DTYPES[self.dtype])

    @property
    def weight_dtype(self) -> jnp.dtype:
        """Parameter dtype as a jnp dtype."""
        return jnp.dtype(_DTYPES[self.param_dtype])

    def with_dtype(self, dtype: str, param_dtype: str | None = None) -> "ModelConfig":
        """Copy with another compute dtype; parameters stay float32 unless ``param_dtype`` is given.

        ``with_dtype("bfloat16")`` is mixed precision (bf16 compute, fp32 parameters);
        ``with_dtype("bfloat16", "bfloat16")`` stores the parameters in bf16 too (inference only:
        small optimizer updates are lost to bf16 rounding).
        """
        return dataclasses.replace(self, dtype=dtype, param_dtype=param_dtype or "float32")

    def replace(self, **changes: Any) -> "ModelConfig":
        """``dataclasses.replace`` shorthand."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def tiny(cls, **overrides: Any) -> "ModelConfig":
        """Random-init Llama-like config for unit tests (tied embeddings like SmolLM2)."""
        base = cls(
            name="tiny", arch="llama", vocab_size=128, hidden_size=64, intermediate_size=128,
            num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, rms_norm_eps=1e-5,
            rope_theta=10000.0, max_position_embeddings=256, tie_word_embeddings=True,
            bos_token_id=1, eos_token_ids=(2,), pad_token_id=0,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def tiny_qwen2(cls, **overrides: Any) -> "ModelConfig":
        """Random-init Qwen2-like config for unit tests (qkv bias, untied LM head)."""
        base = cls.tiny(name="tiny_qwen2", arch="qwen2", qkv_bias=True, tie_word_embeddings=False,
                        rms_norm_eps=1e-6, rope_theta=1_000_000.0)
        return dataclasses.replace(base, **overrides)

    @classmethod
    def smollm2_135m(cls, **overrides: Any) -> "ModelConfig":
        """HuggingFaceTB/SmolLM2-135M(-Instruct)."""
        base = cls(
            name="smollm2_135m", arch="llama", vocab_size=49152, hidden_size=576,
            intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64,
            rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
            tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2,), pad_token_id=2,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def qwen2p5_0p5b(cls, **overrides: Any) -> "ModelConfig":
        """Qwen/Qwen2.5-0.5B(-Instruct)."""
        base = cls(
            name="qwen2p5_0p5b", arch="qwen2", vocab_size=151936, hidden_size=896,
            intermediate_size=4864, num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
            rms_norm_eps=1e-6, rope_theta=1_000_000.0, max_position_embeddings=32768,
            tie_word_embeddings=True, qkv_bias=True, bos_token_id=151643,
            eos_token_ids=(151645, 151643), pad_token_id=151643,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def qwen2p5_1p5b(cls, **overrides: Any) -> "ModelConfig":
        """Qwen/Qwen2.5-1.5B(-Instruct)."""
        base = cls.qwen2p5_0p5b(
            name="qwen2p5_1p5b", hidden_size=1536, intermediate_size=8960, num_layers=28,
            num_heads=12, num_kv_heads=2, head_dim=128,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def llama3p2_1b(cls, **overrides: Any) -> "ModelConfig":
        """meta-llama/Llama-3.2-1B(-Instruct)."""
        base = cls(
            name="llama3p2_1b", arch="llama", vocab_size=128256, hidden_size=2048,
            intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
            rms_norm_eps=1e-5, rope_theta=500000.0,
            rope_scaling=RopeScaling("llama3", 32.0, 1.0, 4.0, 8192),
            max_position_embeddings=131072, tie_word_embeddings=True, bos_token_id=128000,
            eos_token_ids=(128001, 128008, 128009), pad_token_id=None,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def tiny_qwen3(cls, **overrides: Any) -> "ModelConfig":
        """Random-init Qwen3-like config for unit tests (q/k norm, no bias, head_dim != D / H)."""
        base = cls.tiny(name="tiny_qwen3", arch="qwen3", qk_norm=True, head_dim=32, rms_norm_eps=1e-6,
                        rope_theta=1_000_000.0)
        return dataclasses.replace(base, **overrides)

    # Shapes below are the published HF config.json values of each model (hidden_size,
    # intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
    # vocab_size, rope, tie_word_embeddings, special ids).
    @classmethod
    def qwen3_0_6b(cls, **overrides: Any) -> "ModelConfig":
        """Qwen/Qwen3-0.6B: 28 layers, 16 q / 8 kv heads of 128 (H*Dh = 2048 > D = 1024), tied head."""
        base = cls(
            name="qwen3_0_6b", arch="qwen3", vocab_size=151936, hidden_size=1024, intermediate_size=3072,
            num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-6,
            rope_theta=1_000_000.0, max_position_embeddings=40960, tie_word_embeddings=True, qk_norm=True,
            bos_token_id=151643, eos_token_ids=(151645,), pad_token_id=151643,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def qwen3_8b(cls, **overrides: Any) -> "ModelConfig":
        """Qwen/Qwen3-8B: 36 layers, D = 4096, F = 12288, 32 q / 8 kv heads of 128, untied head."""
        base = cls.qwen3_0_6b(
            name="qwen3_8b", hidden_size=4096, intermediate_size=12288, num_layers=36, num_heads=32,
            num_kv_heads=8, tie_word_embeddings=False,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def qwen2_5_7b(cls, **overrides: Any) -> "ModelConfig":
        """Qwen/Qwen2.5-7B(-Instruct): 28 layers, D = 3584, F = 18944, 28 q / 4 kv heads, V = 152064."""
        base = cls.qwen2p5_0p5b(
            name="qwen2_5_7b", vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_layers=28,
            num_heads=28, num_kv_heads=4, head_dim=128, tie_word_embeddings=False,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def llama3_1_8b(cls, **overrides: Any) -> "ModelConfig":
        """meta-llama/Llama-3.1-8B(-Instruct): 32 layers, D = 4096, F = 14336, 32 q / 8 kv heads, RoPE x8."""
        base = cls.llama3p2_1b(
            name="llama3_1_8b", hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32,
            num_kv_heads=8, head_dim=128, rope_scaling=RopeScaling("llama3", 8.0, 1.0, 4.0, 8192),
            tie_word_embeddings=False,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "ModelConfig":
        """Look a preset constructor up by name (``PRESETS`` lists them)."""
        if name not in PRESETS:
            raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
        return getattr(cls, name)(**overrides)

    # ------------------------------------------------------------------ HF interop
    @classmethod
    def from_hf_config(cls, path_or_dict: str | os.PathLike | Mapping[str, Any], **overrides: Any) -> "ModelConfig":
        """Build a config from an HF ``config.json`` (a path to the file or its directory, or the dict).

        Handles transformers 4 (``rope_theta`` / ``rope_scaling`` at top level) and transformers 5
        (``rope_parameters`` holding ``rope_theta`` and the scaling type) layouts.

        Raises:
          FileNotFoundError: no config.json at the path.
          UnknownArchitectureError: not a Llama / Qwen2 family model, or an unsupported feature.
        """
        if isinstance(path_or_dict, Mapping):
            hf = dict(path_or_dict)
            name = str(hf.get("_name_or_path") or "hf")
        else:
            path = os.fspath(path_or_dict)
            if os.path.isdir(path):
                path = os.path.join(path, "config.json")
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no HF config.json at {path}")
            try:
                with open(path, encoding="utf-8") as f:
                    hf = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{path}: corrupt config file, not valid JSON ({e})") from e
            if not isinstance(hf, dict):
                raise CheckpointError(f"{path}: corrupt config file, expected a JSON object, got {type(hf).__name__}")
            name = os.path.basename(os.path.dirname(os.path.abspath(path)))
            try:
                return cls.from_hf_config(hf, **{"name": name, **overrides})
            except KeyError as e:
                raise CheckpointError(f"{path}: config file lacks the required field {e}") from e
            except (TypeError, ValueError) as e:
                if isinstance(e, UnknownArchitectureError):
                    raise UnknownArchitectureError(f"{path}: {e}") from e
                raise CheckpointError(f"{path}: corrupt config file ({type(e).__name__}: {e})") from e
        names = list(hf.get("architectures") or []) + [hf.get("model_type")]
        arch = next((HF_ARCHITECTURES[n] for n in names if n in HF_ARCHITECTURES), None)
        if arch is None:
            raise UnknownArchitectureError(
                f"unsupported architecture {names}; supported: {sorted(HF_ARCHITECTURES)}"
            )
        if arch == "llama" and (hf.get("attention_bias") or hf.get("mlp_bias")):
            raise UnknownArchitectureError("Llama with attention_bias/mlp_bias is not supported")
        if arch in ("qwen2", "qwen3") and hf.get("use_sliding_window"):
            raise UnknownArchitectureError(f"{arch} with use_sliding_window=true is not supported")
        # Qwen3's attention_bias would add an o_proj bias too, which this decoder does not have.
        if arch == "qwen3" and hf.get("attention_bias"):
            raise UnknownArchitectureError("qwen3 with attention_bias=true is not supported")

        rope_params = dict(hf.get("rope_parameters") or {})
        rope_scaling_dict = hf.get("rope_scaling") or rope_params
        theta = hf.get("rope_theta", rope_params.get("rope_theta", 10000.0))
        scaling = _parse_rope_scaling(rope_scaling_dict)

        hidden = int(hf["hidden_size"])
        heads = int(hf["num_attention_heads"])
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        cfg = cls(
            name=name,
            arch=arch,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hidden // heads),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=arch == "qwen2",
            qk_norm=arch == "qwen3",
            # The checkpoint's storage dtype does not decide our compute dtype; callers do.
            dtype="float32",
            param_dtype="float32",
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            pad_token_id=hf.get("pad_token_id"),
        )
        return dataclasses.replace(cfg, **overrides)

    def to_hf_config(self) -> dict[str, Any]:
        """The HF ``config.json`` dict for this config (read by transformers 4 and 5)."""
        hf_arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[self.arch]
        rope_params: dict[str, Any] = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            s = self.rope_scaling
            rope_params = {"rope_type": s.kind, "factor": s.factor, "rope_theta": self.rope_theta}
            if s.kind == "llama3":
                rope_params.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor,
                                   original_max_position_embeddings=s.original_max_position)
        eos: Any = list(self.eos_token_ids) if len(self.eos_token_ids) != 1 else self.eos_token_ids[0]
        out: dict[str, Any] = {
            "architectures": [hf_arch],
            "model_type": self.arch,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None if self.rope_scaling is None else dict(rope_params),
            "rope_parameters": rope_params,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos if self.eos_token_ids else None,
            "pad_token_id": self.pad_token_id,
            "torch_dtype": self.param_dtype,
            "use_cache": True,
            "initializer_range": 0.02,
        }
        if self.arch == "llama":
            out.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
        elif self.arch == "qwen3":
            out.update(attention_bias=False, use_sliding_window=False, sliding_window=None,
                       max_window_layers=self.num_layers)
        else:
            out.update(use_sliding_window=False, sliding_window=None, max_window_layers=self.num_layers)
        return out


def _parse_rope_scaling(d: Mapping[str, Any] | None) -> RopeScaling | None:
    """HF ``rope_scaling`` / ``rope_parameters`` dict -> :class:`RopeScaling` (None for default RoPE)."""
    if not d:
        return None
    kind = d.get("rope_type") or d.get("type") or "default"
    if kind == "default":
        return None
    if kind == "linear":
        return RopeScaling("linear", float(d["factor"]))
    if kind == "llama3":
        return RopeScaling(
            "llama3", float(d["factor"]), float(d.get("low_freq_factor", 1.0)),
            float(d.get("high_freq_factor", 4.0)), int(d.get("original_max_position_embeddings", 8192)),
        )
    raise UnknownArchitectureError(f"unsupported rope scaling type {kind!r} (supported: default, linear, llama3)")


#: Names accepted by :meth:`ModelConfig.preset` and ``load_pretrained``.
PRESETS: tuple[str, ...] = (
    "tiny", "tiny_qwen2", "tiny_qwen3", "smollm2_135m", "qwen2p5_0p5b", "qwen2p5_1p5b", "llama3p2_1b",
    "qwen3_0_6b", "qwen3_8b", "qwen2_5_7b", "llama3_1_8b",
)
