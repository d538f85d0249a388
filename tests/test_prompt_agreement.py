"""Training prompts (toolrl.rl, segment by segment) and evaluation prompts (toolrl.eval through
toolrl.data.chat) must be the same text, or a trained policy is evaluated out of distribution."""

import pytest
from transformers import AutoTokenizer

from toolrl.eval.model_policy import render_prompts
from toolrl.eval.types import PolicyRequest
from toolrl.models.bundled import ensure_smollm2
from toolrl.models.config import ModelConfig
from toolrl.rl.chat_format import chat_format_for, decode
from toolrl.rl.policy import request_prompt

LOCATION = {"name": "Search_Car_Location", "description": "Find a place.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}
RENTALS = {"name": "Search_Car_Rentals", "description": "Cars near coordinates.",
           "parameters": {"type": "object", "properties": {"pick_up_latitude": {"type": "number"}},
                          "required": ["pick_up_latitude"]}}
USER = {"role": "user", "content": "A car from Zurich Airport to Geneva"}
TWO_CALLS = {"role": "assistant", "content": "", "tool_calls": [
    {"name": "Search_Car_Location", "arguments": {"query": "Zurich Airport"}},
    {"name": "Search_Car_Location", "arguments": {"query": "Geneva"}}]}
RESPONSES = [{"role": "tool", "name": "Search_Car_Location", "content": '{"status": true, "data": [{"lat": 47.45}]}'},
             {"role": "tool", "name": "Search_Car_Location", "content": '{"status": true, "data": [{"lat": 46.2}]}'}]
SECOND = {"role": "assistant", "content": "", "tool_calls": [
    {"name": "Search_Car_Rentals", "arguments": {"pick_up_latitude": 47.45}}]}
LAST = {"role": "tool", "name": "Search_Car_Rentals", "content": '{"status": true}'}


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(ensure_smollm2())


@pytest.mark.parametrize("messages", [
    (USER,),
    (USER, TWO_CALLS, *RESPONSES),
    (USER, TWO_CALLS, *RESPONSES, SECOND, LAST),
], ids=["query-only", "one-turn-two-calls", "two-turns"])
@pytest.mark.parametrize("tool_view", ["compact", "signature", "full"])
def test_training_and_evaluation_prompts_agree(tokenizer, messages, tool_view):
    fmt = chat_format_for(tokenizer, ModelConfig.smollm2_135m())
    request = PolicyRequest("s", 0, 0, tuple(messages), (LOCATION, RENTALS))
    training = decode(tokenizer, request_prompt(fmt, request.messages, request.tools, tool_view))
    evaluation = render_prompts([request], tokenizer, tool_view)[0]
    assert training == evaluation
