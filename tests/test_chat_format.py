"""The one chat format (toolrl.data.chat.ChatFormat) on four tokenizers: a Qwen2.5-style and a
Llama-3.1-style tool template (small offline tokenizers, tests/fixtures_chat.py), SmolLM2's real
tokenizer (Hermes fallback) and the tiny model's character tokenizer (Hermes, encode/decode only).

The invariant that makes rollouts, SFT episodes and evaluation prompts one task is checked token for
token: prompt_ids(msgs + [a] + tool_msgs) == prompt_ids(msgs) + assistant_ids(a) + env_ids(tool_msgs).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from fixtures_chat import llama_eos_ids, llama_style_tokenizer, qwen_style_tokenizer
from toolrl.data.chat import ChatFormat, tagless_calls_to_blocks
from toolrl.data.chat_render import compact_tool, format_tool_call, format_tool_calls, render_hermes, tool_system_prompt

HOTELS = {"name": "Search_Hotels", "description": "Find hotels in a city. Results are paged.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "page": {"type": "integer"}},
                         "required": ["city"]}}
ROOMS = {"name": "Get_Rooms", "description": "Tool description: Rooms of one hotel.",
         "parameters": {"type": "object", "properties": {"hotel_id": {"type": "integer"}}, "required": ["hotel_id"]}}
TOOLS = [HOTELS, ROOMS]

SYSTEM = {"role": "system", "content": "You book trips."}
USER = {"role": "user", "content": "Rooms in the cheapest hotel of Paris or Nice?"}
TURN1 = {"role": "assistant", "content": "", "tool_calls": [
    {"name": "Search_Hotels", "arguments": {"city": "Paris"}},
    {"name": "Search_Hotels", "arguments": {"city": "Nice", "page": 2}}]}
RESP1 = [{"role": "tool", "name": "Search_Hotels", "content": '{"status": true, "data": [{"id": 7, "price": 420.5}]}'},
         {"role": "tool", "name": "Search_Hotels", "content": '{"status": true, "data": [{"id": 9, "price": 99}]}'}]
TURN2 = {"role": "assistant", "content": "", "tool_calls": [{"name": "Get_Rooms", "arguments": {"hotel_id": 9}}]}
RESP2 = [{"role": "tool", "name": "Get_Rooms", "content": '{"status": true, "data": ["double"]}'}]
FINAL = {"role": "assistant", "content": "Done."}
CONVERSATION = [SYSTEM, USER, TURN1, *RESP1, TURN2, *RESP2, FINAL]


@dataclasses.dataclass(frozen=True)
class Case:
    fmt: ChatFormat
    kind: str
    end_token: str
    tools: list | None  # the tools the template lists (None: the system prompt lists them itself)


def _smollm2_dir() -> Path:
    path = Path(os.path.expanduser("~/.cache/toolrl/models/smollm2_135m"))
    if (path / "tokenizer.json").exists():
        return path
    try:
        from toolrl.models.bundled import ensure_smollm2

        return ensure_smollm2()
    except Exception as err:  # no GGUF package / conversion failed: nothing to test against
        pytest.skip(f"SmolLM2 tokenizer not available: {err}")


@pytest.fixture(scope="module", params=["qwen", "llama", "smollm2", "char"])
def case(request) -> Case:
    if request.param == "qwen":
        tok = qwen_style_tokenizer()
        return Case(ChatFormat(tok, eos_token_ids=[tok.convert_tokens_to_ids("<|im_end|>"),
                                                   tok.convert_tokens_to_ids("<|endoftext|>")]),
                    "native", "<|im_end|>", TOOLS)
    if request.param == "llama":
        tok = llama_style_tokenizer()
        return Case(ChatFormat(tok, eos_token_ids=llama_eos_ids(tok)), "native", "<|eot_id|>", TOOLS)
    if request.param == "smollm2":
        from transformers import AutoTokenizer

        from toolrl.models.config import ModelConfig

        tok = AutoTokenizer.from_pretrained(str(_smollm2_dir()), local_files_only=True)
        return Case(ChatFormat.for_model(tok, ModelConfig.smollm2_135m()), "hermes", "<|im_end|>", TOOLS)
    from toolrl.models.config import ModelConfig
    from toolrl.policy.tokenizers import CharTokenizer

    return Case(ChatFormat.for_model(CharTokenizer(), ModelConfig.preset("tiny")), "hermes", "<|im_end|>", None)


def _messages(case: Case, messages):
    """With the template's tool listing, or (tools=None) with the system prompt listing the tools."""
    if case.tools is not None:
        return list(messages)
    system = {"role": "system", "content": tool_system_prompt(TOOLS)}
    return [system] + [m for m in messages if m["role"] != "system"]


