"""Delivery promises: dead-lettering, leases, one command per project, duplicates."""

from __future__ import annotations

import json
import logging

import pytest
import trio

from runtime.bus.terminal_bus import TerminalBus
from runtime.contract import keys
from runtime.policy.visibility import LeasePolicy
from runtime.worker.heartbeat import ProjectLease
from tests.conftest import AwsResources
from tests.integration.harness import (
    has_exit,
    history,
    output_text,
    running_worker,
    wait_for_events,
    wait_until,
)


def receive_all(aws: AwsResources, url: str) -> list[dict]:
    return aws.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
        MessageAttributeNames=["All"], AttributeNames=["All"],
    ).get("Messages", [])


@pytest.mark.parametrize(("body", "reason_part"), [
    ("not json at all", "not JSON"),
    ('{"projectId": "p", "terminalId": "t"}', "command"),
    ('{"projectId": "../etc", "terminalId": "t", "command": "ls"}', "projectId"),
    ('{"projectId": "p", "terminalId": "t", "command": "ls", "cols": 0}', "cols"),
])
async def test_invalid_message_goes_to_dead_letter_queue_with_its_reason(
    aws, redis_server, redis_client, tmp_path, body, reason_part
):
    aws.send(body)
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_until(lambda: aws.queue_counts(aws.dead_letter_url)[0] == 1)
    dead = receive_all(aws, aws.dead_letter_url)
    assert [m["Body"] for m in dead] == [body]
    assert reason_part in dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert aws.queue_counts() == (0, 0)
    assert not (tmp_path / "p").exists()  # never run


async def test_invalid_message_with_readable_ids_tells_the_terminal(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "p", "terminalId": "t", "command": "", "commandId": "c9"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        events = await wait_for_events(redis_client, "p", "t", lambda ev: ev)
    assert events[0]["type"] == "error"
    assert events[0]["code"] == "invalid_command"
    assert events[0]["commandId"] == "c9"
    assert "command" in events[0]["message"]


async def test_invalid_message_without_dead_letter_queue_is_not_deleted(
    moto_server, redis_server, redis_client, tmp_path
):
    aws = AwsResources(moto_server.url, dead_letter=False)
    aws.send("{broken")
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)) as worker:
        await wait_until(lambda: worker.handled == 1)
    assert aws.queue_counts() == (0, 1)  # hidden for a while, left for redrive


async def test_command_outliving_several_leases_runs_exactly_once(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "long", "terminalId": "t", "commandId": "c1",
              "command": "echo run >> runs.log; sleep 8; echo done"})
    env = aws.worker_env(redis_server.url, tmp_path, LEASE_SECONDS=3, WORKER_CONCURRENCY=2)
    async with running_worker(env):
        events = await wait_for_events(redis_client, "long", "t", has_exit())
    assert [e["type"] for e in events].count("started") == 1
    assert events[-1]["exitCode"] == 0
    assert aws.files("long")["runs.log"] == b"run\n"
    assert aws.queue_counts() == (0, 0)


async def test_lost_lease_stops_the_command_without_upload_or_delete(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "lost", "terminalId": "t", "commandId": "c1",
              "command": "echo ready; sleep 2; echo late > late.txt; sleep 300"})
    env = aws.worker_env(redis_server.url, tmp_path, LEASE_SECONDS=3)
    async with running_worker(env):
        await wait_for_events(redis_client, "lost", "t", lambda ev: "ready" in output_text(ev))
        # Purging removes the message behind the worker's back: its receipt is now invalid.
        aws.sqs.purge_queue(QueueUrl=aws.queue_url)
        events = await wait_for_events(
            redis_client, "lost", "t",
            lambda ev: any(e["type"] == "error" and e["code"] == "lease_lost" for e in ev),
        )
    assert not any(e["type"] == "exit" for e in events)
    assert "late.txt" not in aws.files("lost")
    record = redis_client.hgetall(keys.command_record("lost", "c1"))
    assert b"exited" not in record


async def test_one_project_never_runs_two_commands_at_once(
    aws, redis_server, redis_client, tmp_path
):
    # Each command fails if another is inside the critical section at the same time.
    section = "if [ -e busy ]; then echo OVERLAP; exit 9; fi; touch busy; sleep 1; rm busy"
    for n in range(3):
        aws.send({"projectId": "shared", "terminalId": f"t{n}", "commandId": f"c{n}",
                  "command": f"{section}; echo c{n} >> order.log"})
    env = aws.worker_env(redis_server.url, tmp_path, WORKER_CONCURRENCY=3)
    async with running_worker(env):
        for n in range(3):
            events = await wait_for_events(redis_client, "shared", f"t{n}", has_exit(),
                                           limit_s=120)
            assert events[-1]["exitCode"] == 0, output_text(events)
    assert sorted(aws.files("shared")["order.log"].split()) == [b"c0", b"c1", b"c2"]
    assert aws.queue_counts() == (0, 0)


