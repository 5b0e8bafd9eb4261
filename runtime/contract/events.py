"""Events a worker publishes on a terminal's output channel and history stream.

Each event is one JSON object with ``type`` and ``commandId``; the ``seq`` is added by
Redis at publish time (see ``runtime.bus``), so the encoders here leave it out.
"""

from __future__ import annotations

import json
import re

import orjson

STARTED, OUTPUT, EXIT, ERROR = "started", "output", "exit", "error"

# Error codes an `error` event carries.
INVALID_COMMAND = "invalid_command"
SYNC_FAILED = "sync_failed"
TIMEOUT = "timeout"
WORKER_LOST = "worker_lost"
WORKER_STOPPING = "worker_stopping"
LEASE_LOST = "lease_lost"
OUTPUT_DROPPED = "output_dropped"
SPAWN_FAILED = "spawn_failed"
# The worker failed in its own handling of the command; it is tried again after a lease.
HANDLING_FAILED = "handling_failed"
# The project's files outgrew the worker's disk cap; also the `exit` event's reason.
DISK_LIMIT = "disk_limit"
# The worker's disk filled up under the command; its local copy was dropped to make room.
DISK_FULL = "disk_full"
# The project held more files, folders and links than the worker syncs; nothing was saved.
FILE_LIMIT = "file_limit"


def _encode(event: dict) -> str:
    # orjson: the same compact UTF-8 JSON as the standard library's, a third of the CPU
    # for a 32 KiB output event, which a flood of output sends hundreds of a second.
    return orjson.dumps(event).decode()


# Redis writes the seq first, as ``{"seq":N,``: read there, a reader need not parse a
# whole event (up to 32 KiB of escaped output) to learn its place.
_SEQ_PREFIX = re.compile(r'\{"seq":(\d+),')


def seq_of(event: str) -> int:
    """The ``seq`` of a published event; ValueError when it has none."""
    found = _SEQ_PREFIX.match(event)
    if found is not None:
        return int(found.group(1))
    try:
        return int(json.loads(event)["seq"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"event without a whole-number seq: {event[:60]!r}") from exc


def started(command_id: str, *, worker_id: str, attempt: int) -> str:
    return _encode(
        {"type": STARTED, "commandId": command_id, "workerId": worker_id, "attempt": attempt}
    )


def output(command_id: str, data: str) -> str:
    return _encode({"type": OUTPUT, "commandId": command_id, "data": data})


def exit_(
    command_id: str, *, exit_code: int | None, signal: str | None, reason: str | None = None
) -> str:
    event = {"type": EXIT, "commandId": command_id, "exitCode": exit_code, "signal": signal}
    if reason is not None:
        event["reason"] = reason
    return _encode(event)


def error(command_id: str | None, code: str, message: str) -> str:
    return _encode({"type": ERROR, "commandId": command_id, "code": code, "message": message})
