"""The trio-native Redis client against a real redis-server: replies, errors, the pool,
cancellation, restarts, silence, lost scripts and ACL users."""

from __future__ import annotations

import socket
import ssl

import pytest
import redis
import trio

from runtime.bus.connection import (
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    KEEPALIVE_PROBES,
    ConnectionLost,
    RedisClient,
    ReplyError,
    Script,
    connection_options,
    open_connection,
    tls_context,
)
from tests.servers import RedisServer, free_port, silent_redis


def connection_ids(redis_client) -> set[str]:
    return {c["id"] for c in redis_client.client_list()}


async def test_replies_come_back_typed_and_errors_are_raised(redis_server, redis_client):
    client = RedisClient(redis_server.url)
    assert await client.call("SET", "k", "v", "NX") == b"OK"
    assert await client.call("SET", "k", "v", "NX") is None
    assert await client.call("INCRBY", "n", 5) == 5
    assert await client.call("HSET", "h", "a", b"\x00\xff") == 1
    assert await client.call("HGETALL", "h") == [b"a", b"\x00\xff"]
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await client.call("INCR", "h")
    await client.aclose()


async def test_a_pipeline_returns_error_replies_in_place(redis_server, redis_client):
    client = RedisClient(redis_server.url)
    first, failed, last = await client.pipeline(("SET", "a", 1), ("INCR", "nope", "x"),
                                                ("GET", "a"))
    assert (first, last) == (b"OK", b"1")
    assert isinstance(failed, ReplyError)
    await client.aclose()


async def test_calls_in_turn_share_one_connection_and_concurrent_calls_do_not(
        redis_server, redis_client):
    before = connection_ids(redis_client)
    client = RedisClient(redis_server.url)
    for _ in range(5):
        await client.call("PING")
    assert len(connection_ids(redis_client) - before) == 1

    async with trio.open_nursery() as nursery:
        # BLPOP holds its connection until the push; the PING must not queue behind it.
        nursery.start_soon(client.call, "BLPOP", "list", 10)
        await trio.sleep(0.2)
        assert await client.call("PING") == b"PONG"
        await client.call("RPUSH", "list", "x")
    assert len(connection_ids(redis_client) - before) == 2
    await client.aclose()


async def test_a_call_cancelled_mid_reply_closes_its_connection(redis_server, redis_client):
    before = connection_ids(redis_client)
    client = RedisClient(redis_server.url)
    with trio.move_on_after(0.2):
        await client.call("BLPOP", "list", 10)
    # Had the connection gone back to the pool, this PING would read BLPOP's reply.
    await client.call("RPUSH", "list", "late")
    assert await client.call("PING") == b"PONG"
    assert await client.call("LLEN", "list") == 1
    assert len(connection_ids(redis_client) - before) == 1
    await client.aclose()


async def test_an_idle_connection_closed_by_a_restart_is_not_used(own_redis):
    client = RedisClient(own_redis.url)
    await client.call("SET", "k", "v")
    own_redis.stop()
    own_redis.start()
    # The pooled connection is dead; the call notices before sending and reconnects.
    assert await client.call("PING") == b"PONG"
    await client.aclose()


async def test_redis_down_is_connection_lost_and_up_again_works(own_redis):
    client = RedisClient(own_redis.url)
    await client.call("PING")
    own_redis.stop()
    with pytest.raises(ConnectionLost):
        await client.call("PING")
    own_redis.start()
    assert await client.call("PING") == b"PONG"
    await client.aclose()


async def test_an_unreachable_redis_is_connection_lost():
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await RedisClient(f"redis://127.0.0.1:{free_port()}/0").call("PING")


async def test_a_silent_server_times_out(autojump_clock):
    async with silent_redis() as url:
        client = RedisClient(url, reply_timeout_s=15)
        # The outer limit turns a missing timeout into a failure, not a hang (and costs
        # nothing under the autojump clock).
        with trio.fail_after(60), pytest.raises(ConnectionLost, match="no reply within 15 s"):
            await client.call("PING")


async def test_a_script_lost_by_redis_is_loaded_again(redis_server, redis_client):
    client = RedisClient(redis_server.url)
    script = Script("return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])")
    assert await client.run_script(script, ["n"], [10]) == 11
    redis_client.script_flush()
    assert await client.run_script(script, ["n"], [10]) == 12
    await client.aclose()


async def test_the_url_user_logs_in_and_a_wrong_password_is_refused():
    acl = "user app on >s3cret ~* &* +@all"
    server = RedisServer(config_lines=[acl, "user default off"], user="app:s3cret").start()
    try:
        client = RedisClient(server.url)
        assert await client.call("ACL", "WHOAMI") == b"app"
        with pytest.raises(ReplyError, match="WRONGPASS"):
            await open_connection(f"redis://app:wrong@127.0.0.1:{server.port}/0")
    finally:
        server.stop()


async def test_a_tcp_connection_finds_a_dead_path_within_a_minute(redis_server):
    connection = await open_connection(redis_server.url)
    raw = connection._socket
    assert raw.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVE_IDLE_S
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == KEEPALIVE_INTERVAL_S
    assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVE_PROBES
    assert KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_PROBES <= 60
    await connection.aclose()


@pytest.mark.parametrize(("query", "verify", "hostname"), [
    ("", ssl.CERT_REQUIRED, True),
    ("?ssl_cert_reqs=none", ssl.CERT_NONE, False),
    ("?ssl_cert_reqs=optional", ssl.CERT_OPTIONAL, True),
    ("?ssl_check_hostname=false", ssl.CERT_REQUIRED, False),
])
def test_the_tls_options_of_the_url_shape_the_tls_context(query, verify, hostname):
    context = tls_context(connection_options(f"rediss://cache:6380/0{query}"))
    assert (context.verify_mode, context.check_hostname) == (verify, hostname)


def test_a_tls_option_not_honoured_is_refused_not_dropped():
    with pytest.raises(ValueError, match="ssl_certfile"):
        RedisClient("rediss://cache:6380/0?ssl_certfile=/client.pem")


async def test_the_url_database_is_selected(redis_server, redis_client):
    client = RedisClient(redis_server.url.replace("/0", "/3"))
    await client.call("SET", "in-three", 1)
    assert redis_client.get("in-three") is None
    assert redis.Redis.from_url(redis_server.url.replace("/0", "/3")).get("in-three") == b"1"
    await client.aclose()
