"""Cache builds: refuse a bad --out before reading anything, leave no temporary file behind (also
on SIGTERM / SIGINT), keep the target's permissions, name unknown source kinds."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from toolrl.cli import UserError
from toolrl.env import cache as cache_module
from toolrl.env.cache import ResponseCache, Source, build_cache

REPO = Path(__file__).resolve().parents[1]


def small_dump(path: Path, n: int = 3) -> Path:
    path.write_text(json.dumps({"F": [{"arguments": {"q": i}, "response": {"data": i}} for i in range(n)]}))
    return path


def test_out_that_is_a_source_is_refused_before_reading(tmp_path, monkeypatch):
    dump = small_dump(tmp_path / "dump.json")
    before = dump.read_bytes()
    read = []
    monkeypatch.setattr(Source, "calls", lambda self: read.append(self) or iter(()))
    for out in (dump, tmp_path / "." / "dump.json"):
        with pytest.raises(UserError, match=r"--out .*dump.json is also a source"):
            build_cache(out, [Source("dump", dump)])
    link = tmp_path / "link.json"
    link.symlink_to(dump)
    with pytest.raises(UserError, match="is also a source"):
        build_cache(link, [Source("dump", dump)])
    assert not read and dump.read_bytes() == before
    assert not list(tmp_path.glob(".*.building"))


def test_out_that_is_a_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"--out .* is a directory"):
        build_cache(tmp_path, [Source("dump", small_dump(tmp_path / "d.json"))])
    assert not list(tmp_path.glob(".*.building"))


def test_cli_refuses_before_reading_sources(tmp_path):
    dump = small_dump(tmp_path / "dump.json")
    result = subprocess.run([sys.executable, "-m", "toolrl.env.cache", "build", "--out", str(dump), "--source", f"dump:{dump}"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "is also a source" in result.stderr and "Traceback" not in result.stderr


def test_unknown_source_kind_is_named(tmp_path):
    with pytest.raises(UserError) as info:
        Source.parse(f"foo:{tmp_path / 'x.json'}")
    assert "unknown source kind 'foo'" in str(info.value)
    for kind in ("traces", "benchmark", "dump"):
        assert kind in str(info.value)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Source.parse(str(tmp_path / "missing.json"))
    odd = tmp_path / "odd:name.json"  # a bare path with a colon is still a path
    small_dump(odd)
    assert Source.parse(str(odd)) == Source("dump", odd)


def test_permissions_kept_and_new_files_world_readable(tmp_path):
    dump = small_dump(tmp_path / "dump.json")
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.sqlite"
        build_cache(fresh, [Source("dump", dump)])
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        existing = tmp_path / "existing.sqlite"
        existing.write_text("old")
        existing.chmod(0o640)
        build_cache(existing, [Source("dump", dump)])
        assert stat.S_IMODE(existing.stat().st_mode) == 0o640
        with ResponseCache(existing) as cache:
            assert len(cache) == 3
    finally:
        os.umask(old_umask)


def test_stale_temporary_files_of_dead_builds_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".c.sqlite.{dead.pid}.abcd1234.building"
    stale.write_text("half a build")
    live = tmp_path / f".c.sqlite.{os.getpid()}.efgh5678.building"  # a build still running
    live.write_text("in progress")
    other = tmp_path / f".other.sqlite.{dead.pid}.abcd1234.building"  # another target's
    other.write_text("x")
    build_cache(tmp_path / "c.sqlite", [Source("dump", small_dump(tmp_path / "d.json"))])
    assert not stale.exists() and live.exists() and other.exists()


SLOW_BUILD = textwrap.dedent("""
    import signal, sys, time
    from toolrl.env.cache import Source, build_cache
    from toolrl.data.complexfuncbench import RecordedCall

    # A shell without job control starts background commands with SIGINT ignored, and Python keeps
    # that: give this child the interactive default (KeyboardInterrupt) whatever started the tests.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def slow_calls(self):
        for i in range(10_000):
            if i == 5:
                print("building", flush=True)
            time.sleep(0.01)
            yield RecordedCall("F", {"q": i}, {"data": i})

    Source.calls = slow_calls
    build_cache(sys.argv[1], [Source("dump", sys.argv[2])])
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_build_removes_the_temporary_file(tmp_path, signum):
    out = tmp_path / "c.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(out), str(small_dump(tmp_path / "d.json"))],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "building"
    assert list(tmp_path.glob(".c.sqlite.*.building"))
    proc.send_signal(signum)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert not list(tmp_path.glob(".c.sqlite.*.building")), proc.stderr.read()[-2000:]
    assert not out.exists()
