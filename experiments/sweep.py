"""The study runner's old module path: every public name of :mod:`experiments.study`, re-exported.

The code lives in the package (plan, files, collect, execute, stats, report, plot; see its
docstring); this module keeps ``from experiments import sweep`` working for the runner's command
line (experiments/run_ablation.py), the notebooks and the tests.
"""

from __future__ import annotations

from experiments.study.files import (REPO_ROOT, dotted, finite, is_finished, read_json, read_metrics,
                                     read_result, resolve, write_json_atomic)  # noqa: F401
from experiments.study.plan import (ARMS, BASELINE_ARM, CURVES_FILE, EVAL_METRICS, REPORT_FILE,
                                    RESERVED_FIELDS, SCHEMA, START_AND_END, SUMMARY_FILE, CommandFn, RunSpec,
                                    StudySettings, arm_slug, check_overrides, config_arg, default_commands,
                                    eval_command, eval_output_dir, eval_sources_after, eval_step_name, plan,
                                    planned_flags, settings_changed, source_slug, train_command)  # noqa: F401
from experiments.study.collect import (ATTEMPTS_FILE, DETAILS, FIT_RE, KEY_FIELDS, add_missing_details,
                                       attempt_seconds, collect_evals, domain_counts, collect_result, learning_curves,
                                       load_results, parse_fit, record_attempt, report_overall, reward_rise,
                                       train_summary, training_evals)  # noqa: F401
from experiments.study.stats import (POOLED_SEED, SINGLE_KINDS, arm_order, domain_stats, end_value,
                                     eval_sources, mcnemar_exact_p, pooled_flips, start_entry, summarize,
                                     t_critical, t_interval, turn_flips, wilson_interval)  # noqa: F401
from experiments.study.plot import curve_bands, plot_curves  # noqa: F401
from experiments.study.report import (METRIC_LABELS, ROW_LABELS, compact_table, compute_line, design_lines,
                                      domain_table, fmt_ci, fmt_flips,
                                      markdown_report, readme_comparisons, readme_markers, readme_tables, splice_readme,
                                      turns_right_table, write_summary)  # noqa: F401
from experiments.study.execute import (EVAL_DONE_FILE, RunLock, Stopped, eval_done, execute, latest_checkpoint,
                                       process_start, run_child, run_study,
                                       subprocess_env, wait_for)  # noqa: F401
