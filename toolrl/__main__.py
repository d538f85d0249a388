"""``toolrl``: one command for every job, ``toolrl SUBCOMMAND [ARGS...]`` (also ``python -m toolrl``).

Each subcommand hands its arguments to the module that owns the job, so ``toolrl train ...`` and
``python -m toolrl.main ...`` are the same program with the same flags (``toolrl SUBCOMMAND --help``
prints them). Every path reports a user's mistake the same way, through :func:`toolrl.cli.run_cli`:
one line on stderr, exit 2 (``--verbose`` for the traceback).

The modules are imported only when their subcommand runs: several of them define an absl flag named
``config`` at import time, and two such modules in one process would collide.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import os
import re
import sys
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path

from toolrl.cli import UserError, run_cli

PROG = "toolrl"


def _with_argv(args: Sequence[str], module: str, function: str = "run") -> None:
    """Runs ``module.function()``, an entry point that reads ``sys.argv`` itself (the absl ones), with
    ``args`` as its arguments. The module is imported after ``sys.argv`` is set: ml_collections reads
    ``sys.argv`` when it defines a config flag, to register the ``--config.FIELD`` overrides given."""
    sys.argv = [PROG, *args]
    getattr(importlib.import_module(module), function)()


def config_file_of(args: Sequence[str]) -> str | None:
    """The file named by ``--config=PATH[:ARG]`` or ``--config PATH[:ARG]`` in ``args`` (None if absent)."""
    for i, arg in enumerate(args):
        if arg.startswith("--config="):
            value = arg.split("=", 1)[1]
        elif arg == "--config" and i + 1 < len(args):
            value = args[i + 1]
        else:
            continue
        return value.split(":", 1)[0]
    return None


def check_config_file(args: Sequence[str], default: str | None = "configs/grpo.py") -> None:
    """A config file that does not exist is the user's mistake, said in one line before absl sees it
    (absl would raise an OSError whose traceback hides the cause)."""
    path = config_file_of(args) or default
    if path and not Path(path).is_file():
        hint = "" if config_file_of(args) else " (the default; pass --config=CONFIG)"
        raise UserError(f"config file {path} does not exist{hint}; the configs are in configs/")


def _main_job(mode: str | None) -> Callable[[list[str]], None]:
    """``toolrl.main`` with ``config.mode`` set (None: the config's own mode, grpo or sft)."""
    def run(args: list[str]) -> None:
        if any(a.startswith("--config.mode") for a in args) and mode is not None:
            raise UserError(f"'toolrl {mode}' sets --config.mode={mode}; drop --config.mode from the command")
        if mode == "eval" and args and not args[0].startswith("-"):
            # `toolrl eval RUN`: the run directory as the first argument.
            args = [f"--config.eval.checkpoint={args[0]}", *args[1:]]
        if "--help" not in args and "--helpfull" not in args:
            check_config_file(args)
        extra = [f"--config.mode={mode}"] if mode else []
        _with_argv([*args, *extra], "toolrl.main")
    return run


def _plan(args: list[str]) -> None:
    if "--help" not in args and "--helpfull" not in args:
        check_config_file(args)
    _with_argv(args, "toolrl.plan", "main")


def _score(args: list[str]) -> None:
    # local: imported when its subcommand runs (docstring)
    from toolrl.env.cache import CacheError
    from toolrl.eval import score

    run_cli(score.main, args, prog=f"{PROG} score", user_errors=(CacheError,))


def _synth(args: list[str]) -> None:
    if "--help" not in args and "--helpfull" not in args:
        check_config_file(args, default="configs/synth.py")
    sys.argv = [PROG, *args]  # before the import: see _with_argv
    from toolrl.synth.__main__ import cli  # local: imported when its subcommand runs (docstring)

    run_cli(cli, args, prog=f"{PROG} synth")


def _cache(args: list[str]) -> None:
    from toolrl.env import cache  # local: imported when its subcommand runs (docstring)

    run_cli(cache.main, args, prog=f"{PROG} cache", user_errors=(cache.CacheError,))


def _graph(args: list[str]) -> None:
    from toolrl.env import graph  # local: imported when its subcommand runs (docstring)

    run_cli(graph.main, args, prog=f"{PROG} graph")


def _data(args: list[str]) -> None:
    usage = "usage: toolrl data fetch [--out DIR] ... | toolrl data export --config=CONFIG --split=SPLIT --out=FILE"
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return
    action, rest = args[0], args[1:]
    if action == "fetch":
        from toolrl.data import fetch  # local: imported when its subcommand runs (docstring)

        run_cli(fetch.main, rest, prog=f"{PROG} data fetch", user_errors=(fetch.FetchError,))
    elif action == "export":
        if "--help" not in rest and "--helpfull" not in rest:
            check_config_file(rest)
        _with_argv(rest, "toolrl.data.export")
    else:
        raise UserError(f"unknown data action {action!r}; {usage}")


def _export(args: list[str]) -> None:
    from toolrl import export  # local: imported when its subcommand runs (docstring)

    run_cli(export.main, args, prog=f"{PROG} export")


def _chat(args: list[str]) -> None:
    from toolrl import chat  # local: imported when its subcommand runs (docstring)

    run_cli(chat.main, args, prog=f"{PROG} chat")


def field_comments(source: str) -> dict[str, str]:
    """``{"rollout.max_seq_len": "Whole trajectory ..."}`` from the schema's source: each ``c.FIELD = ...``
    line's comment block directly above it plus its own trailing comment, as ``toolrl/rl/config.py``
    documents every field once."""
    inline: dict[int, str] = {}
    code_lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            inline[token.start[0]] = token.string.lstrip("#").strip()
        elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                tokenize.ENDMARKER):
            code_lines.add(token.start[0])
    comments: dict[str, str] = {}
    lines = source.splitlines()
    for number, line in enumerate(lines, start=1):
        match = re.match(r"\s*c\.([\w.]+)\s*=", line)
        if not match:
            continue
        above: list[str] = []
        k = number - 1
        while k >= 1 and k in inline and k not in code_lines:  # comment-only lines just above
            above.insert(0, inline[k])
            k -= 1
        own = [inline[number]] if number in inline and number in code_lines else []
        text = " ".join(above + own).strip()
        if text:
            comments[match.group(1)] = text
    return comments


