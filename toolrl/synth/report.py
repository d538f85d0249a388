"""Efficiency report: constrained synthesis vs the unconstrained baseline, at each complexity.

``python -m toolrl.synth.report [--out_dir=artifacts/synth_report] [--seconds_per_cell=4]``

For n_calls in 2, 3, 4, 6, 8 and both samplers: attempts, valid traces, yield (valid / attempt),
valid traces per second (wall clock, including query rendering), and distinct traces (deduplicated
by calls + dependencies). Each cell stops at ``--max_attempts`` or ``--seconds_per_cell``, whichever
comes first, so the report takes about a minute. Also reported, to be honest about what the small
cache supports: the exact number of distinct connected valid call sets of each size up to
``--enumerate_up_to`` (exhaustive), and the largest trace the constrained sampler still reaches.
Writes ``efficiency.csv``, ``efficiency.png`` and ``reachability.csv`` into ``--out_dir``.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path

from absl import app, flags

from toolrl.synth.baseline import UnconstrainedSampler
from toolrl.synth.build import load_pool
from toolrl.synth.pool import EntryPool
from toolrl.synth.sampler import ConstrainedSampler, SynthKnobs

COMPLEXITIES = (2, 3, 4, 6, 8)


@dataclasses.dataclass
class Cell:
    """One (sampler, complexity) measurement."""

    sampler: str
    n_calls: int
    attempts: int = 0
    valid: int = 0
    distinct: int = 0
    seconds: float = 0.0

    @property
    def yield_(self) -> float:
        return self.valid / self.attempts if self.attempts else 0.0

    @property
    def per_second(self) -> float:
        return self.valid / self.seconds if self.seconds else 0.0

    @property
    def per_second_upper_95(self) -> float:
        """With no valid trace, the rule of three bounds the true rate by 3 / seconds (95%)."""
        return (3.0 if self.valid == 0 else self.valid) / self.seconds if self.seconds else math.inf

    def row(self) -> dict[str, object]:
        return {"sampler": self.sampler, "n_calls": self.n_calls, "attempts": self.attempts, "valid": self.valid,
                "yield": round(self.yield_, 6), "valid_per_s": round(self.per_second, 3),
                "distinct": self.distinct, "seconds": round(self.seconds, 3)}


def measure(name: str, n_calls: int, sample: Callable[[int], object], max_attempts: int, max_seconds: float) -> Cell:
    """Run attempts 0, 1, ... until either bound; count valid and distinct traces."""
    cell = Cell(name, n_calls)
    seen = set()
    start = time.perf_counter()
    while cell.attempts < max_attempts and time.perf_counter() - start < max_seconds:
        trace = sample(cell.attempts)
        cell.attempts += 1
        if trace is not None:
            cell.valid += 1
            seen.add(trace.fingerprint())
    cell.seconds = time.perf_counter() - start
    cell.distinct = len(seen)
    return cell


def count_call_sets(pool: EntryPool, max_calls: int, max_sets: int = 2_000_000) -> dict[int, int]:
    """Exact number of distinct valid call sets (connected, every opaque argument grounded) per size.

    Breadth-first over the same moves as the sampler (a grounded entry, with root helpers for its
    opaque leaves), deduplicated as sets of cache entries; stops early past ``max_sets`` at a size.
    """
    providers = [{path: {p.entry for p in options} for path, options in pool.providers[e.index].items()}
                 for e in pool.entries]
    opaque = [[leaf.path for leaf in pool.must_bind_leaves(e.index)] for e in pool.entries]
    roots = [pool.is_root(e.index) for e in pool.entries]

    def moves(state: frozenset[int]):
        candidates = set().union(*(pool.consumers[a] for a in state)) - state if state else range(len(pool.entries))
        for b in candidates:
            if state and not any(options & state for options in providers[b].values()):
                continue
            missing = [path for path in opaque[b] if not providers[b].get(path, set()) & state]
            choices = []
            for path in missing:
                options = sorted(a for a in providers[b].get(path, ()) if roots[a] and a not in state and a != b)
                if not options:
                    break
                choices.append(options)
            else:
                for helpers in {frozenset(c) for c in itertools.product(*choices)}:
                    yield frozenset((b, *helpers))

    by_size: dict[int, set[frozenset[int]]] = {}
    for start in moves(frozenset()):
        by_size.setdefault(len(start), set()).add(start)
    for size in range(1, max_calls):
        for state in by_size.get(size, ()):
            for move in moves(state):
                grown = state | move
                if len(grown) <= max_calls:
                    by_size.setdefault(len(grown), set()).add(grown)
        if len(by_size.get(size + 1, ())) > max_sets:
            break
    return {size: len(by_size.get(size, ())) for size in range(1, max_calls + 1)}


def run_report(pool: EntryPool, out_dir: Path, complexities=COMPLEXITIES, seconds_per_cell: float = 4.0,
               max_attempts: int = 1_000_000, constrained_attempts: int = 2000, enumerate_up_to: int = 5,
               seed: int = 0, printer: Callable[[str], None] = print,
               reach_sizes: tuple[int, ...] = (10, 12, 16, 24, 32, 48),
               chain_depths: tuple[int, ...] = tuple(range(2, 11))) -> list[Cell]:
    """Measure every cell, write the CSVs and the plot, print the table; returns the cells."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = []
    for n_calls in complexities:
        knobs = SynthKnobs(n_calls=n_calls)
        constrained = ConstrainedSampler(pool, knobs, seed=seed)
        baseline = UnconstrainedSampler(pool, knobs, seed=seed)
        cells.append(measure("constrained", n_calls, constrained.sample, constrained_attempts, seconds_per_cell))
        cells.append(measure("unconstrained", n_calls, baseline.sample, max_attempts, seconds_per_cell))
    with (out_dir / "efficiency.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(cells[0].row()))
        writer.writeheader()
        writer.writerows(cell.row() for cell in cells)
    printer(format_table(cells))
    printer(format_ratios(cells))

    # What the cache supports.
    exact = count_call_sets(pool, enumerate_up_to)
    reach = []
    for n_calls in reach_sizes:
        sampler = ConstrainedSampler(pool, SynthKnobs(n_calls=n_calls), seed=seed)
        reach.append(measure("constrained", n_calls, sampler.sample, 30, seconds_per_cell))
    # Depth is the harder limit: the longest chain of calls each feeding the next (width 1).
    chains = []
    for depth in chain_depths:
        sampler = ConstrainedSampler(pool, SynthKnobs(n_calls=depth, depth=depth, max_width=1), seed=seed)
        chains.append(measure("chain", depth, sampler.sample, 30, seconds_per_cell / 4))
    with (out_dir / "reachability.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["kind", "n_calls", "exact_distinct_call_sets", "valid", "attempts", "distinct"])
        for size, count in exact.items():
            writer.writerow(["exhaustive", size, count, "", "", ""])
        for cell in reach + chains:
            writer.writerow([cell.sampler, cell.n_calls, "", cell.valid, cell.attempts, cell.distinct])
    printer("distinct valid call sets (exhaustive): " + ", ".join(f"{k} calls: {v}" for k, v in exact.items()))
    printer("pure chains (depth = calls, width 1): " + ", ".join(
        f"{c.n_calls}: {c.valid}/{c.attempts} ({c.distinct} distinct)" for c in chains))
    printer("largest traces: " + ", ".join(f"{c.n_calls} calls: {c.valid}/{c.attempts} valid" for c in reach))
    plot(cells, out_dir / "efficiency.png")
    printer(f"wrote {out_dir / 'efficiency.csv'}, {out_dir / 'efficiency.png'}, {out_dir / 'reachability.csv'}")
    return cells


def format_table(cells: list[Cell]) -> str:
    header = f"{'sampler':<14}{'calls':>6}{'attempts':>10}{'valid':>8}{'yield':>10}{'valid/s':>11}{'distinct':>10}"
    lines = [header, "-" * len(header)]
    for cell in cells:
        lines.append(f"{cell.sampler:<14}{cell.n_calls:>6}{cell.attempts:>10}{cell.valid:>8}{cell.yield_:>10.2%}"
                     f"{cell.per_second:>11.1f}{cell.distinct:>10}")
    return "\n".join(lines)


def speedup(cells: list[Cell], n_calls: int) -> tuple[float, bool]:
    """Constrained / unconstrained valid traces per second at ``n_calls``; (ratio, is_lower_bound)."""
    constrained = next(c for c in cells if c.sampler == "constrained" and c.n_calls == n_calls)
    baseline = next(c for c in cells if c.sampler == "unconstrained" and c.n_calls == n_calls)
    if baseline.valid == 0:
        return constrained.per_second / baseline.per_second_upper_95, True
    return constrained.per_second / baseline.per_second, False


def format_ratios(cells: list[Cell]) -> str:
    parts = []
    for n_calls in sorted({c.n_calls for c in cells}):
        ratio, bound = speedup(cells, n_calls)
        parts.append(f"{n_calls} calls: {'>' if bound else ''}{ratio:,.0f}x")
    return ("constrained / unconstrained valid traces per second ('>': baseline found none, bound by the "
            "rule of three, 3 / seconds): " + ", ".join(parts))


def plot(cells: list[Cell], path: Path) -> None:
    # Local: matplotlib (several seconds to import) serves this plot only.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # local, like matplotlib; after choosing the Agg backend

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for sampler, marker in (("constrained", "o"), ("unconstrained", "s")):
        rows = [c for c in cells if c.sampler == sampler]
        xs = [c.n_calls for c in rows]
        # Zeros cannot sit on a log axis: plot them at the rule-of-three bound, hollow.
        axes[0].plot(xs, [c.yield_ if c.valid else 3.0 / max(1, c.attempts) for c in rows], marker=marker,
                     label=sampler)
        axes[1].plot(xs, [c.per_second if c.valid else c.per_second_upper_95 for c in rows], marker=marker,
                     label=sampler)
        for axis, values in ((axes[0], [3.0 / max(1, c.attempts) for c in rows]),
                             (axes[1], [c.per_second_upper_95 for c in rows])):
            zeros = [(x, v) for x, v, c in zip(xs, values, rows) if c.valid == 0]
            if zeros:
                axis.scatter(*zip(*zeros), facecolors="none", edgecolors="red", s=90, zorder=3,
                             label=f"{sampler}: none found (bound)")
    axes[0].set(yscale="log", xlabel="calls per trace", ylabel="valid / attempt", title="Yield")
    axes[1].set(yscale="log", xlabel="calls per trace", ylabel="valid traces / s", title="Throughput")
    for axis in axes:
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


FLAGS = flags.FLAGS


def define_flags() -> None:
    """Command-line flags, defined only when run as a program (importing must not claim global flag names)."""
    flags.DEFINE_string("out_dir", "artifacts/synth_report", "where efficiency.csv / .png and reachability.csv go")
    flags.DEFINE_float("seconds_per_cell", 4.0, "time bound of one (sampler, complexity) cell")
    flags.DEFINE_integer("max_attempts", 1_000_000, "attempt bound of one baseline cell")
    flags.DEFINE_integer("constrained_attempts", 2000, "attempt bound of one constrained cell")
    flags.DEFINE_integer("enumerate_up_to", 5, "exhaustively count distinct valid call sets up to this size")
    flags.DEFINE_integer("seed", 0, "sampler seed")
    flags.DEFINE_string("data_dir", None, "benchmark data directory (default: the bundled one)")
    flags.DEFINE_string("cache", None, "response cache file (default: the user cache, built on first use)")


def main(argv: list[str]) -> None:
    del argv

    start = time.perf_counter()
    pool = load_pool(FLAGS.data_dir, FLAGS.cache)
    print(f"pool: {pool.summary()['entries']} cached calls over {pool.summary()['functions']} tools "
          f"({time.perf_counter() - start:.1f}s to load)")
    run_report(pool, Path(FLAGS.out_dir), seconds_per_cell=FLAGS.seconds_per_cell, max_attempts=FLAGS.max_attempts,
               constrained_attempts=FLAGS.constrained_attempts, enumerate_up_to=FLAGS.enumerate_up_to,
               seed=FLAGS.seed)


if __name__ == "__main__":
    define_flags()
    app.run(main)
