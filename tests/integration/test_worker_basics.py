"""The worker end to end in-process: real moto server, redis-server and PTYs."""

from __future__ import annotations

from tests.integration.harness import (
    connections_besides,
    has_exit,
    output_text,
    running_worker,
    wait_for_events,
    wait_until,
)


async def test_seed_message_runs_in_project_folder_and_uploads_changes(
    aws, redis_server, redis_client, tmp_path
):
    aws.put_file("abc123", "package.json", b'{"name": "demo"}')
    aws.put_file("abc123", "old.txt", b"remove me")
    message_id = aws.send({
        "projectId": "abc123", "terminalId": "term-1",
        "command": "cat package.json; echo; rm old.txt; echo made > new.txt; echo done",
    })
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        events = await wait_for_events(redis_client, "abc123", "term-1", has_exit())
    types = [e["type"] for e in events]
    assert types[0] == "started"
    assert types[-1] == "exit"
    assert events[0]["attempt"] == 1
    assert all(e["commandId"] == message_id for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    assert '{"name": "demo"}' in output_text(events)
    assert "done" in output_text(events)
    assert events[-1]["exitCode"] == 0
    assert events[-1]["signal"] is None
    assert aws.files("abc123") == {"package.json": b'{"name": "demo"}', "new.txt": b"made\n"}
    assert aws.queue_counts() == (0, 0)


async def test_exit_code_and_signal_are_reported(aws, redis_server, redis_client, tmp_path):
    aws.send({"projectId": "p1", "terminalId": "t1", "command": "exit 3", "commandId": "c1"})
    aws.send({"projectId": "p2", "terminalId": "t1", "command": "kill -9 $$", "commandId": "c2"})
    env = aws.worker_env(redis_server.url, tmp_path, WORKER_CONCURRENCY=2)
    async with running_worker(env):
        first = await wait_for_events(redis_client, "p1", "t1", has_exit("c1"))
        second = await wait_for_events(redis_client, "p2", "t1", has_exit("c2"))
    assert first[-1]["exitCode"] == 3
    assert second[-1] == {**second[-1], "exitCode": None, "signal": "SIGKILL"}


async def test_warm_worker_downloads_only_changed_objects(
    aws, redis_server, redis_client, tmp_path
):
    aws.put_file("warm", "a.txt", b"one")
    aws.put_file("warm", "b.txt", b"two")
    env = aws.worker_env(redis_server.url, tmp_path)
    async with running_worker(env):
        aws.send({"projectId": "warm", "terminalId": "t", "command": "true", "commandId": "c1"})
        await wait_for_events(redis_client, "warm", "t", has_exit("c1"))
        first_inode = (tmp_path / "warm" / "a.txt").stat().st_ino
        aws.put_file("warm", "b.txt", b"TWO")
        aws.s3.delete_object(Bucket=aws.bucket, Key="projects/warm/a.txt")
        aws.put_file("warm", "c.txt", b"three")
        aws.send({"projectId": "warm", "terminalId": "t", "command": "cat *.txt",
                  "commandId": "c2"})
        events = await wait_for_events(redis_client, "warm", "t", has_exit("c2"))
    assert first_inode  # the first run brought the file down
    assert not (tmp_path / "warm" / "a.txt").exists()
    assert output_text(events, "c2").replace("\r\n", "\n") == "TWOthree"


async def test_queue_left_empty_after_many_commands(aws, redis_server, redis_client, tmp_path):
    for n in range(6):
        aws.send({"projectId": f"proj{n}", "terminalId": "t", "command": f"echo {n}",
                  "commandId": f"c{n}"})
    env = aws.worker_env(redis_server.url, tmp_path, WORKER_CONCURRENCY=3)
    async with running_worker(env):
        for n in range(6):
            events = await wait_for_events(redis_client, f"proj{n}", "t", has_exit())
            assert output_text(events).strip() == str(n)
        await wait_until(lambda: aws.queue_counts() == (0, 0))


async def test_executable_bit_survives_the_round_trip_through_s3(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "modes", "terminalId": "t", "commandId": "c1",
              "command": "printf '#!/bin/sh\\necho ran\\n' > run.sh && chmod +x run.sh"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path / "first")):
        await wait_for_events(redis_client, "modes", "t", has_exit("c1"))
    head = aws.s3.head_object(Bucket=aws.bucket, Key="projects/modes/run.sh")
    assert head["Metadata"]["mode"] == "700"  # commands run with umask 077
    # A cold worker elsewhere brings the file down executable.
    aws.send({"projectId": "modes", "terminalId": "t", "commandId": "c2", "command": "./run.sh"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path / "second")):
        events = await wait_for_events(redis_client, "modes", "t", has_exit("c2"))
    assert events[-1]["exitCode"] == 0
    assert output_text(events, "c2").strip() == "ran"


async def test_file_names_s3_cannot_hold_are_skipped_and_the_project_keeps_working(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "names", "terminalId": "t", "commandId": "c1",
              "command": "touch $'bad\\xff'; echo ok > good.txt"})
    env = aws.worker_env(redis_server.url, tmp_path, UPLOAD_INTERVAL_SECONDS=1)
    async with running_worker(env):
        first = await wait_for_events(redis_client, "names", "t", has_exit("c1"))
        aws.send({"projectId": "names", "terminalId": "t", "commandId": "c2",
                  "command": "cat good.txt"})
        second = await wait_for_events(redis_client, "names", "t", has_exit("c2"))
    assert first[-1]["exitCode"] == 0
    assert second[-1]["exitCode"] == 0
    assert output_text(second, "c2").strip() == "ok"
    assert aws.files("names") == {"good.txt": b"ok\n"}
    assert aws.queue_counts() == (0, 0)


async def test_a_stopped_worker_leaves_no_redis_connection_open(aws, own_redis, tmp_path):
    client = own_redis.client()
    aws.send({"projectId": "p1", "terminalId": "t1", "command": "echo hi", "commandId": "c1"})
    async with running_worker(aws.worker_env(own_redis.url, tmp_path)):
        await wait_for_events(client, "p1", "t1", has_exit("c1"))
        assert connections_besides(client)
    # Redis notices a closed connection at its next turn, not at once.
    await wait_until(lambda: connections_besides(client) == [], limit_s=10)