def load_config_file(spec: str):
    """The ConfigDict of ``PATH[:ARG]`` (``get_config(ARG)`` for variants, as ml_collections calls it)."""
    path, _, arg = spec.partition(":")
    if not Path(path).is_file():
        raise UserError(f"config file {path} does not exist; the configs are in configs/")
    module_spec = importlib.util.spec_from_file_location("toolrl_config_show", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"{path} defines no get_config()")
    return module.get_config(arg) if arg else module.get_config()


def _leaves(config, prefix: str = ""):
    for key in sorted(config.keys()):
        value = config[key]
        name = f"{prefix}{key}"
        if hasattr(value, "keys") and not isinstance(value, dict):
            yield from _leaves(value, name + ".")
        else:
            yield name, value


def show_config(spec: str) -> str:
    """Every field of the config at ``spec``: ``name = value  # comment``, and the schema's default
    where the config changes it."""
    # local: imported when its subcommand runs (docstring)
    from toolrl.rl import config as schema

    config = load_config_file(spec)
    defaults = dict(_leaves(schema.base_config()))
    comments = field_comments(Path(schema.__file__).read_text(encoding="utf-8"))
    out = [f"# {spec}: every field ({Path(schema.__file__).name} documents each once)"]
    for name, value in _leaves(config):
        line = f"{name} = {value!r}"
        if name in defaults and defaults[name] != value:
            line += f"  (default {defaults[name]!r})"
        elif name not in defaults:
            line += "  (not in the schema)"
        comment = comments.get(name) or comments.get(name.rsplit(".", 1)[0] + ".*", "")
        out.append(line + (f"  # {comment}" if comment else ""))
    return "\n".join(out)


def _config(args: list[str]) -> None:
    def run(argv: list[str]) -> None:
        parser = argparse.ArgumentParser(prog=f"{PROG} config", description="Show a config's fields.")
        parser.add_argument("--show", metavar="CONFIG", required=True, help="a config file, e.g. configs/grpo.py[:variant]")
        print(show_config(parser.parse_args(argv).show))
    run_cli(run, args, prog=f"{PROG} config")


# name -> (one line for `toolrl --help`, runner). Runners exit through run_cli (or the module's own).
COMMANDS: dict[str, tuple[str, Callable[[list[str]], None]]] = {
    "train": ("train a config: SFT warm start then GRPO (mode grpo), or SFT only (mode sft)  [toolrl.main]",
              _main_job(None)),
    "check": ("print the fit report of a config's budgets and stop  [toolrl.main, mode check]", _main_job("check")),
    "eval": ("evaluate a run (toolrl eval RUN, or --config.eval.checkpoint=RUN) on ComplexFuncBench  "
             "[toolrl.main, mode eval]", _main_job("eval")),
    "plan": ("ahead of time: will a config fit the devices, and how long will a step take  [toolrl.plan]", _plan),
    "score": ("score another system's predictions (JSONL) under the turn or official protocol  "
              "[toolrl.eval.score]", _score),
    "synth": ("synthesize traces into the TFDS dataset toolrl_traces  [toolrl.synth]", _synth),
    "cache": ("build or summarise the response cache  [toolrl.env.cache]", _cache),
    "graph": ("mine the tool dependency graph  [toolrl.env.graph]", _graph),
    "data": ("data fetch: the benchmark files from their public homes, sha256-checked; "
             "data export: a config's samples as JSONL  [toolrl.data.fetch, toolrl.data.export]", _data),
    "export": ("write a run's model as a Hugging Face directory (safetensors, config, tokenizer)  "
               "[toolrl.export]", _export),
    "chat": ("talk to a run or an exported model, its tool calls answered by the cached environment  "
             "[toolrl.chat]", _chat),
    "config": ("config --show CONFIG: every field of a config with its value and its comment  "
               "[toolrl/rl/config.py]", _config),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {PROG} SUBCOMMAND [ARGS...]   ({PROG} SUBCOMMAND --help for its flags)", "",
             "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (summary, _) in COMMANDS.items()]
    lines += ["", "A user's mistake is one line and exit 2; --verbose shows the traceback."]
    return "\n".join(lines)


def dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise UserError(f"unknown subcommand {name!r}; one of: {', '.join(COMMANDS)} ({PROG} --help)")
    COMMANDS[name][1](rest)


def main() -> None:
    """The ``toolrl`` console script."""
    os.environ.setdefault("WANDB_SILENT", "true")
    args = sys.argv[1:]
    # `--verbose` must reach the subcommand's own handler too, so the outer one keeps it in the list.
    try:
        run_cli(lambda _: dispatch(args), args, prog=PROG)
    except BrokenPipeError:  # `toolrl ... | head`: the reader left; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
