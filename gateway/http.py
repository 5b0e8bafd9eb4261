"""The plain-HTTP side of the gateway's one port: request heads, static files, replies.

A connection's first bytes are read here and parsed with h11. A websocket upgrade is
handed on to trio-websocket with those bytes replayed (``ReplayStream``); anything else
is a GET for the page, its assets, or ``/healthz``.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11
import trio

MAX_HEAD_BYTES = 16 * 1024
SECURITY_HEADERS = [
    ("Content-Security-Policy",
     "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; "
     "frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-cache"),
]


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    raw: bytes

    @property
    def is_websocket(self) -> bool:
        return (
            "websocket" in self.headers.get("upgrade", "").lower()
            and "upgrade" in self.headers.get("connection", "").lower()
        )


async def read_head(stream: trio.abc.ReceiveStream) -> RequestHead:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise BadRequest("request head too large")
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise BadRequest("connection closed before the request head ended")
        data += chunk
    return parse_head(data)


def parse_head(data: bytes) -> RequestHead:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError as exc:
        raise BadRequest(str(exc)) from None
    if not isinstance(event, h11.Request):
        raise BadRequest("not an HTTP request")
    try:
        target = urlsplit(event.target.decode("latin-1"))
    except ValueError as exc:
        raise BadRequest(f"bad request target: {exc}") from None
    headers: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    return RequestHead(event.method.decode(), target.path, query, headers, data)


async def respond(stream: trio.abc.SendStream, status: int, body: bytes,
                  content_type: str = "text/plain; charset=utf-8", *,
                  method: str = "GET") -> None:
    """The whole answer; to a HEAD request, its headers (with the body's length) alone."""
    connection = h11.Connection(h11.SERVER)
    # h11 needs to have seen a request before it will write a response.
    connection.receive_data(f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    connection.next_event()
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Connection", "close"), *SECURITY_HEADERS]
    await stream.send_all(connection.send(h11.Response(status_code=status, headers=headers)))
    if method != "HEAD":
        await stream.send_all(connection.send(h11.Data(data=body)))
    await stream.send_all(connection.send(h11.EndOfMessage()))


class ReplayStream(trio.abc.Stream):
    """A stream whose first bytes were already read: they are given again, then the rest."""

    def __init__(self, stream: trio.SocketStream, replay: bytes):
        self._stream = stream
        self._replay = replay
        self.socket = stream.socket  # trio-websocket reads the peer address from it

    async def receive_some(self, max_bytes=None) -> bytes:
        if self._replay:
            data = self._replay if max_bytes is None else self._replay[:max_bytes]
            self._replay = self._replay[len(data):]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


# What lives under the web root for building and testing the page, not for browsers.
UNSERVED_DIRECTORIES = frozenset({"node_modules"})
UNSERVED_FILES = frozenset({"package.json", "package-lock.json"})
UNSERVED_SUFFIXES = (".test.js",)


def is_served(name: str) -> bool:
    return not (name.startswith(".") or name in UNSERVED_FILES
                or name.endswith(UNSERVED_SUFFIXES))


def web_files(root: Path) -> list[Path]:
    """The files under ``root`` a browser may fetch; build and test folders are not walked."""
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [name for name in subdirectories
                             if not name.startswith(".") and name not in UNSERVED_DIRECTORIES]
        found.extend(Path(directory, name) for name in files if is_served(name))
    return sorted(found)


class StaticFiles:
    """The page and its assets, read once at start; only these paths are ever served."""

    def __init__(self, root: Path):
        self._files: dict[str, tuple[bytes, str]] = {}
        for path in web_files(root):
            if path.is_file():
                relative = path.relative_to(root).as_posix()
                content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                if content_type.startswith("text/") or content_type.endswith("javascript"):
                    content_type += "; charset=utf-8"
                self._files[f"/static/{relative}"] = (path.read_bytes(), content_type)
        if "/static/index.html" in self._files:
            self._files["/"] = self._files["/static/index.html"]

    def get(self, path: str) -> tuple[bytes, str] | None:
        return self._files.get(path)
