"""An evaluation reports its progress: after every generate call the driver says how many turns (samples)
are done, and a log file gets lines with the count, the time so far and an estimate left."""

from __future__ import annotations

import io

from toolrl.eval import build_turn_tasks, golden_policy, load_eval_samples, make_matcher, official_golden_policy
from toolrl.eval.official import run_official
from toolrl.eval.official_rules import OfficialRules
from toolrl.eval.progress import EvalProgress
from toolrl.eval.protocol import run_protocol


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, done, total, asked):
        self.calls.append((done, total, asked))


def test_the_driver_reports_done_runs_after_every_call(data_dir):
    samples = load_eval_samples("eval_100", data_dir)[:6]
    tasks = [t for s in samples for t in build_turn_tasks(s)]
    matcher = make_matcher(data_dir)
    recorder = Recorder()
    results = run_protocol(tasks, golden_policy(samples), matcher, batch_size=4, progress=recorder)
    calls = recorder.calls
    # ceil(turns / 4) calls in the first round at least; every count is of the same total, never falls
    assert len(calls) >= -(-len(tasks) // 4)
    assert {total for _, total, _ in calls} == {len(tasks)}
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert calls[-1][0] == len(tasks) == len(results)
    # requests answered: 4 per full call, the rest in the last call of each round
    assert calls[0][2] == 4 and calls[-1][2] == sum(r.rounds for r in results)

    recorder = Recorder()
    rules = OfficialRules.from_matcher(matcher)
    sample_results = run_official(samples, official_golden_policy(samples), rules, batch_size=4, progress=recorder)
    assert recorder.calls[-1][:2] == (len(samples), len(samples)) == (len(sample_results),) * 2


def test_lines_in_a_log_file_are_throttled_and_end_with_the_total():
    out = io.StringIO()  # not a terminal: lines are on
    progress = EvalProgress("eval eval_100 [turn]", "turns", stream=out, every_s=3600)
    for done, asked in ((0, 16), (5, 32), (9, 48), (12, 60)):
        progress(done, 12, asked)
    progress.close()
    lines = out.getvalue().splitlines()
    # the first call prints (nothing printed yet), the next two are within the hour, the last is the end
    assert len(lines) == 2
    assert lines[0].startswith("eval eval_100 [turn]: 0/12 turns done, 16 requests | ") and lines[0].endswith("eta ?")
    assert lines[1].startswith("eval eval_100 [turn]: 12/12 turns done, 60 requests | ")
    assert lines[1].endswith("eta 0s")


def test_the_estimate_left_is_the_rate_so_far():
    progress = EvalProgress("e", stream=io.StringIO())
    assert progress.line_text(10, 40, 10, 100.0).endswith("100s elapsed, eta 300s")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_no_lines_unless_asked():
    out = Terminal()
    progress = EvalProgress("e", stream=out)
    progress(3, 3, 3)
    progress.close()
    assert out.getvalue() == ""
