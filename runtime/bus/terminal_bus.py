"""The worker's side of Redis, behind one adapter.

redis-py blocks, so every call runs in a worker thread under this adapter's limiter.
Events get their ``seq`` inside Redis (one Lua script increments the terminal's counter,
appends to its history stream and publishes), so every worker that ever serves a
terminal numbers its events in one growing sequence, and history and live delivery
never disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
import trio

from runtime.contract import keys

logger = logging.getLogger(__name__)

# Enough to repaint a terminal after a reconnect; output events hold up to 32 KiB each.
HISTORY_MAX_EVENTS = 2_000
HISTORY_TTL_S = 24 * 60 * 60
COMMAND_RECORD_TTL_S = 7 * 24 * 60 * 60

_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  -- The counter is gone but the history may not be: continue after its last entry, and
  -- never below the last seq the publisher was given (ARGV[4]), so that events of a
  -- command that outlived a Redis which lost its data are not taken for old ones.
  local floor = tonumber(ARGV[4])
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if last[1] then
    floor = math.max(floor, tonumber(string.match(last[1][1], '^(%d+)')))
  end
  redis.call('SET', KEYS[1], floor)
end
local seq
for i = 5, #ARGV do
  seq = redis.call('INCR', KEYS[1])
  local event = '{"seq":' .. seq .. ',' .. string.sub(ARGV[i], 2)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'event', event)
  redis.call('PUBLISH', ARGV[1], event)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return seq
"""

_RENEW_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Taking a lock we already hold counts as taking it: the reply to an earlier SET may
# have been lost on its way back.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_DELETE_IF_OWNER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class BusUnavailable(Exception):
    """Redis could not be reached or refused the call."""


async def call_redis(limiter: trio.CapacityLimiter, fn, *args, **kwargs):
    """A blocking redis-py call in a worker thread; its failures as ``BusUnavailable``."""
    try:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=limiter)
    except redis.RedisError as exc:
        raise BusUnavailable(f"redis: {exc}") from exc


@dataclass(frozen=True)
class CommandRecord:
    attempt: int
    exited: bool
    released: bool


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=15,
        socket_keepalive=True,
        health_check_interval=30,
    )


class TerminalBus:
    def __init__(self, client: redis.Redis, *, limiter: trio.CapacityLimiter):
        self._redis = client
        self._limiter = limiter
        self._publish = client.register_script(_PUBLISH)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW_IF_OWNER)
        self._delete = client.register_script(_DELETE_IF_OWNER)

    async def _call(self, fn, *args, **kwargs):
        return await call_redis(self._limiter, fn, *args, **kwargs)

    async def ping(self) -> None:
        await self._call(self._redis.ping)

    async def publish(self, project_id: str, terminal_id: str, events: list[str], *,
                      after: int = 0) -> int:
        """Publish encoded events (JSON objects without ``seq``); return the last seq.

        ``after``: the last seq this publisher got; numbering never restarts below it.
        """
        return await self._call(
            self._publish,
            keys=[keys.sequence_counter(project_id, terminal_id),
                  keys.history_stream(project_id, terminal_id)],
            args=[keys.output_channel(project_id, terminal_id), HISTORY_MAX_EVENTS,
                  HISTORY_TTL_S, after, *events],
        )

    async def begin_attempt(self, project_id: str, command_id: str) -> CommandRecord:
        """Count a new run of the command, unless it already finished."""
        key = keys.command_record(project_id, command_id)

        def begin() -> CommandRecord:
            record = self._redis.hgetall(key)
            exited = record.get(b"exited") == b"1"
            released = record.get(b"released") == b"1"
            if exited:
                return CommandRecord(int(record.get(b"attempts", 0)), True, released)
            pipe = self._redis.pipeline()
            pipe.hincrby(key, "attempts", 1)
            pipe.hdel(key, "released")
            pipe.expire(key, COMMAND_RECORD_TTL_S)
            attempt = pipe.execute()[0]
            return CommandRecord(attempt, False, released)

        return await self._call(begin)

    async def publish_exit(
        self, project_id: str, terminal_id: str, command_id: str, events: list[str], *,
        after: int = 0,
    ) -> int:
        """Publish the final events and mark the command finished, in one transaction."""
        record = keys.command_record(project_id, command_id)

        def finish() -> int:
            pipe = self._redis.pipeline(transaction=True)
            self._publish(
                keys=[keys.sequence_counter(project_id, terminal_id),
                      keys.history_stream(project_id, terminal_id)],
                args=[keys.output_channel(project_id, terminal_id), HISTORY_MAX_EVENTS,
                      HISTORY_TTL_S, after, *events],
                client=pipe,
            )
            pipe.hset(record, "exited", 1)
            pipe.expire(record, COMMAND_RECORD_TTL_S)
            return pipe.execute()[0]

        return await self._call(finish)

    async def mark_released(self, project_id: str, command_id: str) -> None:
        """Note that a worker handed the command back, so its next run is no surprise."""
        key = keys.command_record(project_id, command_id)
        await self._call(self._redis.hset, key, "released", 1)

    async def acquire_project(self, project_id: str, token: str, ttl_s: float) -> bool:
        return bool(await self._call(
            self._acquire, keys=[keys.project_lease(project_id)], args=[token, int(ttl_s * 1000)]
        ))

    async def renew_project(self, project_id: str, token: str, ttl_s: float) -> bool:
        return bool(await self._call(
            self._renew, keys=[keys.project_lease(project_id)], args=[token, int(ttl_s * 1000)]
        ))

    async def release_project(self, project_id: str, token: str) -> None:
        await self._call(self._delete, keys=[keys.project_lease(project_id)], args=[token])

    def input_subscription(self, project_id: str, terminal_id: str) -> InputSubscription:
        return InputSubscription(self._redis, keys.input_channel(project_id, terminal_id))


class InputSubscription:
    """One command's input channel.

    The blocking ``get_message`` waits at most ``POLL_S`` so that a cancelled listener
    gives its thread back quickly; the wait is never abandoned, so the connection is
    never used by two threads at once.
    """

    POLL_S = 0.05

    def __init__(self, client: redis.Redis, channel: str):
        self.channel = channel
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.opened = False
        # One thread per subscription: it spends its life waiting for input.
        self._limiter = trio.CapacityLimiter(1)

    async def _call(self, fn, *args):
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        except redis.RedisError as exc:
            raise BusUnavailable(f"redis: {exc}") from exc

    async def open(self) -> None:
        await self._call(self._pubsub.subscribe, self.channel)
        self.opened = True

    async def next_message(self) -> bytes:
        """The next raw message published on the channel."""
        while True:
            message = await self._call(self._pubsub.get_message, True, self.POLL_S)
            if message is not None and message.get("type") == "message":
                return message["data"]

    async def close(self) -> None:
        await trio.to_thread.run_sync(self._pubsub.close, limiter=self._limiter)
