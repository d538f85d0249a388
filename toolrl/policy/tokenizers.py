"""Tokenizers that ship no files: the tiny random preset has no weights and no tokenizer; it gets
`CharTokenizer`, a 128-symbol character
tokenizer (ASCII, with ChatML's two markers as single tokens), so tests run with no files at all.
"""

from __future__ import annotations

from typing import Any, Sequence



class CharTokenizer:
    """ASCII characters as token ids; ``<|im_start|>`` -> bos (1), ``<|im_end|>`` -> eos (2).

    Non-ASCII characters become "?" (the benchmark text is almost entirely ASCII). Ids 0-2 are pad,
    im_start and im_end; ids 3..127 are the characters with those code points, except that the
    control characters 0-2 never occur in the data.
    """

    START, END = "<|im_start|>", "<|im_end|>"

    def __init__(self, pad_id: int = 0, start_id: int = 1, end_id: int = 2):
        self.pad_id, self.start_id, self.end_id = pad_id, start_id, end_id

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        del add_special_tokens
        ids: list[int] = []
        i = 0
        while i < len(text):
            if text.startswith(self.START, i):
                ids.append(self.start_id)
                i += len(self.START)
            elif text.startswith(self.END, i):
                ids.append(self.end_id)
                i += len(self.END)
            else:
                code = ord(text[i])
                ids.append(code if 3 <= code < 128 else ord("?"))
                i += 1
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        out = []
        for i in ids:
            i = int(i)
            if i == self.start_id:
                out.append("" if skip_special_tokens else self.START)
            elif i == self.end_id:
                out.append("" if skip_special_tokens else self.END)
            elif i == self.pad_id:
                continue
            else:
                out.append(chr(i))
        return "".join(out)