async def test_fifo_queue_keeps_a_projects_commands_in_order(
    moto_server, redis_server, redis_client, tmp_path
):
    aws = AwsResources(moto_server.url, fifo=True)
    for n in range(3):
        aws.send({"projectId": "ordered", "terminalId": "t", "commandId": f"c{n}",
                  "command": f"sleep 0.3; echo c{n} >> order.log"},
                 MessageGroupId="ordered")
    env = aws.worker_env(redis_server.url, tmp_path, WORKER_CONCURRENCY=3)
    async with running_worker(env):
        await wait_for_events(redis_client, "ordered", "t", has_exit("c2"))
    assert aws.files("ordered")["order.log"] == b"c0\nc1\nc2\n"


async def test_redelivered_command_that_already_exited_is_not_run_again(
    aws, redis_server, redis_client, tmp_path
):
    body = {"projectId": "dup", "terminalId": "t", "commandId": "same",
            "command": "echo run >> runs.log"}
    env = aws.worker_env(redis_server.url, tmp_path)
    async with running_worker(env) as worker:
        aws.send(body)
        await wait_for_events(redis_client, "dup", "t", has_exit())
        # The same command again, as if its first worker died between exit and delete.
        aws.send(body)
        await wait_until(lambda: worker.handled == 2)
        await wait_until(lambda: aws.queue_counts() == (0, 0))
    events = history(redis_client, "dup", "t")
    assert [e["type"] for e in events].count("started") == 1
    assert aws.files("dup")["runs.log"] == b"run\n"


def outcomes(caplog) -> list[str]:
    return [record.outcome for record in caplog.records if hasattr(record, "outcome")]


async def test_a_second_delivery_of_a_running_command_is_left_to_its_worker(
    aws, redis_server, redis_client, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="runtime")
    aws.send({"projectId": "twice", "terminalId": "t", "commandId": "c1",
              "command": "echo run >> runs.log; echo ready; read -r _"})
    # A receipt of the message's own, with which it is made visible again while its
    # worker runs it: a second delivery, as SQS may make (it delivers at least once).
    early = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0)
    receipt = early["Messages"][0]["ReceiptHandle"]
    # A lease long enough that the running command's heartbeat does not hide the
    # message again before the worker receives it a second time.
    env = aws.worker_env(redis_server.url, tmp_path, LEASE_SECONDS=90, WORKER_CONCURRENCY=2)
    async with running_worker(env) as worker:
        await wait_for_events(redis_client, "twice", "t", lambda ev: "ready" in output_text(ev))
        aws.sqs.change_message_visibility(QueueUrl=aws.queue_url, ReceiptHandle=receipt,
                                          VisibilityTimeout=0)
        await wait_until(lambda: worker.handled == 1)
        await trio.to_thread.run_sync(
            redis_client.publish, keys.input_channel("twice", "t"),
            json.dumps({"type": "stdin", "data": "\r"}),
        )
        events = await wait_for_events(redis_client, "twice", "t", has_exit())
        await wait_until(lambda: aws.queue_counts() == (0, 0))
    assert outcomes(caplog) == ["left_to_holder", "finished"]
    assert [(e["type"], e.get("code")) for e in events if e["type"] != "output"] == [
        ("started", None), ("exit", None)]
    assert events[-1]["exitCode"] == 0
    assert aws.files("twice")["runs.log"] == b"run\n"


async def test_a_delivery_left_to_a_dead_workers_hold_runs_once_the_hold_ends(
    aws, redis_server, redis_client, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="runtime")
    # A lease far longer than the wait: the message must come back with the hold's end.
    env = aws.worker_env(redis_server.url, tmp_path, LEASE_SECONDS=300)
    async with running_worker(env):
        # Delayed, so that the hold below is in place before the message can be seen.
        message_id = aws.sqs.send_message(QueueUrl=aws.queue_url, DelaySeconds=1,
                                          MessageBody=json.dumps(
            {"projectId": "orphan", "terminalId": "t", "commandId": "c1",
             "command": "echo ran"}))["MessageId"]
        # The project held for this very message by a worker that died: its hold ends
        # in 5 s.
        bus = TerminalBus(redis_server.url)
        dead = ProjectLease(bus, "orphan", f"c1:{message_id}", "dead-worker",
                            LeasePolicy(lease_s=5, extend_every_s=1))
        assert await dead.acquire()
        await bus.aclose()
        events = await wait_for_events(redis_client, "orphan", "t", has_exit())
    assert outcomes(caplog) == ["left_to_holder", "finished"]
    assert [e["type"] for e in events if e["type"] != "output"] == ["started", "exit"]
    assert output_text(events).strip() == "ran"


async def test_changes_are_uploaded_while_the_command_runs(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "live", "terminalId": "t", "commandId": "c1",
              "command": "echo early > early.txt; echo ready; read -r _"})
    env = aws.worker_env(redis_server.url, tmp_path, UPLOAD_INTERVAL_SECONDS=1)
    async with running_worker(env):
        await wait_for_events(redis_client, "live", "t", lambda ev: "ready" in output_text(ev))
        await wait_until(lambda: "early.txt" in aws.files("live"))
        running = history(redis_client, "live", "t")
        await trio.to_thread.run_sync(
            redis_client.publish, keys.input_channel("live", "t"),
            json.dumps({"type": "stdin", "data": "\r"}),
        )
        await wait_for_events(redis_client, "live", "t", has_exit())
    assert not any(e["type"] == "exit" for e in running)  # it was there before the end
