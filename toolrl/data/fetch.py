"""``toolrl data fetch [--out DIR]``: the benchmark files from their public homes, each checked by sha256.

Opt-in: nothing in toolrl downloads on its own. The data directory is still resolved as everywhere
(:mod:`toolrl.data.paths`: a config's ``data.data_dir``, ``$TOOLRL_DATA_DIR``, ``../shared/data``);
after a fetch, point ``TOOLRL_DATA_DIR`` at the output directory.

Where each file comes from (``../shared/data/complexfuncbench/SOURCE.md`` has the full account):

* horizon-rl/ToolOrchestrationReward (the paper's code, GitHub, pinned commit): the workflow
  templates, the tool schemas, and ``eval_100`` / ``bfcl_training_3_per_workflow``, which the
  repository holds as pickles. A pickle is only read after checking that it holds plain data (no
  opcode that names a class or calls anything, :func:`plain_pickle`), and it is written out as JSON
  exactly as the shared copy was (``json.dumps(data, ensure_ascii=False)``).
* THUDM/ComplexFuncBench, now zai-org (GitHub, pinned commit): ``tool_info.json`` and
  ``exact_match_values.json``.
* with ``--full``: the whole benchmark, ``ComplexFuncBench.jsonl`` (1,000 samples, 40 MB) from the
  Hugging Face Hub dataset ``zai-org/ComplexFuncBench``. No copy of it was ever checked here, so its
  hash is not pinned: the first download records it in ``FETCHED.json`` and later fetches into the
  same directory must match it.

Every pinned sha256 is that of the file as the shared data directory holds it (for the pickles, also
the one SOURCE.md gives for the download). A file whose hash differs is refused and nothing of it
is written; files already present with the right hash are not downloaded again. ``--mirror URL``
(or ``$TOOLRL_DATA_MIRROR``) fetches ``URL/<github|hf>/<owner>/<name>/<revision>/<path>`` instead
of the public hosts (a local copy, or the tests' server).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import pickle
import pickletools
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from toolrl.cli import UserError
from toolrl.data.paths import DATA_DIR_ENV, toolrl_home

MIRROR_ENV = "TOOLRL_DATA_MIRROR"
RECORD = "FETCHED.json"
MAX_BYTES = 200_000_000  # the largest file is 40 MB; anything far beyond is not the benchmark

PAPER_REPO, PAPER_COMMIT = "horizon-rl/ToolOrchestrationReward", "5c4ea42cafa3b848a005764301bd7833fbd095fd"
BENCH_REPO, BENCH_COMMIT = "zai-org/ComplexFuncBench", "c37b284e2f2e03ee456115b7c4b7e537f534be37"
HF_REPO, HF_REVISION = "zai-org/ComplexFuncBench", "main"


class FetchError(UserError):
    """A download failed or did not match its pinned hash (one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class Remote:
    """One benchmark file and its public home.

    Attributes:
      name: the file written in the output directory (the name toolrl reads).
      host: "github" or "hf" (a Hugging Face Hub dataset).
      repo: owner/name on that host.
      revision: a commit (or a branch for unpinned files).
      path: the file's path in the repository.
      sha256: of the file written; None = not pinned (recorded on the first download).
      download_sha256: of the downloaded bytes, when they are converted (the pickles).
      convert: "" (written as downloaded) or "pickle" (plain-data pickle -> JSON).
      full: only fetched with --full.
    """

    name: str
    host: str
    repo: str
    revision: str
    path: str
    sha256: str | None
    download_sha256: str | None = None
    convert: str = ""
    full: bool = False

    def url(self, mirror: str = "") -> str:
        if mirror:
            return f"{mirror.rstrip('/')}/{self.host}/{self.repo}/{self.revision}/{self.path}"
        if self.host == "github":
            return f"https://raw.githubusercontent.com/{self.repo}/{self.revision}/{self.path}"
        return f"https://huggingface.co/datasets/{self.repo}/resolve/{self.revision}/{self.path}"


FILES: tuple[Remote, ...] = (
    Remote("workflow_templates.json", "github", PAPER_REPO, PAPER_COMMIT, "data/workflow_templates.json",
           "46057c7c14b614794e8d418278c4d41a3f62857c5e252aa59d2140e0970a780f"),
    Remote("booking_api.json", "github", PAPER_REPO, PAPER_COMMIT, "environment/booking_api.json",
           "e648c6c4746714750f6d522f443dfcea3091d205f54eac3e9dc7ff2609c7de40"),
    Remote("eval_100.json", "github", PAPER_REPO, PAPER_COMMIT, "data/eval_100.pkl",
           "913e074b10cde3a23f7602ee800c0119b6fff999281100acf6167411594e8380",
           download_sha256="77bd4c13fe87d4f9efb8f5f73bf60ae4f39687b643916737ecc8aa31a2d7f490", convert="pickle"),
    Remote("bfcl_training_3_per_workflow.json", "github", PAPER_REPO, PAPER_COMMIT,
           "data/bfcl_training_3_per_workflow.pkl",
           "6cb4097d2f5fd83218abb49835ac7640dfe4dc263b3905f87c569aad41dd6537",
           download_sha256="91d975d4a5d8c9029b4e45c0704c1006348e841012a463a8f40e5208622079c7", convert="pickle"),
    Remote("tool_info.json", "github", BENCH_REPO, BENCH_COMMIT, "utils/tool_info.json",
           "2c106f906171447e1a880771db241a5275c75bb3bb82bccb2f49e6260135bad9"),
    Remote("exact_match_values.json", "github", BENCH_REPO, BENCH_COMMIT, "utils/exact_match_values.json",
           "1a2ff3663557f0f814f53d24d212f78d83f0ea7dbd7b4c07c6556417899ae0fe"),
    Remote("ComplexFuncBench.jsonl", "hf", HF_REPO, HF_REVISION, "ComplexFuncBench.jsonl", None, full=True),
)


def default_out() -> Path:
    return toolrl_home() / "data" / "complexfuncbench"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# Opcodes that name a class or call something: a pickle with any of them is not plain data.
_UNSAFE_OPCODES = frozenset({"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                             "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"})


class _NoClasses(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}: only plain data is read")


def plain_pickle(data: bytes, what: str) -> Any:
    """The value of a pickle that holds only dicts, lists, strings, numbers, booleans and None.

    The opcodes are read first (pickletools, which executes nothing); any that would import or call
    is refused, and the unpickler refuses every class besides."""
    try:
        for opcode, _, _ in pickletools.genops(data):
            if opcode.name in _UNSAFE_OPCODES:
                raise FetchError(f"{what}: the pickle holds a {opcode.name} opcode (not plain data); refused")
        return _NoClasses(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, ValueError, EOFError) as err:
        raise FetchError(f"{what}: not a plain-data pickle ({err})") from err


def download(url: str, timeout: float = 60.0, retries: int = 2) -> bytes:
    """The bytes at ``url`` (at most MAX_BYTES), with a few retries on network errors."""
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (https / the mirror)
                data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise FetchError(f"{url} is larger than {MAX_BYTES} bytes; refused")
            return data
        except urllib.error.HTTPError as err:
            if err.code < 500:
                raise FetchError(f"{url}: HTTP {err.code}") from err
            last = err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            last = err
        time.sleep(min(4.0, 0.5 * 2 ** attempt))
    raise FetchError(f"{url}: {getattr(last, 'reason', last)} (after {retries + 1} tries)")


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_one(remote: Remote, out: Path, mirror: str = "", recorded: str | None = None) -> tuple[str, str]:
    """Fetches one file into ``out`` unless it is already there with the right hash.

    Returns (what happened, the file's sha256). ``recorded``: the hash an earlier fetch recorded for
    an unpinned file."""
    target = out / remote.name
    expected = remote.sha256 or recorded
    if target.is_file() and expected and sha256_of(target) == expected:
        return "present", expected
    url = remote.url(mirror)
    data = download(url)
    if remote.convert == "pickle":
        got = hashlib.sha256(data).hexdigest()
        if remote.download_sha256 and got != remote.download_sha256:
            raise FetchError(f"{url}: sha256 {got} is not the pinned {remote.download_sha256}; refused")
        data = json.dumps(plain_pickle(data, url), ensure_ascii=False).encode("utf-8")
    got = hashlib.sha256(data).hexdigest()
    if expected and got != expected:
        what = "converted file" if remote.convert else "file"
        raise FetchError(f"{url}: the {what}'s sha256 {got} is not the {'pinned' if remote.sha256 else 'recorded'} "
                         f"{expected}; refused, {target} left as it was")
    _write_atomic(target, data)
    return ("fetched" if expected else "fetched (hash not pinned: recorded now)"), got


def fetch(out: str | os.PathLike | None = None, *, mirror: str = "", full: bool = False,
          files: Sequence[Remote] = FILES, log: Any = print) -> Path:
    """Fetches every file (those marked ``full`` only with ``full``) into ``out``; writes ``FETCHED.json``
    (url, sha256 and time of each file). Returns the directory."""
    directory = Path(out) if out else default_out()
    directory.mkdir(parents=True, exist_ok=True)
    record_path = directory / RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    mirror = mirror or os.environ.get(MIRROR_ENV, "")
    for remote in files:
        if remote.full and not full:
            continue
        status, digest = fetch_one(remote, directory, mirror, record.get(remote.name, {}).get("sha256"))
        log(f"{status:8s} {remote.name}  sha256 {digest[:16]}…  ({remote.url(mirror)})")
        if status != "present":
            record[remote.name] = {"url": remote.url(mirror), "repository": f"{remote.host}:{remote.repo}",
                                   "revision": remote.revision, "path": remote.path, "sha256": digest,
                                   "pinned": remote.sha256 is not None,
                                   "fetched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            _write_atomic(record_path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
    return directory


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="toolrl data fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="directory to fill (default: $TOOLRL_HOME/data/complexfuncbench)")
    parser.add_argument("--full", action="store_true", help="also the whole benchmark JSONL from the HF Hub (40 MB)")
    parser.add_argument("--mirror", default="", help=f"base URL laid out as <host>/<owner>/<name>/<revision>/<path> "
                                                     f"(default ${MIRROR_ENV}, else the public hosts)")
    args = parser.parse_args(list(argv))
    directory = fetch(args.out, mirror=args.mirror, full=args.full)

    print(f"done; to use these files: export {DATA_DIR_ENV}={directory}")
