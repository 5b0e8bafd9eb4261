"""Running a real worker inside a trio test, and reading what a terminal received."""

from __future__ import annotations

import contextlib
import json

import redis
import trio

from runtime.contract import keys
from runtime.worker.settings import WorkerSettings
from runtime.worker.worker import Worker

# A guard against a hung test, not a timing assertion.
WAIT_LIMIT_S = 60


def history(client: redis.Redis, project: str, terminal: str) -> list[dict]:
    entries = client.xrange(keys.history_stream(project, terminal))
    return [json.loads(fields[b"event"]) for _, fields in entries]


async def wait_for_events(client: redis.Redis, project: str, terminal: str, predicate,
                          limit_s: float = WAIT_LIMIT_S) -> list[dict]:
    """Poll the terminal's history until ``predicate(events)`` holds."""
    with trio.fail_after(limit_s):
        while True:
            events = await trio.to_thread.run_sync(history, client, project, terminal)
            if predicate(events):
                return events
            await trio.sleep(0.05)


def has_exit(command_id: str | None = None):
    def predicate(events):
        return any(e["type"] == "exit" and command_id in (None, e["commandId"]) for e in events)
    return predicate


def output_text(events: list[dict], command_id: str | None = None) -> str:
    return "".join(
        e["data"] for e in events
        if e["type"] == "output" and command_id in (None, e["commandId"])
    )


@contextlib.asynccontextmanager
async def running_worker(env: dict):
    """A worker serving in the background for the duration of the block."""
    worker = Worker.from_settings(WorkerSettings.from_env(env))
    await worker.preflight()
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()
    # leaving the nursery waits for the worker's graceful stop


def connections_besides(client) -> list[dict]:
    """Redis's other clients: all but ``client``'s own connection."""
    me = client.client_id()
    return [c for c in client.client_list() if int(c["id"]) != me]


async def wait_until(condition, limit_s: float = WAIT_LIMIT_S, interval_s: float = 0.1):
    with trio.fail_after(limit_s):
        while not await trio.to_thread.run_sync(condition):
            await trio.sleep(interval_s)


GATEWAY_SECRET = "test-secret-that-is-long-enough-for-hs256!"
GATEWAY_ORIGIN = "http://ide.test"


def gateway_env(aws, redis_url: str, **overrides) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": aws.endpoint,
        "SQS_QUEUE_URL": aws.queue_url,
        "REDIS_URL": redis_url,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
        "GATEWAY_SECRET": GATEWAY_SECRET,
        "GATEWAY_ALLOWED_ORIGINS": GATEWAY_ORIGIN,
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@contextlib.asynccontextmanager
async def running_gateway(env: dict):
    """A gateway serving on a free port for the duration of the block."""
    from gateway.server import GatewayServer
    from gateway.settings import GatewaySettings

    server = GatewayServer.from_settings(GatewaySettings.from_env(env))
    await server.preflight()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
