"""The gateway: one port for the page, ``/healthz`` and terminal websockets.

``run`` reports its port through ``task_status.started`` once it is listening and its
Redis subscription is up. ``drain`` (SIGTERM) stops accepting, asks every client to
reconnect elsewhere, and gives connections a bounded time to close.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import time
from pathlib import Path

import trio
import trio_websocket

from runtime.aws.clients import make_client
from runtime.aws.queue import CommandQueue
from runtime.bus.connection import RedisError
from runtime.contract.messages import is_valid_id

from .connection import TerminalConnection
from .frames import MAX_FRAME_BYTES
from .http import BadRequest, ReplayStream, RequestHead, StaticFiles, read_head, respond
from .hub import TerminalHub
from .settings import GatewaySettings
from .store import GatewayStore
from .tokens import TokenRejected, mint_token, verify_token

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).parent / "web"
HEAD_TIMEOUT_S = 10
# From the request head to an accepted (or refused) websocket.
HANDSHAKE_TIMEOUT_S = 10
MAX_TOKEN_LIFETIME_S = 24 * 60 * 60
TERMINAL_PATH = re.compile(r"/terminals/([^/]+)/([^/]+)")


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class GatewayServer:
    def __init__(self, settings: GatewaySettings, *, hub: TerminalHub, store: GatewayStore,
                 queue: CommandQueue, static: StaticFiles):
        self.settings = settings
        self._hub = hub
        self._store = store
        self._queue = queue
        self._static = static
        self._connections: set[TerminalConnection] = set()
        self._accepting: trio.CancelScope | None = None
        self._connection_nursery: trio.Nursery | None = None
        self.port: int | None = None

    @property
    def hub_connected(self) -> bool:
        return self._hub.connected

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> GatewayServer:
        queue = CommandQueue(
            make_client("sqs", endpoint_url=settings.aws_endpoint_url), settings.sqs_queue_url,
            limiter=trio.CapacityLimiter(16),
        )
        return cls(settings, hub=TerminalHub(settings.redis_url),
                   store=GatewayStore(settings.redis_url), queue=queue,
                   static=StaticFiles(WEB_ROOT))

    async def preflight(self) -> None:
        """Fail at start if Redis or the queue cannot be reached."""
        await self._store.ping()
        await self._queue.check()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._serve(task_status)
        finally:
            with trio.CancelScope(shield=True):  # closing sockets does not wait
                await self._store.aclose()

    async def _serve(self, task_status) -> None:
        async with trio.open_nursery() as root:
            await root.start(self._hub.run)
            listeners = await trio.open_tcp_listeners(self.settings.port,
                                                      host=self.settings.host)
            self.port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as connections:
                self._connection_nursery = connections
                async with trio.open_nursery() as accepting:
                    self._accepting = accepting.cancel_scope
                    await accepting.start(functools.partial(
                        trio.serve_listeners, self._handle, listeners,
                        handler_nursery=connections,
                    ))
                    logger.info("gateway listening on %s:%d", self.settings.host, self.port)
                    task_status.started(self.port)
                for listener in listeners:
                    await listener.aclose()
            root.cancel_scope.cancel()

    def drain(self) -> None:
        """Stop accepting; ask clients to reconnect; bound how long they may take."""
        if self._accepting is None or self._accepting.cancel_called:
            return
        logger.info("gateway draining %d connection(s)", len(self._connections))
        self._accepting.cancel()
        for connection in list(self._connections):
            connection.close_for_restart()
        if self._connection_nursery is not None:
            self._connection_nursery.cancel_scope.deadline = (
                trio.current_time() + self.settings.drain_grace_s
            )

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(HEAD_TIMEOUT_S):
                head = await read_head(stream)
        except (BadRequest, trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            with trio.move_on_after(1):
                with contextlib.suppress(trio.BrokenResourceError, OSError):
                    await respond(stream, 400, f"bad request: {exc}\n".encode())
            await stream.aclose()
            return
        try:
            if head.is_websocket:
                await self._websocket(stream, head)
            else:
                await self._http(stream, head)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                trio_websocket.ConnectionClosed):
            pass  # the client went away
        except Exception:
            # Every connection runs in one shared nursery: a fault in one must end that
            # connection only, never the gateway and everyone else's terminals.
            logger.exception("connection for %s failed", head.path)
        finally:
            with trio.move_on_after(1, shield=True):
                await stream.aclose()

    async def _http(self, stream: trio.SocketStream, head: RequestHead) -> None:
        if head.method not in ("GET", "HEAD"):
            await respond(stream, 405, b"method not allowed\n")
            return
        if head.path == "/healthz":
            healthy = self._hub.connected
            body = json.dumps({"ok": healthy, "connections": len(self._connections)}).encode()
            await respond(stream, 200 if healthy else 503, body, "application/json",
                          method=head.method)
            return
        if head.path == "/dev/token" and self.settings.dev_tokens:
            await self._dev_token(stream, head)
            return
        found = self._static.get(head.path)
        if found is None:
            await respond(stream, 404, b"not found\n", method=head.method)
            return
        body, content_type = found
        await respond(stream, 200, body, content_type, method=head.method)

    async def _dev_token(self, stream: trio.SocketStream, head: RequestHead) -> None:
        """Local development only (GATEWAY_DEV_TOKENS): the page's stand-in for a backend."""
        project, terminal = head.query.get("project", ""), head.query.get("terminal", "")
        if not (is_valid_id(project) and is_valid_id(terminal)):
            await respond(stream, 400, b"project and terminal are required\n",
                          method=head.method)
            return
        token = mint_token(self.settings.secret, project_id=project, terminal_id=terminal,
                           ttl_s=self.settings.token_ttl_s, now=time.time())
        await respond(stream, 200, json.dumps({"token": token}).encode(), "application/json",
                      method=head.method)

    async def _authorize(self, head: RequestHead):
        match = TERMINAL_PATH.fullmatch(head.path)
        if match is None or not all(is_valid_id(part) for part in match.groups()):
            raise Refused(404, "no such endpoint; use /terminals/<projectId>/<terminalId>")
        origin = head.headers.get("origin")
        if origin not in self.settings.allowed_origins:
            raise Refused(403, f"origin {origin!r} is not allowed")
        project_id, terminal_id = match.groups()
        now = time.time()
        try:
            grant = verify_token(self.settings.secret, head.query.get("token"),
                                 project_id=project_id, terminal_id=terminal_id, now=now)
        except TokenRejected as exc:
            raise Refused(403, exc.reason) from None
        if grant.expires_at - now > MAX_TOKEN_LIFETIME_S:
            raise Refused(403, "token lives too long; terminal tokens must be short-lived")
        try:
            first_use = await self._store.claim_token(grant.token_id, grant.expires_at, now)
        except RedisError:
            raise Refused(503, "terminal service unavailable") from None
        if not first_use:
            raise Refused(403, "token already used")
        return grant

    async def _websocket(self, stream: trio.SocketStream, head: RequestHead) -> None:
        async with trio.open_nursery() as nursery:
            # A malformed upgrade makes trio-websocket answer 400 without ever returning
            # a request: the timeout ends such handshakes.
            with trio.move_on_after(HANDSHAKE_TIMEOUT_S) as handshake:
                request = await trio_websocket.wrap_server_stream(
                    nursery, ReplayStream(stream, head.raw), max_message_size=MAX_FRAME_BYTES
                )
                try:
                    grant = await self._authorize(head)
                except Refused as exc:
                    logger.info("refused websocket for %s: %s", head.path, exc.reason)
                    await request.reject(exc.status, body=f"{exc.reason}\n".encode())
                    nursery.cancel_scope.cancel()
                    return
                ws = await request.accept()
            if handshake.cancelled_caught:
                nursery.cancel_scope.cancel()
                return
            connection = TerminalConnection(
                ws, grant, hub=self._hub, store=self._store, queue=self._queue,
                settings=self.settings,
            )
            self._connections.add(connection)
            if self._accepting is not None and self._accepting.cancel_called:
                connection.close_for_restart()
            try:
                logger.info("%s: open", connection)
                await connection.serve()
            finally:
                self._connections.discard(connection)
                logger.info("%s: closed", connection)
            nursery.cancel_scope.cancel()
