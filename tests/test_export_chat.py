"""toolrl export / toolrl chat: a run's model leaves as an HF directory that transformers loads with the
same logits and the same prompt tokens, and a chat runs the model's tool calls against the cached
environment."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from toolrl.chat import ChatSession, load_target, select_tools
from toolrl.data.chat_render import render_hermes, tool_system_prompt
from toolrl.export import export
from toolrl.policy.checkpoint import Checkpointer
from toolrl.policy.runtime import Policy

ROOT = Path(__file__).resolve().parents[1]
CALL = {"name": "Search_Car_Location", "arguments": {"query": "Zurich Airport"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run's workdir: configs/tiny.py's resolved config and a checkpoint unlike the initialisation."""
    sys.path.insert(0, str(ROOT))
    from configs.tiny import get_config

    workdir = tmp_path_factory.mktemp("export") / "run"
    policy = Policy.load(preset="tiny")
    params = jax.tree.map(lambda x: x * 1.5 + 0.01, nnx.state(policy.model, nnx.Param))
    ckpt = Checkpointer(workdir / "checkpoints", 1, 1)
    ckpt.save(3, params, None, {"step": 3})
    ckpt.close()
    (workdir / "config.json").write_text(get_config().to_json())
    return workdir


def _conversation():
    tools = select_tools("Search_Car_Location,Search_Car_Rentals")
    messages = [{"role": "user", "content": "Rent a car at Zurich Airport, please."},
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "name": CALL["name"], "content": '{"status": true, "data": [{"id": "ZRH"}]}'},
                {"role": "user", "content": "And the cheapest one?"}]
    return tools, messages


def test_export_loads_in_transformers_with_our_logits_and_our_prompt(run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = export(run, tmp_path / "hf")
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in out.iterdir()}
    ours, _ = load_target(run)  # the run's model with its checkpoint
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(out), local_files_only=True, dtype=torch.float32).eval()

    tools, messages = _conversation()
    want = ours.prompt_ids(messages, tools, "signature")
    system = {"role": "system", "content": tool_system_prompt(tools, "signature")}
    text = tokenizer.apply_chat_template([system, *messages], tokenize=False, add_generation_prompt=True)
    assert text == render_hermes([system, *messages])  # the template is the run's chat format
    assert tokenizer.encode(text, add_special_tokens=False) == want
    # Tools handed to the template render as our Hermes listing does.
    assert (tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
            == render_hermes(messages, tools))
    # toolrl reading the exported directory builds the same prompt tokens.
    assert Policy.load(path=str(out)).prompt_ids(messages, tools, "signature") == want

    ids = np.asarray([want[-200:]], np.int32)
    positions = np.arange(ids.shape[1])[None]
    logits, _ = ours.model(jax.numpy.asarray(ids), jax.numpy.asarray(positions), jax.numpy.ones(ids.shape, bool))
    with torch.no_grad():
        reference = model(input_ids=torch.tensor(ids, dtype=torch.long)).logits.float().numpy()
    assert np.abs(np.asarray(logits) - reference).max() <= 1e-4
    generation = json.loads((out / "generation_config.json").read_text())
    assert ours.chat.end_id in generation["eos_token_id"]


def test_export_bfloat16_is_half_the_size_and_loads(run, tmp_path):
    from transformers import AutoModelForCausalLM

    full, half = export(run, tmp_path / "f32"), export(run, tmp_path / "bf16", "bfloat16")
    assert json.loads((half / "config.json").read_text())["torch_dtype"] == "bfloat16"
    ratio = (half / "model.safetensors").stat().st_size / (full / "model.safetensors").stat().st_size
    assert 0.45 < ratio < 0.55
    AutoModelForCausalLM.from_pretrained(str(half), local_files_only=True)


def test_chat_runs_the_models_calls_against_the_cached_environment(run):
    from toolrl.env.booking import BookingEnvironment

    policy, settings = load_target(run)
    session = ChatSession(policy, BookingEnvironment.from_default(), select_tools("Search_Car_Location"), settings)
    replies = iter([f'<tool_call>{json.dumps(CALL)}</tool_call>', "Zurich Airport is ZRH."])
    session._generate = lambda: (next(replies), True)  # a scripted model: the loop is what is tested
    out = io.StringIO()
    session.send("Where can I rent a car in Zurich?", out)
    shown = out.getvalue()
    assert 'call  Search_Car_Location {"query": "Zurich Airport"}' in shown
    assert "reply " in shown and "ZRH" in shown  # the recorded response, through the run's view
    assert "assistant> Zurich Airport is ZRH." in shown
    assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"]
    assert '"iata_code":"ZRH"' in session.messages[2]["content"]


def test_chat_reads_piped_input_on_a_tiny_run(run):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-m", "toolrl", "chat", str(run), "--tools", "Search_Car_Location",
         "--max-new-tokens", "8", "--max-rounds", "1"],
        input="find a car at Zurich Airport\n/reset\nhello\n", capture_output=True, text=True, env=env,
        cwd=ROOT, timeout=240)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "you> find a car at Zurich Airport" in lines and "(new conversation)" in lines and "you> hello" in lines
    assert sum(line.startswith("assistant> ") for line in lines) == 2


def test_chat_and_export_refuse_what_is_not_a_model_in_one_line(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    for command in (["chat", str(tmp_path)], ["export", str(tmp_path), "--out", str(tmp_path / "o")]):
        result = subprocess.run([sys.executable, "-m", "toolrl", *command], capture_output=True, text=True,
                                env=env, cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr


def test_the_exported_smollm2_tokenizer_prompts_as_training_did(tmp_path):
    """SmolLM2's own template knows no tools (training used the Hermes format): the exported template is
    that format, and toolrl reading it back (now as a tool-aware template) cuts the same segments."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from toolrl.data.chat import ChatFormat
    from toolrl.export import hf_tokenizer
    from toolrl.models.checkpoint_io import resolve_model_dir

    original = AutoTokenizer.from_pretrained(str(resolve_model_dir("smollm2_135m")), local_files_only=True)
    trained = ChatFormat(original)
    assert trained.kind == "hermes"
    hf_tokenizer(SimpleNamespace(tokenizer=original, chat=trained)).save_pretrained(str(tmp_path))
    exported = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    reread = ChatFormat(exported)
    tools, messages = _conversation()
    messages = [{"role": "system", "content": tool_system_prompt(tools, "compact")}, *messages]
    assert exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == render_hermes(messages)
    assert reread.prompt_ids(messages) == trained.prompt_ids(messages)
    assert reread.assistant_ids(messages[2]) == trained.assistant_ids(messages[2])
    assert reread.env_ids([messages[3]]) == trained.env_ids([messages[3]])
    assert reread.end_id == trained.end_id
