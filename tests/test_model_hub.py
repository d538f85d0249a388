"""Hub ids for models (``hf:Org/Name``) against a local HTTP server that answers as the hub does
(HF_ENDPOINT points at it; no network): the downloaded model equals the same directory loaded locally;
offline or refused is one line and exit 2."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urlparse

import jax.numpy as jnp
import numpy as np
import pytest

from model_fixtures import saved_random_model
from toolrl.models.checkpoint_io import load_pretrained, resolve_model_dir
from toolrl.models.config import ModelConfig
from toolrl.models.decoder import left_pad_positions
from toolrl.models.hub import HubError, download_model, parse_hub_id

REPO = "toolrl-test/tiny-llama"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _write_tokenizer(directory: Path) -> None:
    """A word-level tokenizer over a small vocabulary (tokenizer.json + tokenizer_config.json)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["<pad>", "<unk>", "<eos>", *[f"w{i}" for i in range(40)]]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "unk_token": "<unk>",
         "eos_token": "<eos>"}))


class _Hub(http.server.BaseHTTPRequestHandler):
    """The three requests snapshot_download makes: the revision info, the file tree, each file's
    resolve URL (HEAD for the ETag / X-Repo-Commit headers, then GET)."""

    files: dict[str, bytes] = {}
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, value, head: bool = False):
        self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"}, head)

    def _handle(self, head: bool):
        path = unquote(urlparse(self.path).path)
        type(self).requests.append(path)
        if path.startswith(f"/api/models/{REPO}/revision/"):
            return self._json({"id": REPO, "sha": COMMIT,
                               "siblings": [{"rfilename": name} for name in sorted(self.files)]}, head)
        if path.startswith(f"/api/models/{REPO}/tree/"):
            return self._json([{"type": "file", "path": name, "size": len(data),
                                "oid": hashlib.sha1(data).hexdigest()} for name, data in sorted(self.files.items())],
                              head)
        prefix = f"/{REPO}/resolve/"
        if path.startswith(prefix):
            name = path[len(prefix):].split("/", 1)[1]
            if name in self.files:
                data = self.files[name]
                return self._send(200, data, {"ETag": f'"{hashlib.sha1(data).hexdigest()}"',
                                              "X-Repo-Commit": COMMIT}, head)
        return self._send(404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, head)

    def do_GET(self):
        self._handle(head=False)

    def do_HEAD(self):
        self._handle(head=True)


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    """A tiny random Llama written as an HF directory with a tokenizer (the hub serves these files)."""
    directory = tmp_path_factory.mktemp("tiny_llama")
    saved_random_model(ModelConfig.tiny(), directory, seed=5)
    _write_tokenizer(directory)
    (directory / "pytorch_model.bin").write_bytes(b"not downloaded: allow_patterns keeps safetensors only")
    return directory


@pytest.fixture()
def hub(local_model, monkeypatch, tmp_path):
    """HF_ENDPOINT at a local server serving `local_model` as REPO; TOOLRL_HOME = an empty tmp dir."""
    files = {p.name: p.read_bytes() for p in local_model.iterdir() if p.is_file()}
    handler = type("Hub", (_Hub,), {"files": files, "requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{httpd.server_address[1]}")
    monkeypatch.setenv("TOOLRL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    yield handler
    httpd.shutdown()
    httpd.server_close()


def _refused_port() -> int:
    """A local port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_parse_hub_id():
    assert parse_hub_id("hf:Org/Name") == ("Org/Name", None)
    assert parse_hub_id("hf:Org/Name@v1.0") == ("Org/Name", "v1.0")
    for bad in ("hf:Name", "hf:Org/", "hf:a/b/c"):
        with pytest.raises(HubError):
            parse_hub_id(bad)


def test_hub_model_loads_with_the_local_directorys_logits(hub, local_model, tmp_path):
    directory = resolve_model_dir(f"hf:{REPO}")
    assert directory.is_relative_to(tmp_path / "home" / "hub")  # $TOOLRL_HOME/hub
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"])  # no .bin
    assert any(r.startswith(f"/api/models/{REPO}/revision/") for r in hub.requests)

    hub_model, hub_tok, hub_config = load_pretrained(f"hf:{REPO}")
    model, tok, config = load_pretrained(local_model)
    assert hub_config.name == REPO
    assert dataclasses.replace(hub_config, name=config.name) == config
    text = "w1 w7 w3 w30 w2"
    assert hub_tok(text)["input_ids"] == tok(text)["input_ids"] == [4, 10, 6, 33, 5]
    tokens = jnp.asarray([tok(text)["input_ids"]], jnp.int32)
    mask = jnp.ones_like(tokens, bool)
    positions = left_pad_positions(mask)
    logits = np.asarray(hub_model(tokens, positions, mask)[0])  # (logits, cache)
    assert logits.shape == (1, 5, config.vocab_size) and np.isfinite(logits).all()
    np.testing.assert_array_equal(logits, np.asarray(model(tokens, positions, mask)[0]))

    # A second load reads the cache: no file is fetched again (only the revision is asked for).
    before = len(hub.requests)
    assert resolve_model_dir(f"hf:{REPO}") == directory
    assert not any("/resolve/" in r for r in hub.requests[before:])


def test_offline_uses_the_cache_and_refuses_what_is_not_there(hub, monkeypatch):
    directory = download_model(f"hf:{REPO}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(hub.requests)
    assert download_model(f"hf:{REPO}") == directory
    assert len(hub.requests) == before  # offline: not one request
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1"):
        download_model("hf:toolrl-test/not-cached")


def test_unknown_repository_is_one_line(hub):
    with pytest.raises(HubError, match="no such repository") as err:
        download_model("hf:toolrl-test/missing")
    assert "\n" not in str(err.value)


def _main(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolrl.main", "--config=configs/tiny.py", "--config.mode=eval",
         f"--config.model.path=hf:{REPO}", f"--config.workdir={tmp_path / 'run'}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TOOLRL_HOME": str(tmp_path / "home"), "JAX_PLATFORMS": "cpu", **env})


@pytest.mark.parametrize("offline", [False, True], ids=["refused", "HF_HUB_OFFLINE"])
def test_no_network_is_one_line_and_exit_2(tmp_path, offline):
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_refused_port()}", "HF_HUB_OFFLINE": "1" if offline else "0"}
    result = _main(tmp_path, env)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("toolrl.main: error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert ("HF_HUB_OFFLINE=1" if offline else "cannot connect") in lines[0]
