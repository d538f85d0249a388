"""JAX's persistent compilation cache (``c.compile.*``): a restarted or requeued run, an evaluation and a
second process read the programs an earlier one compiled instead of compiling them again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping


def compilation_cache_dir(config: Any) -> str | None:
    """The directory ``c.compile.cache_dir`` names: "" = <workdir>/xla_cache, "off" = None."""
    cc = config.get("compile")
    raw = "" if cc is None else str(cc.cache_dir)
    if raw == "off":
        return None
    if raw:
        return raw
    workdir = str(config.workdir)
    return workdir.rstrip("/") + "/xla_cache" if "://" in workdir else str(Path(workdir).absolute() / "xla_cache")


def enable_compilation_cache(config_or_dir: Any, min_compile_time_secs: float | None = None,
                             min_entry_size_bytes: int | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns its directory (None when "off").

    ``config_or_dir``: a training config (``compile.*`` and ``workdir``) or a directory. Call it before
    the first jit compiles (programs compiled earlier are not written). The cache key covers the HLO,
    the compile options, the jax/jaxlib versions and the devices, so a stale entry cannot be reused.
    """
    import jax

    if isinstance(config_or_dir, (str, os.PathLike)):
        directory: str | None = os.fspath(config_or_dir)
        cc: Mapping[str, Any] = {}
    else:
        directory = compilation_cache_dir(config_or_dir)
        cc = config_or_dir.get("compile") or {}
    if directory is None or directory == "off":
        return None
    if "://" not in directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
    min_time = min_compile_time_secs if min_compile_time_secs is not None else float(cc.get("min_compile_time_secs", 1.0))
    min_size = min_entry_size_bytes if min_entry_size_bytes is not None else int(cc.get("min_entry_size_bytes", 0))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_time))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", int(min_size))
    try:  # a cache enabled after the first compile would otherwise stay off for this process
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
    return directory

