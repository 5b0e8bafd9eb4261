"""A trio-native Redis subscriber: one connection, many channels, no threads.

redis-py blocks, and its pub/sub object cannot be subscribed from one thread while
another waits on it; a process that follows thousands of terminals needs one connection
it can subscribe and unsubscribe at will while it reads. This speaks just RESP's
SUBSCRIBE/UNSUBSCRIBE over a trio stream, with hiredis (redis-py's own parser) doing
the parsing, and reconnects (re-subscribing everything) when Redis goes away.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable

import hiredis
import trio
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

from runtime.policy.backoff import backoff_delay

logger = logging.getLogger(__name__)

RECEIVE_BYTES = 256 * 1024


def encode_command(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Subscriber:
    """Delivers ``on_message(channel, data)`` for every subscribed channel.

    ``on_reconnect()`` is called after a reconnection, because messages published while
    the connection was down are lost to pub/sub: the owner fills the gap from history.
    """

    def __init__(self, url: str, on_message: Callable[[str, bytes], None],
                 on_reconnect: Callable[[], None] = lambda: None):
        self._options = parse_url(url)
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._channels: set[str] = set()
        self._stream: trio.abc.Stream | None = None
        self._send_lock = trio.Lock()
        self._reader: hiredis.Reader | None = None
        self._subscribed_at_connect: frozenset[str] = frozenset()

    @property
    def connected(self) -> bool:
        return self._stream is not None

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
        stream = self._stream
        if stream is None:
            return  # (re)connection subscribes everything in self._channels
        # On failure the reader notices the broken connection and reconnects.
        async with self._send_lock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(data)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        failures = 0
        first = True
        while True:
            try:
                stream = await self._connect()
            except (OSError, trio.BrokenResourceError, RedisRefused) as exc:
                failures += 1
                if failures == 1:
                    logger.warning("redis subscriber: cannot connect: %s", exc)
                await trio.sleep(backoff_delay(failures, base_s=0.1, cap_s=2))
                continue
            failures = 0
            self._stream = stream
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
                await self._read(stream)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                    hiredis.ProtocolError) as exc:
                logger.warning("redis subscriber: connection lost: %s", exc)
            finally:
                self._stream = None
                with trio.move_on_after(1, shield=True):
                    await stream.aclose()

    async def _connect(self) -> trio.abc.Stream:
        options = self._options
        connection_class = options.get("connection_class")
        with trio.fail_after(5):
            if connection_class is UnixDomainSocketConnection:
                stream = await trio.open_unix_socket(options["path"])
            else:
                stream = await trio.open_tcp_stream(options["host"], options.get("port", 6379))
                if connection_class is SSLConnection:
                    stream = trio.SSLStream(
                        stream, ssl.create_default_context(), server_hostname=options["host"]
                    )
            reader = hiredis.Reader()
            if options.get("password"):
                auth = ("AUTH", options["username"], options["password"]) if options.get(
                    "username") else ("AUTH", options["password"])
                await stream.send_all(encode_command(*auth))
                reply = await self._reply(stream, reader)
                if isinstance(reply, Exception):
                    raise RedisRefused(f"AUTH refused: {reply}")
            self._subscribed_at_connect = frozenset(self._channels)
            if self._subscribed_at_connect:
                await stream.send_all(
                    encode_command("SUBSCRIBE", *sorted(self._subscribed_at_connect))
                )
        self._reader = reader
        return stream

    @staticmethod
    async def _reply(stream: trio.abc.Stream, reader: hiredis.Reader):
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise trio.BrokenResourceError("connection closed")
            reader.feed(data)

    async def _read(self, stream: trio.abc.Stream) -> None:
        reader = self._reader
        while True:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                raise trio.BrokenResourceError("redis closed the connection")
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                    self._on_message(reply[1].decode(), reply[2])


class RedisRefused(Exception):
    """Redis answered the connection's set-up with an error."""
