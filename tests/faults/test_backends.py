"""Redis going away while a command streams, and S3 and SQS shedding load or failing.

Redis is a redis-server of the test's own, stopped and started again on its port under
the running system. AWS faults come from ``FaultProxy`` between the worker and the moto
server; the test itself talks to moto directly.
"""

from __future__ import annotations

import pytest
import trio

from dev.system import LocalSystem
from tests.e2e.conftest import E2E_SETTINGS
from tests.faults.conftest import (
    stop_system_cleanly,
    stop_worker_cleanly,
)
from tests.faults.proxy import Fault
from tests.integration.harness import has_exit, history, output_text, wait_for_events, wait_until
from tests.integration.processes import message_text
from tests.terminal_client import (
    assert_no_gap_no_duplicate,
    fresh_id,
    system_terminal,
)

OUTAGE_S = 5
LINES = 80


@pytest.mark.parametrize("keeps_data", [True, False], ids=["persistent", "data-lost"])
async def test_redis_down_5_s_mid_command_loses_no_output_and_the_gateway_resumes_its_clients(
    own_redis, tmp_path, keeps_data
):
    project, marker = fresh_id("outage"), fresh_id("line")
    system = LocalSystem(tmp_path / "system", redis_url=own_redis.url,
                         settings=E2E_SETTINGS).start()
    try:
        async with system_terminal(system, project).opened() as terminal:
            command_id = await terminal.run(
                f"for i in $(seq 1 {LINES}); do echo {marker} $i; sleep 0.1; done")
            await terminal.until(lambda _: f"{marker} 5\r\n" in terminal.output(command_id))
            if keeps_data:
                # A Redis that persists (a replica, a snapshot) comes back with its data.
                own_redis.client().config_set("save", "3600 1")
            own_redis.stop()
            await trio.sleep(OUTAGE_S)
            own_redis.start()
            frames = await terminal.until(lambda _: terminal.exited(command_id))
            oldest_kept = history(own_redis.client(), project, "t")[0]["seq"]
        await stop_system_cleanly(system)
    finally:
        system.stop()
    lines = terminal.output(command_id).splitlines()
    # Every line once and in order: what the command wrote while Redis was down was held
    # by the worker and published when it came back.
    assert lines == [f"{marker} {i}" for i in range(1, LINES + 1)]
    assert [f["attempt"] for f in terminal.events(command_id) if f["type"] == "started"] == [1]
    assert terminal.events(command_id)[-1]["exitCode"] == 0
    assert terminal.closes == []  # the gateway kept the websocket through the outage
    # Even where Redis lost its data, the worker numbers on from its last seq: no event
    # of the running command is taken for one the client already has.
    assert_no_gap_no_duplicate(frames)
    # The two cases are what they say: the history from before the outage survived only
    # where Redis kept its data.
    assert (oldest_kept == 1) == keeps_data
    notices = {f["code"] for f in frames if f["type"] == "error"}
    if keeps_data:
        assert notices == set()
    else:
        # True, and said if the gateway looks before the worker publishes again: what
        # came before the outage can no longer be fetched (a reload shows less).
        assert notices <= {"history_reset", "history_truncated"}

def aws_env(aws, redis_server, root, proxy, **overrides):
    return aws.worker_env(redis_server.url, root, AWS_ENDPOINT_URL=proxy.url, **overrides)


def successful(proxy, operation: str, path_contains: str = "") -> int:
    return sum(1 for s in proxy.requests(operation, path_contains)
               if not s.broken and s.status is not None and s.status < 300)


