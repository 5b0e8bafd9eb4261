"""The Redis adapter against a real redis-server: seq, history, records, leases."""

from __future__ import annotations

import json

import pytest
import trio

from runtime.bus.connection import ConnectionLost, RedisError
from runtime.bus.terminal_bus import TerminalBus
from runtime.contract import events, keys
from tests.integration.harness import history
from tests.servers import silent_redis


@pytest.fixture
def bus(redis_server, redis_client):
    return TerminalBus(redis_server.url)


async def test_live_events_and_history_carry_the_same_growing_seq(bus, redis_client):
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.output_channel("p", "t"))
    await bus.publish("p", "t", [events.started("c1", worker_id="w", attempt=1)])
    await bus.publish("p", "t", [events.output("c1", "a"), events.output("c1", "ü")])
    live = []
    while len(live) < 3:
        message = await trio.to_thread.run_sync(pubsub.get_message, True, 1.0)
        if message:
            live.append(json.loads(message["data"]))
    assert [e["seq"] for e in live] == [1, 2, 3]
    assert history(redis_client, "p", "t") == live
    assert live[2] == {"seq": 3, "type": "output", "commandId": "c1", "data": "ü"}
    stream_ids = [entry_id for entry_id, _ in redis_client.xrange(keys.history_stream("p", "t"))]
    assert stream_ids == [b"1-0", b"2-0", b"3-0"]


async def test_seq_continues_after_the_counter_is_lost(bus, redis_client):
    await bus.publish("p", "t", [events.output("c1", "x")] * 5)
    redis_client.delete(keys.sequence_counter("p", "t"))
    last = await bus.publish("p", "t", [events.output("c1", "y")])
    assert last == 6
    assert [e["seq"] for e in history(redis_client, "p", "t")] == [1, 2, 3, 4, 5, 6]


async def test_attempts_are_counted_until_the_exit_is_published(bus):
    first = await bus.begin_attempt("p", "c1")
    second = await bus.begin_attempt("p", "c1")
    assert (first.attempt, second.attempt) == (1, 2)
    assert not second.exited
    await bus.publish_exit("p", "t", "c1", [events.exit_("c1", exit_code=0, signal=None)])
    after = await bus.begin_attempt("p", "c1")
    assert after.exited
    assert after.attempt == 2


async def test_released_flag_is_seen_once_by_the_next_attempt(bus):
    await bus.begin_attempt("p", "c1")
    await bus.mark_released("p", "c1")
    again = await bus.begin_attempt("p", "c1")
    assert again.released
    assert not (await bus.begin_attempt("p", "c1")).released


async def test_project_lease_belongs_to_its_holder(bus, redis_client):
    assert await bus.project_holder("p") is None
    assert await bus.acquire_project("p", "me", 30)
    assert not await bus.acquire_project("p", "other", 30)
    assert not await bus.renew_project("p", "other", 30)
    await bus.release_project("p", "other")
    token, left_s = await bus.project_holder("p")
    assert token == "me"
    assert 0 < left_s <= 30
    assert await bus.renew_project("p", "me", 30)
    await bus.release_project("p", "me")
    assert await bus.acquire_project("p", "other", 30)


async def test_the_exit_is_published_once_when_redis_has_lost_the_script(bus, redis_client):
    redis_client.script_flush()
    last = await bus.publish_exit("p", "t", "c1", [events.exit_("c1", exit_code=0, signal=None)])
    assert [e["type"] for e in history(redis_client, "p", "t")] == ["exit"]
    assert last == 1
    assert (await bus.begin_attempt("p", "c1")).exited


async def test_input_reaches_a_subscription_until_redis_restarts_and_then_again(own_redis):
    bus = TerminalBus(own_redis.url)
    subscription = bus.input_subscription("p", "t")
    await subscription.open()
    publisher = own_redis.client()
    publisher.publish(keys.input_channel("p", "t"), b'{"type":"stdin","data":"a"}')
    with trio.fail_after(10):
        assert await subscription.next_message() == b'{"type":"stdin","data":"a"}'
    own_redis.stop()
    with pytest.raises(RedisError):
        await subscription.next_message()
    assert not subscription.opened
    own_redis.start()
    await subscription.open()
    own_redis.client().publish(keys.input_channel("p", "t"), b"again")
    with trio.fail_after(10):
        assert await subscription.next_message() == b"again"
    await subscription.close()


async def test_a_subscription_redis_never_confirms_gives_up(autojump_clock):
    async with silent_redis() as url:
        subscription = TerminalBus(url).input_subscription("p", "t")
        with trio.fail_after(60), pytest.raises(ConnectionLost, match="did not confirm"):
            await subscription.open()


async def test_unreachable_redis_raises_bus_unavailable():
    from tests.servers import free_port

    bus = TerminalBus(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisError):
        await bus.ping()
