"""The gateway with real trio-websocket clients, redis-server, moto and a real worker."""

from __future__ import annotations

import json
import time

import jwt
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from gateway.tokens import mint_token
from runtime.bus.terminal_bus import TerminalBus
from runtime.contract import events, keys
from tests.integration.harness import (
    GATEWAY_ORIGIN,
    GATEWAY_SECRET,
    connections_besides,
    gateway_env,
    running_gateway,
    running_worker,
    wait_until,
)

ORIGIN = [(b"Origin", GATEWAY_ORIGIN.encode())]


def token(project="p1", terminal="t1", ttl=300, **claims):
    minted = mint_token(GATEWAY_SECRET, project_id=project, terminal_id=terminal, ttl_s=ttl,
                        now=time.time())
    if claims:
        payload = jwt.decode(minted, GATEWAY_SECRET, algorithms=["HS256"])
        payload.update(claims)
        minted = jwt.encode(payload, GATEWAY_SECRET, algorithm="HS256")
    return minted


def url(server, project="p1", terminal="t1", tok=None):
    query = "" if tok is False else f"?token={tok or token(project, terminal)}"
    return f"ws://127.0.0.1:{server.port}/terminals/{project}/{terminal}{query}"


async def receive_json(ws, limit_s=30):
    with trio.fail_after(limit_s):
        return json.loads(await ws.get_message())


async def receive_until(ws, predicate, limit_s=60):
    seen = []
    with trio.fail_after(limit_s):
        while True:
            frame = json.loads(await ws.get_message())
            seen.append(frame)
            if predicate(frame):
                return seen


async def read_until_closed(ws, limit_s=30):
    frames = []
    with trio.fail_after(limit_s):
        try:
            while True:
                frames.append(json.loads(await ws.get_message()))
        except ConnectionClosed as closed:
            return frames, closed.reason.code


