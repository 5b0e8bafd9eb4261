"""Workers killed, stopped, fed a poison message or a full disk, as real processes.

Each worker is ``python -m runtime`` against the moto server and a redis-server; the
queues are given a 12-hour visibility timeout of their own, so a message that comes
back within a test's bounded wait came back because the worker's short lease ran out
or was handed back, never because the queue's timeout did.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest
import trio

from tests.conftest import AwsResources
from tests.faults.conftest import (
    EXIT_LIMIT_S,
    process_tree,
    stop_worker_cleanly,
    wait_for_no_survivors,
)
from tests.integration.harness import has_exit, history, output_text, wait_for_events, wait_until
from tests.integration.processes import is_serving, message_text, worker_running
from tests.terminal_client import fresh_id

QUEUE_VISIBILITY_S = 12 * 60 * 60


def long_hidden_queue(aws: AwsResources) -> AwsResources:
    aws.sqs.set_queue_attributes(QueueUrl=aws.queue_url,
                                 Attributes={"VisibilityTimeout": str(QUEUE_VISIBILITY_S)})
    return aws


def kinds(events: list[dict]) -> list[tuple]:
    return [(e["type"], e.get("attempt"), e.get("code")) for e in events
            if e["type"] in ("started", "error", "exit")]


async def test_sigkill_mid_command_comes_back_within_one_lease_and_another_worker_completes_it(
    aws, redis_server, redis_client, tmp_path, workers
):
    aws = long_hidden_queue(aws)
    project, marker = fresh_id("killed"), fresh_id("tick")
    aws.send({"projectId": project, "terminalId": "t", "commandId": "c1",
              "command": f"echo {marker} > attempt.txt; for i in $(seq 1 20); do "
                         f"echo {marker} $i; sleep 0.1; done"})
    env = {"LEASE_SECONDS": 3}
    first = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws1", **env))
    await wait_for_events(redis_client, project, "t",
                          lambda ev: f"{marker} 3" in output_text(ev))
    assert worker_running(marker) == first.pid
    # The command, its shell and the worker: everything the kill leaves without a parent.
    doomed = process_tree(first.pid)
    first.send_signal(signal.SIGKILL)
    assert await first.wait() == -signal.SIGKILL
    # The PTY's last holder is gone: the kernel hangs up on the command, which ends.
    await wait_for_no_survivors(doomed, "the killed worker")

    second = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws2", **env))
    events = await wait_for_events(redis_client, project, "t", has_exit("c1"))
    assert kinds(events) == [("started", 1, None), ("error", None, "worker_lost"),
                             ("started", 2, None), ("exit", None, None)]
    assert events[-1]["exitCode"] == 0
    again = next(i for i, e in enumerate(events) if e.get("attempt") == 2)
    assert events[again]["workerId"] != events[0]["workerId"]
    assert output_text(events[again:]).splitlines() == [f"{marker} {i}" for i in range(1, 21)]
    received = [line for line in second.logs() if message_text(line).endswith(": received")]
    assert [line["receiveCount"] for line in received] == [2]
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    await stop_worker_cleanly(second)


ROUNDS, AT_ONCE = 50, 5


async def test_sigterm_during_a_long_poll_50_times_never_leaves_a_message_hidden(
    moto_server, redis_server, redis_client, tmp_path, workers
):
    results: list[tuple[int, int, bool]] = []

    async def one_round(round_: int) -> None:
        # A queue of its own, so no other round's message is in the way.
        aws = await trio.to_thread.run_sync(AwsResources, moto_server.url)
        worker = workers.start(aws.worker_env(redis_server.url, tmp_path / f"ws{round_}",
                                              RECEIVE_WAIT_SECONDS=2))
        await worker.wait_for_log(is_serving)
        command_id = f"poll-{round_}"
        # A project of its own too: one busy elsewhere would defer the message instead.
        message = {"projectId": f"poll{round_}", "terminalId": "t", "command": "true",
                   "commandId": command_id}
        # Spread the signal over the poll: before the message, with it, a while after.
        if round_ % 3 == 0:
            worker.send_signal(signal.SIGTERM)
            await trio.to_thread.run_sync(aws.send, message)
        else:
            await trio.to_thread.run_sync(aws.send, message)
            await trio.sleep((round_ % 7) * 0.15)
            worker.send_signal(signal.SIGTERM)
        tree = process_tree(worker.pid)
        assert await worker.wait(EXIT_LIMIT_S) == 0, worker.stdout()
        await wait_for_no_survivors(tree, str(worker))
        visible, hidden = await trio.to_thread.run_sync(aws.queue_counts)
        ran = has_exit(command_id)(history(redis_client, f"poll{round_}", "t"))
        results.append((visible, hidden, ran))

    for start in range(0, ROUNDS, AT_ONCE):
        async with trio.open_nursery() as nursery:
            for round_ in range(start, start + AT_ONCE):
                nursery.start_soon(one_round, round_)
    assert len(results) == ROUNDS
    assert [hidden for _, hidden, _ in results] == [0] * ROUNDS
    # Not lost either: back in the queue, or received before the signal and run to its end.
    assert all((visible, ran) in ((1, False), (0, True)) for visible, _, ran in results), results
    print(f"\n{sum(ran for *_, ran in results)} of {ROUNDS} polls received the message "
          "before the signal and ran it; the rest left it visible")


async def test_sigterm_mid_command_finishes_the_short_one_and_hands_back_the_long_one_at_once(
    aws, redis_server, redis_client, tmp_path, workers
):
    aws = long_hidden_queue(aws)
    project_short, project_long = fresh_id("short"), fresh_id("long")
    aws.send({"projectId": project_short, "terminalId": "t", "commandId": "short",
              "command": "echo begin; sleep 1; echo saved > short.txt; echo done"})
    aws.send({"projectId": project_long, "terminalId": "t", "commandId": "long",
              "command": "echo begin > progress.txt; echo ready; sleep 600"})
    worker = workers.start(aws.worker_env(
        redis_server.url, tmp_path / "ws", WORKER_CONCURRENCY=2, LEASE_SECONDS=30,
        SHUTDOWN_GRACE_SECONDS=5, KILL_GRACE_SECONDS=1))
    await wait_for_events(redis_client, project_long, "t",
                          lambda ev: "ready" in output_text(ev))
    await wait_for_events(redis_client, project_short, "t",
                          lambda ev: "begin" in output_text(ev))
    tree = process_tree(worker.pid)
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait(EXIT_LIMIT_S) == 0
    await wait_for_no_survivors(tree, str(worker))

    short = history(redis_client, project_short, "t")
    assert kinds(short) == [("started", 1, None), ("exit", None, None)]
    assert short[-1]["exitCode"] == 0
    assert "done" in output_text(short)
    assert aws.files(project_short)["short.txt"] == b"saved\n"

    long = history(redis_client, project_long, "t")
    assert kinds(long) == [("started", 1, None), ("error", None, "worker_stopping")]
    assert aws.files(project_long)["progress.txt"] == b"begin\n"
    # Visible now, although the lease had 30 s to run and the queue's timeout 12 hours;
    # the short command's message is gone.
    assert aws.queue_counts() == (1, 0)
    left = aws.sqs.receive_message(QueueUrl=aws.queue_url, VisibilityTimeout=0)["Messages"]
    assert '"commandId": "long"' in left[0]["Body"]


async def test_a_message_whose_handling_crashes_every_time_is_dead_lettered_and_others_run(
    moto_server, redis_server, redis_client, tmp_path, workers
):
    aws = AwsResources(moto_server.url, max_receive_count=3)
    poison, good = fresh_id("poison"), fresh_id("good")
    root = tmp_path / "ws"
    root.mkdir(mode=0o711)
    # The worker's folder for the poison project cannot be made (a file is in the way),
    # so handling it raises an error no handler expects, however often it is tried.
    (root / poison).write_text("in the way")
    aws.send({"projectId": good, "terminalId": "t", "commandId": "before",
              "command": "echo before"})
    aws.send({"projectId": poison, "terminalId": "t", "commandId": "bad", "command": "echo x"})
    worker = workers.start(aws.worker_env(redis_server.url, root, LEASE_SECONDS=3))
    await wait_until(lambda: aws.queue_counts(aws.dead_letter_url)[0] == 1)
    aws.send({"projectId": good, "terminalId": "t", "commandId": "after",
              "command": "echo after"})
    events = await wait_for_events(redis_client, good, "t", has_exit("after"))
    assert [e["exitCode"] for e in events if e["type"] == "exit"] == [0, 0]
    assert output_text(events).split() == ["before", "after"]

    dead = aws.sqs.receive_message(QueueUrl=aws.dead_letter_url, AttributeNames=["All"])
    assert '"commandId": "bad"' in dead["Messages"][0]["Body"]
    failures = [line for line in worker.logs() if "handling message" in message_text(line)]
    assert len(failures) == 3  # maxReceiveCount
    told = [e for e in history(redis_client, poison, "t") if e["type"] == "error"]
    assert told
    assert all(e["commandId"] == "bad" for e in told)
    assert aws.queue_counts() == (0, 0)
    assert worker.process.poll() is None
    await stop_worker_cleanly(worker)


def can_mount_tmpfs() -> bool:
    """Root with the right to mount (CAP_SYS_ADMIN), in a mount namespace of its own."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True, check=False)
    return probe.returncode == 0


