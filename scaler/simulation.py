"""``python -m scaler simulate``: replay command arrivals against the scaling policy.

The scaler under test is the real one (``Scaler.evaluate`` with its ledger and floor),
driven by trio's mock clock against a simulated queue and simulated Fargate tasks, so
hours of traffic replay in a second. Beside it runs the seed's naive rule as it is
usually written: queue depth is the visible messages only, live tasks are the cluster's
RUNNING ones, and it launches the difference every interval. With starts slower than the
interval, that rule launches again for messages that starting tasks will take.

Tasks are billed as Fargate bills them: from launch until they stop, per second, with a
one-minute minimum.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import trio
import trio.testing

from .launchers import BURST, FLOOR, LaunchResult, LiveTasks
from .loop import Scaler
from .policy import ScalingLimits, desired_task_count
from .settings import ScalerSettings

# Fargate, Linux/x86, us-east-1, on-demand.
VCPU_HOUR_USD = 0.04048
GB_HOUR_USD = 0.004445
MIN_BILLED_S = 60


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line."""


@dataclass(frozen=True)
class Arrival:
    at_s: float
    duration_s: float


@dataclass(frozen=True)
class Scenario:
    limits: ScalingLimits
    start_delay_s: float = 60
    interval_s: float = 30
    idle_timeout_s: float = 60
    concurrency: int = 1
    cpu_units: int = 512
    memory_mib: int = 1024

    @property
    def hourly_usd(self) -> float:
        return self.cpu_units / 1024 * VCPU_HOUR_USD + self.memory_mib / 1024 * GB_HOUR_USD


@dataclass
class Outcome:
    policy: str
    launched: int = 0
    peak_live: int = 0
    task_seconds: float = 0.0
    cost_usd: float = 0.0
    waits_s: list[float] = field(default_factory=list)

    def wait_percentile(self, percent: int) -> float:
        if not self.waits_s:
            return 0.0
        if len(self.waits_s) == 1:
            return self.waits_s[0]
        return statistics.quantiles(self.waits_s, n=100, method="inclusive")[percent - 1]

    def summary(self) -> dict:
        return {
            "policy": self.policy, "launched": self.launched, "peakLive": self.peak_live,
            "taskSeconds": round(self.task_seconds), "costUsd": round(self.cost_usd, 4),
            "commands": len(self.waits_s),
            **{f"waitP{p}S": round(self.wait_percentile(p), 1) for p in (50, 95, 99)},
            "waitMaxS": round(max(self.waits_s, default=0.0), 1),
        }


# --- traces -------------------------------------------------------------------------------

def read_trace(lines: Iterable[str]) -> list[Arrival]:
    """CSV with a header naming ``arrival_s`` and ``duration_s`` (other columns ignored)."""
    reader = csv.DictReader(lines)
    missing = {"arrival_s", "duration_s"} - set(reader.fieldnames or ())
    if missing:
        raise TraceError(f"trace header lacks {', '.join(sorted(missing))}")
    arrivals = []
    for row in reader:
        try:
            arrival = Arrival(float(row["arrival_s"]), float(row["duration_s"]))
        except (TypeError, ValueError):
            raise TraceError(f"line {reader.line_num}: arrival_s and duration_s must be "
                             "numbers") from None
        if not (math.isfinite(arrival.at_s) and math.isfinite(arrival.duration_s)
                and arrival.at_s >= 0 and arrival.duration_s >= 0):
            raise TraceError(f"line {reader.line_num}: times must be finite and not negative")
        arrivals.append(arrival)
    if not arrivals:
        raise TraceError("trace has no commands")
    return sorted(arrivals, key=lambda a: a.at_s)


def bursty_example() -> list[Arrival]:
    """Two hours of a team's day: a trickle of short commands, and bursts of installs
    and test runs (a class starting an exercise, a CI-like fan-out)."""
    rng = random.Random(7)
    arrivals = [Arrival(rng.uniform(0, 7200), rng.uniform(1, 20)) for _ in range(120)]
    for start_s, count, spread_s, low_s, high_s in (
        (600, 40, 20, 30, 90),     # 40 `npm install`s within 20 s
        (2700, 100, 60, 20, 180),  # a class of 100 runs its tests
        (4800, 25, 10, 60, 300),   # builds
        (6300, 60, 120, 5, 40),
    ):
        arrivals += [Arrival(start_s + rng.uniform(0, spread_s), rng.uniform(low_s, high_s))
                     for _ in range(count)]
    return sorted(arrivals, key=lambda a: a.at_s)


# --- the simulated world ------------------------------------------------------------------

