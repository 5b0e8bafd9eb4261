"""Lease keeping and output buffering in virtual time (trio's autojump clock)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from runtime.aws.queue import LeaseLost, QueueError, ReceivedMessage
from runtime.bus.connection import RedisError
from runtime.policy.visibility import SQS_MAX_VISIBILITY_S, LeasePolicy
from runtime.worker.heartbeat import ProjectLease, VisibilityHeartbeat
from runtime.worker.output import OutputPublisher


class RecordingQueue:
    """Stands in for SQS: records extensions, fails as scripted."""

    def __init__(self, failures=()):
        self.calls: list[tuple[float, int]] = []
        self._failures = list(failures)

    async def set_visibility(self, message, seconds):
        self.calls.append((trio.current_time(), seconds))
        if self._failures:
            failure = self._failures.pop(0)
            if failure is not None:
                raise failure


def message_at(now: float) -> ReceivedMessage:
    return ReceivedMessage("m1", "handle", "{}", 1, received_at=now)


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def run_heartbeat(queue, policy, until_s):
    lost = []
    heartbeat = VisibilityHeartbeat(queue, message_at(trio.current_time()), policy)
    with trio.move_on_after(until_s):
        await heartbeat.run(lost.append)
    return heartbeat, lost


async def test_lease_is_extended_every_period_well_before_expiry(autojump_clock):
    queue = RecordingQueue()
    start = trio.current_time()
    heartbeat, lost = await run_heartbeat(queue, LeasePolicy(60, 20), until_s=200)
    assert lost == []
    assert len(queue.calls) >= 9
    assert [round(t - start) for t, _ in queue.calls] == [
        20 * n for n in range(1, len(queue.calls) + 1)
    ]
    assert all(seconds == 60 for _, seconds in queue.calls)
    assert heartbeat.extensions == len(queue.calls) >= 9


async def test_transient_failures_are_retried_before_the_lease_runs_out(autojump_clock):
    queue = RecordingQueue(failures=[QueueError("throttled"), QueueError("503"), None])
    _, lost = await run_heartbeat(queue, LeasePolicy(60, 20), until_s=30)
    assert lost == []
    assert len(queue.calls) == 3


async def test_lease_reported_lost_when_sqs_says_so(autojump_clock):
    queue = RecordingQueue(failures=[LeaseLost("ReceiptHandleIsInvalid")])
    _, lost = await run_heartbeat(queue, LeasePolicy(60, 20), until_s=100)
    assert len(lost) == 1
    assert "ReceiptHandleIsInvalid" in lost[0]
    assert len(queue.calls) == 1


async def test_lease_reported_lost_when_no_extension_succeeds_in_time(autojump_clock):
    queue = RecordingQueue(failures=[QueueError("down")] * 1000)
    start = trio.current_time()
    _, lost = await run_heartbeat(queue, LeasePolicy(60, 20), until_s=1000)
    assert len(lost) == 1
    assert "before the lease expired" in lost[0]
    assert trio.current_time() - start < 60  # given up before the lease ran out


async def test_extensions_shrink_at_the_twelve_hour_ceiling(autojump_clock):
    queue = RecordingQueue()
    received = trio.current_time()
    _, lost = await run_heartbeat(queue, LeasePolicy(60, 20), until_s=SQS_MAX_VISIBILITY_S)
    assert len(lost) == 1
    assert "at most" in lost[0]
    last_time, last_seconds = queue.calls[-1]
    assert last_seconds < 60  # the last extension was cut to fit
    assert last_time + last_seconds <= received + SQS_MAX_VISIBILITY_S


class ScriptedBus:
    """Stands in for Redis: up or down on demand, records what was published."""

    def __init__(self):
        self.up = True
        self.published: list[str] = []

    async def publish(self, project, terminal, events, *, after=0):
        await trio.sleep(0.001)
        if not self.up:
            raise RedisError("connection refused")
        self.published.extend(events)
        return len(self.published)


async def test_output_waits_for_room_while_redis_is_healthy(autojump_clock):
    bus = ScriptedBus()
    publisher = OutputPublisher(bus, "p", "t", "c", buffer_bytes=200)
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        for n in range(50):
            await publisher.send_output(f"line {n}\n")
        await publisher.flush()
        nursery.cancel_scope.cancel()
    text = "".join(e for e in bus.published)
    assert all(f"line {n}\\n" in text for n in range(50))
    assert "output_dropped" not in text


async def test_output_beyond_the_bound_is_dropped_and_reported_while_redis_is_down(
    autojump_clock,
):
    bus = ScriptedBus()
    publisher = OutputPublisher(bus, "p", "t", "c", buffer_bytes=300)
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        bus.up = False
        publisher.send_event('{"type":"started","commandId":"c"}')
        await trio.sleep(1)  # the publisher notices the outage
        for n in range(100):
            await publisher.send_output(f"line {n:03}\n")  # never blocks while down
        await trio.sleep(5)
        bus.up = True
        await publisher.flush()
        nursery.cancel_scope.cancel()
    joined = "\n".join(bus.published)
    assert bus.published[0].startswith('{"type":"started"')
    assert "line 000" in joined  # what fitted in the buffer survived the outage
    assert "line 099" not in joined
    dropped = [e for e in bus.published if "output_dropped" in e]
    assert len(dropped) == 1
    assert "bytes of output were dropped" in dropped[0]


async def test_confirm_extends_now_and_reports_a_lost_lease(autojump_clock):
    queue = RecordingQueue(failures=[None, LeaseLost("ReceiptHandleIsInvalid")])
    heartbeat = VisibilityHeartbeat(queue, message_at(trio.current_time()), LeasePolicy(60, 20))
    lost = []
    assert await heartbeat.confirm(lost.append)
    assert not await heartbeat.confirm(lost.append)
    assert len(queue.calls) == 2
    assert lost == [heartbeat.lost]


class LeaseBus:
    """Stands in for Redis's project lock: renewals and takeovers as scripted."""

    def __init__(self, renewals, acquisitions):
        self.renewals = list(renewals)
        self.acquisitions = list(acquisitions)

    async def renew_project(self, project, token, ttl):
        return self.renewals.pop(0)

    async def acquire_project(self, project, token, ttl):
        return self.acquisitions.pop(0)


async def test_project_lease_that_lapsed_is_taken_again(autojump_clock):
    bus = LeaseBus(renewals=[True, False, True], acquisitions=[True])
    lost = []
    with trio.move_on_after(65):
        await ProjectLease(bus, "p", "c1:m1", "me", LeasePolicy(60, 20)).keep(lost.append)
    assert lost == []
    assert bus.renewals == []


async def test_project_lease_taken_by_another_worker_is_reported_lost(autojump_clock):
    bus = LeaseBus(renewals=[True, False], acquisitions=[False])
    lost = []
    with trio.move_on_after(1000):
        await ProjectLease(bus, "p", "c1:m1", "me", LeasePolicy(60, 20)).keep(lost.append)
    assert lost == ["project p was taken over by another worker"]
