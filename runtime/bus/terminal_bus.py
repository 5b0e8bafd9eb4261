"""The worker's side of Redis, behind one adapter, on the trio-native client.

Events get their ``seq`` inside Redis (one Lua script increments the terminal's counter,
appends to its history stream and publishes), so every worker that ever serves a
terminal numbers its events in one growing sequence, and history and live delivery
never disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from runtime.bus.connection import (
    REPLY_TIMEOUT_S,
    Connection,
    ConnectionLost,
    RedisClient,
    RedisError,
    Script,
    check,
    encode_command,
    open_connection,
    published,
)
from runtime.contract import keys

logger = logging.getLogger(__name__)

# Enough to repaint a terminal after a reconnect; output events hold up to 32 KiB each.
HISTORY_MAX_EVENTS = 2_000
HISTORY_TTL_S = 24 * 60 * 60
COMMAND_RECORD_TTL_S = 7 * 24 * 60 * 60

# Numbers the events, appends them to the terminal's history and publishes them: KEYS are
# the counter and the history stream; ARGV the channel, history length, TTL, the floor
# (see below) and the events.
PUBLISH_EVENTS = Script("""
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
""")



def publish_events_arguments(project_id: str, terminal_id: str, events: list[str],
                             after: int) -> tuple[list[str], list]:
    """PUBLISH_EVENTS's keys and arguments for one terminal's events."""
    return (
        [keys.sequence_counter(project_id, terminal_id),
         keys.history_stream(project_id, terminal_id)],
        [keys.output_channel(project_id, terminal_id), HISTORY_MAX_EVENTS, HISTORY_TTL_S,
         after, *events],
    )


_RENEW_IF_OWNER = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

# Taking a lock we already hold counts as taking it: the reply to an earlier SET may
# have been lost on its way back.
_ACQUIRE = Script("""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

_DELETE_IF_OWNER = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
""")


@dataclass(frozen=True)
class CommandRecord:
    attempt: int
    exited: bool
    released: bool


class TerminalBus:
    def __init__(self, url: str):
        self._url = url
        self._redis = RedisClient(url)

    async def ping(self) -> None:
        await self._redis.call("PING")

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def publish(self, project_id: str, terminal_id: str, events: list[str], *,
                      after: int = 0) -> int:
        """Publish encoded events (JSON objects without ``seq``); return the last seq.

        ``after``: the last seq this publisher got; numbering never restarts below it.
        """
        return await self._redis.run_script(
            PUBLISH_EVENTS, *publish_events_arguments(project_id, terminal_id, events, after)
        )

    async def begin_attempt(self, project_id: str, command_id: str) -> CommandRecord:
        """Count a new run of the command, unless it already finished."""
        key = keys.command_record(project_id, command_id)
        flat = await self._redis.call("HGETALL", key)
        record = dict(zip(flat[::2], flat[1::2], strict=True))
        exited = record.get(b"exited") == b"1"
        released = record.get(b"released") == b"1"
        if exited:
            return CommandRecord(int(record.get(b"attempts", 0)), True, released)
        *_, outcome = await self._redis.pipeline(
            ("MULTI",),
            ("HINCRBY", key, "attempts", 1),
            ("HDEL", key, "released"),
            ("EXPIRE", key, COMMAND_RECORD_TTL_S),
            ("EXEC",),
        )
        return CommandRecord(self._transaction(outcome)[0], False, released)

    async def publish_exit(
        self, project_id: str, terminal_id: str, command_id: str, events: list[str], *,
        after: int = 0,
    ) -> int:
        """Publish the final events and mark the command finished, in one transaction."""
        record = keys.command_record(project_id, command_id)
        # The script is loaded in the same round trip: inside MULTI a missing script
        # would fail alone while the record still said the command had finished.
        loaded, *_, outcome = await self._redis.pipeline(
            PUBLISH_EVENTS.load(),
            ("MULTI",),
            PUBLISH_EVENTS.run(*publish_events_arguments(project_id, terminal_id, events, after)),
            ("HSET", record, "exited", 1),
            ("EXPIRE", record, COMMAND_RECORD_TTL_S),
            ("EXEC",),
        )
        try:
            return self._transaction(outcome)[0]
        except RedisError as exc:
            # Only when the transaction failed does a failed SCRIPT LOAD explain it; after
            # a commit, raising would publish the exit again.
            if isinstance(loaded, RedisError):
                raise loaded from exc
            raise

    @staticmethod
    def _transaction(outcome) -> list:
        """EXEC's replies, or why the transaction failed."""
        if outcome is None:
            raise RedisError("redis aborted the transaction")
        return [check(reply) for reply in check(outcome)]

    async def mark_released(self, project_id: str, command_id: str) -> None:
        """Note that a worker handed the command back, so its next run is no surprise."""
        await self._redis.call("HSET", keys.command_record(project_id, command_id), "released", 1)

    async def acquire_project(self, project_id: str, token: str, ttl_s: float) -> bool:
        return bool(await self._redis.run_script(
            _ACQUIRE, [keys.project_lease(project_id)], [token, int(ttl_s * 1000)]
        ))

    async def project_holder(self, project_id: str) -> tuple[str, float] | None:
        """Who holds the project's lease (their token), and for how many more seconds,
        if anyone does."""
        key = keys.project_lease(project_id)
        *_, outcome = await self._redis.pipeline(
            ("MULTI",), ("GET", key), ("PTTL", key), ("EXEC",)
        )
        holder, left_ms = self._transaction(outcome)
        if holder is None or left_ms < 0:
            return None
        return holder.decode(), left_ms / 1000

    async def renew_project(self, project_id: str, token: str, ttl_s: float) -> bool:
        return bool(await self._redis.run_script(
            _RENEW_IF_OWNER, [keys.project_lease(project_id)], [token, int(ttl_s * 1000)]
        ))

    async def release_project(self, project_id: str, token: str) -> None:
        await self._redis.run_script(_DELETE_IF_OWNER, [keys.project_lease(project_id)], [token])

    def input_subscription(self, project_id: str, terminal_id: str) -> InputSubscription:
        return InputSubscription(self._url, keys.input_channel(project_id, terminal_id))


class InputSubscription:
    """One command's input channel, on a connection of its own."""

    def __init__(self, url: str, channel: str):
        self.channel = channel
        self._url = url
        self._connection: Connection | None = None

    @property
    def opened(self) -> bool:
        return self._connection is not None

    async def open(self) -> None:
        """Subscribe on a fresh connection; returns once Redis has confirmed it."""
        await self.close()
        connection = await open_connection(self._url, select_db=False)
        try:
            with trio.fail_after(REPLY_TIMEOUT_S):
                await connection.send(encode_command("SUBSCRIBE", self.channel))
                check(await connection.read_reply())
        except trio.TooSlowError:
            await connection.aclose()
            raise ConnectionLost(
                f"redis did not confirm the subscription within {REPLY_TIMEOUT_S} s") from None
        except BaseException:
            await connection.aclose()
            raise
        self._connection = connection

    async def next_message(self) -> bytes:
        """The next raw message published on the channel."""
        if self._connection is None:
            raise ConnectionLost("the input channel is not open")
        try:
            while True:
                message = published(await self._connection.read_reply())
                if message is not None:
                    return message[1]
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.aclose()
