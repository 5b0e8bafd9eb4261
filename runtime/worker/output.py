"""One command's events on their way to Redis.

The PTY pump never waits on Redis while Redis is down: a command keeps running and its
output is held in a bounded buffer, published when Redis is back. While Redis is healthy
a full buffer slows the pump instead (the PTY then slows the command), so no output is
dropped merely because the command is fast. Past the bound during an outage, output is
dropped and an ``error`` event says how much.
"""

from __future__ import annotations

import logging
from collections import deque

import trio

from runtime.bus.connection import RedisError
from runtime.bus.terminal_bus import TerminalBus
from runtime.contract import events
from runtime.policy.backoff import backoff_delay

logger = logging.getLogger(__name__)

DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
MAX_EVENTS_PER_PUBLISH = 64
MAX_BYTES_PER_PUBLISH = 512 * 1024
# Output waiting behind a slow publish is merged into events up to this size, so a
# fast command under load makes fewer, fuller events (and a terminal's history, kept by
# event count, spans more of its output).
MERGE_UP_TO_CHARS = 32 * 1024


class OutputPublisher:
    def __init__(
        self, bus: TerminalBus, project_id: str, terminal_id: str, command_id: str, *,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ):
        self._bus = bus
        self._project_id = project_id
        self._terminal_id = terminal_id
        self.command_id = command_id
        self._buffer_bytes = buffer_bytes
        # Each entry is [kind, payload]: ["event", encoded JSON] or ["output", text].
        self._queue: deque[list[str]] = deque()
        self._in_flight = 0  # entries at the head being published right now
        self._queued_bytes = 0
        self._healthy = True
        self._dropped_bytes = 0
        self._changed = trio.Event()
        self.last_seq = 0  # of the last event published

    def __str__(self) -> str:
        return f"output of {self._project_id}/{self._terminal_id}/{self.command_id}"

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _enqueue(self, kind: str, payload: str) -> None:
        self._queued_bytes += len(payload)
        last = self._queue[-1] if len(self._queue) > self._in_flight else None
        if (kind == "output" and last is not None and last[0] == "output"
                and len(last[1]) + len(payload) <= MERGE_UP_TO_CHARS):
            last[1] += payload
        else:
            self._queue.append([kind, payload])
        self._notify()

    def send_event(self, event: str) -> None:
        """Queue a small control event (started, exit, error); these are never dropped."""
        self._enqueue("event", event)

    async def send_output(self, text: str) -> None:
        if not text:
            return
        while self._healthy and self._queued_bytes + len(text) > self._buffer_bytes:
            await self._changed.wait()
        if self._queued_bytes + len(text) > self._buffer_bytes:
            self._dropped_bytes += len(text.encode())
            return
        self._report_drops()
        self._enqueue("output", text)

    def count_dropped(self, text: str) -> None:
        """Output that could not be queued in time; reported before the next event."""
        self._dropped_bytes += len(text.encode())

    def _report_drops(self) -> None:
        if self._dropped_bytes:
            self._enqueue("event", events.error(
                self.command_id, events.OUTPUT_DROPPED,
                f"{self._dropped_bytes} bytes of output were dropped while the output "
                "channel was unreachable",
            ))
            self._dropped_bytes = 0

    async def flush(self) -> None:
        """Wait until every queued event has been published."""
        self._report_drops()
        while self._queue:
            await self._changed.wait()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        failures = 0
        while True:
            while not self._queue:
                await self._changed.wait()
            batch, size = [], 0
            for kind, payload in self._queue:
                if batch and (len(batch) >= MAX_EVENTS_PER_PUBLISH
                              or size + len(payload) > MAX_BYTES_PER_PUBLISH):
                    break
                batch.append(payload if kind == "event"
                             else events.output(self.command_id, payload))
                size += len(payload)
            self._in_flight = len(batch)
            try:
                self.last_seq = await self._bus.publish(
                    self._project_id, self._terminal_id, batch, after=self.last_seq
                )
            except RedisError as exc:
                self._in_flight = 0
                failures += 1
                if self._healthy:
                    logger.warning("%s: publishing paused: %s", self, exc)
                self._healthy = False
                self._notify()  # a pump waiting for room must now drop instead
                await trio.sleep(backoff_delay(failures, base_s=0.1, cap_s=2.0))
                continue
            if not self._healthy:
                logger.info("%s: publishing resumed after %d failures", self, failures)
            failures = 0
            self._healthy = True
            for _ in batch:
                self._queue.popleft()
            self._in_flight = 0
            self._queued_bytes -= size
            self._notify()
