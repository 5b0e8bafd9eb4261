"""Keeping a received message hidden, and a project to ourselves, while a command runs."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import trio

from runtime.aws.queue import CommandQueue, LeaseLost, QueueError, ReceivedMessage
from runtime.bus.connection import RedisError
from runtime.bus.terminal_bus import TerminalBus
from runtime.policy.backoff import backoff_delay
from runtime.policy.visibility import LeaseCeilingReached, LeasePolicy

logger = logging.getLogger(__name__)


class VisibilityHeartbeat:
    """Extends the message's visibility well before it expires.

    ``on_lost(reason)`` is called once, and the heartbeat returns, when the lease cannot
    be kept: SQS says the receipt handle no longer holds the message, no extension
    succeeded before the lease ran out, or the 12-hour ceiling is near. The queue's
    lease client has short timeouts, so one hung call cannot outlast the lease.
    """

    def __init__(self, queue: CommandQueue, message: ReceivedMessage, policy: LeasePolicy):
        self._queue = queue
        self._message = message
        self._policy = policy
        self._lock = trio.Lock()
        self.expires_at = message.received_at + policy.lease_s
        self.extensions = 0
        self.lost: str | None = None

    async def run(self, on_lost: Callable[[str], None]) -> None:
        while self.lost is None:
            await trio.sleep_until(
                min(trio.current_time() + self._policy.extend_every_s, self.expires_at)
            )
            await self._extend(on_lost, patient=True)

    async def confirm(self, on_lost: Callable[[str], None]) -> bool:
        """Extend right now: proof, before an upload or a delete, that the lease is ours."""
        await self._extend(on_lost, patient=False)
        return self.lost is None

    async def _extend(self, on_lost: Callable[[str], None], *, patient: bool) -> None:
        async with self._lock:
            failures = 0
            while self.lost is None:
                now = trio.current_time()
                try:
                    seconds = self._policy.next_visibility(now - self._message.received_at)
                    await self._queue.set_visibility(self._message, seconds)
                except (LeaseLost, LeaseCeilingReached) as exc:
                    self._lose(str(exc), on_lost)
                    return
                except QueueError as exc:
                    failures += 1
                    if trio.current_time() + 1 >= self.expires_at:
                        self._lose(f"no extension succeeded before the lease expired: {exc}",
                                   on_lost)
                        return
                    if not patient:
                        return  # the lease is still valid; the loop keeps trying
                    logger.warning("message %s: extension failed, retrying: %s",
                                   self._message, exc)
                    await trio.sleep(max(0.0, min(backoff_delay(failures),
                                                  self.expires_at - now - 1)))
                    continue
                self.extensions += 1
                self.expires_at = now + seconds
                return

    def _lose(self, reason: str, on_lost: Callable[[str], None]) -> None:
        self.lost = reason
        on_lost(reason)


@dataclass(frozen=True)
class ProjectHolder:
    runs_this_message: bool  # another delivery of the same message holds the project
    left_s: float  # until the holder's lease runs out, unless renewed


class ProjectLease:
    """A per-project lock in Redis, for queues that cannot order a project's commands.

    A FIFO queue does this itself (the message group is the project), so it needs none.
    If the lock lapses (Redis was away longer than the lease) it is taken again; if
    another worker took it meanwhile, ``on_lost`` is called, since two commands of one
    project must never run together.

    Its token starts with the delivery (command and message) it was taken for, so that
    a second delivery of that message can be told apart from anything else that waits
    for the project.
    """

    def __init__(self, bus: TerminalBus, project_id: str, delivery: str, holder: str,
                 policy: LeasePolicy):
        self._bus = bus
        self.project_id = project_id
        self._delivery = f"{delivery}:"
        self._token = f"{delivery}:{holder}:{secrets.token_hex(8)}"
        self._policy = policy

    async def acquire(self) -> bool:
        return await self._bus.acquire_project(self.project_id, self._token, self._policy.lease_s)

    async def holder(self) -> ProjectHolder:
        """Who holds the project now, as seen from this delivery."""
        holder = await self._bus.project_holder(self.project_id)
        if holder is None:
            return ProjectHolder(runs_this_message=False, left_s=0)
        token, left_s = holder
        return ProjectHolder(
            runs_this_message=token != self._token and token.startswith(self._delivery),
            left_s=left_s,
        )

    async def keep(self, on_lost: Callable[[str], None]) -> None:
        while True:
            await trio.sleep(self._policy.extend_every_s)
            try:
                if await self._bus.renew_project(
                    self.project_id, self._token, self._policy.lease_s
                ) or await self.acquire():
                    continue
            except RedisError as exc:
                logger.warning("project %s: lease renewal failed: %s", self.project_id, exc)
                continue
            on_lost(f"project {self.project_id} was taken over by another worker")
            return

    async def release(self) -> None:
        await self._bus.release_project(self.project_id, self._token)
