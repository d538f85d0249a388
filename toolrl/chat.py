"""Talk to a model with the Booking tools: ``toolrl chat RUN|DIR``.

Each line you type is a user message. The model answers; every ``<tool_call>`` block it writes is
executed against the cached environment (the real recorded responses, :mod:`toolrl.env.booking`) and
shown with the response as the model sees it (the run's response view), and the model goes on until
it answers without a call or ``--max-rounds`` is reached. ``/reset`` starts a new conversation,
``/quit`` (or end of input) ends. Input may be piped: ``echo "find hotels in Paris" | toolrl chat RUN``.

RUN is a training run's workdir (its latest checkpoint, and its own prompt settings: tool view,
response view, tokens per turn); DIR is an HF directory (``toolrl export``, or any local checkpoint),
prompted with the defaults of :mod:`toolrl.rl.config` unless flags say otherwise. Decoding is greedy
unless ``--temperature`` is set.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, TextIO

from toolrl.cli import UserError
from toolrl.data.schemas import load_tool_schemas
from toolrl.env.booking import BookingEnvironment, SALIENT_KEYS, ViewPolicy
from toolrl.export import load_run_model
from toolrl.rewards.parse import ParseError


@dataclass
class ChatSettings:
    """How prompts are built and turns sampled (a run's own, or the schema's defaults)."""

    tool_view: str
    response_max_chars: int
    response_max_list_items: int
    response_keep: str
    max_new_tokens: int


def settings_from(tree: dict[str, Any]) -> ChatSettings:
    """The prompt settings of a saved config tree, each missing field taken from the schema's default."""
    from toolrl.rl.config import base_config  # local: imports jax; `toolrl chat --help` does not

    base = base_config()
    data, rollout = tree.get("data", {}), tree.get("rollout", {})
    return ChatSettings(
        tool_view=data.get("tool_view", base.data.tool_view),
        response_max_chars=data.get("response_max_chars", base.data.response_max_chars),
        response_max_list_items=data.get("response_max_list_items", base.data.response_max_list_items),
        response_keep=data.get("response_keep", base.data.response_keep),
        max_new_tokens=rollout.get("max_new_tokens", base.rollout.max_new_tokens))


def load_target(target: str | Path) -> tuple[Any, ChatSettings]:
    """(Policy, settings) for a run's workdir or an HF directory."""
    from toolrl.policy.runtime import Policy  # local: imports jax and flax; `toolrl chat --help` does not

    path = Path(target)
    if (path / "checkpoints").is_dir():
        policy, _ = load_run_model(path)
        return policy, settings_from(json.loads((path / "config.json").read_text()))
    if (path / "config.json").is_file() and any(path.glob("*.safetensors*")):
        return Policy.load(path=str(path)), settings_from({})
    raise UserError(f"{path} is neither a toolrl run (no checkpoints/) nor an HF model directory "
                    "(config.json and *.safetensors)")