DISK_BYTES = 8 * 1024 * 1024


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root with the right to mount a "
                    "tmpfs; the disk cap is tested in tests/security/test_limits.py")
async def test_a_full_disk_fails_the_command_clearly_and_the_worker_serves_the_next_project(
    aws, redis_server, redis_client, tmp_path, workers
):
    full, other = fresh_id("full"), fresh_id("next")
    aws.put_file(other, "kept.txt", b"from s3\n")
    root = tmp_path / "ws"
    root.mkdir(mode=0o711)
    # The worker alone sees an 8 MiB tmpfs as its workspace root: a real ENOSPC.
    wrapper = ("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
               f'mount -t tmpfs -o size={DISK_BYTES},mode=0711 tmpfs "$WORKSPACE_ROOT" '
               '&& exec "$@"', "in-namespace")
    aws.send({"projectId": full, "terminalId": "t", "commandId": "fill",
              "command": "echo small > small.txt; head -c 20M /dev/zero > big.bin; "
                         "echo status=$?"})
    worker = workers.start(aws.worker_env(redis_server.url, root), wrapper)
    events = await wait_for_events(redis_client, full, "t", has_exit("fill"))
    text = output_text(events)
    assert "No space left on device" in text
    assert "status=1" in text
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["disk_full"]
    assert [e["attempt"] for e in events if e["type"] == "started"] == [1]

    aws.send({"projectId": other, "terminalId": "t", "commandId": "next",
              "command": "cat kept.txt; echo made > made.txt"})
    events = await wait_for_events(redis_client, other, "t", has_exit("next"))
    assert events[-1]["exitCode"] == 0
    assert output_text(events).strip() == "from s3"
    assert aws.files(other)["made.txt"] == b"made\n"
    await wait_until(lambda: aws.queue_counts() == (0, 0))
    assert worker.process.poll() is None
    await stop_worker_cleanly(worker)
