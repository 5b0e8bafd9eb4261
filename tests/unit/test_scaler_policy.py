"""scaler.policy: how many worker tasks to launch, decided with no I/O and no clock."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import pytest

from scaler.policy import (
    RUN_TASK_MAX_COUNT,
    Decision,
    FailureBreaker,
    LaunchLedger,
    Observation,
    ScalingLimits,
    decide,
    desired_task_count,
    run_task_batches,
)


def limits(min_tasks: int = 0, max_tasks: int = 10, per_task: int = 5) -> ScalingLimits:
    return ScalingLimits(min_tasks=min_tasks, max_tasks=max_tasks, messages_per_task=per_task)


def observe(visible: int = 0, in_flight: int = 0, floor: int = 0, burst: int = 0) -> Observation:
    return Observation(visible=visible, in_flight=in_flight, live_floor=floor, live_burst=burst)


def after_launching(observation: Observation, decision: Decision) -> Observation:
    """The next round's observation when nothing changed but the launched tasks are live."""
    return dataclasses.replace(observation,
                               live_floor=observation.live_floor + decision.floor,
                               live_burst=observation.live_burst + decision.burst)


def seed_rule(backlog: int, min_tasks: int, max_tasks: int, per_task: int) -> int:
    """The seed's rule in exact integer arithmetic (ceil without floats)."""
    return min(max(-(-max(0, backlog) // per_task), min_tasks), max_tasks)


# --- ScalingLimits ----------------------------------------------------------------------

@pytest.mark.parametrize(("min_tasks", "max_tasks", "per_task"), [
    (0, 0, 1), (0, 10, 5), (3, 3, 1), (2, 20, 100),
])
def test_limits_accept_valid_values(min_tasks, max_tasks, per_task):
    made = ScalingLimits(min_tasks=min_tasks, max_tasks=max_tasks, messages_per_task=per_task)
    assert (made.min_tasks, made.max_tasks, made.messages_per_task) == (
        min_tasks, max_tasks, per_task)


@pytest.mark.parametrize(("min_tasks", "max_tasks"), [(-1, 10), (-1, -1), (0, -1), (11, 10)])
def test_limits_reject_min_outside_zero_to_max(min_tasks, max_tasks):
    with pytest.raises(ValueError, match="min_tasks <= max_tasks"):
        ScalingLimits(min_tasks=min_tasks, max_tasks=max_tasks, messages_per_task=1)


@pytest.mark.parametrize("per_task", [0, -1, -50])
def test_limits_reject_fewer_than_one_message_per_task(per_task):
    with pytest.raises(ValueError, match="messages_per_task must be at least 1"):
        ScalingLimits(min_tasks=0, max_tasks=10, messages_per_task=per_task)


def test_limits_are_immutable():
    made = limits()
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.max_tasks = 99  # type: ignore[misc]


# --- Observation and Decision -----------------------------------------------------------

def test_observation_live_is_floor_plus_burst():
    assert observe(floor=2, burst=5).live == 7
    assert observe().live == 0


def test_decision_launch_is_floor_plus_burst():
    assert Decision(desired=9, floor=2, burst=3).launch == 5
    assert Decision(desired=0, floor=0, burst=0).launch == 0


# --- desired_task_count -----------------------------------------------------------------

def test_seed_example_23_messages_at_5_per_task_wants_5():
    assert desired_task_count(23, limits(min_tasks=0, max_tasks=10, per_task=5)) == 5


@pytest.mark.parametrize(("backlog", "min_tasks", "max_tasks", "per_task", "expected"), [
    (0, 0, 10, 5, 0),      # nothing to do, no floor
    (0, 2, 10, 5, 2),      # empty backlog -> min
    (-7, 2, 10, 5, 2),     # a nonsense negative count is an empty backlog
    (1, 0, 10, 5, 1),      # one message still needs a task (ceil, not floor)
    (5, 0, 10, 5, 1),
    (6, 0, 10, 5, 2),
    (25, 0, 10, 5, 5),
    (26, 0, 10, 5, 6),
    (50, 0, 10, 5, 10),
    (51, 0, 10, 5, 10),    # caps at max
    (10**6, 0, 10, 5, 10),
    (10**6, 3, 3, 1, 3),   # min == max pins the count
    (3, 4, 10, 1, 4),      # min holds over a smaller backlog
    (7, 4, 10, 1, 7),      # and gives way to a larger one
    (100, 0, 0, 1, 0),     # max 0 launches nothing, ever
    (50, 0, 100, 1, 50),
])
def test_desired_follows_the_seed_rule(backlog, min_tasks, max_tasks, per_task, expected):
    assert desired_task_count(backlog, limits(min_tasks, max_tasks, per_task)) == expected


def test_desired_matches_the_seed_rule_over_a_grid():
    for backlog, min_tasks, max_tasks, per_task in itertools.product(
            range(-2, 40), range(0, 5), range(0, 9), range(1, 7)):
        if min_tasks > max_tasks:
            continue
        got = desired_task_count(backlog, limits(min_tasks, max_tasks, per_task))
        assert got == seed_rule(backlog, min_tasks, max_tasks, per_task), (
            backlog, min_tasks, max_tasks, per_task)


# --- decide: backlog is visible + in flight ---------------------------------------------

@pytest.mark.parametrize(("visible", "in_flight"), [(23, 0), (0, 23), (3, 20), (20, 3)])
def test_backlog_counts_waiting_and_in_flight_messages(visible, in_flight):
    decision = decide(observe(visible=visible, in_flight=in_flight), limits(per_task=5))
    assert decision.desired == 5
    assert decision.launch == 5


def test_in_flight_messages_are_not_ignored():
    # Only 1 message waits but 20 are being worked on: 5 tasks are wanted, not 1.
    decision = decide(observe(visible=1, in_flight=20, burst=1), limits(per_task=5))
    assert decision.desired == 5
    assert decision.launch == 4


def test_tasks_busy_on_in_flight_messages_are_not_doubled():
    # 10 messages in flight held by the 2 live tasks that took them: nothing to launch.
    decision = decide(observe(visible=0, in_flight=10, burst=2), limits(per_task=5))
    assert decision.desired == 2
    assert decision.launch == 0


# --- decide: launch desired - live, never more ------------------------------------------

def test_seed_example_launches_5_then_nothing():
    rules = limits(min_tasks=0, max_tasks=10, per_task=5)
    first = decide(observe(visible=23), rules)
    assert first == Decision(desired=5, floor=0, burst=5)
    second = decide(after_launching(observe(visible=23), first), rules)
    assert second.desired == 5
    assert second.launch == 0


@pytest.mark.parametrize("live", range(0, 6))
def test_launches_exactly_desired_minus_live(live):
    decision = decide(observe(visible=23, burst=live), limits(per_task=5))
    assert decision.desired == 5
    assert decision.launch == 5 - live


@pytest.mark.parametrize("live", [6, 9, 10, 25])
def test_more_live_than_desired_launches_nothing(live):
    decision = decide(observe(visible=23, burst=live), limits(per_task=5))
    assert decision.launch == 0
    assert decision.floor == 0
    assert decision.burst == 0


@pytest.mark.parametrize(("floor", "burst"), [(2, 0), (0, 2), (1, 1)])
def test_live_counts_floor_and_burst_tasks(floor, burst):
    rules = limits(min_tasks=1, max_tasks=10, per_task=5)
    decision = decide(observe(visible=23, floor=floor, burst=burst), rules)
    assert decision.desired == 5
    assert decision.launch == 3


def test_live_floor_tasks_cover_the_backlog_too():
    rules = limits(min_tasks=2, max_tasks=10, per_task=5)
    assert decide(observe(visible=10, floor=2), rules).launch == 0
    assert decide(observe(visible=23, floor=2, burst=3), rules).launch == 0


@pytest.mark.parametrize(("observation", "rules"), [
    (observe(visible=23), limits(0, 10, 5)),
    (observe(visible=23), limits(2, 10, 5)),
    (observe(visible=0), limits(3, 10, 5)),
    (observe(visible=10**6), limits(0, 10, 1)),
    (observe(visible=10**6, floor=1, burst=4), limits(3, 10, 1)),
    (observe(visible=7, in_flight=9, floor=0, burst=2), limits(2, 4, 2)),
    (observe(visible=3, burst=12), limits(2, 10, 1)),
])
def test_a_second_round_with_nothing_changed_launches_nothing(observation, rules):
    first = decide(observation, rules)
    again = decide(after_launching(observation, first), rules)
    assert again.launch == 0
    assert again.desired == first.desired


# --- decide: max caps -------------------------------------------------------------------

def test_huge_backlog_launches_max():
    decision = decide(observe(visible=10**9, in_flight=10**9), limits(0, 10, 1))
    assert decision.desired == 10
    assert decision.launch == 10


@pytest.mark.parametrize(("live", "expected"), [(0, 10), (3, 7), (9, 1), (10, 0), (14, 0)])
def test_max_caps_live_plus_launch(live, expected):
    decision = decide(observe(visible=10**6, burst=live), limits(0, 10, 1))
    assert decision.launch == expected


def test_max_caps_even_when_the_floor_is_missing_and_the_backlog_huge():
    rules = limits(min_tasks=3, max_tasks=10, per_task=1)
    # No floor task is live, 8 burst tasks are: room for 2 only.
    decision = decide(observe(visible=10**6, floor=0, burst=8), rules)
    assert decision.launch == 2
    assert 8 + decision.launch == 10
    # All 10 slots are burst tasks: the missing floor is not launched past max.
    full = decide(observe(visible=10**6, floor=0, burst=10), rules)
    assert full.launch == 0
    assert full.floor == 0
    # Over max (the max was lowered): nothing.
    over = decide(observe(visible=10**6, floor=0, burst=13), rules)
    assert over.launch == 0


def test_floor_and_burst_together_never_pass_max():
    rules = limits(min_tasks=4, max_tasks=5, per_task=1)
    decision = decide(observe(visible=100), rules)
    assert decision == Decision(desired=5, floor=4, burst=1)
    decision = decide(observe(visible=100, floor=1, burst=2), rules)
    assert decision.launch == 2
    assert decision.floor == 2
    assert decision.burst == 0


def test_max_zero_never_launches():
    rules = limits(min_tasks=0, max_tasks=0, per_task=1)
    assert decide(observe(visible=100, in_flight=100), rules).launch == 0


# --- decide: the warm floor -------------------------------------------------------------

def test_idle_system_launches_the_floor():
    decision = decide(observe(), limits(min_tasks=2, max_tasks=10, per_task=5))
    assert decision == Decision(desired=2, floor=2, burst=0)


def test_idle_system_with_its_floor_launches_nothing():
    rules = limits(min_tasks=2, max_tasks=10, per_task=5)
    for _ in range(5):  # every interval: no churn
        assert decide(observe(floor=2), rules).launch == 0


@pytest.mark.parametrize(("live_floor", "expected"), [(0, 3), (1, 2), (2, 1), (3, 0), (5, 0)])
def test_floor_tasks_are_launched_only_up_to_min_minus_live_floor(live_floor, expected):
    rules = limits(min_tasks=3, max_tasks=10, per_task=1)
    decision = decide(observe(visible=0, floor=live_floor), rules)
    assert decision.floor == expected
    # a large backlog still does not make floor tasks out of burst ones
    busy = decide(observe(visible=100, floor=live_floor), rules)
    assert busy.floor == expected


def test_burst_tasks_do_not_double_count_the_floor_being_launched():
    # 23 messages at 5 a task want 5: 2 floor tasks plus 3 burst, not 2 + 5.
    decision = decide(observe(visible=23), limits(min_tasks=2, max_tasks=10, per_task=5))
    assert decision == Decision(desired=5, floor=2, burst=3)


def test_burst_tasks_do_not_double_count_live_floor_tasks():
    decision = decide(observe(visible=23, floor=2), limits(min_tasks=2, max_tasks=10, per_task=5))
    assert decision == Decision(desired=5, floor=0, burst=3)


def test_surplus_floor_tasks_count_against_the_burst():
    # 4 floor tasks live with min 2 (min was lowered): they still serve the backlog.
    decision = decide(observe(visible=23, floor=4), limits(min_tasks=2, max_tasks=10, per_task=5))
    assert decision == Decision(desired=5, floor=0, burst=1)


def test_never_launches_more_than_desired_minus_live_even_for_the_floor():
    # min 2, nothing waiting: desired is 2, and 3 (burst) tasks are live.
    decision = decide(observe(visible=0, floor=0, burst=3), limits(2, 10, 5))
    assert decision.desired == 2
    assert decision.launch == 0


# --- decide: properties over a grid of small values -------------------------------------

def test_decide_properties_over_a_grid():
    checked = 0
    for min_tasks, max_tasks, per_task in itertools.product(range(0, 5), range(0, 6), (1, 3)):
        if min_tasks > max_tasks:
            continue
        rules = limits(min_tasks, max_tasks, per_task)
        for visible, in_flight, live_floor, live_burst in itertools.product(
                range(0, 12), (0, 2), range(0, 6), range(0, 8)):
            observation = observe(visible, in_flight, live_floor, live_burst)
            decision = decide(observation, rules)
            live = live_floor + live_burst
            launch = decision.launch
            desired = seed_rule(visible + in_flight, min_tasks, max_tasks, per_task)
            case = (rules, observation, decision)

            assert decision.desired == desired, case
            assert decision.floor >= 0, case
            assert decision.burst >= 0, case
            assert launch >= 0, case
            # never past max in total (and nothing at all once over it)
            assert live + launch <= max(max_tasks, live), case
            # enough to reach desired whenever max allows
            if live <= max_tasks:
                assert live + launch >= min(desired, max_tasks), case
            # floor launches only make up the missing floor
            assert decision.floor <= max(0, min_tasks - live_floor), case
            # burst launches count live tasks and the floor being launched
            assert decision.burst <= max(0, desired - live - decision.floor), case
            # with the floor held, exactly desired - live
            if live_floor >= min_tasks:
                assert decision.floor == 0, case
                assert launch == max(0, desired - live), case
            # a second round with nothing changed launches nothing
            again = decide(after_launching(observation, decision), rules)
            assert again.launch == 0, case
            checked += 1
    assert checked > 30_000


# --- run_task_batches -------------------------------------------------------------------

def test_run_task_max_count_is_ecs_limit():
    assert RUN_TASK_MAX_COUNT == 10


@pytest.mark.parametrize(("count", "batches"), [
    (0, []),
    (-3, []),
    (1, [1]),
    (9, [9]),
    (10, [10]),
    (11, [10, 1]),
    (23, [10, 10, 3]),
    (100, [10] * 10),
    (101, [10] * 10 + [1]),
])
def test_run_task_batches(count, batches):
    assert run_task_batches(count) == batches


def test_run_task_batches_are_at_most_ten_and_sum_to_the_count():
    for count in range(0, 301):
        batches = run_task_batches(count)
        assert sum(batches) == count
        assert all(1 <= batch <= RUN_TASK_MAX_COUNT for batch in batches)
        assert len(batches) == -(-count // RUN_TASK_MAX_COUNT)  # fewest calls


# --- LaunchLedger -----------------------------------------------------------------------

def test_empty_ledger_counts_nothing():
    assert LaunchLedger(grace_s=60).unlisted(set(), set(), now=0) == 0


def test_recent_launches_count_until_listed():
    ledger = LaunchLedger(grace_s=300)
    ledger.record(["a", "b", "c"], now=1000)
    assert ledger.unlisted(set(), set(), now=1000) == 3
    assert ledger.unlisted(set(), set(), now=1030) == 3
    assert ledger.unlisted({"a"}, set(), now=1060) == 2
    assert ledger.unlisted({"a", "b", "c"}, set(), now=1090) == 0


def test_a_listed_launch_is_forgotten_not_counted_twice():
    ledger = LaunchLedger(grace_s=300)
    ledger.record(["a"], now=0)
    assert ledger.unlisted({"a"}, set(), now=10) == 0
    # A later listing that misses it (eventual consistency) does not bring it back.
    assert ledger.unlisted(set(), set(), now=20) == 0


def test_recent_launches_count_until_stopped():
    ledger = LaunchLedger(grace_s=300)
    ledger.record(["a", "b"], now=0)
    assert ledger.unlisted(set(), {"a"}, now=30) == 1
    assert ledger.unlisted(set(), set(), now=60) == 1
    assert ledger.unlisted(set(), {"b"}, now=90) == 0


def test_recent_launches_count_until_past_grace():
    ledger = LaunchLedger(grace_s=60)
    ledger.record(["a"], now=100)
    assert ledger.unlisted(set(), set(), now=159.5) == 1
    assert ledger.unlisted(set(), set(), now=160) == 1  # at the grace: still counted
    assert ledger.unlisted(set(), set(), now=160.5) == 0  # past it: gone
    assert ledger.unlisted(set(), set(), now=100) == 0  # and stays gone


def test_launches_expire_on_their_own_schedules():
    ledger = LaunchLedger(grace_s=60)
    ledger.record(["early"], now=0)
    ledger.record(["late1", "late2"], now=45)
    assert ledger.unlisted(set(), set(), now=60) == 3
    assert ledger.unlisted(set(), set(), now=61) == 2
    assert ledger.unlisted(set(), set(), now=105) == 2
    assert ledger.unlisted(set(), set(), now=106) == 0


def test_recording_again_restarts_the_grace():
    ledger = LaunchLedger(grace_s=60)
    ledger.record(["a"], now=0)
    ledger.record(["a"], now=50)
    assert ledger.unlisted(set(), set(), now=100) == 1
    assert ledger.unlisted(set(), set(), now=111) == 0


def test_unrelated_listed_and_stopped_ids_change_nothing():
    ledger = LaunchLedger(grace_s=300)
    ledger.record(["a", "b"], now=0)
    assert ledger.unlisted({"x", "y"}, {"z"}, now=10) == 2


def test_recording_nothing_counts_nothing():
    ledger = LaunchLedger(grace_s=300)
    ledger.record([], now=0)
    assert ledger.unlisted(set(), set(), now=0) == 0


def test_ledgers_do_not_share_state():
    one, other = LaunchLedger(grace_s=300), LaunchLedger(grace_s=300)
    one.record(["a"], now=0)
    assert other.unlisted(set(), set(), now=0) == 0


# --- FailureBreaker ---------------------------------------------------------------------

def test_a_new_breaker_is_closed():
    breaker = FailureBreaker(threshold=3, cooldown_s=300)
    assert not breaker.is_open(0)
    assert breaker.last_reason is None


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_opens_after_threshold_consecutive_failures(threshold):
    breaker = FailureBreaker(threshold=threshold, cooldown_s=300)
    for n in range(threshold - 1):
        assert breaker.task_failed("CannotPullContainerError", now=10 + n) is False
        assert not breaker.is_open(10 + n)
    assert breaker.task_failed("CannotPullContainerError", now=50) is True
    assert breaker.is_open(50)


def test_default_threshold_is_three():
    breaker = FailureBreaker()
    assert breaker.task_failed("x", now=0) is False
    assert breaker.task_failed("x", now=0) is False
    assert breaker.task_failed("x", now=0) is True


def test_stays_open_for_the_cooldown():
    breaker = FailureBreaker(threshold=2, cooldown_s=300)
    breaker.task_failed("x", now=100)
    breaker.task_failed("x", now=100)
    assert breaker.is_open(100)
    assert breaker.is_open(250)
    assert breaker.is_open(399.9)
    assert not breaker.is_open(400)
    assert not breaker.is_open(1000)


def test_failures_while_open_do_not_report_opening_nor_extend_it():
    breaker = FailureBreaker(threshold=2, cooldown_s=300)
    breaker.task_failed("x", now=0)
    assert breaker.task_failed("x", now=0) is True
    assert breaker.task_failed("x", now=100) is False
    assert breaker.task_failed("x", now=299) is False
    assert not breaker.is_open(300)


def test_a_started_task_resets_the_count():
    breaker = FailureBreaker(threshold=3, cooldown_s=300)
    breaker.task_failed("x", now=0)
    breaker.task_failed("x", now=1)
    breaker.task_started()
    assert breaker.task_failed("x", now=2) is False
    assert breaker.task_failed("x", now=3) is False
    assert not breaker.is_open(3)
    assert breaker.task_failed("x", now=4) is True
    assert breaker.is_open(4)


def test_interleaved_failures_and_starts_never_open():
    breaker = FailureBreaker(threshold=2, cooldown_s=300)
    for t in range(20):
        assert breaker.task_failed("x", now=t) is False
        breaker.task_started()
        assert not breaker.is_open(t)


def test_after_the_cooldown_one_more_failure_reopens_until_a_task_starts():
    # Opening does not reset the count: the first launch after the cooldown is a probe.
    breaker = FailureBreaker(threshold=3, cooldown_s=300)
    for t in (0, 1, 2):
        breaker.task_failed("x", now=t)
    assert not breaker.is_open(302)
    assert breaker.task_failed("x", now=310) is True
    assert breaker.is_open(310)
    assert breaker.is_open(609)
    assert not breaker.is_open(610)
    breaker.task_started()
    assert breaker.task_failed("x", now=700) is False
    assert not breaker.is_open(700)


def test_remembers_the_latest_failure_reason():
    breaker = FailureBreaker(threshold=5, cooldown_s=300)
    breaker.task_failed("CannotPullContainerError: pull access denied", now=0)
    assert breaker.last_reason == "CannotPullContainerError: pull access denied"
    breaker.task_failed("ResourceInitializationError: secrets", now=1)
    assert breaker.last_reason == "ResourceInitializationError: secrets"


# --- simulation: slow starts do not over-launch -----------------------------------------

@dataclass
class SimTask:
    id: str
    launched_at: float
    busy_until: float | None = None
    stopped: bool = False


@dataclass
class SimResult:
    launched: int
    max_live: int
    visible: int
    in_flight: int
    processed: int


def simulate(*, messages: int = 50, per_task: int = 1, max_tasks: int = 100,
             start_s: float = 120, listed_after_s: float = 60, work_s: float = 60,
             interval_s: float = 30, duration_s: float = 600, grace_s: float = 300,
             use_ledger: bool = True) -> SimResult:
    """Rounds every ``interval_s`` over ``duration_s`` simulated seconds.

    A task ECS lists only ``listed_after_s`` after RunTask, starts ``start_s`` after it,
    then takes one message at a time for ``work_s`` and exits when none is waiting.
    """
    rules = ScalingLimits(min_tasks=0, max_tasks=max_tasks, messages_per_task=per_task)
    ledger = LaunchLedger(grace_s=grace_s)
    tasks: list[SimTask] = []
    visible, in_flight, processed, max_live = messages, 0, 0, 0
    now = 0.0
    while now <= duration_s:
        for task in tasks:
            if task.stopped or now < task.launched_at + start_s:
                continue
            if task.busy_until is not None and now >= task.busy_until:
                in_flight -= 1
                processed += 1
                task.busy_until = None
            if task.busy_until is None:
                if visible:
                    visible -= 1
                    in_flight += 1
                    task.busy_until = now + work_s
                else:
                    task.stopped = True  # idle exit
        listed = {task.id for task in tasks
                  if not task.stopped and now >= task.launched_at + listed_after_s}
        stopped = {task.id for task in tasks if task.stopped}
        unlisted = ledger.unlisted(listed, stopped, now) if use_ledger else 0
        observation = Observation(visible=visible, in_flight=in_flight,
                                  live_floor=0, live_burst=len(listed) + unlisted)
        decision = decide(observation, rules)
        assert decision.floor == 0
        new_ids = [f"task-{len(tasks) + n}" for n in range(decision.launch)]
        tasks.extend(SimTask(id=task_id, launched_at=now) for task_id in new_ids)
        ledger.record(new_ids, now)
        max_live = max(max_live, sum(not task.stopped for task in tasks))
        now += interval_s
    return SimResult(launched=len(tasks), max_live=max_live, visible=visible,
                     in_flight=in_flight, processed=processed)


def test_slow_starts_never_over_launch():
    # 50 messages, 1 a task, 120 s starts, listed after 60 s, 30 s rounds, 10 minutes.
    result = simulate(messages=50, per_task=1, start_s=120, listed_after_s=60,
                      interval_s=30, duration_s=600)
    assert result.launched <= 50
    assert result.launched == 50  # and not fewer: each message had its task
    assert result.processed == 50
    assert (result.visible, result.in_flight) == (0, 0)


@pytest.mark.parametrize(("max_tasks", "work_s"), [(100, 60), (100, 240), (50, 30), (20, 60),
                                                     (7, 45)])
def test_slow_starts_never_over_launch_nor_pass_max(max_tasks, work_s):
    result = simulate(messages=50, max_tasks=max_tasks, work_s=work_s, duration_s=600)
    assert result.launched <= 50
    assert result.launched == min(50, max_tasks)
    assert result.max_live <= max_tasks


def test_slow_starts_with_5_per_task_launch_exactly_the_seed_count():
    result = simulate(messages=23, per_task=5, duration_s=600)
    assert result.launched == 5
    assert result.processed == 23


def test_simulation_over_launches_without_the_ledger():
    # Control: the same trace counting only what ECS lists launches again at 30 s.
    result = simulate(messages=50, use_ledger=False)
    assert result.launched > 50


def test_simulation_over_launches_when_grace_is_shorter_than_the_listing_lag():
    # Control: the ledger must hold launches at least until ECS lists them.
    result = simulate(messages=50, grace_s=20, listed_after_s=60)
    assert result.launched > 50
