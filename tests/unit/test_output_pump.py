"""The PTY pump under a flood: output is published while the command still writes."""

from __future__ import annotations

import json

import trio

from runtime.policy.batching import OutputBatcher
from runtime.worker.output import OutputPublisher
from runtime.worker.terminal_io import pump_output

READ = b"a" * 4096


class FloodingPty:
    """Stands in for a PTY whose command writes faster than it is read: every read
    finds output waiting, until the command ends after ``reads`` reads."""

    def __init__(self, reads: int):
        self.reads_left = reads

    def read_nowait(self) -> bytes | None:
        if not self.reads_left:
            return b""
        self.reads_left -= 1
        return READ

    async def wait_readable(self) -> None:
        raise AssertionError("a flooding PTY always has output waiting")


class RecordingBus:
    """Stands in for Redis: records each publish and how many reads were still to come."""

    def __init__(self, pty: FloodingPty):
        self.pty = pty
        self.published: list[str] = []
        self.reads_left_at_publish: list[int] = []

    async def publish(self, project, terminal, events, *, after=0):
        self.reads_left_at_publish.append(self.pty.reads_left)
        self.published.extend(events)
        await trio.lowlevel.checkpoint()
        return len(self.published)


async def test_a_flood_is_published_while_the_command_still_writes():
    pty = FloodingPty(reads=400)
    bus = RecordingBus(pty)
    publisher = OutputPublisher(bus, "p", "t", "c")
    done = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(publisher.run)
        await pump_output(pty, OutputBatcher(), publisher, done)
        await publisher.flush()
        nursery.cancel_scope.cancel()
    assert done.is_set()
    # The pump yields after each batch, so the publisher sends while output keeps
    # coming: without that, nothing would go out before the flood ended.
    assert bus.reads_left_at_publish[0] > 300
    text = "".join(json.loads(event)["data"] for event in bus.published)
    assert text == READ.decode() * 400
