"""How many worker tasks to launch: decisions with no I/O.

The seed's rule is ``desired = min(max(ceil(backlog / per_task), min), max)``. What makes
it right where naive versions fail is what counts as backlog and as live:

- backlog is the messages waiting *and* in flight, so tasks busy on long commands are
  neither ignored (under-scaling) nor doubled;
- live is every task this scaler started that is provisioning, pending or running, plus
  those launched moments ago that ECS does not list yet, so tasks that are still starting
  are never launched again for the messages they will take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# ECS RunTask starts at most this many tasks per call.
RUN_TASK_MAX_COUNT = 10


@dataclass(frozen=True)
class ScalingLimits:
    min_tasks: int
    max_tasks: int
    messages_per_task: int

    def __post_init__(self):
        if not 0 <= self.min_tasks <= self.max_tasks:
            raise ValueError("need 0 <= min_tasks <= max_tasks")
        if self.messages_per_task < 1:
            raise ValueError("messages_per_task must be at least 1")


@dataclass(frozen=True)
class Observation:
    visible: int  # ApproximateNumberOfMessages
    in_flight: int  # ApproximateNumberOfMessagesNotVisible
    live_floor: int  # live tasks launched to hold the warm floor (they never idle out)
    live_burst: int  # live tasks launched for the backlog (they exit when idle)

    @property
    def live(self) -> int:
        return self.live_floor + self.live_burst


@dataclass(frozen=True)
class Decision:
    desired: int
    floor: int  # floor tasks to launch now
    burst: int  # backlog tasks to launch now

    @property
    def launch(self) -> int:
        return self.floor + self.burst


def desired_task_count(backlog: int, limits: ScalingLimits) -> int:
    wanted = math.ceil(max(0, backlog) / limits.messages_per_task)
    return min(max(wanted, limits.min_tasks), limits.max_tasks)


def decide(observation: Observation, limits: ScalingLimits) -> Decision:
    """Launch ``desired - live``, never more, and never past ``max_tasks``.

    The warm floor is held by its own tasks, which do not take the idle exit, so an idle
    system keeps ``min_tasks`` workers without replacing them every interval.
    """
    desired = desired_task_count(observation.visible + observation.in_flight, limits)
    missing = max(0, desired - observation.live)
    # The floor is refilled only where live tasks fall short of what is desired: burst
    # tasks still alive cover it until they idle out.
    floor = min(max(0, limits.min_tasks - observation.live_floor), missing)
    burst = missing - floor
    return Decision(desired=desired, floor=floor, burst=burst)


def run_task_batches(count: int) -> list[int]:
    """Split a launch into RunTask calls of at most ten tasks."""
    full, rest = divmod(max(0, count), RUN_TASK_MAX_COUNT)
    return [RUN_TASK_MAX_COUNT] * full + ([rest] if rest else [])


@dataclass
class LaunchLedger:
    """Tasks launched recently, counted live until ECS lists them (or they stop).

    ECS's listing lags RunTask; without this a scaler whose interval is shorter than a
    task's start would launch again for the same messages.
    """

    grace_s: float
    _launched: dict[str, float] = field(default_factory=dict)

    def record(self, task_ids: list[str], now: float) -> None:
        for task_id in task_ids:
            self._launched[task_id] = now

    def unlisted(self, listed: set[str], stopped: set[str], now: float) -> int:
        """Recent launches not in the listing: still starting, so still live."""
        for task_id in list(self._launched):
            if (task_id in listed or task_id in stopped
                    or now - self._launched[task_id] > self.grace_s):
                del self._launched[task_id]
        return len(self._launched)


@dataclass
class FailureBreaker:
    """Stops launching when recently launched tasks keep failing to start.

    A task that stops with a start failure (an image that cannot be pulled, a bad role)
    counts; ``threshold`` of them in a row open the breaker for ``cooldown_s``. A task
    that starts running closes the count.
    """

    threshold: int = 3
    cooldown_s: float = 300
    _consecutive: int = 0
    _open_until: float = -math.inf
    last_reason: str | None = None

    def task_failed(self, reason: str, now: float) -> bool:
        """Count a failed start; True when this opens the breaker."""
        self._consecutive += 1
        self.last_reason = reason
        if self._consecutive >= self.threshold and not self.is_open(now):
            self._open_until = now + self.cooldown_s
            return True
        return False

    def task_started(self) -> None:
        self._consecutive = 0

    def is_open(self, now: float) -> bool:
        return now < self._open_until
