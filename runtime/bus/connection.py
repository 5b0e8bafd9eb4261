"""A trio-native Redis client: RESP over a trio stream, parsed by hiredis.

redis-py blocks, so every call used to hop to a worker thread and back. Measured by
``bench/publish.py`` on the worker's hottest call (publishing output), the hop cost about
a third of the publishing CPU and 150 µs per small event, the size of a keystroke's
echo. So the worker and the gateway speak RESP themselves over trio streams, with
hiredis (redis-py's own C parser) parsing replies and redis-py parsing the URL.

A connection is used by one task at a time and goes back to the pool only after a whole
exchange: a call that fails or is cancelled half-way closes its connection, since what
Redis will still send on it is unknown.
"""

from __future__ import annotations

import hashlib
import select
import socket
import ssl
from collections.abc import Iterator, Sequence
from itertools import chain

import hiredis
import trio
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url

RECEIVE_BYTES = 256 * 1024
CONNECT_TIMEOUT_S = 5
# A reply slower than this means Redis or the path to it is stuck.
REPLY_TIMEOUT_S = 15
# A subscribed connection waits for messages with no deadline: TCP keepalive probes find
# a silently dead path within a minute (30 s idle, then 3 probes 10 s apart) instead of
# the system's two hours, so keystrokes are not lost to a connection that is gone.
KEEPALIVE_IDLE_S = 30
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_PROBES = 3
# The TLS options of a rediss:// URL this client honours; any other is refused.
TLS_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname"})

Argument = str | bytes | int


class RedisError(Exception):
    """Redis could not be reached, or refused a command."""


class ConnectionLost(RedisError):
    """No connection could be made, or it broke or went silent during an exchange."""


class ReplyError(RedisError):
    """Redis answered a command with an error (hiredis builds these)."""


def encode_command(*args: Argument) -> bytes:
    return b"".join(command_parts(args))


def command_parts(args: Sequence[Argument]) -> Iterator[bytes]:
    """A command's RESP encoding in pieces, each argument's bytes as they are: an output
    event of 32 KiB is copied once, when the pieces are joined, not once per step."""
    yield b"*%d\r\n" % len(args)
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        yield b"$%d\r\n" % len(data)
        yield data
        yield b"\r\n"


def check(reply):
    """The reply, or its error raised."""
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def published(reply) -> tuple[bytes, bytes] | None:
    """(channel, data) when a subscribed connection's reply is a published message."""
    if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
        return reply[1], reply[2]
    return None


class Connection:
    def __init__(self, stream: trio.abc.Stream, raw_socket: trio.socket.SocketType):
        self._stream = stream
        self._socket = raw_socket
        self._reader = hiredis.Reader(replyError=ReplyError)

    async def send(self, data: bytes) -> None:
        try:
            await self._stream.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLost(f"redis connection lost: {exc}") from exc

    async def read_reply(self):
        """The next reply; an error reply comes back as a ``ReplyError``, not raised."""
        try:
            while (reply := self._reader.gets()) is False:
                data = await self._stream.receive_some(RECEIVE_BYTES)
                if not data:
                    raise ConnectionLost("redis closed the connection")
                self._reader.feed(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                hiredis.ProtocolError) as exc:
            raise ConnectionLost(f"redis connection lost: {exc}") from exc
        return reply

    async def exchange(self, commands: Sequence[Sequence[Argument]]) -> list:
        """Send the commands in one write (pipelined) and read their replies."""
        await self.send(b"".join(chain.from_iterable(command_parts(c) for c in commands)))
        return [await self.read_reply() for _ in commands]

    def looks_closed(self) -> bool:
        """An idle connection with something to read was closed by Redis (a restart, an
        idle timeout): nothing else arrives unasked on a connection not subscribed."""
        poller = select.poll()  # not select(): the gateway's descriptors pass 1024
        poller.register(self._socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self._stream)


def connection_options(url: str) -> dict:
    """The URL's options (redis-py parses them); a TLS option not honoured here is an
    error rather than silently dropped."""
    options = parse_url(url)
    unknown = sorted(key for key in options if key.startswith("ssl_") and key not in TLS_OPTIONS)
    if unknown:
        raise ValueError(f"unsupported option(s) in the Redis URL: {', '.join(unknown)}")
    return options