class SimulatedQueue:
    """Commands waiting (visible) and taken by a task but not finished (in flight)."""

    def __init__(self):
        self._send, self._receive = trio.open_memory_channel(math.inf)
        self.in_flight = 0

    def put(self, arrival: Arrival) -> None:
        self._send.send_nowait(arrival)

    async def take(self) -> Arrival:
        return await self._receive.receive()

    @property
    def visible(self) -> int:
        return self._receive.statistics().current_buffer_used

    async def depth(self) -> tuple[int, int]:
        return self.visible, self.in_flight


class SimulatedFargate:
    """The launcher interface over simulated tasks: each starts after ``start_delay_s``,
    takes commands one slot at a time, and stops when idle (floor tasks never idle out)."""

    def __init__(self, scenario: Scenario, queue: SimulatedQueue, outcome: Outcome,
                 nursery: trio.Nursery, commands: int):
        self._scenario = scenario
        self._commands = commands
        # Set once every command has run and every task that idles out has stopped.
        self.settled = trio.Event()
        self._queue = queue
        self._outcome = outcome
        self._nursery = nursery
        self._tasks: dict[str, tuple[str, float]] = {}  # id -> kind, launched at
        self._count = 0

    def _is_running(self, launched_at: float) -> bool:
        # ECS reports RUNNING a moment after the container starts, never at the same
        # instant: that keeps replays the same from run to run.
        return trio.current_time() - launched_at > self._scenario.start_delay_s

    @property
    def running(self) -> int:
        return sum(1 for _, at in self._tasks.values() if self._is_running(at))

    async def observe(self, watch: set[str]) -> LiveTasks:
        live = LiveTasks()
        for task_id, (kind, launched_at) in self._tasks.items():
            live.ids[kind].add(task_id)
            if self._is_running(launched_at):
                live.running.add(task_id)
        return live

    async def find_launched(self, client_token: str, *, kind: str) -> list[str]:
        """Simulated launches always answer."""
        return []

    async def launch(self, count: int, *, kind: str, client_token: str) -> LaunchResult:
        result = LaunchResult()
        for _ in range(count):
            self._count += 1
            task_id = f"task-{self._count}"
            self._tasks[task_id] = (kind, trio.current_time())
            self._nursery.start_soon(self._task, task_id, kind)
            result.ids.append(task_id)
        self._outcome.launched += count
        self._outcome.peak_live = max(self._outcome.peak_live, len(self._tasks))
        return result

    async def close(self) -> None:
        """Bill the tasks still alive when the replay ends."""
        for task_id in list(self._tasks):
            self._stopped(task_id)

    async def _task(self, task_id: str, kind: str) -> None:
        await trio.sleep(self._scenario.start_delay_s)
        idle_timeout = math.inf if kind == FLOOR else self._scenario.idle_timeout_s
        async with trio.open_nursery() as slots:
            for _ in range(self._scenario.concurrency):
                slots.start_soon(self._slot, idle_timeout)
        self._stopped(task_id)

    async def _slot(self, idle_timeout_s: float) -> None:
        while True:
            arrival = None
            with trio.move_on_after(idle_timeout_s):
                arrival = await self._queue.take()
            if arrival is None:
                return
            self._outcome.waits_s.append(trio.current_time() - arrival.at_s)
            self._queue.in_flight += 1
            await trio.sleep(arrival.duration_s)
            self._queue.in_flight -= 1
            self._check_settled()

    def _stopped(self, task_id: str) -> None:
        _, launched_at = self._tasks.pop(task_id)
        billed_s = max(MIN_BILLED_S, trio.current_time() - launched_at)
        self._outcome.task_seconds += billed_s
        self._outcome.cost_usd += billed_s / 3600 * self._scenario.hourly_usd
        self._check_settled()

    def _check_settled(self) -> None:
        if (len(self._outcome.waits_s) == self._commands and not self._queue.in_flight
                and all(kind != BURST for kind, _ in self._tasks.values())):
            self.settled.set()


class NaiveRule:
    """The seed's rule as usually written: visible messages, RUNNING tasks, launch the gap."""

    def __init__(self, scenario: Scenario, queue: SimulatedQueue, fargate: SimulatedFargate):
        self._scenario = scenario
        self._queue = queue
        self._fargate = fargate

    async def run(self) -> None:
        while True:
            desired = desired_task_count(self._queue.visible, self._scenario.limits)
            gap = desired - self._fargate.running
            if gap > 0:
                await self._fargate.launch(gap, kind=BURST, client_token="naive")
            await trio.sleep(self._scenario.interval_s)


