"""Shared fixtures: the real benchmark files (read in place), a cache built from them once per run, and
one persistent XLA compilation cache for the session's runs of the tiny config."""

from __future__ import annotations

import os

# Tests run on the CPU; set before any test imports jax.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytest

from toolrl.data import paths
from toolrl.data.schemas import load_tool_schemas
from toolrl.data.traces import load_trace_files
from toolrl.env.cache import ResponseCache, build_cache, default_sources


@pytest.fixture(scope="session")
def data_dir():
    return paths.default_data_dir()


@pytest.fixture(scope="session")
def trace_files(data_dir):
    return load_trace_files(data_dir)


@pytest.fixture(scope="session")
def all_samples(trace_files):
    return [sample for samples in trace_files.values() for sample in samples]


@pytest.fixture(scope="session")
def tool_schemas(data_dir):
    return load_tool_schemas(paths.data_file(paths.TOOL_SCHEMAS, data_dir))


@pytest.fixture(scope="session")
def cache_path(tmp_path_factory, data_dir):
    path = tmp_path_factory.mktemp("cache") / "cache.sqlite"
    build_cache(path, default_sources(data_dir))
    return path


@pytest.fixture(scope="session")
def response_cache(cache_path):
    with ResponseCache(cache_path) as cache:
        yield cache


@pytest.fixture(scope="session")
def booking_env(response_cache, tool_schemas):
    from toolrl.env.booking import BookingEnvironment

    return BookingEnvironment(response_cache, tool_schemas)


@pytest.fixture(scope="session")
def xla_cache(tmp_path_factory):
    """One persistent XLA compilation cache (`compile.cache_dir`) for the session's runs of configs/tiny.py,
    in-process and `toolrl.main` subprocesses alike. Each run otherwise compiles the same sampler,
    initialisers and SFT / GRPO steps again into its own <workdir>/xla_cache (a run of the tiny config:
    16 CPU-s cold, 7 warm). A hit is the executable XLA made for the same program (the key covers the
    HLO, the compile options, the devices and the jax version), so what a test checks is unchanged."""
    return tmp_path_factory.mktemp("xla_cache")


@pytest.fixture(scope="session")
def compile_flags(xla_cache):
    """`toolrl.main` flags that point a run at the session's compilation cache, every program written
    (a tiny program compiles in well under the default 1 s threshold)."""
    return [f"--config.compile.cache_dir={xla_cache}", "--config.compile.min_compile_time_secs=0"]

