"""The worker as the Fargate task runs it: ``python -m runtime`` in its own process.

Real moto server and redis-server; signals (SIGTERM, SIGKILL) sent to the real process.
Limits given to waits guard against a hung test; no assertion depends on wall-clock time.
"""

from __future__ import annotations

import json
import signal

import pytest

from tests.integration.harness import (
    has_exit,
    history,
    output_text,
    wait_for_events,
    wait_until,
)
from tests.integration.processes import (
    message_text,
)

# How long a worker may take to exit after SIGTERM in these tests: a hang guard.
EXIT_LIMIT_S = 60


@pytest.fixture
def redis_client(redis_server):
    return redis_server.client()


def started_with(command_id: str, attempt: int):
    def predicate(events):
        return any(e["type"] == "started" and e["commandId"] == command_id
                   and e["attempt"] == attempt for e in events)
    return predicate


def has_output(command_id: str, text: str):
    def predicate(events):
        return text in output_text(events, command_id)
    return predicate


def errors(events: list[dict], code: str) -> list[dict]:
    return [e for e in events if e["type"] == "error" and e["code"] == code]


def index_of(events: list[dict], predicate) -> int:
    return next(i for i, e in enumerate(events) if predicate(e))


async def test_idle_worker_exits_with_status_0_by_itself(aws, redis_server, tmp_path, workers):
    worker = workers.start(aws.worker_env(
        redis_server.url, tmp_path / "ws", IDLE_TIMEOUT_SECONDS=2
    ))
    assert await worker.wait() == 0
    assert worker.stderr() == ""
    assert any("idle" in message_text(line) for line in worker.logs())
    assert aws.queue_counts() == (0, 0)


async def test_every_stdout_line_is_a_json_object_with_command_lifecycle_fields(
    aws, redis_server, redis_client, tmp_path, workers
):
    aws.send({"projectId": "logs1", "terminalId": "t1", "command": "echo hi",
              "commandId": "cmd-json"})
    worker = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws"))
    events = await wait_for_events(redis_client, "logs1", "t1", has_exit("cmd-json"))
    assert output_text(events).strip() == "hi"
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait(EXIT_LIMIT_S) == 0

    assert worker.stderr() == ""
    lines = worker.stdout().splitlines()
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line parses...
    assert all(isinstance(obj, dict) for obj in parsed)  # ...as one object
    assert all({"time", "level", "logger", "message"} <= obj.keys() for obj in parsed)

    command_lines = [obj for obj in parsed if obj.get("commandId") == "cmd-json"]
    assert all(obj.get("projectId") == "logs1" for obj in command_lines)

    def one(text: str) -> dict:
        found = [obj for obj in command_lines if obj["message"].endswith(f": {text}")]
        assert len(found) == 1, (text, command_lines)
        return found[0]

    received, started, exited, finished = (
        one("received"), one("started"), one("exited"), one("finished")
    )
    assert started["attempt"] == 1
    assert exited["exitCode"] == 0
    assert finished["outcome"] == "finished"
    assert isinstance(finished["durationS"], int | float)
    assert finished["durationS"] >= 0
    order = [parsed.index(obj) for obj in (received, started, exited, finished)]
    assert order == sorted(order)


@pytest.mark.parametrize(("variable", "override"), [
    ("WORKER_CONCURRENCY", {"WORKER_CONCURRENCY": "zero"}),
    ("WORKER_CONCURRENCY", {"WORKER_CONCURRENCY": "0"}),
    ("SQS_QUEUE_URL", {"SQS_QUEUE_URL": None}),
    ("SQS_QUEUE_URL", {"SQS_QUEUE_URL": "not-a-url"}),
    ("REDIS_URL", {"REDIS_URL": "http://127.0.0.1:6379"}),
    ("LEASE_SECONDS", {"LEASE_SECONDS": "1"}),
    ("S3_BUCKET", {"S3_BUCKET": ""}),
])
async def test_bad_setting_stops_start_with_one_stderr_line_naming_it_and_status_2(
    aws, redis_server, tmp_path, workers, variable, override
):
    env = aws.worker_env(redis_server.url, tmp_path / "ws")
    for name, value in override.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    worker = workers.start(env)
    assert await worker.wait() == 2
    stderr_lines = worker.stderr().splitlines()
    assert len(stderr_lines) == 1, worker.stderr()
    assert variable in stderr_lines[0]
    assert worker.stdout() == ""
    assert aws.queue_counts() == (0, 0)


async def test_sigterm_hands_back_a_long_command_after_the_grace_with_its_changes_saved(
    aws, redis_server, redis_client, tmp_path, workers
):
    # The first attempt leaves done.flag, so the attempt after the hand-back finishes.
    command = ("if [ -f done.flag ]; then echo second; else touch done.flag; "
               "echo begin > progress.txt; echo ready; sleep 60; fi")
    aws.send({"projectId": "long1", "terminalId": "t1", "command": command,
              "commandId": "cmd-long"})
    env = dict(LEASE_SECONDS=30, SHUTDOWN_GRACE_SECONDS=1, KILL_GRACE_SECONDS=1)
    first = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws1", **env))
    await wait_for_events(redis_client, "long1", "t1", started_with("cmd-long", 1))
    await wait_for_events(redis_client, "long1", "t1", has_output("cmd-long", "ready"))
    first.send_signal(signal.SIGTERM)
    # Well before the 30 s lease: the exit does not wait for the lease to run out.
    assert await first.wait(limit_s=20) == 0

    events = history(redis_client, "long1", "t1")
    assert [e["commandId"] for e in errors(events, "worker_stopping")] == ["cmd-long"]
    assert not any(e["type"] == "exit" for e in events)
    saved = aws.files("long1")
    assert saved.get("progress.txt") == b"begin\n"
    assert "done.flag" in saved
    # Visible again at once, not after the lease.
    assert aws.queue_counts() == (1, 0)

    second = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws2", **env))
    events = await wait_for_events(redis_client, "long1", "t1", has_exit("cmd-long"))
    again = index_of(events, lambda e: e["type"] == "started" and e["attempt"] == 2)
    assert not errors(events[:again], "worker_lost")
    assert not errors(events, "worker_lost")
    assert output_text(events[again:], "cmd-long").strip() == "second"
    assert events[-1]["type"] == "exit"
    assert events[-1]["exitCode"] == 0
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    second.send_signal(signal.SIGTERM)
    assert await second.wait(EXIT_LIMIT_S) == 0


async def test_sigterm_lets_a_short_command_finish_within_the_grace_and_deletes_it(
    aws, redis_server, redis_client, tmp_path, workers
):
    aws.send({"projectId": "short1", "terminalId": "t1", "command": "sleep 2; echo finished",
              "commandId": "cmd-short"})
    worker = workers.start(aws.worker_env(
        redis_server.url, tmp_path / "ws", SHUTDOWN_GRACE_SECONDS=10
    ))
    await wait_for_events(redis_client, "short1", "t1", started_with("cmd-short", 1))
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait(EXIT_LIMIT_S) == 0

    events = history(redis_client, "short1", "t1")
    assert not errors(events, "worker_stopping")
    assert events[-1]["type"] == "exit"
    assert events[-1]["exitCode"] == 0
    assert "reason" not in events[-1]
    assert output_text(events, "cmd-short").strip() == "finished"
    assert aws.queue_counts() == (0, 0)
