"""Cache lookup throughput and build time.

Prints lookups/s and p50/p99 latency at the real size (467 entries from the bundled traces) and at
1,000,000 synthetic entries, and build time per 100k entries. Run on demand:

    .venv/bin/python benchmarks/cache_lookup.py [--synthetic 1000000] [--lookups 20000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from toolrl.env.cache import ResponseCache, Source, build_cache, default_sources


def synthetic_dump(path: Path, entries: int, seed: int = 0) -> list[tuple[str, dict]]:
    """A dump in the authors' format, with responses of realistic size (~1 KB)."""
    rng = random.Random(seed)
    functions = [f"Tool_{i}" for i in range(40)]
    keys = []
    with path.open("w") as handle:
        handle.write("{")
        per_function = entries // len(functions)
        for f_index, function in enumerate(functions):
            handle.write(("," if f_index else "") + json.dumps(function) + ":[")
            for i in range(per_function):
                arguments = {"id": f"{function}-{i}", "page": rng.randint(1, 5), "lat": round(rng.uniform(-90, 90), 5)}
                response = {"status": True, "message": "Success",
                            "data": [{"name": f"item {j}", "score": rng.random(), "tags": ["a", "b"]} for j in range(8)]}
                handle.write(("," if i else "") + json.dumps({"arguments": arguments, "response": response}))
                if i % 50 == 0:
                    keys.append((function, arguments))
            handle.write("]")
        handle.write("}")
    return keys


def time_lookups(cache: ResponseCache, calls: list[tuple[str, dict]], n: int, seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    latencies = []
    for _ in range(n):
        function, arguments = calls[rng.randrange(len(calls))]
        start = time.perf_counter()
        hit = cache.lookup(function, arguments)
        latencies.append(time.perf_counter() - start)
        assert hit is not None
    latencies.sort()
    return {
        "lookups_per_s": n / sum(latencies),
        "p50_us": 1e6 * statistics.median(latencies),
        "p99_us": 1e6 * latencies[int(0.99 * (len(latencies) - 1))],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--synthetic", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    args = parser.parse_args()
    console = Console(width=140)
    table = Table(title="toolrl response cache (SQLite)")
    for column in ("cache", "entries", "file MB", "build s", "build s / 100k", "lookups/s", "p50 µs", "p99 µs"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        real_path = tmp / "real.sqlite"
        start = time.perf_counter()
        summary = build_cache(real_path, default_sources())
        real_build = time.perf_counter() - start
        with ResponseCache(real_path) as cache:
            calls = [(f, a) for f, a, _ in cache.iter_entries()]
            stats = time_lookups(cache, calls, args.lookups)
        table.add_row("real traces", f"{summary.entries:,}", f"{summary.bytes / 1e6:.1f}", f"{real_build:.2f}",
                      f"{real_build / summary.entries * 1e5:.1f}", f"{stats['lookups_per_s']:,.0f}",
                      f"{stats['p50_us']:.1f}", f"{stats['p99_us']:.1f}")
        dump = tmp / "dump.json"
        console.print(f"writing a {args.synthetic:,}-entry synthetic dump ...")
        keys = synthetic_dump(dump, args.synthetic)
        synthetic_path = tmp / "synthetic.sqlite"
        start = time.perf_counter()
        summary = build_cache(synthetic_path, [Source("dump", dump)])
        build_seconds = time.perf_counter() - start
        with ResponseCache(synthetic_path) as cache:
            stats = time_lookups(cache, keys, args.lookups)
        table.add_row("synthetic", f"{summary.entries:,}", f"{summary.bytes / 1e6:.1f}", f"{build_seconds:.1f}",
                      f"{build_seconds / summary.entries * 1e5:.1f}", f"{stats['lookups_per_s']:,.0f}",
                      f"{stats['p50_us']:.1f}", f"{stats['p99_us']:.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
