"""Models named by a Hugging Face Hub id: ``model.path=hf:Org/Name`` (or ``hf:Org/Name@revision``).

Opt-in: only a value that starts with ``hf:`` touches the network; a bare ``Org/Name`` stays a local
path, so a mistyped directory never turns into a download. The repository's config, safetensors,
tokenizer files and generation config (``ALLOW_PATTERNS``, never ``*.bin`` or other frameworks'
weights) go into ``$TOOLRL_HOME/hub`` when ``$TOOLRL_HOME`` is set, else into Hugging Face's own cache
(``$HF_HUB_CACHE``, shared with transformers). A snapshot already there is reused, also offline.

``HF_ENDPOINT`` (another hub or a mirror) and ``HF_HUB_OFFLINE=1`` are read when the download is
asked for, not when the module is imported. Every failure (offline and not cached, connection refused,
unknown repository or revision, no safetensors) is a :class:`HubError`: one line, exit 2 through the
shared CLI error handler.
"""

from __future__ import annotations

import os
from pathlib import Path

from toolrl.cli import UserError

PREFIX = "hf:"
#: What a model needs: weights as safetensors (single or sharded with its index), the config, the
#: tokenizer (fast or slow files, chat template) and the generation config.
ALLOW_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                  "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                  "chat_template.json")


class HubError(UserError):
    """A hub model that cannot be had (offline, unreachable, unknown, or without safetensors)."""


def is_hub_id(name: str) -> bool:
    """Whether a model field names a hub repository (``hf:Org/Name``)."""
    return name.startswith(PREFIX)


def parse_hub_id(name: str) -> tuple[str, str | None]:
    """``hf:Org/Name[@revision]`` -> (``Org/Name``, revision or None); HubError for anything else."""
    repo, _, revision = name[len(PREFIX):].partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise HubError(f"{name!r} is not a hub id: write hf:Org/Name or hf:Org/Name@revision")
    return repo, revision or None


def hub_cache_dir() -> Path | None:
    """``$TOOLRL_HOME/hub`` when TOOLRL_HOME is set; None = huggingface_hub's own cache."""
    home = os.environ.get("TOOLRL_HOME")
    return Path(home).expanduser() / "hub" if home else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _reason(error: BaseException) -> str:
    """Why the download failed, in a few words (the library's messages run to paragraphs)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, GatedRepoError):
        return "the repository is gated: accept its terms on the hub and log in (hf auth login)"
    if isinstance(error, RevisionNotFoundError):
        return "no such revision"
    if isinstance(error, RepositoryNotFoundError):
        return "no such repository (or it is private and no token is set)"
    cause = error.__cause__ or error.__context__
    if isinstance(error, LocalEntryNotFoundError) and cause is not None:
        error = cause
    text = " ".join(str(error).split())
    if "refused" in text.lower() or "connect" in type(error).__name__.lower():
        return f"cannot connect ({text[:120]})"
    return f"{type(error).__name__}: {text[:160]}"


def download_model(name: str) -> Path:
    """The local snapshot directory of the hub model ``name`` (``hf:Org/Name[@revision]``), downloading
    what is not cached yet. Raises HubError (one line) when it cannot be had."""
    repo, revision = parse_hub_id(name)
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:  # a declared dependency; a trimmed environment may still lack it
        raise HubError(f"{name}: huggingface_hub is not installed (pip install huggingface_hub)") from err
    endpoint = os.environ.get("HF_ENDPOINT") or None
    where = endpoint or "huggingface.co"
    offline = _offline()
    cache = hub_cache_dir()
    try:
        directory = Path(snapshot_download(
            repo, revision=revision, cache_dir=str(cache) if cache else None, endpoint=endpoint,
            allow_patterns=list(ALLOW_PATTERNS), local_files_only=offline))
    except Exception as err:  # huggingface_hub and httpx raise many types; every one is reported the same way
        if offline:
            raise HubError(f"{name} is not in the hub cache and HF_HUB_OFFLINE=1 forbids downloading it: "
                           "unset HF_HUB_OFFLINE on a machine with a network, or set model.path to a local "
                           "HF directory") from err
        raise HubError(f"cannot download {name} from {where}: {_reason(err)}; with no network, set "
                       "model.path to a local HF directory") from err
    if not (directory / "config.json").is_file():
        raise HubError(f"{name} has no config.json (is it a model repository?)")
    if not any(directory.glob("*.safetensors")):
        raise HubError(f"{name} has no *.safetensors weights (only those are loaded; convert the repository's "
                       "weights with transformers' save_pretrained)")
    return directory