def simulate(arrivals: list[Arrival], scenario: Scenario, policy: str) -> Outcome:
    """Replay ``arrivals`` under ``policy`` ("scaler" or "naive") until every command has
    run and every task that idles out has stopped."""
    outcome = Outcome(policy=policy)

    async def replay() -> None:
        queue = SimulatedQueue()
        async with trio.open_nursery() as world:
            fargate = SimulatedFargate(scenario, queue, outcome, world, len(arrivals))
            async with trio.open_nursery() as control:
                if policy == "naive":
                    control.start_soon(NaiveRule(scenario, queue, fargate).run)
                    wake = None
                else:
                    scaler = Scaler(_settings(scenario), queue, fargate)
                    control.start_soon(scaler.run)
                    wake = scaler.wake
                for arrival in arrivals:
                    await trio.sleep_until(arrival.at_s)
                    queue.put(arrival)
                    if wake is not None:
                        wake()  # as the gateway does when it enqueues a command
                await fargate.settled.wait()
                control.cancel_scope.cancel()
            await fargate.close()
            world.cancel_scope.cancel()

    trio.run(replay, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcome


def _settings(scenario: Scenario) -> ScalerSettings:
    return ScalerSettings(sqs_queue_url="simulated", limits=scenario.limits,
                          interval_s=scenario.interval_s, launcher="simulated")


# --- the command ------------------------------------------------------------------------

ROWS = (
    ("tasks launched", "launched", "{:d}"),
    ("peak live tasks", "peakLive", "{:d}"),
    ("task-seconds", "taskSeconds", "{:,d}"),
    ("cost (USD)", "costUsd", "{:.4f}"),
    ("queue wait p50 (s)", "waitP50S", "{:.1f}"),
    ("queue wait p95 (s)", "waitP95S", "{:.1f}"),
    ("queue wait p99 (s)", "waitP99S", "{:.1f}"),
    ("queue wait max (s)", "waitMaxS", "{:.1f}"),
)


def format_table(results: list[dict]) -> str:
    width = max(len(label) for label, _, _ in ROWS) + 2
    header = "".ljust(width) + "".join(f"{name:>18}" for name in
                                       ("this scaler", "seed's naive rule"))
    lines = [header]
    for label, key, pattern in ROWS:
        lines.append(label.ljust(width)
                     + "".join(f"{pattern.format(r[key]):>18}" for r in results))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scaler simulate",
        description="Replay command arrivals against this scaler and the seed's naive rule.")
    parser.add_argument("--trace", type=argparse.FileType("r"),
                        help="CSV with arrival_s,duration_s columns (default: a built-in "
                             "bursty two hours)")
    parser.add_argument("--start-delay", type=float, default=60,
                        help="seconds from launch until a task takes commands (60)")
    parser.add_argument("--interval", type=float, default=30, help="seconds between checks")
    parser.add_argument("--min-tasks", type=int, default=0)
    parser.add_argument("--max-tasks", type=int, default=50)
    parser.add_argument("--messages-per-task", type=int, default=1)
    parser.add_argument("--idle-timeout", type=float, default=60,
                        help="seconds a burst task waits idle before it exits (60)")
    parser.add_argument("--concurrency", type=int, default=1, help="commands per task at once")
    parser.add_argument("--cpu", type=int, default=512, help="task CPU units (512)")
    parser.add_argument("--memory", type=int, default=1024, help="task memory in MiB (1024)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of a table")
    args = parser.parse_args(argv)
    try:
        arrivals = read_trace(args.trace) if args.trace else bursty_example()
        scenario = Scenario(
            limits=ScalingLimits(args.min_tasks, args.max_tasks, args.messages_per_task),
            start_delay_s=args.start_delay, interval_s=args.interval,
            idle_timeout_s=args.idle_timeout, concurrency=args.concurrency,
            cpu_units=args.cpu, memory_mib=args.memory,
        )
    except (TraceError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    results = [simulate(arrivals, scenario, policy).summary()
               for policy in ("scaler", "naive")]
    if args.json:
        print(json.dumps({"commands": len(arrivals), "startDelayS": scenario.start_delay_s,
                          "intervalS": scenario.interval_s, "hourlyUsd": scenario.hourly_usd,
                          "results": results}, separators=(",", ":")))
        return 0
    source = args.trace.name if args.trace else "built-in bursty example"
    print(f"{len(arrivals)} commands from {source}; tasks start in "
          f"{scenario.start_delay_s:g} s, checked every {scenario.interval_s:g} s, "
          f"{scenario.limits.min_tasks} to {scenario.limits.max_tasks} tasks; "
          f"{scenario.cpu_units / 1024:g} vCPU / {scenario.memory_mib / 1024:g} GB at "
          f"${scenario.hourly_usd:.6f} per task-hour")
    print(format_table(results))
    return 0
