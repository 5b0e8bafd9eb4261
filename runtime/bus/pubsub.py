"""A trio-native Redis subscriber: one connection, many channels, no threads.

redis-py blocks, and its pub/sub object cannot be subscribed from one thread while
another waits on it; a process that follows thousands of terminals needs one connection
it can subscribe and unsubscribe at will while it reads. This speaks just RESP's
SUBSCRIBE/UNSUBSCRIBE over a connection of ``runtime.bus.connection``, and reconnects
(re-subscribing everything) when Redis goes away.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import trio

from runtime.bus.connection import (
    Connection,
    ConnectionLost,
    RedisError,
    encode_command,
    open_connection,
    published,
)
from runtime.policy.backoff import backoff_delay

logger = logging.getLogger(__name__)


class Subscriber:
    """Delivers ``on_message(channel, data)`` for every subscribed channel.

    ``on_reconnect()`` is called after a reconnection, because messages published while
    the connection was down are lost to pub/sub: the owner fills the gap from history.
    """

    def __init__(self, url: str, on_message: Callable[[str, bytes], None],
                 on_reconnect: Callable[[], None] = lambda: None):
        self._url = url
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._channels: set[str] = set()
        self._connection: Connection | None = None
        self._send_lock = trio.Lock()
        self._subscribed_at_connect: frozenset[str] = frozenset()

    @property
    def connected(self) -> bool:
        return self._connection is not None

    async def subscribe(self, channel: str) -> None:
        """Follow a channel; returns once Redis has it (or at once, if disconnected)."""
        if channel in self._channels:
            return
        self._channels.add(channel)
        await self._send(encode_command("SUBSCRIBE", channel))

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)
        await self._send(encode_command("UNSUBSCRIBE", channel))

    async def _send(self, data: bytes) -> None:
        connection = self._connection
        if connection is None:
            return  # (re)connection subscribes everything in self._channels
        # On failure the reader notices the broken connection and reconnects.
        async with self._send_lock:
            with contextlib.suppress(ConnectionLost):
                await connection.send(data)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        failures = 0
        first = True
        while True:
            try:
                connection = await self._connect()
            except RedisError as exc:
                failures += 1
                if failures == 1:
                    logger.warning("redis subscriber: cannot connect: %s", exc)
                await trio.sleep(backoff_delay(failures, base_s=0.1, cap_s=2))
                continue
            failures = 0
            self._connection = connection
            # Channels followed while the connection was being made were not in its
            # SUBSCRIBE: send them now that _send reaches the new stream.
            late = self._channels - self._subscribed_at_connect
            if late:
                await self._send(encode_command("SUBSCRIBE", *sorted(late)))
            if first:
                task_status.started()
                first = False
            else:
                logger.info("redis subscriber: reconnected, %d channel(s)", len(self._channels))
                self._on_reconnect()
            try:
                await self._read(connection)
            except ConnectionLost as exc:
                logger.warning("redis subscriber: %s", exc)
            finally:
                self._connection = None
                await connection.aclose()

    async def _connect(self) -> Connection:
        connection = await open_connection(self._url, select_db=False)
        self._subscribed_at_connect = frozenset(self._channels)
        if self._subscribed_at_connect:
            try:
                await connection.send(
                    encode_command("SUBSCRIBE", *sorted(self._subscribed_at_connect)))
            except BaseException:
                await connection.aclose()
                raise
        return connection

    async def _read(self, connection: Connection) -> None:
        while True:
            message = published(await connection.read_reply())
            if message is not None:
                channel, data = message
                self._on_message(channel.decode(), data)
