"""The trained model as the evaluator's batched policy (`toolrl.eval.types.Policy`).

`make_eval_policy` loads the model a config names (bundled, HF directory, or a training workdir's
orbax checkpoint) and wraps it with the evaluator's `make_model_policy`. `request_prompt` renders an
evaluator request the way the training prompts are rendered (`toolrl.rl.data` system prompt, ChatML
segments of `toolrl.rl.chat_format`), for checking that training and evaluation prompts agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from toolrl.rl.chat_format import ChatFormat
from toolrl.rl.data import render_call, system_prompt


def request_prompt(fmt: ChatFormat, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]],
                   tool_view: str = "compact") -> list[int]:
    """Token ids of one evaluator request, ending with the assistant header."""
    query = ""
    history: list[tuple[str, list[str]]] = []
    pending_tools: list[str] = []
    assistant = None
    for m in messages:
        role = m.get("role")
        if role == "user" and not query:
            query = str(m.get("content", ""))
        elif role == "assistant":
            if assistant is not None:
                history.append((assistant, pending_tools))
            calls = m.get("tool_calls") or []
            assistant = "\n".join(render_call(c["name"], c.get("arguments", {})) for c in calls) or str(m.get("content", ""))
            pending_tools = []
        elif role == "tool":
            pending_tools.append(str(m.get("content", "")))
    if assistant is not None:
        history.append((assistant, pending_tools))
    return fmt.prompt_ids(system_prompt(tools, tool_view), query, history)


def _restore_workdir_params(model: Any, workdir: Path) -> None:
    """Loads the parameters of a training run's latest orbax checkpoint into `model`."""
    from flax import nnx

    from toolrl.policy.checkpoint import Checkpointer
    from toolrl.rl.steps import make_optimizer

    ckpt = Checkpointer(workdir / "checkpoints", 1, 1)
    step = ckpt.latest_step()
    if step is None:
        raise FileNotFoundError(f"{workdir} has no checkpoint")
    optimizer = make_optimizer(model, 1e-5)  # the checkpoint holds (params, optimizer state)
    state, _ = ckpt.restore(step, nnx.state((model, optimizer)))
    nnx.update((model, optimizer), state)
    ckpt.close()


def make_eval_policy(config: Any, preset: str = "smollm2_135m", tool_view: str = "compact"):
    """The evaluator's model policy (`toolrl.eval.model_policy.make_model_policy`) over the model that
    config.checkpoint names: "" (the bundled `preset`), an HF directory, or a training workdir (its
    latest orbax checkpoint, on top of `preset`)."""
    from toolrl.eval.model_policy import make_model_policy
    from toolrl.rl.policy_model import load_policy

    checkpoint = Path(config.checkpoint) if config.checkpoint else None
    is_workdir = checkpoint is not None and (checkpoint / "checkpoints").is_dir()
    path = str(checkpoint) if checkpoint is not None and not is_workdir else ""
    model, tokenizer, model_config = load_policy(preset, path, "float32", None)
    if is_workdir:
        _restore_workdir_params(model, checkpoint)
    return make_model_policy(model, tokenizer, config, tool_view=tool_view, model_config=model_config)
