"""A hostile command cannot exhaust the worker, outlive its run, or leave files for the next.

Real worker, moto server, redis-server and PTYs; each test fails if the limit it names is
removed. Floods are bounded by the test itself, so a missing limit fails the test rather
than the machine.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest

from runtime.worker import sweep
from tests.integration.harness import has_exit, output_text, running_worker, wait_for_events
from tests.security.conftest import lines, needs_root, run_command, value_of

# Starts up to 300 sleeping processes, one at a time, until the kernel refuses one.
PROCESS_FLOOD = """python3 -c '
import os
started = 0
try:
    while started < 300:
        os.posix_spawn("/bin/sleep", ["sleep", "600"], {})
        started += 1
    print("refused=no")
except OSError as exc:
    print("refused=" + exc.strerror)
print("started=%d" % started)
'"""


@needs_root
async def test_a_process_flood_stops_at_the_limit_and_the_next_command_runs(
    aws, redis_server, redis_client, tmp_path
):
    aws.send({"projectId": "flood", "terminalId": "t", "commandId": "c1",
              "command": f"{PROCESS_FLOOD}; id -u > uid.txt"})
    aws.send({"projectId": "flood", "terminalId": "t", "commandId": "c2",
              "command": "echo next ran"})
    env = aws.worker_env(redis_server.url, tmp_path, COMMAND_MAX_PROCESSES=40)
    async with running_worker(env):
        flood = await wait_for_events(redis_client, "flood", "t", has_exit("c1"))
        after = await wait_for_events(redis_client, "flood", "t", has_exit("c2"))
    assert value_of(flood, "refused") == "Resource temporarily unavailable"
    assert int(value_of(flood, "started")) < 40
    assert output_text(after, "c2").strip() == "next ran"
    assert after[-1]["exitCode"] == 0
    uid = int((tmp_path / "flood" / "uid.txt").read_text())
    assert sweep.processes_of(uid) == []


ESCAPES = {
    "nohup": "nohup sh -c 'touch started; exec sleep 600' >/dev/null 2>&1 &",
    "setsid": "setsid sh -c 'touch started; exec sleep 600' >/dev/null 2>&1 </dev/null &",
    # The middle process exits at once: the sleeper is an orphan in a session of its own.
    "double fork": "(setsid sh -c 'sh -c \"touch started; exec sleep 600\" &' "
                   ">/dev/null 2>&1 </dev/null &)",
}


@needs_root
@pytest.mark.parametrize("escape", ESCAPES.values(), ids=ESCAPES.keys())
async def test_no_process_of_the_command_outlives_it(
    aws, redis_server, redis_client, tmp_path, escape
):
    command = (f'echo "uid=$(id -u)"\n{escape}\n'
               "until [ -e started ]; do sleep 0.05; done; echo left running")
    events = await run_command(aws, redis_server, redis_client, tmp_path, command)
    uid = int(value_of(events, "uid"))
    try:
        assert "left running" in output_text(events)
        assert sweep.processes_of(uid) == []
    finally:
        sweep.kill_all_as(uid)


async def test_a_file_past_the_size_limit_cannot_be_written(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        'head -c 2097152 /dev/zero > big.bin; echo "status=$?"; '
        'echo "size=$(stat -c %s big.bin)"',
        worker_env={"COMMAND_MAX_FILE_BYTES": 1048576},
    )
    assert value_of(events, "status") == "153"  # 128 + SIGXFSZ
    assert value_of(events, "size") == "1048576"


async def test_a_workspace_past_the_disk_cap_stops_the_command_with_an_error(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        "for n in 1 2 3 4; do head -c 1048576 /dev/urandom > part$n; done; echo written; "
        "sleep 600",
        worker_env={"WORKSPACE_MAX_BYTES": 3 * 1048576, "WORKSPACE_CHECK_SECONDS": 0.2},
        timeoutSeconds=120,
    )
    assert "written" in output_text(events)
    errors = [e for e in events if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["disk_limit"]
    assert str(3 * 1048576) in errors[0]["message"]
    # Past the cap the upload is refused too, said in the same one error.
    assert "none of its changes were saved" in errors[0]["message"]
    assert events[-1]["type"] == "exit"
    assert events[-1]["reason"] == "disk_limit"


async def test_files_are_private_to_the_command_umask_077(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        'echo "umask=$(umask)"; touch made; echo "mode=$(stat -c %a made)"',
    )
    assert value_of(events, "umask") == "0077"
    assert value_of(events, "mode") == "600"


async def test_no_new_privileges_can_be_gained(aws, redis_server, redis_client, tmp_path):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        "awk '/^NoNewPrivs/ {print \"no_new_privs=\" $2}' /proc/self/status",
    )
    assert value_of(events, "no_new_privs") == "1"


async def test_open_files_and_core_dumps_are_limited_for_good(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        'echo "files=$(ulimit -Sn) $(ulimit -Hn)"; echo "core=$(ulimit -Sc) $(ulimit -Hc)"; '
        'ulimit -n 4096 2>/dev/null; echo "raise=$?"',
        worker_env={"COMMAND_MAX_OPEN_FILES": 256},
    )
    assert value_of(events, "files") == "256 256"
    assert value_of(events, "core") == "0 0"
    assert value_of(events, "raise") != "0"


async def test_the_out_of_memory_killer_takes_the_command_first(
    aws, redis_server, redis_client, tmp_path
):
    events = await run_command(aws, redis_server, redis_client, tmp_path,
                               'echo "oom=$(cat /proc/self/oom_score_adj)"')
    assert value_of(events, "oom") == "1000"


@needs_root
async def test_what_a_command_leaves_outside_its_workspace_is_gone_after_it(
    aws, redis_server, redis_client, tmp_path
):
    marker = secrets.token_hex(6)
    left = [Path(f"/tmp/left-{marker}"), Path(f"/var/tmp/left-{marker}"),
            Path(f"/dev/shm/left-{marker}")]
    command = (f"echo data > {left[0]}; mkdir {left[1]} && echo data > {left[1]}/file; "
               f"echo data > {left[2]}; echo data > ~/in-home; echo made")
    aws.send({"projectId": "leaves", "terminalId": "t", "commandId": "c1", "command": command})
    aws.send({"projectId": "reads", "terminalId": "t", "commandId": "c2",
              "command": 'echo "home=$(ls -A ~ | wc -l)"'})
    try:
        async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
            made = await wait_for_events(redis_client, "leaves", "t", has_exit("c1"))
            reads = await wait_for_events(redis_client, "reads", "t", has_exit("c2"))
        assert "made" in lines(made)
        assert [path for path in left if path.exists()] == []
        assert value_of(reads, "home") == "0"
    finally:
        for path in left:
            if path.is_dir():
                (path / "file").unlink(missing_ok=True)
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


@needs_root
def test_the_sweep_finds_every_process_of_a_user_and_tells_zombies():
    uid = 60999  # outside the command ids any worker claims
    running = subprocess.Popen(["sleep", "30"], user=uid, group=uid, extra_groups=[])
    exited = subprocess.Popen(["true"], user=uid, group=uid, extra_groups=[])
    try:
        os.waitid(os.P_PID, exited.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        assert sorted(sweep.processes_of(uid), key=lambda p: p.pid) == sorted([
            sweep.UserProcess(running.pid, os.getpid(), zombie=False),
            sweep.UserProcess(exited.pid, os.getpid(), zombie=True),
        ], key=lambda p: p.pid)
    finally:
        running.kill()
        running.wait()
        exited.wait()
    assert sweep.processes_of(uid) == []
