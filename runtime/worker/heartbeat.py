"""Keeping a received message hidden, and a project to ourselves, while a command runs."""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from runtime.aws.queue import CommandQueue, LeaseLost, QueueError, ReceivedMessage
from runtime.bus.terminal_bus import BusUnavailable, TerminalBus
from runtime.policy.backoff import backoff_delay
from runtime.policy.visibility import LeaseCeilingReached, LeasePolicy

logger = logging.getLogger(__name__)


class VisibilityHeartbeat:
    """Extends the message's visibility well before it expires.

    ``on_lost(reason)`` is called once, and the heartbeat returns, when the lease cannot
    be kept: SQS says the receipt handle no longer holds the message, no extension
    succeeded before the lease ran out, or the 12-hour ceiling is near.
    """

    def __init__(self, queue: CommandQueue, message: ReceivedMessage, policy: LeasePolicy):
        self._queue = queue
        self._message = message
        self._policy = policy
        self.extensions = 0

    async def run(self, on_lost: Callable[[str], None]) -> None:
        expires_at = self._message.received_at + self._policy.lease_s
        while True:
            await trio.sleep_until(
                min(trio.current_time() + self._policy.extend_every_s, expires_at)
            )
            failures = 0
            while True:
                now = trio.current_time()
                try:
                    seconds = self._policy.next_visibility(now - self._message.received_at)
                    await self._queue.set_visibility(self._message, seconds)
                except (LeaseLost, LeaseCeilingReached) as exc:
                    on_lost(str(exc))
                    return
                except QueueError as exc:
                    failures += 1
                    if trio.current_time() + 1 >= expires_at:
                        on_lost(f"no extension succeeded before the lease expired: {exc}")
                        return
                    logger.warning("message %s: extension failed, retrying: %s",
                                   self._message, exc)
                    await trio.sleep(max(0.0, min(backoff_delay(failures), expires_at - now - 1)))
                    continue
                self.extensions += 1
                expires_at = now + seconds
                break


class ProjectLease:
    """A per-project lock in Redis, for queues that cannot order a project's commands.

    A FIFO queue does this itself (the message group is the project), so it needs none.
    """

    def __init__(self, bus: TerminalBus, project_id: str, token: str, policy: LeasePolicy):
        self._bus = bus
        self.project_id = project_id
        self._token = token
        self._policy = policy

    async def acquire(self) -> bool:
        return await self._bus.acquire_project(self.project_id, self._token, self._policy.lease_s)

    async def keep(self) -> None:
        while True:
            await trio.sleep(self._policy.extend_every_s)
            try:
                if not await self._bus.renew_project(
                    self.project_id, self._token, self._policy.lease_s
                ):
                    logger.warning("project %s: lease taken over while held", self.project_id)
            except BusUnavailable as exc:
                logger.warning("project %s: lease renewal failed: %s", self.project_id, exc)

    async def release(self) -> None:
        await self._bus.release_project(self.project_id, self._token)
