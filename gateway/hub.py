"""One Redis subscription per gateway process, shared by every connection.

The hub subscribes to a terminal's output channel when the first connection of that
terminal arrives and unsubscribes when the last one leaves. Each incoming event is
parsed once and offered to every follower's own bounded buffer, so a slow follower
never slows the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from runtime.bus.pubsub import Subscriber
from runtime.contract import keys
from runtime.contract.events import seq_of

logger = logging.getLogger(__name__)


class Follower(Protocol):
    """What the hub needs of a connection: take an event, or learn of a lost stretch."""

    def offer(self, seq: int, text: str, size: int) -> None: ...

    def gap_possible(self) -> None: ...


class TerminalHub:
    def __init__(self, redis_url: str, subscriber_factory: Callable = Subscriber):
        self._followers: dict[str, set[Follower]] = {}
        self._subscriber = subscriber_factory(
            redis_url, on_message=self._dispatch, on_reconnect=self._reconnected
        )

    @property
    def connected(self) -> bool:
        return self._subscriber.connected

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self._subscriber.run(task_status=task_status)

    async def join(self, project_id: str, terminal_id: str, follower: Follower) -> None:
        channel = keys.output_channel(project_id, terminal_id)
        followers = self._followers.setdefault(channel, set())
        followers.add(follower)
        if len(followers) == 1:
            await self._subscriber.subscribe(channel)

    async def leave(self, project_id: str, terminal_id: str, follower: Follower) -> None:
        channel = keys.output_channel(project_id, terminal_id)
        followers = self._followers.get(channel)
        if followers is None:
            return
        followers.discard(follower)
        if not followers:
            del self._followers[channel]
            await self._subscriber.unsubscribe(channel)

    def _dispatch(self, channel: str, data: bytes) -> None:
        followers = self._followers.get(channel)
        if not followers:
            return
        text = data.decode("utf-8", "replace")
        try:
            seq = seq_of(text)
        except ValueError:
            logger.warning("hub: event without seq on %s ignored", channel)
            return
        for follower in list(followers):
            follower.offer(seq, text, len(data))

    def _reconnected(self) -> None:
        # Pub/sub drops what was published while disconnected: every follower checks
        # the history for what it missed.
        for followers in self._followers.values():
            for follower in followers:
                follower.gap_possible()