def _text(case: Case, ids) -> str:
    try:
        return case.fmt.tokenizer.decode(list(ids), skip_special_tokens=False)
    except TypeError:
        return case.fmt.tokenizer.decode(list(ids))


# ----------------------------------------------------------------------------- kind and end token


def test_kind_end_token_and_stop_ids(case):
    fmt = case.fmt
    assert fmt.kind == case.kind
    assert _text(case, [fmt.end_id]) == case.end_token
    assert fmt.stop_ids[0] == fmt.end_id and len(set(fmt.stop_ids)) == len(fmt.stop_ids)
    assert set(fmt.eos_ids) <= set(fmt.stop_ids)


def test_llama_eos_trap():
    """Llama 3.1's first eos id is <|end_of_text|>, which never ends an assistant turn."""
    tok = llama_style_tokenizer()
    eos = llama_eos_ids(tok)
    config = type("Config", (), {"eos_token_ids": eos, "pad_token_id": None})()
    fmt = ChatFormat.for_model(tok, config)
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    assert eos[0] == tok.convert_tokens_to_ids("<|end_of_text|>") != eot
    assert fmt.end_id == eot and fmt.stop_ids[0] == eot
    assert set(fmt.stop_ids) == set(eos) and len(fmt.stop_ids) == 3
    assert fmt.pad_id == eot  # no pad id in the config: pad with the end token (never attended to)
    assert fmt.assistant_ids(TURN2)[-1] == eot and eos[0] not in fmt.assistant_ids(TURN2)


# ----------------------------------------------------------------------------- the invariant


@pytest.mark.parametrize("cut", [2, 5, 7], ids=["turn1-two-calls", "turn2", "final"])
def test_prompt_equals_prompt_plus_assistant_plus_env(case, cut):
    fmt, msgs = case.fmt, _messages(case, CONVERSATION)
    shift = len(msgs) - len(CONVERSATION)
    k = cut + shift
    assistant = msgs[k]
    env = []
    for m in msgs[k + 1:]:
        if m["role"] == "assistant":
            break
        env.append(m)
    longer = fmt.prompt_ids(msgs[:k + 1 + len(env)], case.tools)
    if env:
        assert longer == fmt.prompt_ids(msgs[:k], case.tools) + fmt.assistant_ids(assistant) + fmt.env_ids(env, case.tools)
    else:  # the final answer: the full rendering continues with it (then only whitespace)
        full = fmt.encode(fmt.render(msgs, case.tools, add_generation_prompt=False))
        head = fmt.prompt_ids(msgs[:k], case.tools) + fmt.final_ids(assistant["content"])
        assert full[:len(head)] == head and not _text(case, full[len(head):]).strip()


def test_sft_episode_is_the_segments(case):
    fmt, msgs = case.fmt, _messages(case, CONVERSATION)
    n = len(msgs) - len(CONVERSATION)
    episode = (fmt.prompt_ids(msgs[:2 + n], case.tools)
               + fmt.assistant_ids(TURN1) + fmt.env_ids([m["content"] for m in RESP1], case.tools)
               + fmt.assistant_ids(TURN2) + fmt.env_ids([m["content"] for m in RESP2], case.tools)
               + fmt.final_ids("Done."))
    ids, flags = fmt.conversation_ids(msgs, case.tools)
    assert ids == episode and len(flags) == len(ids)
    trained = [t for t, f in zip(ids, flags) if f]
    assert trained == fmt.assistant_ids(TURN1) + fmt.assistant_ids(TURN2) + fmt.final_ids("Done.")
    assert trained.count(fmt.end_id) == 3
    text = _text(case, trained)
    assert "Done." in text and "tool_response" not in text and "status" not in text


def test_env_ids_take_plain_strings_and_names(case):
    fmt = case.fmt
    assert fmt.env_ids([m["content"] for m in RESP1], case.tools) == fmt.env_ids(RESP1, case.tools)
    env = _text(case, fmt.env_ids(RESP1, case.tools))
    assert env.index("420.5") < env.index("99")  # one message per call, in call order
    assert fmt.end_id in fmt.env_ids(RESP1, case.tools)  # the env segment closes its own turn


# ----------------------------------------------------------------------------- parsing the policy's text


@pytest.mark.parametrize("turn", [TURN1, TURN2], ids=["two-calls", "one-call"])
def test_parse_reads_back_the_policys_own_turn(case, turn):
    fmt = case.fmt
    ids = fmt.assistant_ids(turn)
    assert ids[-1] == fmt.end_id
    text = fmt.decode(ids)
    assert case.end_token not in text
    parsed = fmt.parse(text)
    assert parsed.format_ok
    assert [(c.name, c.arguments) for c in parsed.calls] == [(c["name"], c["arguments"]) for c in turn["tool_calls"]]


