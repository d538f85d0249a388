"""Chat rendering: Hermes fallback (SmolLM2), native tool templates, assistant masks."""

from __future__ import annotations

import json

import pytest

from toolrl.data.chat_render import format_tool_call, render_chat, template_kind, tokenize_conversation
from toolrl.rewards.parse import parse_tool_calls

TOOLS = [{
    "name": "Search_Hotels",
    "description": "Find hotels in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
CONVO = [
    {"role": "system", "content": "You book trips."},
    {"role": "user", "content": "Hotels in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "Search_Hotels", "arguments": {"city": "Paris"}}]},
    {"role": "tool", "content": json.dumps({"hotels": ["Ritz"]})},
    {"role": "assistant", "content": "The Ritz is available."},
]

# A minimal tools-aware template in the Qwen2.5 style (the shape real native templates have).
NATIVE_TEMPLATE = (
    "{%- if tools %}{{ '<|im_start|>system\\n' }}"
    "{{ messages[0]['content'] if messages[0]['role'] == 'system' else 'Sys' }}{{ '\\n<tools>' }}"
    "{%- for t in tools %}{{ '\\n' }}{{ t | tojson }}{%- endfor %}{{ '\\n</tools><|im_end|>\\n' }}{%- endif %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'system' %}{%- if not tools %}{{ '<|im_start|>system\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif m['role'] == 'tool' %}{{ '<|im_start|>user\\n<tool_response>\\n' + m['content'] + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
    "{%- for c in m.get('tool_calls') or [] %}{{ '<tool_call>\\n{\"name\": \"' + c.function.name + '\", \"arguments\": ' }}"
    "{{ c.function.arguments | tojson }}{{ '}\\n</tool_call>' }}{%- endfor %}{{ '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from toolrl.models.bundled import ensure_smollm2

    return AutoTokenizer.from_pretrained(str(ensure_smollm2()), local_files_only=True)


@pytest.fixture()
def native_tokenizer(tokenizer):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = NATIVE_TEMPLATE
    return tok


def test_smollm2_uses_hermes_fallback(tokenizer):
    assert template_kind(tokenizer) == "hermes"
    text = render_chat(tokenizer, CONVO[:2], tools=TOOLS)
    assert text.startswith("<|im_start|>system\nYou book trips.\n\n# Tools")
    assert "<tools>\n" + json.dumps(TOOLS[0]) + "\n</tools>" in text
    assert text.endswith("<|im_start|>user\nHotels in Paris?<|im_end|>\n<|im_start|>assistant\n")
    ids = render_chat(tokenizer, CONVO[:2], tools=TOOLS, tokenize=True)
    assert tokenizer.decode(ids) == text and ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")


def test_hermes_calls_and_responses_round_trip_through_parser(tokenizer):
    text = render_chat(tokenizer, CONVO, tools=TOOLS, add_generation_prompt=False)
    assert '<tool_call>{"name": "Search_Hotels", "arguments": {"city": "Paris"}}</tool_call><|im_end|>' in text
    assert '<|im_start|>user\n<tool_response>\n{"hotels": ["Ritz"]}\n</tool_response><|im_end|>' in text
    assistant_turn = text.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    parsed = parse_tool_calls(assistant_turn)
    assert [(c.name, c.arguments) for c in parsed.calls] == [("Search_Hotels", {"city": "Paris"})]
    # JSON-string arguments and the OpenAI wrapper render identically.
    wrapped = {"function": {"name": "Search_Hotels", "arguments": '{"city": "Paris"}'}}
    assert format_tool_call(wrapped) == format_tool_call(CONVO[2]["tool_calls"][0])


def test_assistant_mask_covers_exactly_assistant_turns(tokenizer):
    ids, mask = tokenize_conversation(tokenizer, CONVO, tools=TOOLS)
    assert len(ids) == len(mask)
    full = render_chat(tokenizer, CONVO, tools=TOOLS, add_generation_prompt=False)
    assert tokenizer.decode(ids) == full
    trained = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained == (
        '<tool_call>{"name": "Search_Hotels", "arguments": {"city": "Paris"}}</tool_call><|im_end|>'
        "The Ritz is available.<|im_end|>"
    )


def test_native_template_used_when_it_supports_tools(native_tokenizer):
    assert template_kind(native_tokenizer) == "native"
    text = render_chat(native_tokenizer, CONVO, tools=TOOLS, add_generation_prompt=False)
    assert '"type": "function"' in text and '"name": "Search_Hotels"' in text
    assert '<tool_call>\n{"name": "Search_Hotels", "arguments": {"city": "Paris"}}\n</tool_call>' in text
    ids, mask = tokenize_conversation(native_tokenizer, CONVO, tools=TOOLS)
    trained = native_tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert trained.startswith("<tool_call>") and trained.endswith("The Ritz is available.<|im_end|>")
    assert "Hotels in Paris?" not in trained and "tool_response" not in trained


def test_chat_format_trains_the_tokens_the_mask_marks(tokenizer):
    """ChatFormat's SFT flags and tokenize_conversation's assistant mask agree on SmolLM2."""
    from toolrl.data.chat import ChatFormat

    fmt = ChatFormat(tokenizer, eos_token_ids=[tokenizer.convert_tokens_to_ids("<|im_end|>")])
    ids, flags = fmt.conversation_ids(CONVO, TOOLS)
    full_ids, mask = tokenize_conversation(tokenizer, CONVO, tools=TOOLS)
    assert full_ids[:len(ids)] == ids and tokenizer.decode(full_ids[len(ids):]).strip() == ""
    assert [t for t, f in zip(ids, flags) if f] == [t for t, m in zip(full_ids, mask) if m]
