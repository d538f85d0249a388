"""toolrl data fetch: every benchmark file from a server laid out like the public hosts (a local
http.server here, no network), checked against the pinned sha256 of the shared data directory."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import pickle
import threading
from pathlib import Path

import pytest

from toolrl.data import fetch as F


@pytest.fixture()
def server(tmp_path):
    """(base URL, served root): a threaded http.server over a tmp directory."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(remote: F.Remote, root: Path, data: bytes) -> None:
    path = root / remote.host / remote.repo / remote.revision / remote.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _mirror_of_the_shared_files(root: Path, data_dir: Path) -> list[F.Remote]:
    """Serves copies of the shared files (the pickles re-made from their JSON); returns the manifest with
    the pickles' download hashes replaced by those of the test's pickles (the originals are not here)."""
    files = []
    for remote in F.FILES:
        if remote.full:
            continue
        text = (data_dir / remote.name).read_bytes()
        if remote.convert == "pickle":
            data = pickle.dumps(json.loads(text), protocol=4)
            remote = dataclasses.replace(remote, download_sha256=hashlib.sha256(data).hexdigest())
        else:
            data = text
        _serve(remote, root, data)
        files.append(remote)
    return files


def test_the_pinned_hashes_are_those_of_the_shared_files(data_dir):
    for remote in F.FILES:
        if remote.sha256:
            assert F.sha256_of(Path(data_dir) / remote.name) == remote.sha256, remote.name


def test_fetch_writes_every_file_byte_identical_to_the_shared_copy(server, data_dir, tmp_path):
    base, root = server
    files = _mirror_of_the_shared_files(root, Path(data_dir))
    out = F.fetch(tmp_path / "out", mirror=base, files=files, log=lambda *_: None)
    for remote in files:
        assert (out / remote.name).read_bytes() == (Path(data_dir) / remote.name).read_bytes(), remote.name
    record = json.loads((out / F.RECORD).read_text())
    assert record["eval_100.json"]["url"].endswith(f"/github/{F.PAPER_REPO}/{F.PAPER_COMMIT}/data/eval_100.pkl")
    # A second fetch downloads nothing: the files are there with the right hashes.
    lines = []
    F.fetch(out, mirror=base, files=files, log=lines.append)
    assert all(line.startswith("present") for line in lines) and len(lines) == len(files)


def test_a_file_with_another_hash_is_refused_and_not_written(server, data_dir, tmp_path):
    base, root = server
    files = _mirror_of_the_shared_files(root, Path(data_dir))
    remote = next(r for r in files if r.name == "booking_api.json")
    _serve(remote, root, (Path(data_dir) / remote.name).read_bytes() + b" ")
    with pytest.raises(F.FetchError, match="booking_api.json: the file's sha256 .* is not the pinned"):
        F.fetch(tmp_path / "out", mirror=base, files=[remote], log=lambda *_: None)
    assert not (tmp_path / "out" / "booking_api.json").exists()
    missing = dataclasses.replace(remote, path="environment/nowhere.json")
    with pytest.raises(F.FetchError, match="HTTP 404"):
        F.fetch(tmp_path / "out", mirror=base, files=[missing], log=lambda *_: None)


def test_a_pickle_that_is_not_plain_data_is_refused(server, tmp_path):
    base, root = server
    import datetime

    data = pickle.dumps({"when": datetime.date(2024, 11, 25)}, protocol=4)  # names a class (datetime.date)
    remote = F.Remote("x.json", "github", "o/r", "c", "x.pkl", None,
                      download_sha256=hashlib.sha256(data).hexdigest(), convert="pickle")
    _serve(remote, root, data)
    with pytest.raises(F.FetchError, match="not plain data|not a plain-data pickle"):
        F.fetch(tmp_path / "out", mirror=base, files=[remote], log=lambda *_: None)
    assert F.plain_pickle(pickle.dumps([1, "a", None, {"b": 2.5, "c": True}]), "ok") == [1, "a", None,
                                                                                       {"b": 2.5, "c": True}]


def test_an_unpinned_file_is_recorded_and_then_held_to_its_record(server, tmp_path):
    base, root = server
    remote = next(r for r in F.FILES if r.full)
    _serve(remote, root, b'{"id": 1}\n')
    out = F.fetch(tmp_path / "out", mirror=base, full=True, files=[remote], log=lambda *_: None)
    assert json.loads((out / F.RECORD).read_text())[remote.name]["pinned"] is False
    assert F.fetch(out, mirror=base, full=True, files=[remote], log=lambda *_: None) == out  # still the same
    (out / remote.name).unlink()
    _serve(remote, root, b'{"id": 2}\n')  # the host now serves something else
    with pytest.raises(F.FetchError, match="is not the recorded"):
        F.fetch(out, mirror=base, full=True, files=[remote], log=lambda *_: None)
    assert not F.fetch(tmp_path / "plain", mirror=base, files=[remote], log=lambda *_: None).joinpath(
        remote.name).exists()  # without --full it is left alone


def test_public_urls_name_the_pinned_revisions():
    by_name = {r.name: r for r in F.FILES}
    assert by_name["eval_100.json"].url() == (f"https://raw.githubusercontent.com/{F.PAPER_REPO}/{F.PAPER_COMMIT}/"
                                              "data/eval_100.pkl")
    assert by_name["ComplexFuncBench.jsonl"].url().startswith(
        "https://huggingface.co/datasets/zai-org/ComplexFuncBench/resolve/")
