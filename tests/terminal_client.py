"""A terminal's websocket client for tests that drive the real gateway from outside."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable

import trio
from trio_websocket import ConnectionClosed, HandshakeError, connect_websocket_url

from dev.system import LocalSystem
from tests.integration.harness import WAIT_LIMIT_S


def fresh_id(name: str) -> str:
    """Ids of their own per test, so that a shared Redis or bucket mixes nothing."""
    return f"{name}-{secrets.token_hex(3)}"


class TerminalClient:
    """One terminal's websocket client that, when the connection closes, reconnects with a
    fresh token and resumes after the last ``seq`` it received, as the page does."""

    def __init__(self, socket_url: Callable[[], str], origin: str):
        self._socket_url = socket_url
        self._origin = origin
        self.frames: list[dict] = []
        self.closes: list[int] = []
        self._ws = None
        self._nursery: trio.Nursery | None = None

    @contextlib.asynccontextmanager
    async def opened(self):
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._connect()
            try:
                yield self
            finally:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.aclose()
                nursery.cancel_scope.cancel()

    @property
    def last_seq(self) -> int:
        return max((f["seq"] for f in self.frames if "seq" in f), default=0)

    async def _connect(self) -> None:
        with trio.fail_after(WAIT_LIMIT_S):
            while True:
                try:
                    self._ws = await connect_websocket_url(
                        self._nursery, self._socket_url(),
                        extra_headers=[(b"Origin", self._origin.encode())])
                    break
                except (OSError, HandshakeError, ConnectionClosed):
                    await trio.sleep(0.1)  # the gateway is not back yet
        await self._ws.send_message(json.dumps({"type": "resume", "after": self.last_seq}))

    async def _receive(self) -> dict:
        while True:
            try:
                frame = json.loads(await self._ws.get_message())
            except ConnectionClosed as closed:
                self.closes.append(closed.reason.code)
                await self._connect()
                continue
            self.frames.append(frame)
            return frame

    async def run(self, command: str) -> str:
        await self._ws.send_message(json.dumps({"type": "command", "command": command}))
        while True:
            frame = await self._receive()
            if frame["type"] == "queued":
                return frame["commandId"]

    async def until(self, predicate, limit_s: float = 120) -> list[dict]:
        with trio.fail_after(limit_s):
            while not predicate(self.frames):
                await self._receive()
        return self.frames

    def events(self, command_id: str | None = None) -> list[dict]:
        return [f for f in self.frames if "seq" in f
                and command_id in (None, f.get("commandId"))]

    def output(self, command_id: str) -> str:
        return "".join(f["data"] for f in self.events(command_id) if f["type"] == "output")

    def exited(self, command_id: str) -> bool:
        return any(f["type"] == "exit" for f in self.events(command_id))

    def exits(self) -> list[dict]:
        return [f for f in self.frames if f["type"] == "exit"]


def system_terminal(system: LocalSystem, project: str, terminal: str = "t") -> TerminalClient:
    """A client of one terminal of a running LocalSystem, a fresh token at each connect."""
    return TerminalClient(lambda: system.terminal_socket(project, terminal), system.gateway_url)


def assert_no_gap_no_duplicate(frames: list[dict]) -> None:
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
