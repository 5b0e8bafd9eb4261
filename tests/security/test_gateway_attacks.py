"""Gateway attacks: a hostile page or client gets a refusal or a clear error, never another
terminal's data, and cannot make the gateway hold much memory for it.

A real gateway with trio-websocket clients (and, where the protocol itself is the attack,
a raw socket), redis-server and moto server; each case fails if its defence is removed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time

import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from runtime.contract import events, keys
from tests.integration.harness import (
    GATEWAY_ORIGIN,
    gateway_env,
    running_gateway,
    running_worker,
)
from tests.integration.test_gateway import (
    ORIGIN,
    publish,
    receive_json,
    receive_until,
    token,
    url,
)


@pytest.fixture
async def gateway(aws, redis_server, redis_client):
    async with running_gateway(gateway_env(aws, redis_server.url)) as server:
        yield server


# --- who may connect ------------------------------------------------------------------------


def forged(alg_none=False, secret="another-secret-another-secret-another!!", **claims):
    payload = {"sub": "u", "project": "p1", "terminal": "t1", "exp": int(time.time()) + 60,
               "jti": "forged", **claims}
    if alg_none:
        return jwt.encode(payload, None, algorithm="none")
    return jwt.encode(payload, secret, algorithm="HS256")


def with_payload_of(signed: str, other: str) -> str:
    """``signed``'s header and signature around ``other``'s claims."""
    header, _, signature = signed.split(".")
    return ".".join((header, other.split(".")[1], signature))


def with_origin(origin: bytes) -> list:
    return [(b"Origin", origin)]


@pytest.mark.parametrize(("case", "make_url", "headers"), [
    ("missing token", lambda s: url(s, tok=False), ORIGIN),
    ("malformed token", lambda s: url(s, tok="not.a.jwt"), ORIGIN),
    ("expired token", lambda s: url(s, tok=token(ttl=-5)), ORIGIN),
    ("wrong signature", lambda s: url(s, tok=forged()), ORIGIN),
    ("alg none", lambda s: url(s, tok=forged(alg_none=True)), ORIGIN),
    ("altered signature", lambda s: url(s, tok=token()[:-3] + "AAA"), ORIGIN),
    # A token for p2 whose claims are swapped for p1's: the signature no longer matches.
    ("altered claims", lambda s: url(s, tok=with_payload_of(token(project="p2"), token())),
     ORIGIN),
    ("token that lives for days", lambda s: url(s, tok=token(ttl=3 * 24 * 3600)), ORIGIN),
    ("other project", lambda s: url(s, tok=token(project="p2")), ORIGIN),
    ("other terminal", lambda s: url(s, tok=token(terminal="t2")), ORIGIN),
    # Cross-site websocket hijacking: the browser sends the page's own origin.
    ("foreign origin", lambda s: url(s), with_origin(b"http://evil.test")),
    ("look-alike origin", lambda s: url(s), with_origin(GATEWAY_ORIGIN.encode() + b".evil.test")),
    ("origin on another port", lambda s: url(s), with_origin(GATEWAY_ORIGIN.encode() + b":8080")),
    ("sandboxed page", lambda s: url(s), with_origin(b"null")),
    ("no origin", lambda s: url(s), []),
])
async def test_handshake_refused_with_403_before_upgrade(gateway, case, make_url, headers):
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(make_url(gateway), extra_headers=headers):
            pass
    assert rejected.value.status_code == 403, case
    assert gateway.connection_count == 0


async def test_token_is_accepted_once(gateway):
    once = token()
    async with open_websocket_url(url(gateway, tok=once), extra_headers=ORIGIN):
        pass
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url(gateway, tok=once), extra_headers=ORIGIN):
            pass
    assert rejected.value.status_code == 403
    assert b"already used" in rejected.value.body


# --- what a connection can reach ------------------------------------------------------------


@pytest.mark.parametrize("path", ["p1/t1:input", "p1/*", "*/t1", "p1/..", "p1:t1/t1"])
async def test_a_path_naming_a_channel_or_pattern_is_refused(gateway, path):
    project, terminal = path.split("/")
    tok = token(project, terminal)
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(
            f"ws://127.0.0.1:{gateway.port}/terminals/{path}?token={tok}", extra_headers=ORIGIN
        ):
            pass
    assert rejected.value.status_code == 404


async def test_frames_naming_another_terminal_or_channel_reach_only_the_tokens(
    aws, redis_client, gateway
):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*")
    elsewhere = {"projectId": "p2", "terminalId": "t2", "commandId": "mine",
                 "channel": keys.input_channel("p2", "t2")}
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        await ws.send_message(json.dumps({"type": "command", "command": "id", **elsewhere}))
        queued = await receive_json(ws)
        await ws.send_message(json.dumps({"type": "stdin", "data": "x", **elsewhere}))
        await ws.send_message(json.dumps({"type": "signal", "name": "SIGINT", **elsewhere}))
        published = []
        with trio.fail_after(10):
            while len(published) < 3:  # the scaler's wake-up, stdin, signal
                message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.5)
                if message:
                    published.append(message["channel"].decode())
    body = json.loads(aws.sqs.receive_message(QueueUrl=aws.queue_url)["Messages"][0]["Body"])
    assert (body["projectId"], body["terminalId"]) == ("p1", "t1")
    assert body["commandId"] == queued["commandId"] != "mine"
    assert published == [keys.SCALER_WAKE_CHANNEL, keys.input_channel("p1", "t1"),
                         keys.input_channel("p1", "t1")]


async def test_nothing_of_another_terminal_reaches_a_connection(redis_server, gateway):
    async with open_websocket_url(url(gateway, "p1", "t1"), extra_headers=ORIGIN) as ws:
        await ws.send_message('{"type": "resume", "after": 0}')
        await publish(redis_server, "p1", "t2", [events.output("x", "secret of t2")])
        await publish(redis_server, "p2", "t1", [events.output("x", "secret of p2")])
        await publish(redis_server, "p1", "t1", [events.output("x", "mine")])
        frame = await receive_json(ws)
    assert frame["data"] == "mine"


async def test_a_resize_to_a_million_is_clamped_all_the_way_to_the_pty(
    aws, redis_server, gateway, tmp_path
):
    async with (
        running_worker(aws.worker_env(redis_server.url, tmp_path)),
        open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws,
    ):
        await ws.send_message(json.dumps({"type": "resize", "cols": 1e6, "rows": 1e6}))
        await ws.send_message(json.dumps({"type": "command", "command": "stty size"}))
        frames = await receive_until(ws, lambda f: f["type"] == "exit")
    assert "1000 1000" in "".join(f["data"] for f in frames if f["type"] == "output")
    assert frames[-1]["exitCode"] == 0


# --- malformed and abusive frames -----------------------------------------------------------


@pytest.mark.parametrize(("frame", "code"), [
    ("not json", "bad_frame"),
    ('{"type": "command", "command": ""}', "bad_frame"),
    ('{"type": "signal", "name": "SIGSEGV"}', "bad_frame"),
    ('{"type": "launch"}', "bad_frame"),
    ('{"type": "resume", "after": -1}', "bad_frame"),
    ('{"type": "resize", "cols": NaN, "rows": 1}', "bad_frame"),
    ("[" * 30_000 + "]" * 30_000, "bad_frame"),  # nested past the parser's recursion
    (b'{"type": "stdin", "data": "binary"}', "bad_frame"),
])
async def test_bad_frames_get_an_error_and_the_connection_stays(gateway, frame, code):
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        await ws.send_message(frame)
        error = await receive_json(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        await ws.send_message('{"type": "resume", "after": 0}')
        await ws.ping()


class RawClient:
    """A websocket client that can send what no well-behaved library would."""

    def __init__(self, stream: trio.SocketStream):
        self._stream = stream
        self._protocol = WSConnection(ConnectionType.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        client = cls(await trio.open_tcp_stream("127.0.0.1", port))
        await client._stream.send_all(client._protocol.send(Request(
            host="127.0.0.1", target=f"/terminals/p1/t1?token={token()}",
            extra_headers=[(b"origin", GATEWAY_ORIGIN.encode())],
        )))
        assert isinstance(await client.next_event(), AcceptConnection)
        return client

    async def send_frame(self, payload: bytes, *, opcode: int = 0x1, length: int | None = None):
        """One final frame; ``length`` may claim more than is sent. A zero mask key is
        as valid as any and leaves the payload as it is."""
        length = len(payload) if length is None else length
        if length < 126:
            head = bytes([0x80 | opcode, 0x80 | length])
        elif length < 2 ** 16:
            head = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
        await self._stream.send_all(head + b"\0\0\0\0" + payload)

    async def next_event(self):
        with trio.fail_after(10):
            while True:
                for event in self._protocol.events():
                    return event
                try:
                    data = await self._stream.receive_some(65536)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    raise ConnectionError("the gateway closed the connection")
                self._protocol.receive_data(data)

    async def close_code(self) -> int | None:
        """The code the gateway closed with; None if it dropped the connection without
        a close frame, as RFC 6455 allows for a failed connection."""
        try:
            while not isinstance(event := await self.next_event(), CloseConnection):
                assert isinstance(event, TextMessage), event
        except ConnectionError:
            return None
        return event.code


async def test_invalid_utf8_fails_the_connection_and_reaches_nothing(redis_client, gateway):
    pubsub = redis_client.pubsub()
    pubsub.psubscribe("*")
    confirmation = await trio.to_thread.run_sync(pubsub.get_message, False, 10)
    assert confirmation["type"] == "psubscribe"  # from here on, only what is published
    client = await RawClient.connect(gateway.port)
    await client.send_frame(b'{"type": "stdin", "data": "\xff\xfe"}')
    # RFC 6455 8.1: a text frame that is not UTF-8 fails the connection: it is closed,
    # with or without a close frame (wsproto sends none).
    assert await client.close_code() in (None, 1007)
    with trio.fail_after(10):
        while gateway.connection_count:
            await trio.sleep(0.05)
    published = []
    for _ in range(10):
        message = await trio.to_thread.run_sync(pubsub.get_message, False, 0.1)
        if message is not None:
            published.append(message)
    assert published == []


async def test_a_10_mib_frame_is_cut_off_with_1009_before_it_arrives(gateway):
    client = await RawClient.connect(gateway.port)
    announced = 10 * 1024 * 1024
    # Only a tenth of what the frame announces: the gateway must not wait for the rest
    # (nor keep it), so the close comes while nine tenths are still unsent.
    sent = base64.b64encode(b"\0" * (announced // 10 * 3 // 4))
    # The gateway stops reading once past its limit, so the rest may meet a reset.
    with trio.move_on_after(10), contextlib.suppress(trio.BrokenResourceError):
        await client.send_frame(sent, length=announced)
    assert await client.close_code() == 1009


async def test_ten_thousand_frames_a_second_are_rate_limited_and_dropped(
    redis_client, gateway
):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.input_channel("p1", "t1"))
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        for n in range(10_000):
            await ws.send_message(json.dumps({"type": "stdin", "data": f"{n}\n"}))
        frame = await receive_json(ws)
        delivered = []
        with trio.fail_after(30):
            # Once the bucket has filled again, a frame gets through: the connection
            # was slowed, not broken.
            while not delivered or delivered[-1] != "after\n":
                await ws.send_message(json.dumps({"type": "stdin", "data": "after\n"}))
                message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.5)
                while message:
                    delivered.append(json.loads(message["data"])["data"])
                    message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.1)
    assert frame["code"] == "rate_limited"
    flood = [data for data in delivered if data != "after\n"]
    assert len(flood) < 10_000 / 2
    assert flood == sorted(flood, key=int)  # what got through kept its order


async def test_the_connection_stays_usable_after_an_error(gateway):
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        await ws.send_message("{")
        assert (await receive_json(ws))["code"] == "bad_frame"
        await ws.send_message(json.dumps({"type": "command", "command": "true"}))
        assert (await receive_json(ws))["type"] == "queued"
    with pytest.raises(ConnectionClosed):
        await ws.get_message()
