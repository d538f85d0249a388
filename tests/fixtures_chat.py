"""Small offline tokenizers with tool-aware chat templates, for the chat-format tests.

Two `transformers.PreTrainedTokenizerFast` tokenizers are built from a byte-level BPE model trained
(in well under a second) on a few strings, so they encode any text, with their special tokens added:

* `qwen_style_tokenizer()`: ChatML with a Qwen2.5-style tool template (``# Tools`` and ``<tools>`` in
  the system message, calls as ``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``, tool
  results as ``<tool_response>`` blocks in one user turn); ``<tool_call>`` / ``</tool_call>`` are added
  (non-special) tokens as in Qwen2.5.
* `llama_style_tokenizer()`: Llama-3.1-style headers (``<|begin_of_text|>``,
  ``<|start_header_id|>role<|end_header_id|>\\n\\n content<|eot_id|>``), tools listed in the first user
  message, calls as bare JSON ``{"name": ..., "parameters": ...}`` (one per line), tool results with
  role ``ipython`` (string content JSON-encoded, as Llama 3.1's ``is iterable`` test does to strings).
  Its eos ids are [<|end_of_text|>, <|eom_id|>, <|eot_id|>] with <|end_of_text|> first (`LLAMA_EOS`).

The templates are written for these tests in the style of those models; they are not copies.
"""

from __future__ import annotations

import functools

QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
QWEN_ADDED = ("<tool_call>", "</tool_call>")
LLAMA_SPECIALS = ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                  "<|eom_id|>", "<|eot_id|>", "<|python_tag|>")

QWEN_STYLE_TEMPLATE = """
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0].role == 'system' %}{{- messages[0].content }}{%- else %}{{- 'You are a helpful assistant.' }}{%- endif %}
    {{- '\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}
    {%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}
    {{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within '
        '<tool_call></tool_call> XML tags:\\n<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}'
        '\\n</tool_call><|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
    {{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- else %}
    {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == 'user' or (message.role == 'system' and not loop.first)
          or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant' }}
        {%- if message.content %}{{- '\\n' + message.content }}{%- endif %}
        {%- for call in message.tool_calls %}
            {%- if call.function is defined %}{%- set call = call.function %}{%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' + call.name + '", "arguments": ' }}{{- call.arguments | tojson }}{{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == 'tool' %}
        {%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}
        {{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}
        {%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
"""

LLAMA_STYLE_TEMPLATE = """
{{- bos_token }}
{%- if tools_in_user_message is not defined %}{%- set tools_in_user_message = true %}{%- endif %}
{%- if messages[0].role == 'system' %}
    {%- set system_message = messages[0].content | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = '' %}
{%- endif %}
{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}
{%- if tools %}{{- 'Environment: ipython\\n' }}{%- endif %}
{{- 'Cutting Knowledge Date: December 2023\\nToday Date: 26 Jul 2024\\n\\n' }}
{{- system_message }}{{- '<|eot_id|>' }}
{%- if tools and tools_in_user_message %}
    {%- if messages | length == 0 or messages[0].role != 'user' %}
        {{- raise_exception('tools go into the first user message, and there is none') }}
    {%- endif %}
    {%- set first_user = messages[0].content | trim %}
    {%- set messages = messages[1:] %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' }}
    {{- 'Given the following functions, please respond with a JSON for a function call with its proper '
        'arguments that best answers the given prompt.\\n\\nRespond in the format {"name": function name, '
        '"parameters": dictionary of argument name and its value}. Do not use variables.\\n\\n' }}
    {%- for tool in tools %}{{- tool | tojson(indent=4) }}{{- '\\n\\n' }}{%- endfor %}
    {{- first_user + '<|eot_id|>' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role in ['user', 'system'] or (message.role == 'assistant' and not message.tool_calls) %}
        {{- '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content | trim + '<|eot_id|>' }}
    {%- elif message.role == 'assistant' %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
        {%- for call in message.tool_calls %}
            {%- if call.function is defined %}{%- set call = call.function %}{%- endif %}
            {%- if not loop.first %}{{- '\\n' }}{%- endif %}
            {{- '{"name": "' + call.name + '", "parameters": ' }}{{- call.arguments | tojson }}{{- '}' }}
        {%- endfor %}
        {{- '<|eot_id|>' }}
    {%- elif message.role in ['tool', 'ipython'] %}
        {{- '<|start_header_id|>ipython<|end_header_id|>\\n\\n' }}
        {%- if message.content is mapping or message.content is iterable %}{{- message.content | tojson }}
        {%- else %}{{- message.content }}{%- endif %}
        {{- '<|eot_id|>' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}
"""

# The split pattern of the Llama 3 / Qwen2 byte-level pre-tokenizers (contractions, letters with one
# leading non-letter, up to three digits, punctuation runs with trailing newlines, newline runs).
SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = (
    'You book trips. Find hotels in a city. {"name": "Search_Hotels", "arguments": {"city": "Paris"}}',
    '{"status": true, "data": [{"id": 1, "name": "Ritz", "price": 420.5}]} The Ritz is available.',
    "Given the following functions, please respond with a JSON for a function call.",
    "<tool_response>\n</tool_response>\n<tools>\n</tools> assistant user system ipython parameters",
)


def _byte_bpe(specials: tuple[str, ...], added: tuple[str, ...] = ()):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if added:
        tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in added])
    return tok


@functools.lru_cache(maxsize=None)
def _qwen_backend():
    return _byte_bpe(QWEN_SPECIALS, QWEN_ADDED)


@functools.lru_cache(maxsize=None)
def _llama_backend():
    return _byte_bpe(LLAMA_SPECIALS)


def qwen_style_tokenizer():
    """A fresh Qwen2.5-style tokenizer (its eos token is <|im_end|>, pad <|endoftext|>)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=_qwen_backend(), eos_token="<|im_end|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=list(QWEN_SPECIALS))
    tok.chat_template = QWEN_STYLE_TEMPLATE
    return tok


def llama_style_tokenizer():
    """A fresh Llama-3.1-style tokenizer (bos <|begin_of_text|>, eos <|eot_id|> as in the Instruct
    tokenizer config; the model config's eos list is `llama_eos_ids`)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=_llama_backend(), bos_token="<|begin_of_text|>",
                                  eos_token="<|eot_id|>", additional_special_tokens=list(LLAMA_SPECIALS))
    tok.chat_template = LLAMA_STYLE_TEMPLATE
    return tok


def llama_eos_ids(tokenizer) -> tuple[int, ...]:
    """The model config's eos ids in Llama 3.1's order: <|end_of_text|>, <|eom_id|>, <|eot_id|>."""
    return tuple(tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"))