@dataclass
class ChatSession:
    """One conversation: the model, the environment, the tools shown, and the messages so far."""

    policy: Any
    env: Any
    tools: list[dict[str, Any]]
    settings: ChatSettings
    max_rounds: int = 4
    temperature: float = 0.0
    seed: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    _draws: int = 0

    def reset(self) -> None:
        self.messages.clear()

    def _generate(self) -> tuple[str, bool]:
        """The model's next assistant message (text, ended by its own end token)."""
        # Local, like load_target's Policy: `toolrl chat --help` and argument errors answer without jax.
        import jax

        from toolrl.policy.runtime import SamplingSettings

        prompt = self.policy.prompt_ids(self.messages, self.tools, self.settings.tool_view)
        sampling = SamplingSettings(max_new_tokens=self.settings.max_new_tokens, greedy=self.temperature <= 0,
                                    temperature=self.temperature if self.temperature > 0 else 1.0)
        self._draws += 1
        out = self.policy.generate([prompt], jax.random.fold_in(jax.random.key(self.seed), self._draws), sampling)
        return self.policy.response_text(out.tokens[0]), bool(out.finished[0])

    def send(self, text: str, out: TextIO) -> None:
        """Adds a user message and runs the model (and its tool calls) until it answers without a call."""
        self.messages.append({"role": "user", "content": text})
        for _ in range(self.max_rounds):
            reply, finished = self._generate()
            shown_reply = reply.replace("\n", "\n           ") if reply.strip() else repr(reply)
            print(f"assistant> {shown_reply}" + ("" if finished else "  [cut at max_new_tokens]"), file=out)
            # The text as generated, blocks included: the template renders it back as the model wrote it.
            self.messages.append({"role": "assistant", "content": reply})
            blocks = self.policy.chat.parse(reply).blocks
            if not blocks:
                return
            for block in blocks:
                if isinstance(block, ParseError):
                    response: Any = {"status": False, "error": "invalid_call",
                                     "message": f"unparseable tool call ({block.reason})"}
                    name = ""
                    print(f"  call  (unparseable: {block.reason}) {block.snippet[:120]}", file=out)
                else:
                    name = block.name
                    response = self.env.execute({"name": block.name, "arguments": block.arguments})
                    print(f"  call  {block.name} {json.dumps(block.arguments, ensure_ascii=False)}", file=out)
                shown = self.env.render(response)
                print(f"  reply {shown}", file=out)
                self.messages.append({"role": "tool", "name": name, "content": shown})
        print(f"(stopped after {self.max_rounds} rounds of tool calls; --max-rounds to change)", file=out)


def select_tools(names: str) -> list[dict[str, Any]]:
    """The raw schemas of the named tools (comma-separated; "" = all 40, in the file's order)."""
    schemas = load_tool_schemas()
    wanted = [n.strip() for n in names.split(",") if n.strip()] if names else list(schemas)
    unknown = [n for n in wanted if n not in schemas]
    if unknown:
        raise UserError(f"unknown tool(s) {', '.join(unknown)}; the tools are those of booking_api.json")
    return [schemas[n].raw for n in wanted]


def run_chat(session: ChatSession, lines: TextIO, out: TextIO, interactive: bool) -> int:
    """Reads user lines until /quit or end of input; returns how many messages were sent."""
    sent = 0
    while True:
        if interactive:
            print("you> ", end="", file=out, flush=True)
        line = lines.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            session.reset()
            print("(new conversation)", file=out)
            continue
        if not interactive:
            print(f"you> {text}", file=out)
        session.send(text, out)
        sent += 1
        out.flush()
    return sent


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="toolrl chat", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", metavar="RUN|DIR", help="a run's workdir or an HF model directory")
    parser.add_argument("--tools", default="", help="comma-separated tool names to offer (default: all 40)")
    parser.add_argument("--max-rounds", type=int, default=4, help="model turns per user message")
    parser.add_argument("--max-new-tokens", type=int, default=0, help="tokens per model turn (0: the run's)")
    parser.add_argument("--tool-view", choices=("compact", "signature", "full"), default=None,
                        help="how the tools are listed (default: the run's)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="benchmark data directory (default: as everywhere)")
    args = parser.parse_args(list(argv))
    if args.max_rounds < 1 or args.max_new_tokens < 0:
        raise UserError("--max-rounds must be >= 1 and --max-new-tokens >= 0")

    tools = select_tools(args.tools)
    policy, settings = load_target(args.target)
    if args.max_new_tokens:
        settings.max_new_tokens = args.max_new_tokens
    if args.tool_view:
        settings.tool_view = args.tool_view
    view = ViewPolicy(max_list_items=settings.response_max_list_items or None,
                      max_chars=settings.response_max_chars or None,
                      keep_keys=SALIENT_KEYS if settings.response_keep == "salient" else None)
    env = BookingEnvironment.from_default(data_dir=args.data_dir, view=view)
    session = ChatSession(policy, env, tools, settings, args.max_rounds, args.temperature, args.seed)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"{policy.name}: {len(tools)} tools, {settings.tool_view} view; /reset, /quit", file=sys.stdout)
    run_chat(session, sys.stdin, sys.stdout, interactive)