def test_parse_final_answer_has_no_calls(case):
    parsed = case.fmt.parse(case.fmt.decode(case.fmt.final_ids("Done.")))
    assert parsed.calls == () and parsed.format_ok


def test_decode_drops_end_pad_and_stop_ids(case):
    fmt = case.fmt
    ids = fmt.final_ids("Done.") + [fmt.pad_id, *fmt.stop_ids]
    assert fmt.decode(ids) == "Done."


def test_tag_style_is_detected():
    assert qwen_style_tokenizer and ChatFormat(qwen_style_tokenizer()).calls_tagged
    assert not ChatFormat(llama_style_tokenizer()).calls_tagged


def test_tagless_calls_to_blocks():
    bare = '{"name": "A", "parameters": {"x": 1}}\n{"name": "B", "parameters": {}}'
    assert tagless_calls_to_blocks(bare) == (
        '<tool_call>{"name": "A", "parameters": {"x": 1}}</tool_call>\n<tool_call>{"name": "B", "parameters": {}}</tool_call>')
    assert tagless_calls_to_blocks("no call {here} at all") == "no call {here} at all"
    assert tagless_calls_to_blocks('{"data": [1]}') == '{"data": [1]}'  # an object without a name
    tagged = '<tool_call>{"name": "A"}</tool_call> {"name": "B"}'
    assert tagless_calls_to_blocks(tagged) == tagged
    # A broken call line becomes a block, so the parser reports it instead of dropping it.
    fmt = ChatFormat(llama_style_tokenizer())
    parsed = fmt.parse('{"name": "A", "parameters": {"x": 1}}\n{"name": "B", "parameters": {"x": }')
    assert [c.name for c in parsed.calls] == ["A"] and not parsed.format_ok
    assert [e.reason for e in parsed.errors] == ["invalid_json"]
    # Tags written anyway by a Llama-style policy are read as they are.
    assert [c.name for c in fmt.parse('<tool_call>\n{"name": "A", "arguments": {}}\n</tool_call>').calls] == ["A"]


# ----------------------------------------------------------------------------- Hermes keeps today's text


def test_hermes_segments_are_todays_text(case):
    if case.kind != "hermes":
        pytest.skip("native templates write their own text")
    fmt = case.fmt
    calls = TURN1["tool_calls"]
    assert fmt.assistant_ids(TURN1) == fmt.encode(format_tool_calls(calls)) + [fmt.end_id]
    assert fmt.final_ids("Done.") == fmt.encode("Done.") + [fmt.end_id]
    assert fmt.env_ids(RESP1) == fmt.encode("\n" + render_hermes(RESP1, add_generation_prompt=True))
    msgs = _messages(case, CONVERSATION[:2])
    assert fmt.prompt_ids(msgs, case.tools) == fmt.encode(render_hermes(msgs, case.tools, add_generation_prompt=True))


def test_one_tool_call_renderer():
    call = {"name": "Search_Hotels", "arguments": {"city": "Zürich"}}
    assert format_tool_call(call) == '<tool_call>{"name": "Search_Hotels", "arguments": {"city": "Zürich"}}</tool_call>'
    assert format_tool_call({"function": {"name": "Search_Hotels", "arguments": '{"city": "Zürich"}'}}) == format_tool_call(call)
    assert format_tool_calls([call, call]) == format_tool_call(call) + "\n" + format_tool_call(call)


# ----------------------------------------------------------------------------- tool system prompt


def test_tool_system_prompt_views_keep_todays_text_and_order():
    assert compact_tool(HOTELS) == "Search_Hotels(city: string, page?: integer) - Find hotels in a city"
    assert compact_tool(ROOMS, describe=False) == "Get_Rooms(hotel_id: integer)"
    assert compact_tool({"type": "function", "function": ROOMS}) == "Get_Rooms(hotel_id: integer) - Rooms of one hotel."
    compact = tool_system_prompt([ROOMS, HOTELS])
    assert compact == (
        "You call tools to solve the user's request. Tools:\n"
        "Get_Rooms(hotel_id: integer) - Rooms of one hotel.\n"
        "Search_Hotels(city: string, page?: integer) - Find hotels in a city\n"
        'Call a tool as <tool_call>{"name": "...", "arguments": {...}}</tool_call>. Calls in one '
        "message must not need each other's results; use the responses you get. When done, answer "
        "without a tool call.")
    assert "Get_Rooms(hotel_id: integer)\nSearch_Hotels(city: string, page?: integer)\n" in tool_system_prompt(
        [ROOMS, HOTELS], "signature")
    assert json.dumps(HOTELS) + "\n" + json.dumps(ROOMS) + "\n" in tool_system_prompt(TOOLS, "full")
    with pytest.raises(ValueError, match="view"):
        tool_system_prompt(TOOLS, "verbose")


