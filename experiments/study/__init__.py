"""The study runner as a package: a study's plan, its execution, the result files, the statistics
and the reports, one concern per module.

    plan.py      what a study is: RunSpec, StudySettings, file names, the subprocess commands
    files.py     atomic JSON writes, tolerant reads, dotted look-ups, repo-relative paths
    execute.py   running the plan: subprocesses, the per-run lock, signals, resuming
    collect.py   a finished run's small result file, built from its own files
    stats.py     intervals over seeds, paired differences, per-turn flips (scipy)
    comparisons.py  each comparison of the design: estimate, interval, detectable difference, reading
    power.py     minimum detectable differences before the runs (design.json)
    report.py    report.md, the README's study block, summary.json
    plot.py      curves.png

Imports go one way, top to bottom of: files, plan, collect, power, comparisons, stats, plot, report, execute. The
command line is ``python -m experiments.run_ablation``; ``experiments/sweep.py`` re-exports every
public name under its old module path.
"""
