"""HF safetensors <-> our decoder, driven by ONE declarative name-mapping table.

:data:`PARAM_TABLE` lists, for every parameter, the HF name template (``{}`` = layer number), our
parameter path and how the array is laid out differently. Loading, saving and the shape checks all
read this table; Llama, SmolLM2 and Qwen2 share it (rows that a config does not use, such as the
q/k/v biases of a Llama, Qwen3's q/k norms elsewhere, or ``lm_head`` of a tied model, are skipped by
their condition).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from toolrl.models.config import PRESETS, CheckpointError, ModelConfig
from toolrl.models.decoder import Decoder
from toolrl.models.sharding import LOGICAL_AXIS_RULES, logical_sharding

__all__ = ["CheckpointError", "PARAM_TABLE", "expand_table", "load_params", "load_pretrained",
           "save_pretrained", "model_to_hf_tensors", "models_root", "resolve_model_dir"]


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one HF tensor maps to our array.

    kind "same": identical shapes. kind "flat": HF is ours flattened (biases [H*Dh] -> [H, Dh]).
    kind "T": HF is a torch Linear weight [out, in]; ours is its transpose with the ``n_in`` leading
    axes being the input and the rest the (possibly split) output, e.g. q [D, H*Dh] -> [D, H, Dh]
    (n_in=1), o [D, H*Dh]^T -> [H, Dh, D] (n_in=2).
    """

    kind: str
    n_in: int = 1

    def hf_shape(self, ours: tuple[int, ...]) -> tuple[int, ...]:
        """HF tensor shape for our shape."""
        if self.kind == "same":
            return ours
        if self.kind == "flat":
            return (math.prod(ours),)
        return (math.prod(ours[self.n_in:]), math.prod(ours[: self.n_in]))

    def to_ours(self, w: np.ndarray, ours: tuple[int, ...]) -> np.ndarray:
        """HF array -> our layout (shape ``ours``)."""
        if self.kind == "T":
            return np.ascontiguousarray(w.T).reshape(ours)
        return w.reshape(ours)

    def to_hf(self, x: np.ndarray) -> np.ndarray:
        """Our array -> HF layout."""
        if self.kind == "same":
            return x
        if self.kind == "flat":
            return x.reshape(-1)
        ours = x.shape
        return np.ascontiguousarray(x.reshape(math.prod(ours[: self.n_in]), -1).T)


SAME, FLAT, T1, T2 = Layout("same"), Layout("flat"), Layout("T", 1), Layout("T", 2)

_ALWAYS: Callable[[ModelConfig], bool] = lambda c: True
_BIAS: Callable[[ModelConfig], bool] = lambda c: c.qkv_bias
_UNTIED: Callable[[ModelConfig], bool] = lambda c: not c.tie_word_embeddings
_QK_NORM: Callable[[ModelConfig], bool] = lambda c: c.qk_norm


@dataclasses.dataclass(frozen=True)
class ParamRule:
    """One row of the mapping table: HF name template, our path template, layout, when it applies."""

    hf: str
    ours: str
    layout: Layout
    when: Callable[[ModelConfig], bool] = _ALWAYS

    @property
    def per_layer(self) -> bool:
        return "{}" in self.hf

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.hf).replace(r"\{\}", r"(\d+)") + "$")


_L = "model.layers.{}."
#: The table: HF parameter name -> our parameter path (+ layout, + condition).
PARAM_TABLE: tuple[ParamRule, ...] = (
    ParamRule("model.embed_tokens.weight", "embed", SAME),
    ParamRule("model.norm.weight", "final_norm.scale", SAME),
    ParamRule("lm_head.weight", "lm_head", T1, _UNTIED),
    ParamRule(_L + "input_layernorm.weight", "layers.{}.attn_norm.scale", SAME),
    ParamRule(_L + "post_attention_layernorm.weight", "layers.{}.mlp_norm.scale", SAME),
    ParamRule(_L + "self_attn.q_proj.weight", "layers.{}.attn.q_kernel", T1),
    ParamRule(_L + "self_attn.k_proj.weight", "layers.{}.attn.k_kernel", T1),
    ParamRule(_L + "self_attn.v_proj.weight", "layers.{}.attn.v_kernel", T1),
    ParamRule(_L + "self_attn.o_proj.weight", "layers.{}.attn.o_kernel", T2),
    ParamRule(_L + "self_attn.q_proj.bias", "layers.{}.attn.q_bias", FLAT, _BIAS),
    ParamRule(_L + "self_attn.k_proj.bias", "layers.{}.attn.k_bias", FLAT, _BIAS),
    ParamRule(_L + "self_attn.v_proj.bias", "layers.{}.attn.v_bias", FLAT, _BIAS),
    ParamRule(_L + "self_attn.q_norm.weight", "layers.{}.attn.q_norm.scale", SAME, _QK_NORM),
    ParamRule(_L + "self_attn.k_norm.weight", "layers.{}.attn.k_norm.scale", SAME, _QK_NORM),
    ParamRule(_L + "mlp.gate_proj.weight", "layers.{}.mlp.gate_kernel", T1),
    ParamRule(_L + "mlp.up_proj.weight", "layers.{}.mlp.up_kernel", T1),
    ParamRule(_L + "mlp.down_proj.weight", "layers.{}.mlp.down_kernel", T1),
)