# ----------------------------------------------------------------------------- templates we reject


def test_template_that_drops_earlier_content_is_rejected_with_the_message_index():
    from fixtures_chat import QWEN_STYLE_TEMPLATE

    tok = qwen_style_tokenizer()
    # Like reasoning templates: an assistant's content is shown only while it is the last message.
    tok.chat_template = QWEN_STYLE_TEMPLATE.replace(
        "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}",
        "{%- if message.content and loop.last %}{{- '\\n' + message.content }}{%- endif %}")
    assert tok.chat_template != QWEN_STYLE_TEMPLATE
    fmt = ChatFormat(tok)
    thinking = dict(TURN1, content="Let me search both cities.")
    with pytest.raises(ValueError, match="message 2"):
        fmt.conversation_ids([SYSTEM, USER, thinking, *RESP1, FINAL], TOOLS)
    fmt.conversation_ids([SYSTEM, USER, TURN1, *RESP1, FINAL], TOOLS)  # no content: consistent


def test_segments_that_depend_on_the_tool_listing():
    from fixtures_chat import QWEN_STYLE_TEMPLATE

    tok = qwen_style_tokenizer()
    # The turn of tool results (part of every env segment) names the number of tools.
    tok.chat_template = QWEN_STYLE_TEMPLATE.replace(
        "{{- '<|im_start|>user' }}{%- endif %}",
        "{{- '<|im_start|>user' + (' ' + tools | length | string if tools else '') }}{%- endif %}")
    assert tok.chat_template != QWEN_STYLE_TEMPLATE
    fmt = ChatFormat(tok)
    msgs = [SYSTEM, USER, TURN1, *RESP1]
    assert fmt.env_ids(RESP1, TOOLS) != fmt.env_ids(RESP1)
    assert fmt.prompt_ids(msgs, TOOLS) == fmt.prompt_ids(msgs[:2], TOOLS) + fmt.assistant_ids(TURN1, TOOLS) + fmt.env_ids(RESP1, TOOLS)
    assert fmt.conversation_ids(msgs + [FINAL], TOOLS)[0][-len(fmt.final_ids("Done.")):] == fmt.final_ids("Done.")


def test_template_with_one_call_per_message():
    """Llama 3.1's own template raises on more than one call per assistant message; the environment
    segment of a turn with several tool results is still found (with a single-call probe turn)."""
    from fixtures_chat import LLAMA_STYLE_TEMPLATE

    tok = llama_style_tokenizer()
    tok.chat_template = LLAMA_STYLE_TEMPLATE.replace(
        "{%- elif message.role == 'assistant' %}",
        "{%- elif message.role == 'assistant' %}{%- if message.tool_calls | length != 1 %}"
        "{{- raise_exception('This model only supports single tool-calls at once!') }}{%- endif %}")
    assert tok.chat_template != LLAMA_STYLE_TEMPLATE
    fmt = ChatFormat(tok, eos_token_ids=llama_eos_ids(tok))
    two = fmt.env_ids(RESP1, TOOLS)
    assert fmt.decode(two).count("ipython") == 2 and two == ChatFormat(llama_style_tokenizer()).env_ids(RESP1, TOOLS)
    msgs = [SYSTEM, USER, TURN2, *RESP2, FINAL]
    ids, _ = fmt.conversation_ids(msgs, TOOLS)
    assert ids[:-len(fmt.final_ids("Done."))] == fmt.prompt_ids(msgs[:-1], TOOLS)
    with pytest.raises(Exception, match="single tool-calls"):
        fmt.assistant_ids(TURN1)


def test_native_needs_a_template_and_tool_calls():
    from toolrl.policy.tokenizers import CharTokenizer

    with pytest.raises(ValueError, match="chat template"):
        ChatFormat(CharTokenizer(), kind="native")
    tok = qwen_style_tokenizer()
    tok.chat_template = ("{%- for m in messages %}{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}"
                         "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
                         "{#- tools are ignored #}")
    with pytest.raises(ValueError, match="tool calls"):
        ChatFormat(tok)
    assert ChatFormat(tok, kind="hermes").end_id == tok.convert_tokens_to_ids("<|im_end|>")
    # ChatML forced on a tokenizer where <|im_end|> is not one token: no end-of-turn token to stop at.
    with pytest.raises(ValueError, match="end-of-turn"):
        ChatFormat(llama_style_tokenizer(), kind="hermes")
