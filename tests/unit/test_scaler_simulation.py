"""scaler.simulation: the real scaling loop replayed on a mock clock beside the seed's
naive rule, on simulated Fargate tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scaler.policy import ScalingLimits
from scaler.simulation import (
    Arrival,
    Outcome,
    Scenario,
    TraceError,
    bursty_example,
    read_trace,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]


def scenario(min_tasks=0, max_tasks=100, per_task=1, **kwargs) -> Scenario:
    return Scenario(limits=ScalingLimits(min_tasks, max_tasks, per_task), **kwargs)


# --- traces -------------------------------------------------------------------------------

def test_a_trace_is_read_and_ordered_by_arrival():
    arrivals = read_trace(["arrival_s,duration_s,project", "30,5,a", "2.5,60,b"])
    assert arrivals == [Arrival(2.5, 60), Arrival(30, 5)]


@pytest.mark.parametrize(("lines", "message"), [
    (["arrival,duration_s", "1,2"], "lacks arrival_s"),
    (["arrival_s,duration_s", "1,2", "x,2"], "line 3: arrival_s and duration_s must be numbers"),
    (["arrival_s,duration_s", "1"], "line 2: arrival_s and duration_s must be numbers"),
    (["arrival_s,duration_s", "-1,2"], "line 2: times must be finite and not negative"),
    (["arrival_s,duration_s", "1,inf"], "line 2: times must be finite and not negative"),
    (["arrival_s,duration_s"], "no commands"),
    ([], "lacks arrival_s, duration_s"),
])
def test_a_bad_trace_is_refused_naming_the_line(lines, message):
    with pytest.raises(TraceError, match=message):
        read_trace(lines)


def test_the_built_in_example_is_the_same_every_time_and_bursty():
    first, second = bursty_example(), bursty_example()
    assert first == second
    assert len(first) == 345
    in_the_busiest_minute = sum(1 for a in first if 2700 <= a.at_s <= 2760)
    assert in_the_busiest_minute >= 100


# --- replays ------------------------------------------------------------------------------

def test_one_command_is_billed_from_launch_until_the_idle_exit():
    outcome = simulate([Arrival(5, 10)], scenario(start_delay_s=60, idle_timeout_s=60),
                       "scaler")
    # Woken at 5 s by the enqueue, the task starts at 65 s, runs the command until 75 s
    # and exits idle at 135 s.
    assert outcome.launched == 1
    assert outcome.waits_s == [60]
    assert outcome.task_seconds == 130
    assert outcome.cost_usd == pytest.approx(130 / 3600 * 0.024685)


def test_a_task_shorter_than_a_minute_is_billed_a_minute():
    outcome = simulate([Arrival(5, 1)], scenario(start_delay_s=5, idle_timeout_s=1), "scaler")
    assert outcome.task_seconds == 60


def test_fifty_commands_on_slow_starts_launch_fifty_where_the_naive_rule_launches_more():
    arrivals = [Arrival(0, 60)] * 50
    ours = simulate(arrivals, scenario(start_delay_s=120, interval_s=30), "scaler")
    naive = simulate(arrivals, scenario(start_delay_s=120, interval_s=30), "naive")
    assert ours.launched == 50
    assert naive.launched > 50  # it launched again for messages starting tasks would take
    assert ours.cost_usd < naive.cost_usd
    assert ours.wait_percentile(95) <= naive.wait_percentile(95)
    assert len(ours.waits_s) == len(naive.waits_s) == 50


def test_the_scaler_never_passes_its_max_where_the_naive_rule_does():
    arrivals = [Arrival(0, 60)] * 40
    ours = simulate(arrivals, scenario(max_tasks=10, start_delay_s=90), "scaler")
    naive = simulate(arrivals, scenario(max_tasks=10, start_delay_s=90), "naive")
    assert ours.peak_live == 10
    assert naive.peak_live > 10
    assert len(ours.waits_s) == 40


def test_a_warm_floor_is_launched_once_and_answers_at_once():
    # One command every 5 minutes, the first once the floor is up.
    trickle = [Arrival(300 * n + 100, 5) for n in range(12)]
    ours = simulate(trickle, scenario(min_tasks=1, start_delay_s=60), "scaler")
    naive = simulate(trickle, scenario(min_tasks=1, start_delay_s=60), "naive")
    assert ours.launched == 1
    assert max(ours.waits_s) < 1
    assert naive.launched > 12  # its floor idles out and is launched again and again


def test_every_command_of_the_built_in_example_runs_once_under_both_policies():
    arrivals = bursty_example()
    for policy in ("scaler", "naive"):
        outcome = simulate(arrivals, scenario(max_tasks=50), policy)
        assert len(outcome.waits_s) == len(arrivals)
        assert min(outcome.waits_s) >= 0


def test_wait_percentiles():
    outcome = Outcome(policy="scaler", waits_s=[float(n) for n in range(1, 101)])
    assert outcome.wait_percentile(50) == pytest.approx(50.5)
    assert outcome.wait_percentile(99) == pytest.approx(99.01)
    assert Outcome(policy="scaler").wait_percentile(95) == 0.0
    assert Outcome(policy="scaler", waits_s=[7.0]).wait_percentile(95) == 7.0


# --- the command ------------------------------------------------------------------------

def run_simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaler", "simulate", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_simulate_replays_a_csv_and_prints_both_policies_as_json(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,duration_s\n" + "0,60\n" * 50)
    result = run_simulate("--trace", str(trace), "--start-delay", "120", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ours, naive = report["results"]
    assert (ours["policy"], naive["policy"]) == ("scaler", "naive")
    assert (ours["launched"], ours["commands"]) == (50, 50)
    assert naive["launched"] > 50
    assert report["hourlyUsd"] == pytest.approx(0.024685)


def test_simulate_prints_a_table_for_the_built_in_example():
    result = run_simulate()
    assert result.returncode == 0, result.stderr
    assert "345 commands from built-in bursty example" in result.stdout
    assert "queue wait p95 (s)" in result.stdout
    assert "seed's naive rule" in result.stdout


def test_simulate_refuses_a_bad_trace_in_one_line(tmp_path):
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival_s,duration_s\n1,2\nsoon,2\n")
    result = run_simulate("--trace", str(trace))
    assert result.returncode == 2
    assert result.stderr == ("simulate: line 3: arrival_s and duration_s must be "
                             "numbers\n")