# HF tensors that carry no parameters of ours (recomputed buffers, or the tied head some exporters write).
_IGNORED = (re.compile(r".*rotary_emb\.inv_freq$"),)


def expand_table(config: ModelConfig) -> list[tuple[str, str, Layout]]:
    """All (hf_name, our_path, layout) triples for ``config``, one per parameter."""
    out = []
    for rule in PARAM_TABLE:
        if not rule.when(config):
            continue
        layers = range(config.num_layers) if rule.per_layer else [None]
        for i in layers:
            out.append((rule.hf.format(i), rule.ours.format(i), rule.layout))
    return out


def _path_key(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def _abstract_model(config: ModelConfig) -> tuple[nnx.GraphDef, dict[str, nnx.Variable]]:
    """Graph definition and {our_path: abstract Variable} without allocating weights."""
    abstract = nnx.eval_shape(lambda: Decoder(config, nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    flat = {_path_key(path): var for path, var in nnx.to_flat_state(state)}
    return graphdef, flat


# --------------------------------------------------------------------------- reading safetensors


def _safetensor_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            with open(index, encoding="utf-8") as f:
                names = sorted(set(json.load(f)["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{index}: corrupt safetensors index ({type(e).__name__}: {e})") from e
        files = [directory / n for n in names]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {directory}")
    return files


def _iter_tensors(directory: Path) -> Iterator[tuple[str, np.ndarray]]:
    from safetensors import safe_open

    for file in _safetensor_files(directory):
        # Every read is wrapped so that a truncated / corrupt file is reported BY NAME (the
        # safetensors error alone does not say which file); tensors still stream one at a time.
        def fail(e: Exception) -> CheckpointError:
            return CheckpointError(f"{file}: corrupt or unreadable safetensors file ({type(e).__name__}: {e})")

        try:
            handle = safe_open(str(file), framework="numpy")
            names = list(handle.keys())
        except Exception as e:  # SafetensorError, OSError, ValueError, ...
            raise fail(e) from e
        for name in names:
            try:
                tensor = handle.get_tensor(name)
            except Exception as e:
                raise fail(e) from e
            yield name, tensor


def _np_dtype(dtype: jnp.dtype) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if jnp.dtype(dtype) == jnp.bfloat16 else np.dtype(dtype)


def load_params(directory: str | os.PathLike, config: ModelConfig, mesh: Mesh | None = None,
                rules: Any = LOGICAL_AXIS_RULES) -> Decoder:
    """Build a :class:`Decoder` for ``config`` from HF safetensors in ``directory``.

    Each tensor is converted and (with ``mesh``) placed with its logical-axis sharding as soon as it
    is read, so the full model never sits on one device.

    Raises:
      FileNotFoundError: no weights; CheckpointError: unexpected / missing tensors or a shape mismatch.
    """
    directory = Path(directory)
    graphdef, flat = _abstract_model(config)
    by_hf = {hf: (ours, layout) for hf, ours, layout in expand_table(config)}
    dtype = _np_dtype(config.weight_dtype)
    loaded: dict[str, Any] = {}
    unexpected = []
    for name, array in _iter_tensors(directory):
        if name not in by_hf:
            if name == "lm_head.weight" and config.tie_word_embeddings:
                continue  # some exporters write the tied head too; the embedding is authoritative
            if not any(p.match(name) for p in _IGNORED):
                unexpected.append(name)
            continue
        ours, layout = by_hf[name]
        var = flat[ours]
        want = tuple(var.shape)
        if tuple(array.shape) != layout.hf_shape(want):
            raise CheckpointError(
                f"shape mismatch for {name}: checkpoint has {tuple(array.shape)}, config "
                f"{config.name!r} expects {layout.hf_shape(want)} (our {ours} {want})"
            )
        value = layout.to_ours(np.asarray(array).astype(dtype), want)
        if mesh is not None:
            axes = var.get_metadata().get("out_sharding") or ()
            loaded[ours] = jax.device_put(value, logical_sharding(mesh, axes, rules))
        else:
            loaded[ours] = jnp.asarray(value)
    if unexpected:
        raise CheckpointError(f"{directory}: tensors not in the mapping table: {sorted(unexpected)[:10]}")
    missing = [hf for hf, (ours, _) in by_hf.items() if ours not in loaded]
    if missing:
        raise CheckpointError(f"{directory}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
    state = nnx.from_flat_state(
        [(tuple(int(p) if p.isdigit() else p for p in key.split(".")), var.replace(loaded[key]))
         for key, var in flat.items()]
    )
    return nnx.merge(graphdef, state)


def _load_tokenizer(directory: Path) -> Any | None:
    if not any((directory / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)


def models_root() -> Path:
    """Where named models live: ``$TOOLRL_MODEL_DIR`` or ``~/.cache/toolrl/models``."""
    return Path(os.environ.get("TOOLRL_MODEL_DIR") or Path.home() / ".cache" / "toolrl" / "models")


def resolve_model_dir(path_or_preset_name: str | os.PathLike) -> Path:
    """A local HF directory for a path, a preset name (``smollm2_135m`` is converted on demand) or a hub id
    (``hf:Org/Name[@revision]``, downloaded once into the cache: `toolrl.models.hub`)."""
    name = os.fspath(path_or_preset_name)
    from toolrl.models.hub import download_model, is_hub_id

    if is_hub_id(name):
        return download_model(name)
    if name == "smollm2_135m" and not Path(name).is_dir():
        from toolrl.models.bundled import ensure_smollm2

        return ensure_smollm2()
    if name in PRESETS and not Path(name).is_dir():
        candidate = models_root() / name
        if not (candidate / "config.json").is_file():
            raise FileNotFoundError(
                f"preset {name!r} has no local weights: put the HF directory (config.json, *.safetensors, "
                f"tokenizer files) at {candidate} (no network access is attempted)"
            )
        return candidate
    path = Path(name)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist (and {name!r} is not a preset: {PRESETS})")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json")
    return path


def load_pretrained(path_or_preset_name: str | os.PathLike, dtype: str = "float32", param_dtype: str | None = None,
                    mesh: Mesh | None = None, rules: Any = LOGICAL_AXIS_RULES) -> tuple[Decoder, Any | None, ModelConfig]:
    """Load (model, tokenizer, config) from a local HF directory or a preset name.

    Args:
      path_or_preset_name: directory with config.json, *.safetensors (or a sharded index) and
        tokenizer files; a preset name looked up under :func:`models_root`; or ``hf:Org/Name``.
      dtype: compute dtype ("float32" / "bfloat16").
      param_dtype: parameter storage dtype; None (default) = "float32", so ``dtype="bfloat16"`` is
        mixed precision (fp32 master weights, bf16 compute). Pass "bfloat16" explicitly for bf16
        storage (inference only).
      mesh: if given, parameters are sharded onto it as they load.
    Returns:
      model, tokenizer (``transformers`` tokenizer, None if the directory has none), config.
    """
    directory = resolve_model_dir(path_or_preset_name)
    config = ModelConfig.from_hf_config(directory).with_dtype(dtype, param_dtype)
    if os.fspath(path_or_preset_name).startswith("hf:"):  # named by its repository, not its snapshot's hash
        config = dataclasses.replace(config, name=os.fspath(path_or_preset_name)[3:].partition("@")[0])
    model = load_params(directory, config, mesh=mesh, rules=rules)
    return model, _load_tokenizer(directory), config


def model_to_hf_tensors(model: Decoder, config: ModelConfig) -> dict[str, np.ndarray]:
    """{HF name: numpy array in HF layout} for every parameter (the inverse of :func:`load_params`)."""
    flat = {_path_key(path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    out = {}
    for hf, ours, layout in expand_table(config):
        value = np.asarray(jax.device_get(flat[ours].get_value()))
        out[hf] = layout.to_hf(value)
    return out


def save_pretrained(model: Decoder, config: ModelConfig, out_dir: str | os.PathLike, tokenizer: Any | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ tokenizer files) that HF transformers loads."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(config.to_hf_config(), f, indent=2)
    save_file(model_to_hf_tensors(model, config), str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out