async def http_request(port, path, method="GET"):
    """Status, headers (lower-cased names) and body of one request."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def http_get(port, path):
    status, _, body = await http_request(port, path)
    return status, body


@pytest.fixture
async def gateway(aws, redis_server, redis_client):
    async with running_gateway(gateway_env(aws, redis_server.url)) as server:
        yield server


async def test_a_head_request_gets_the_headers_without_the_body(gateway):
    _, _, page = await http_request(gateway.port, "/")
    status, headers, body = await http_request(gateway.port, "/", method="HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["content-length"]) == len(page) > 0
    status, headers, body = await http_request(gateway.port, "/nowhere", method="HEAD")
    assert (status, body) == (404, b"")


async def test_healthz_page_and_unknown_paths(gateway):
    status, body = await http_get(gateway.port, "/healthz")
    assert status == 200
    assert json.loads(body)["ok"] is True
    status, body = await http_get(gateway.port, "/")
    assert status == 200
    assert b"<html" in body.lower() or b"<!doctype html" in body.lower()
    assert (await http_get(gateway.port, "/../../etc/passwd"))[0] == 404
    assert (await http_get(gateway.port, "/dev/token?project=p&terminal=t"))[0] == 404


async def test_command_round_trip_with_a_real_worker(aws, redis_server, gateway, tmp_path):
    aws.put_file("p1", "hello.txt", b"hi there")
    async with (
        running_worker(aws.worker_env(redis_server.url, tmp_path)),
        open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws,
    ):
        await ws.send_message(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        await ws.send_message(json.dumps({"type": "command",
                                          "command": "cat hello.txt; stty size"}))
        queued = await receive_json(ws)
        assert queued["type"] == "queued"
        frames = await receive_until(ws, lambda f: f["type"] == "exit")
    assert frames[0]["type"] == "started"
    assert {f["commandId"] for f in frames} == {queued["commandId"]}
    text = "".join(f["data"] for f in frames if f["type"] == "output")
    assert "hi there" in text
    assert "30 100" in text
    assert frames[-1]["exitCode"] == 0
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_input_frames_reach_the_terminals_input_channel(redis_client, gateway):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.input_channel("p1", "t1"))
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        await ws.send_message(json.dumps({"type": "stdin", "data": "abc\r"}))
        await ws.send_message(json.dumps({"type": "resize", "cols": 10**6, "rows": 0}))
        await ws.send_message(json.dumps({"type": "signal", "name": "SIGINT"}))
        received = []
        with trio.fail_after(10):
            while len(received) < 3:
                message = await trio.to_thread.run_sync(pubsub.get_message, True, 0.5)
                if message:
                    received.append(json.loads(message["data"]))
    assert received == [
        {"type": "stdin", "data": "abc\r"},
        {"type": "resize", "cols": 1000, "rows": 1},  # clamped
        {"type": "signal", "name": "SIGINT"},
    ]


async def publish(redis_server, project, terminal, payloads):
    bus = TerminalBus(redis_server.url)
    return await bus.publish(project, terminal, payloads)


async def test_one_subscription_per_terminal_however_many_clients(
    redis_server, redis_client, gateway
):
    channel = keys.output_channel("p1", "t1")
    async with (
        open_websocket_url(url(gateway), extra_headers=ORIGIN) as first,
        open_websocket_url(url(gateway), extra_headers=ORIGIN) as second,
    ):
        await publish(redis_server, "p1", "t1", [events.output("c", "both")])
        assert (await receive_json(first))["data"] == "both"
        assert (await receive_json(second))["data"] == "both"
        assert redis_client.pubsub_numsub(channel) == [(channel.encode(), 1)]
    with trio.fail_after(10):
        while redis_client.pubsub_numsub(channel) != [(channel.encode(), 0)]:
            await trio.sleep(0.05)


async def test_resume_after_a_dropped_connection_has_no_gap_and_no_duplicate(
    aws, redis_server, redis_client, tmp_path
):
    # ~10 MB of numbered lines, streamed while the client drops and comes back. The worker,
    # the gateway and this client share one thread here, so the flood can outrun the
    # client: a buffer that holds it all keeps this about resuming, not about slow clients.
    command = "seq -w 1 1000000 | sed 's/$/ abc/'"
    env = gateway_env(aws, redis_server.url, GATEWAY_CLIENT_BUFFER_BYTES=64 * 1024 * 1024)
    async with (running_gateway(env) as gateway,
                running_worker(aws.worker_env(redis_server.url, tmp_path))):
        async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
            await ws.send_message(json.dumps({"type": "command", "command": command}))
            frames = []
            with trio.fail_after(60):
                while sum(len(f.get("data", "")) for f in frames) < 2_000_000:
                    frames.append(json.loads(await ws.get_message()))
        last_seq = max(f["seq"] for f in frames if "seq" in f)
        async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
            await ws.send_message(json.dumps({"type": "resume", "after": last_seq}))
            frames += await receive_until(ws, lambda f: f["type"] == "exit", limit_s=120)
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    text = "".join(f["data"] for f in frames if f["type"] == "output")
    lines = text.replace("\r\n", "\n").splitlines()
    assert lines == [f"{n:07d} abc" for n in range(1, 1_000_001)]


async def test_slow_client_is_told_and_cut_off_while_a_fast_one_keeps_receiving(
    aws, redis_server, redis_client, tmp_path
):
    env = gateway_env(aws, redis_server.url, GATEWAY_CLIENT_BUFFER_BYTES=256 * 1024)
    # Far more than the kernel buffers between the two can hold for the slow reader.
    chunk, total = "y" * 30_000, 1200
    async with (
        running_gateway(env) as server,
        open_websocket_url(url(server), extra_headers=ORIGIN) as fast,
        open_websocket_url(url(server), extra_headers=ORIGIN) as slow,
    ):
        for ws in (fast, slow):
            await ws.send_message('{"type": "resume", "after": 0}')
        slow_frames: list[dict] = []
        slow_close: list[int] = []

        async def read_slowly():
            try:
                while True:
                    slow_frames.append(json.loads(await slow.get_message()))
                    await trio.sleep(0.05)
            except ConnectionClosed as closed:
                slow_close.append(closed.reason.code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slowly)

            received = 0

            async def produce():
                # Paced by the fast reader, never more than a few events ahead of it: on
                # a loaded machine it must not be taken for a slow one itself.
                for sent in range(total):
                    while sent - received > 4:
                        await trio.sleep(0.001)
                    await publish(redis_server, "p1", "t1", [events.output("c", chunk)])
            nursery.start_soon(produce)
            with trio.fail_after(60):
                while received < total:
                    frame = json.loads(await fast.get_message())
                    received += frame.get("data") == chunk
            with trio.fail_after(60):
                while not slow_close:
                    await trio.sleep(0.1)
    assert received == total
    assert slow_close == [4008]
    assert slow_frames[-1]["code"] == "slow_client"
    assert sum(len(f.get("data", "")) for f in slow_frames) < total * len(chunk)


async def test_client_that_reads_nothing_is_disconnected(aws, redis_server, tmp_path):
    env = gateway_env(aws, redis_server.url, GATEWAY_CLIENT_BUFFER_BYTES=256 * 1024)
    async with (
        running_gateway(env) as server,
        open_websocket_url(url(server), extra_headers=ORIGIN) as stuck,
    ):
        await stuck.send_message('{"type": "resume", "after": 0}')
        for _ in range(1200):
            await publish(redis_server, "p1", "t1", [events.output("c", "z" * 30_000)])
        with trio.fail_after(60):
            while server.connection_count:
                await trio.sleep(0.1)
        frames, _ = await read_until_closed(stuck)
    assert sum(len(f.get("data", "")) for f in frames) < 1200 * 30_000


async def test_drain_asks_clients_to_reconnect(gateway):
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        gateway.drain()
        with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
            await ws.get_message()
    assert closed.value.reason.code == 1012
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", gateway.port)


async def test_redis_restart_that_loses_the_history_does_not_freeze_the_terminal(
    aws, own_redis
):
    async with (
        running_gateway(gateway_env(aws, own_redis.url)) as server,
        open_websocket_url(url(server), extra_headers=ORIGIN) as ws,
    ):
        await ws.send_message('{"type": "resume", "after": 0}')
        await publish(own_redis, "p1", "t1", [events.output("c", f"old {n}")
                                                 for n in range(5)])
        old = [await receive_json(ws) for _ in range(5)]
        assert [f["seq"] for f in old] == [1, 2, 3, 4, 5]
        # A restart without persistence: the seq counter starts again at 1.
        own_redis.stop()
        own_redis.start()
        with trio.fail_after(30):
            while not server.hub_connected:
                await trio.sleep(0.1)
        await publish(own_redis, "p1", "t1", [events.output("c", "new")])
        frames = await receive_until(ws, lambda f: f.get("data") == "new")
    assert frames[0]["code"] == "history_reset"
    assert frames[-1]["seq"] == 1


async def test_a_stopped_gateway_leaves_no_redis_connection_open(aws, own_redis):
    client = own_redis.client()
    keystrokes = client.pubsub(ignore_subscribe_messages=True)
    keystrokes.subscribe(keys.input_channel("p1", "t1"))
    async with (
        running_gateway(gateway_env(aws, own_redis.url)) as server,
        open_websocket_url(url(server), extra_headers=ORIGIN) as ws,
    ):
        await ws.send_message('{"type": "stdin", "data": "x"}')
        with trio.fail_after(30):  # the gateway's calls are done: its connection is idle
            while keystrokes.get_message() is None:
                await trio.sleep(0.05)
    keystrokes.close()
    # Redis notices a closed connection at its next turn, not at once.
    await wait_until(lambda: connections_besides(client) == [], limit_s=10)

async def test_a_client_vanishing_mid_handshake_leaves_the_gateway_serving(gateway):
    for _ in range(5):
        stream = await trio.open_tcp_stream("127.0.0.1", gateway.port)
        await stream.send_all(
            f"GET /terminals/p1/t1?token={token()} HTTP/1.1\r\nHost: x\r\n"
            f"Origin: {GATEWAY_ORIGIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .encode())
        await stream.aclose()
    async with open_websocket_url(url(gateway), extra_headers=ORIGIN) as ws:
        await ws.send_message('{"type": "bogus"}')
        assert (await receive_json(ws))["code"] == "bad_frame"
    status, _ = await http_get(gateway.port, "/healthz")
    assert status == 200


async def test_a_malformed_request_target_gets_400_and_the_gateway_keeps_serving(gateway):
    status, _ = await http_get(gateway.port, "http://[::1/")
    assert status == 400
    assert (await http_get(gateway.port, "/healthz"))[0] == 200
