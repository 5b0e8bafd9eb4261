"""What a command sees and says: PTY size, UTF-8 output, stdin, resize, signals, timeout."""

from __future__ import annotations

import json
import os

import trio

from runtime.contract import keys
from tests.integration.harness import (
    has_exit,
    output_text,
    running_worker,
    wait_for_events,
)


def has_started(events):
    return any(e["type"] == "started" for e in events)


async def send_input(client, project, terminal, message: dict) -> None:
    await trio.to_thread.run_sync(
        client.publish, keys.input_channel(project, terminal), json.dumps(message)
    )


async def run_one(aws, redis_server, redis_client, tmp_path, command: str, **fields):
    aws.send({"projectId": "io", "terminalId": "t", "command": command, "commandId": "c1",
              **fields})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        return await wait_for_events(redis_client, "io", "t", has_exit())


async def test_pty_has_the_requested_size(aws, redis_server, redis_client, tmp_path):
    events = await run_one(aws, redis_server, redis_client, tmp_path, "stty size",
                           cols=132, rows=43)
    assert output_text(events).strip() == "43 132"


async def test_utf8_split_across_reads_at_every_offset_stays_whole(
    aws, redis_server, redis_client, tmp_path
):
    text = "aé日👍🏽z"
    encoded = text.encode()
    parts = []
    for offset in range(1, len(encoded)):
        head = "".join(f"\\x{b:02x}" for b in encoded[:offset])
        tail = "".join(f"\\x{b:02x}" for b in encoded[offset:])
        # Separate writes with a pause: each half arrives in its own PTY read and batch.
        parts.append(f"printf '{head}'; sleep 0.02; printf '{tail}\\n'")
    events = await run_one(aws, redis_server, redis_client, tmp_path, "; ".join(parts))
    lines = output_text(events).replace("\r\n", "\n").splitlines()
    assert lines == [text] * (len(encoded) - 1)
    assert len([e for e in events if e["type"] == "output"]) > 1


async def test_large_output_arrives_complete_and_in_order(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_one(aws, redis_server, redis_client, tmp_path, "seq 1 200000")
    numbers = output_text(events).split()
    assert numbers == [str(n) for n in range(1, 200001)]


async def test_stdin_reaches_read_and_output_follows(aws, redis_server, redis_client, tmp_path):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "read -r -p 'name? ' name; echo \"hello $name\""})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "name? " in output_text(ev))
        await send_input(redis_client, "io", "t", {"type": "stdin", "data": "Ada\r"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    assert "hello Ada" in output_text(events)
    assert events[-1]["exitCode"] == 0


async def test_ctrl_c_as_stdin_interrupts_the_command(aws, redis_server, redis_client, tmp_path):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "echo ready; sleep 300"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "ready" in output_text(ev))
        await send_input(redis_client, "io", "t", {"type": "stdin", "data": "\u0003"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    final = events[-1]
    assert final["signal"] == "SIGINT" or final["exitCode"] == 130


async def test_resize_changes_the_pty_size(aws, redis_server, redis_client, tmp_path):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "echo ready; read -r _; stty size"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "ready" in output_text(ev))
        await send_input(redis_client, "io", "t", {"type": "resize", "cols": 120, "rows": 50})
        await send_input(redis_client, "io", "t", {"type": "stdin", "data": "\r"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    assert output_text(events).strip().splitlines()[-1] == "50 120"


async def test_signal_message_is_delivered(aws, redis_server, redis_client, tmp_path):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "trap 'echo got-usr1; exit 7' USR1; echo ready; "
                         "while true; do sleep 0.05; done"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "ready" in output_text(ev))
        await send_input(redis_client, "io", "t", {"type": "signal", "name": "SIGUSR1"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    assert "got-usr1" in output_text(events)
    assert events[-1]["exitCode"] == 7


async def test_bad_input_is_ignored_and_the_command_goes_on(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "echo ready; read -r line; echo \"got $line\""})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "ready" in output_text(ev))
        channel = keys.input_channel("io", "t")
        for bad in ("not json", "[1]", json.dumps({"type": "resize", "cols": 10**6, "rows": 5}),
                    json.dumps({"type": "signal", "name": "SIGSTOP"}),
                    json.dumps({"type": "warp"})):
            await trio.to_thread.run_sync(redis_client.publish, channel, bad)
        await send_input(redis_client, "io", "t", {"type": "stdin", "data": "fine\r"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    assert "got fine" in output_text(events)


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
                with open(f"/proc/{entry}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmdline and state != "Z":
                found.append(int(entry))
    return found


async def test_timeout_kills_the_whole_process_tree(aws, redis_server, redis_client, tmp_path):
    # Odd durations mark this test's processes; `&` and `nohup` children must die too.
    command = ("sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & "
               "bash -c 'sleep 1003' & echo started-all; sleep 1004")
    events = await run_one(aws, redis_server, redis_client, tmp_path, command,
                           timeoutSeconds=1)
    final = events[-1]
    assert final["type"] == "exit"
    assert final["reason"] == "timeout"
    assert final["exitCode"] is None
    assert final["signal"] in ("SIGTERM", "SIGKILL")
    assert any(e["type"] == "error" and e["code"] == "timeout" for e in events)
    assert "started-all" in output_text(events)
    for marker in ("sleep 1001", "sleep 1002", "sleep 1003", "sleep 1004"):
        assert _processes_with(marker) == []
    assert aws.queue_counts() == (0, 0)


async def test_background_children_are_stopped_when_the_command_exits(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_one(aws, redis_server, redis_client, tmp_path,
                           "nohup sleep 1005 >/dev/null 2>&1 & echo bye")
    assert events[-1]["exitCode"] == 0
    assert _processes_with("sleep 1005") == []


async def test_command_environment_holds_no_worker_secrets(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_one(aws, redis_server, redis_client, tmp_path, "env")
    text = output_text(events)
    assert "TERM=xterm-256color" in text
    for secret in ("AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "REDIS_URL", "SQS_QUEUE_URL"):
        assert secret not in text


async def test_signal_gets_through_while_the_command_ignores_its_input(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "io", "terminalId": "t", "commandId": "c1",
              "command": "stty -icanon -echo; echo ready; sleep 300"})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "io", "t", lambda ev: "ready" in output_text(ev))
        # Far more keystrokes than the PTY takes while nobody reads them.
        for _ in range(40):
            await send_input(redis_client, "io", "t", {"type": "stdin", "data": "x" * 8000})
        await send_input(redis_client, "io", "t", {"type": "signal", "name": "SIGINT"})
        events = await wait_for_events(redis_client, "io", "t", has_exit())
    assert events[-1]["signal"] == "SIGINT" or events[-1]["exitCode"] == 130
