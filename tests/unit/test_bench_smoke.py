"""Smoke test of bench/: every benchmark imports, and its arithmetic and report helpers are right.

No timing is asserted here (the machine is shared and noisy); the numbers come from running the benchmarks.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import sys
from pathlib import Path

import pytest

# bench/ is a top-level directory of the repository, not an installed package.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import (  # noqa: E402
    _stats,
    cold_start,
    health_latency,
    operator_scale,
    profile_worker,
    recovery,
    rollout,
    throughput,
)
from bench._agents import agent, baseline_agent, prompt_for  # noqa: E402
from bench.run_all import BENCHMARKS  # noqa: E402


@pytest.mark.parametrize("name", [*BENCHMARKS, "run_all"])
def test_every_benchmark_module_imports_and_has_a_run_function(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert callable(getattr(module, "run", None) or module.main)
    assert callable(module.main)


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert _stats.percentile(values, 50) == 2.5
    assert _stats.percentile(values, 0) == 1.0
    assert _stats.percentile(values, 100) == 4.0
    assert _stats.percentile(values, 95) == pytest.approx(3.85)
    assert _stats.percentile([7.0], 95) == 7.0


def test_percentile_rejects_empty_input_and_out_of_range_q() -> None:
    with pytest.raises(ValueError, match="no values"):
        _stats.percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        _stats.percentile([1.0], 101)


def test_summary_reports_median_and_min_max() -> None:
    summary = _stats.summarize([5.0, 1.0, 3.0])
    assert (summary.median, summary.low, summary.high, summary.n) == (3.0, 1.0, 5.0, 3)
    assert summary.format("runs/s") == "3.00 runs/s (1.00-5.00)"
    assert _stats.summarize([0.25]).format("ms", digits=0, scale=1000) == "250 ms"


def test_ratio_is_ours_over_baseline_and_none_for_a_zero_baseline() -> None:
    assert _stats.ratio(10.0, 4.0) == 2.5
    assert _stats.ratio(1.0, 0.0) is None


def test_runs_that_exceeded_the_bound_count_as_infinitely_long() -> None:
    assert _stats.bounded_median([3.0, None, 1.0]) == 3.0
    assert math.isinf(_stats.bounded_median([3.0, None]))
    assert _stats.format_bounded([None], bound=20) == "> 20 s"
    assert _stats.format_bounded([2.0, 4.0, None], bound=20) == "3.0 s (2.0-4.0), 1 of 3 > 20 s"
    # A capped baseline turns the ratio into an upper bound.
    assert _stats.bounded_ratio(5.0, math.inf, 20.0) == (0.25, "<")
    assert _stats.bounded_ratio(5.0, 10.0, 20.0) == (0.5, "")


def test_markdown_table_has_one_line_per_row_and_escapes_pipes() -> None:
    rows = [
        _stats.Row("a", "1 s", "2 s", 0.5, "<= 1 s", True),
        _stats.Row("b|c", "x", "y", None, "", None, note="not measured"),
        _stats.Row("d", "1 s", "> 9 s", 0.11, "", False, ratio_prefix="<"),
    ]
    lines = _stats.markdown_table(rows).splitlines()
    assert lines[0] == "| benchmark | ours | baseline | ratio | goal | met? | note |"
    assert lines[2] == "| a | 1 s | 2 s | 0.50x | <= 1 s | yes |  |"
    assert lines[3] == "| b\\|c | x | y | n/a |  | n/a | not measured |"
    assert lines[4] == "| d | 1 s | > 9 s | <0.11x |  | no |  |"


def test_machine_line_names_date_cores_and_load() -> None:
    line = _stats.machine_line(lambda: datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC))
    assert line.startswith("2026-01-02 03:04 UTC; ")
    assert "cores" in line and "load average" in line


def test_throughput_rows_judge_the_two_goals_on_median_ratios() -> None:
    trial = throughput.trial_from([0.1, 0.2, 0.3, 0.4], elapsed=2.0)
    assert trial.runs_per_second == 2.0
    assert trial.p50 == pytest.approx(0.25)
    ours = [throughput.Trial(runs_per_second=r, p50=0.1, p95=0.2) for r in (20.0, 22.0, 18.0)]
    base = [throughput.Trial(runs_per_second=r, p50=0.2, p95=0.3) for r in (10.0, 12.0, 8.0)]
    rate, latency = throughput.scenario_rows("20 concurrent", "ours", ours, base, judged=True)
    assert rate.ratio == 2.0 and rate.met is True
    assert latency.ratio == 0.5 and latency.met is True
    assert rate.ours == "20.00 runs/s (18.00-22.00)"
    slow = [throughput.Trial(runs_per_second=9.0, p50=0.21, p95=0.3)]
    rate, latency = throughput.scenario_rows("sequential", "ours", slow, base[:1], judged=True)
    assert (rate.met, latency.met) == (False, False)
    opt_in = throughput.scenario_rows("sequential", "ours, sandbox off", slow, base[:1], judged=False)
    assert all(row.met is None and "sandbox off" in row.benchmark for row in opt_in)


def test_floor_rows_judge_ours_on_the_floor_goal_and_only_show_the_bare_worker() -> None:
    floor = [throughput.Trial(runs_per_second=r, p50=0.1, p95=0.2) for r in (20.0, 19.0, 21.0)]
    close = [throughput.Trial(runs_per_second=r, p50=0.1, p95=0.2) for r in (16.0, 17.0, 15.0)]
    far = [throughput.Trial(runs_per_second=15.0, p50=0.1, p95=0.2)]
    row = throughput.floor_row("20 concurrent", "ours", close, floor, judged=True)
    assert (row.ratio, row.met) == (0.8, True)
    assert row.benchmark == "throughput, 20 concurrent [ours / floor]: runs/s"
    assert throughput.floor_row("20 concurrent", "ours", far, floor, judged=True).met is False
    bare = throughput.floor_row("20 concurrent", "baseline", far, floor, judged=False)
    assert (bare.ratio, bare.met, bare.goal) == (0.75, None, "shown, no goal")


def test_recovery_row_compares_medians_and_caps_the_baseline() -> None:
    ours = [recovery.Trial(recovery=v, replacement_start=1.0) for v in (4.0, 6.0, 5.0)]
    capped = [recovery.Trial(recovery=None, replacement_start=1.0)]
    row = recovery.recovery_row(ours, capped, baseline_bound=20.0)
    assert row.ours == "5.0 s (4.0-6.0)" and row.baseline == "> 20 s"
    assert (row.ratio, row.ratio_prefix, row.met) == (0.25, "<", True)
    measured = [recovery.Trial(recovery=62.0, replacement_start=1.0)]
    row = recovery.recovery_row(ours, measured, baseline_bound=150.0)
    assert row.ratio == pytest.approx(5.0 / 62.0) and row.ratio_prefix == ""


def test_cold_start_rows_judge_first_poll_and_readiness() -> None:
    ours = [cold_start.Trial(first_poll=0.8, ready=0.9), cold_start.Trial(first_poll=1.2, ready=1.3)]
    base = [cold_start.Trial(first_poll=2.0, ready=None)]
    poll, ready = cold_start.cold_start_rows(ours, base)
    assert poll.ratio == pytest.approx(0.5) and poll.met is True
    assert ready.ratio == pytest.approx(0.55) and ready.met is False


def test_benchmark_agent_calls_one_tool_then_answers() -> None:
    # Outside a workflow the durable capability is transparent, so both agents run in-process here.
    for candidate in (agent, baseline_agent):
        result = candidate.run_sync(prompt_for(0))
        assert result.output == "done: worked 0s"
        kinds = [part.part_kind for message in result.all_messages() for part in message.parts]
        assert kinds.count("tool-call") == 1 and kinds.count("tool-return") == 1


def test_health_rows_judge_read_health_and_show_the_heartbeat_candidate_unjudged() -> None:
    first = health_latency.Trial(
        ours_start=2.0,
        ours_death=60.0,
        raw_start=2.0,
        raw_death=None,
        heartbeat_start=3.0,
        heartbeat_death=7.0,
    )
    later = health_latency.Trial(
        ours_start=4.0,
        ours_death=50.0,
        raw_start=4.0,
        raw_death=None,
        heartbeat_start=5.0,
        heartbeat_death=8.0,
    )
    rows = {row.benchmark: row for row in health_latency.health_rows([first, later], raw_bound=400.0)}
    start = rows["health, read_health: start -> worker shown"]
    assert (start.ratio, start.met) == (1.0, True)
    death = rows["health, read_health: SIGKILL -> worker gone"]
    assert death.ours == "55.0 s (50.0-60.0)" and death.baseline == "> 400 s"
    assert (death.ratio, death.ratio_prefix, death.met) == (55.0 / 400.0, "<", False)
    candidate = rows["health, candidate: worker heartbeats: SIGKILL -> worker gone"]
    assert candidate.ours == "7.5 s (7.0-8.0)" and candidate.met is None


def test_profile_report_leaves_idle_waits_out_and_counts_inclusive_samples() -> None:
    collapsed = [
        "main (a.py:1);work (pkg/b.py:2) 30",
        "main (a.py:1);helper (pkg/c.py:3) 10",
        "_bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81) 500",
    ]
    report = profile_worker.summarize_collapsed(collapsed)
    assert report.startswith("40 busy samples")
    assert "100.0%  main (a.py:1)" in report and "75.0%  work (pkg/b.py:2)" in report
    assert "100.0%  pkg" in report


def test_audit_count_keeps_only_the_operators_requests_within_the_window() -> None:
    def event(agent: str, verb: str, resource: str, at: str, sub: str = "") -> str:
        ref = {"resource": resource, **({"subresource": sub} if sub else {})}
        return json.dumps(
            {
                "stage": "ResponseComplete",
                "user": {"username": "admin"},
                "userAgent": agent,
                "verb": verb,
                "objectRef": ref,
                "requestReceivedTimestamp": at,
            }
        )

    lines = [
        event("python-httpx/0.28.1", "patch", "durableagents", "2026-01-01T00:00:05Z", sub="status"),
        event("kopf/1.45.2", "get", "deployments", "2026-01-01T00:00:06Z"),
        event(
            "kubectl/v1.37.1 (linux/amd64) kubernetes/f78e722", "get", "deployments", "2026-01-01T00:00:06Z"
        ),
        event("testcluster/v1.36.3 (linux/amd64) kubernetes/$Format", "get", "pods", "2026-01-01T00:00:06Z"),
        event("python-httpx/0.28.1", "get", "deployments", "2026-01-01T00:00:11Z"),
    ]
    counts = operator_scale.count_audit(lines, "2026-01-01T00:00:00Z", "2026-01-01T00:00:10Z")
    assert counts == {"PATCH durableagents/status": 1, "GET deployments": 1}


def test_temporal_request_counts_come_from_the_frontend_metric_by_operation() -> None:
    text = "\n".join(
        [
            "# TYPE service_requests counter",
            'service_requests{operation="DescribeTaskQueue",service_name="frontend"} 40',
            'service_requests{operation="CountWorkflowExecutions",service_name="frontend"} 2e+01',
            'service_requests{operation="RecordTaskStarted",service_name="history"} 99',
            'service_requests{operation="PollWorkflowTaskQueue",service_name="frontend"} 3',
        ]
    )
    counts = operator_scale.parse_service_requests(text)
    assert counts == {"DescribeTaskQueue": 40, "CountWorkflowExecutions": 20}
    scale = operator_scale.Scale(agents=10, seconds_to_status=5.0, peak_rss_mb=100.0, window_intervals=2)
    assert scale.per_agent_interval(counts) == 3.0
    assert scale.formula(counts) == "2.00 DescribeTaskQueue + 1.00 CountWorkflowExecutions"


def test_rollout_rows_compare_medians_of_both_sides() -> None:
    ours = [rollout.Trial(rollout=v, drain=3.0) for v in (2.0, 3.0, 2.5)]
    in_place = [rollout.Trial(rollout=v, drain=2.0) for v in (1.0, 2.0)]

    speed, drain = rollout.rollout_rows(ours, in_place)

    assert speed.ratio == pytest.approx(2.5 / 1.5) and speed.met is False
    assert drain.ratio == pytest.approx(1.5) and drain.met is None


def test_operator_scale_rows_report_status_and_the_first_temporal_reading_apart() -> None:
    scale = operator_scale.Scale(
        agents=500, seconds_to_status=40.0, peak_rss_mb=250.0, window_intervals=3, seconds_to_health=None
    )
    rows = {row.benchmark: row for row in operator_scale.operator_scale_rows([scale])}
    written = rows["operator, 500 agents: create -> all status written"]
    read = rows["operator, 500 agents: create -> Temporal read into every status"]
    assert (written.ours, written.met) == ("40.0 s", True)
    assert (read.ours, read.met) == ("> 600 s", None)
