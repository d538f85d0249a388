"""A run's model as a Hugging Face directory anyone can load: ``toolrl export RUN --out DIR``.

The directory holds ``config.json``, ``model.safetensors`` (HF parameter names and layouts, through
the one weight table :mod:`toolrl.models.checkpoint_io`), ``generation_config.json`` (stop at the
end-of-turn token the run was trained to write) and the tokenizer files with a chat template that
renders a conversation the way the run was prompted:

* a tokenizer whose own template knows tools (Qwen2.5, Llama 3.x) keeps it: training used it as is;
* every other one (SmolLM2, the tiny test model's character tokenizer) trained on the Hermes / ChatML
  format of :func:`toolrl.data.chat_render.render_hermes`, so that format is written as the template
  (:data:`HERMES_TEMPLATE`) -- ``tokenizer.apply_chat_template(messages, tools=...)`` then gives the
  run's own prompt text, and reloading the directory with toolrl gives the same prompt tokens.

The tiny model's character tokenizer ships no files; it is written as an equivalent
``tokenizers`` model (one token per character, the ChatML markers as special tokens), so even a
test run exports a directory ``transformers.AutoTokenizer`` loads.

``--dtype=bfloat16`` halves the file; loading upcasts again, so the weights then differ from the
run's by bf16 rounding.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from safetensors.numpy import save_file

from toolrl.cli import UserError
from toolrl.data.chat_render import HERMES_SYSTEM_DEFAULT, HERMES_TOOLS_PREAMBLE

DTYPES = ("float32", "bfloat16")


def _jinja_string(text: str) -> str:
    """A Jinja string literal holding ``text`` (ASCII only: JSON's escapes are Jinja's)."""
    if not text.isascii():
        raise ValueError("template text must be ASCII")
    return json.dumps(text)


def hermes_template() -> str:
    """A Jinja chat template that renders exactly what :func:`toolrl.data.chat_render.render_hermes` renders,
    for tools given to the template and for tool listings already in the system message alike.

    Tool-call arguments given as a JSON string are written as that string (render_hermes re-serialises
    a string that decodes to a dict; give dicts for identical text)."""
    before, after = HERMES_TOOLS_PREAMBLE.split("{tools}")
    before = before.replace("{{", "{").replace("}}", "}")
    after = after.replace("{{", "{").replace("}}", "}")
    return (
        "{%- set ns = namespace(system=none, first=0) -%}"
        "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{%- set ns.system = messages[0]['content'] or '' -%}{%- set ns.first = 1 -%}"
        "{%- endif -%}"
        "{%- if tools -%}"
        "{%- set listing = namespace(text='') -%}"
        "{%- for tool in tools -%}"
        "{%- set schema = tool['function'] if tool['function'] is defined else tool -%}"
        "{%- set listing.text = listing.text + ('\\n' if not loop.first else '') + (schema | tojson) -%}"
        "{%- endfor -%}"
        f"{{%- set ns.system = (ns.system or {_jinja_string(HERMES_SYSTEM_DEFAULT)}) + '\\n\\n' + "
        f"{_jinja_string(before)} + listing.text + {_jinja_string(after)} -%}}"
        "{%- endif -%}"
        "{%- if ns.system is not none -%}"
        "{{- '<|im_start|>system\\n' + ns.system + '<|im_end|>\\n' -}}"
        "{%- endif -%}"
        "{%- for message in messages[ns.first:] -%}"
        "{%- set role = message['role'] -%}"
        "{%- if role == 'tool' -%}"
        # Consecutive tool results share one user turn.
        "{%- if loop.first or loop.previtem['role'] != 'tool' -%}{{- '<|im_start|>user\\n' -}}"
        "{%- else -%}{{- '\\n' -}}{%- endif -%}"
        "{{- '<tool_response>\\n' + (message['content'] or '') + '\\n</tool_response>' -}}"
        "{%- if loop.last or loop.nextitem['role'] != 'tool' -%}{{- '<|im_end|>\\n' -}}{%- endif -%}"
        "{%- elif role in ['system', 'user', 'assistant'] -%}"
        "{%- set content = message['content'] or '' -%}"
        "{%- if role == 'assistant' and message['tool_calls'] is defined and message['tool_calls'] -%}"
        "{%- set calls = namespace(text='') -%}"
        "{%- for call in message['tool_calls'] -%}"
        "{%- set fn = call['function'] if call['function'] is defined else call -%}"
        "{%- set arguments = fn['arguments'] if fn['arguments'] is defined and fn['arguments'] is not none else {} -%}"
        "{%- if arguments is string -%}"
        "{%- set block = '{\"name\": ' + (fn['name'] | tojson) + ', \"arguments\": ' + arguments + '}' -%}"
        "{%- else -%}"
        "{%- set block = {'name': fn['name'], 'arguments': arguments} | tojson -%}"
        "{%- endif -%}"
        "{%- set calls.text = calls.text + ('\\n' if not loop.first else '') + '<tool_call>' + block + '</tool_call>' -%}"
        "{%- endfor -%}"
        "{%- set content = (content + '\\n' + calls.text) if content else calls.text -%}"
        "{%- endif -%}"
        "{{- '<|im_start|>' + role + '\\n' + content + '<|im_end|>\\n' -}}"
        "{%- else -%}"
        "{{- raise_exception('unknown message role ' + role) -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
    )


HERMES_TEMPLATE = hermes_template()


def char_tokenizer_as_hf(char_tokenizer: Any) -> Any:
    """The tiny model's :class:`~toolrl.policy.tokenizers.CharTokenizer` as an equivalent
    ``transformers`` fast tokenizer: ids 3..127 are the ASCII characters with those code points, every
    other character is ``?``, the ChatML markers are the special tokens 1 and 2, 0 pads."""
    # Local: transformers takes seconds to import and only the tiny model's tokenizer needs converting.
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pad, start, end = "<pad>", char_tokenizer.START, char_tokenizer.END
    vocab = {pad: char_tokenizer.pad_id, start: char_tokenizer.start_id, end: char_tokenizer.end_id}
    vocab.update({chr(code): code for code in range(3, 128)})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="?"))
    # Every character is its own word ([\s\S]: newlines too, which "." would skip).
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=pad, bos_token=start, eos_token=end,
                                        unk_token="?", clean_up_tokenization_spaces=False)
    tokenizer.add_special_tokens({"additional_special_tokens": [start, end]})
    return tokenizer


def hf_tokenizer(policy: Any) -> Any:
    """The run's tokenizer as a ``transformers`` tokenizer carrying the template the run was prompted with
    (a copy: the policy's own tokenizer is left as it is)."""
    tokenizer = policy.tokenizer
    if policy.chat.kind == "native":
        return tokenizer  # its own template is the one training used
    tokenizer = copy.deepcopy(tokenizer) if hasattr(tokenizer, "save_pretrained") else char_tokenizer_as_hf(tokenizer)
    tokenizer.chat_template = HERMES_TEMPLATE
    return tokenizer


def load_run_model(run: Path, step: int | None = None) -> tuple[Any, int]:
    """(the run's Policy with its checkpointed parameters, the step restored). The model preset and
    path come from the run's saved ``config.json``."""
    from toolrl.policy.runtime import Policy  # local: imports jax and flax; `toolrl export --help` does not

    config_file = run / "config.json"
    if not config_file.is_file():
        raise UserError(f"{run} is not a toolrl run (no config.json); pass a run's workdir")
    saved = json.loads(config_file.read_text()).get("model", {})
    policy = Policy.load(preset=saved.get("preset", ""), path=saved.get("path", ""))
    restored = policy.restore_params(run, step)
    policy.name = str(run)
    return policy, restored


def export(run: str | Path, out: str | Path, dtype: str = "float32", step: int | None = None) -> Path:
    """Writes the run's checkpoint (latest, or ``step``) as an HF directory at ``out``; returns ``out``."""
    # Local: ml_dtypes (0.6 s to import) and these two (jax, flax): `toolrl export --help` and its argument
    # errors answer without them.
    import ml_dtypes

    from toolrl.models.checkpoint_io import model_to_hf_tensors
    from toolrl.models.lora import has_lora, merge_lora

    if dtype not in DTYPES:
        raise UserError(f"--dtype={dtype!r} must be one of {DTYPES}")
    run, out = Path(run), Path(out)
    if out.resolve() == run.resolve():
        raise UserError(f"--out {out} is the run's own directory; choose another")
    policy, restored = load_run_model(run, step)
    # A LoRA run exports its adapters merged into the kernels: a plain model HF loads without qwix.
    model = merge_lora(policy.model) if has_lora(policy.model) else policy.model
    config = policy.model_config
    tensors = model_to_hf_tensors(model, config)
    if dtype == "bfloat16":
        tensors = {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dict(config.to_hf_config(), torch_dtype=dtype), indent=2))
    save_file(tensors, str(out / "model.safetensors"),
              metadata={"format": "pt", "source_workdir": str(run), "source_step": str(restored)})
    stops = list(dict.fromkeys([policy.chat.end_id, *policy.chat.eos_ids]))
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": stops, "pad_token_id": policy.chat.pad_id}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    hf_tokenizer(policy).save_pretrained(str(out))
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="toolrl export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the run's workdir (config.json and checkpoints/)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="stored weight dtype")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    args = parser.parse_args(argv)
    out = export(args.run, args.out, args.dtype, args.step)
    weights = out / "model.safetensors"
    print(f"wrote {out} ({weights.stat().st_size / 1e6:.1f} MB of {args.dtype} weights, tokenizer, chat template)")