def tls_context(options: dict) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    requirement = str(options.get("ssl_cert_reqs", "required")).lower()
    if requirement == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = bool(options.get("ssl_check_hostname", True))
        if requirement == "optional":
            context.verify_mode = ssl.CERT_OPTIONAL
    return context


async def open_connection(url: str, *, timeout_s: float = CONNECT_TIMEOUT_S,
                          select_db: bool = True) -> Connection:
    """Connect, authenticate and select the URL's database (a subscriber needs none)."""
    options = connection_options(url)
    connection_class = options.get("connection_class")
    try:
        with trio.fail_after(timeout_s):
            if connection_class is UnixDomainSocketConnection:
                stream = await trio.open_unix_socket(options["path"])
                raw_socket = stream.socket
            else:
                stream = await trio.open_tcp_stream(options["host"], options.get("port", 6379))
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
                stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)
                raw_socket = stream.socket
                if connection_class is SSLConnection:
                    stream = trio.SSLStream(
                        stream, tls_context(options), server_hostname=options["host"]
                    )
            connection = Connection(stream, raw_socket)
            setup = []
            if options.get("password"):
                setup.append(("AUTH", options["username"], options["password"])
                             if options.get("username") else ("AUTH", options["password"]))
            if select_db and options.get("db"):
                setup.append(("SELECT", options["db"]))
            try:
                for reply in await connection.exchange(setup):
                    check(reply)
            except BaseException:
                await connection.aclose()
                raise
    except (OSError, trio.TooSlowError) as exc:
        raise ConnectionLost(f"cannot connect to redis: {str(exc) or 'timed out'}") from exc
    return connection


class Script:
    """A Lua script, run by its SHA1 once Redis has it."""

    def __init__(self, body: str):
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()

    def load(self) -> tuple[str, str, str]:
        return ("SCRIPT", "LOAD", self.body)

    def run(self, keys: Sequence[str], args: Sequence[Argument]) -> tuple:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)


class RedisClient:
    """Calls on a pool of connections; concurrent calls each get their own."""

    def __init__(self, url: str, *, max_connections: int = 16,
                 reply_timeout_s: float = REPLY_TIMEOUT_S):
        connection_options(url)  # a malformed URL fails here, not at the first call
        self._url = url
        self._reply_timeout_s = reply_timeout_s
        self._slots = trio.Semaphore(max_connections)
        self._idle: list[Connection] = []
        self._closed = False

    async def call(self, *args: Argument):
        """One command's reply; an error reply is raised as ``ReplyError``."""
        return check((await self.pipeline(args))[0])

    async def pipeline(self, *commands: Sequence[Argument]) -> list:
        """The commands' replies, in one round trip; error replies are returned, so a
        MULTI ... EXEC can be read whole."""
        async with self._slots:
            connection = await self._take()
            try:
                with trio.fail_after(self._reply_timeout_s):
                    replies = await connection.exchange(commands)
            except BaseException as exc:
                await connection.aclose()
                if isinstance(exc, ConnectionLost | trio.TooSlowError):
                    # Redis went away for every connection alike.
                    await self._close_idle()
                if isinstance(exc, trio.TooSlowError):
                    raise ConnectionLost(
                        f"redis gave no reply within {self._reply_timeout_s} s") from exc
                raise
            if self._closed:
                await connection.aclose()
            else:
                self._idle.append(connection)
            return replies

    async def run_script(self, script: Script, keys: Sequence[str],
                         args: Sequence[Argument]):
        try:
            return await self.call(*script.run(keys, args))
        except ReplyError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis lost its scripts (a restart or SCRIPT FLUSH): load it and run it again.
        loaded, reply = await self.pipeline(script.load(), script.run(keys, args))
        check(loaded)
        return check(reply)

    async def _take(self) -> Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.looks_closed():
                return connection
            await connection.aclose()
        return await open_connection(self._url)

    async def _close_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._close_idle()