async def test_throttled_and_failing_s3_and_sqs_calls_are_retried_and_the_command_runs_once(
    aws, redis_server, redis_client, tmp_path, workers, fault_proxy
):
    project = fresh_id("throttled")
    aws.put_file(project, "in.txt", b"from s3\n")
    faults = [
        fault_proxy.add(Fault("ReceiveMessage", "throttle", times=2)),
        fault_proxy.add(Fault("ListObjectsV2", "internal", times=2)),
        fault_proxy.add(Fault("GetObject", "slow_down", times=2)),
        fault_proxy.add(Fault("PutObject", "slow_down", times=2, path_contains="out.txt")),
        fault_proxy.add(Fault("PutObject", "drop", times=1, path_contains="out.txt")),
        fault_proxy.add(Fault("ChangeMessageVisibility", "internal", times=1)),
        fault_proxy.add(Fault("DeleteMessage", "throttle", times=1)),
    ]
    aws.send({"projectId": project, "terminalId": "t", "commandId": "c1",
              "command": "cat in.txt; echo run >> runs.log; echo out > out.txt"})
    worker = workers.start(aws_env(aws, redis_server, tmp_path / "ws", fault_proxy))
    events = await wait_for_events(redis_client, project, "t", has_exit("c1"))
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    assert [f.done for f in faults] == [f.times for f in faults]  # every fault happened
    assert [e["type"] for e in events if e["type"] != "output"] == ["started", "exit"]
    assert events[-1]["exitCode"] == 0
    assert output_text(events).strip() == "from s3"
    assert aws.files(project) == {"in.txt": b"from s3\n", "runs.log": b"run\n",
                                  "out.txt": b"out\n"}
    # Retried by the clients (botocore numbers its tries), and each file put once.
    put = fault_proxy.requests("PutObject", "out.txt")
    assert [s.attempt for s in put] == [1, 2, 3, 4]
    assert successful(fault_proxy, "PutObject", "out.txt") == 1
    assert successful(fault_proxy, "PutObject", "runs.log") == 1
    assert max(s.attempt for s in fault_proxy.requests("GetObject")) == 3
    assert successful(fault_proxy, "DeleteMessage") == 1
    assert not [line for line in worker.logs() if "handling message" in message_text(line)]
    await stop_worker_cleanly(worker)


async def test_an_upload_that_finally_fails_says_so_and_the_message_is_not_deleted(
    aws, redis_server, redis_client, tmp_path, workers, fault_proxy
):
    project = fresh_id("refused")
    # Refused outright (a bucket policy, say): nothing a retry of the client's can mend.
    refusal = fault_proxy.add(Fault("PutObject", "deny", path_contains=project))
    aws.send({"projectId": project, "terminalId": "t", "commandId": "c1",
              "command": "echo out > out.txt; echo ran"})
    worker = workers.start(aws_env(aws, redis_server, tmp_path / "ws", fault_proxy,
                                   LEASE_SECONDS=3))
    events = await wait_for_events(
        redis_client, project, "t", lambda ev: any(e["type"] == "error" for e in ev))
    error = next(e for e in events if e["type"] == "error")
    assert error["code"] == "sync_failed"
    assert "could not be saved" in error["message"]
    assert "AccessDenied" in error["message"]
    assert not any(e["type"] == "exit" for e in events)
    assert successful(fault_proxy, "DeleteMessage") == 0
    assert sum(aws.queue_counts()) == 1  # handed back, to run again, never deleted
    assert "out.txt" not in aws.files(project)
    assert refusal.done >= 3  # the worker's own attempts at its final upload

    # Once storage takes writes again, the next run saves the work and ends the command.
    fault_proxy.clear()
    events = await wait_for_events(redis_client, project, "t", has_exit("c1"))
    assert [e["attempt"] for e in events if e["type"] == "started"] == [1, 2]
    assert not [e for e in events if e.get("code") == "worker_lost"]
    assert events[-1]["exitCode"] == 0
    assert aws.files(project)["out.txt"] == b"out\n"
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    await stop_worker_cleanly(worker)


async def test_a_delete_that_fails_after_its_retries_never_runs_the_command_again(
    aws, redis_server, redis_client, tmp_path, workers, fault_proxy
):
    project = fresh_id("undeleted")
    fault_proxy.add(Fault("DeleteMessage", "internal"))
    aws.send({"projectId": project, "terminalId": "t", "commandId": "c1",
              "command": "echo run >> runs.log"})
    worker = workers.start(aws_env(aws, redis_server, tmp_path / "ws", fault_proxy,
                                   LEASE_SECONDS=3))
    await worker.wait_for_log(lambda line: "delete failed" in message_text(line))
    fault_proxy.clear()
    # The message comes back when its lease runs out; its exit is on record, so the
    # redelivery is only deleted.
    await worker.wait_for_log(lambda line: line.get("outcome") == "duplicate")
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    assert [s.attempt for s in fault_proxy.requests("DeleteMessage")][-1] == 1
    events = history(redis_client, project, "t")
    assert [e["type"] for e in events if e["type"] != "output"] == ["started", "exit"]
    assert aws.files(project)["runs.log"] == b"run\n"
    outcomes = [line.get("outcome") for line in worker.logs() if "outcome" in line]
    assert outcomes == ["finished", "duplicate"]
    await stop_worker_cleanly(worker)
