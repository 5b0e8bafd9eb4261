"""A hostile command cannot reach the worker's credentials, its files, or another project.

Real worker (in-process, or ``python -m runtime`` where its own environment matters), real
moto server and redis-server, real PTYs. Each test fails if the defence it names is removed.
"""

from __future__ import annotations

import os
import subprocess
import sys

import trio

from runtime.worker.confinement import USER_NAME
from tests.integration.harness import has_exit, output_text, running_worker, wait_for_events
from tests.integration.processes import REPO
from tests.security.conftest import lines, needs_root, run_command, value_of

# What a worker on Fargate holds in its environment, with values a leak would show.
WORKER_SECRETS = {
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/leaked-credentials-path",
    "AWS_SESSION_TOKEN": "leaked-session-token",
    "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/leaked-task",
    "GATEWAY_SECRET": "leaked-gateway-secret",
    "REDIS_PASSWORD": "leaked-redis-password",
}
FORBIDDEN_PREFIXES = ("AWS_", "ECS_", "REDIS_", "GATEWAY_")
NOBODY = 65534


def assert_no_secret_in(text: str) -> None:
    for value in WORKER_SECRETS.values():
        assert value not in text


async def run_on_worker_process(aws, redis_server, redis_client, workers, root, command):
    """Run ``command`` on ``python -m runtime``, whose environment holds the secrets;
    ``{pid}`` in the command is the worker's process id."""
    worker = workers.start({**aws.worker_env(redis_server.url, root), **WORKER_SECRETS})
    aws.send({"projectId": "hostile", "terminalId": "t", "commandId": "c1",
              "command": command.format(pid=worker.pid)})
    return await wait_for_events(redis_client, "hostile", "t", has_exit("c1"))


async def test_env_shows_no_worker_variables(aws, redis_server, redis_client, tmp_path):
    events = await run_command(aws, redis_server, redis_client, tmp_path, "env",
                               worker_env=WORKER_SECRETS)
    names = {line.split("=", 1)[0] for line in lines(events) if "=" in line}
    assert "PATH" in names  # the output is the environment, not an error
    assert not [name for name in names if name.startswith(FORBIDDEN_PREFIXES)]
    assert_no_secret_in(output_text(events))


@needs_root
async def test_home_and_user_are_the_commands_own(aws, redis_server, redis_client, tmp_path):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        'echo "home=$HOME"; echo "user=$USER"; touch ~/made && echo "home_writable=yes"; '
        'echo "home_owner=$(stat -c %u ~)"; echo "uid=$(id -u)"',
    )
    assert value_of(events, "home") != os.environ.get("HOME")
    assert value_of(events, "uid") != "0"
    assert value_of(events, "home_owner") == value_of(events, "uid")
    assert value_of(events, "home_writable") == "yes"
    assert value_of(events, "user") == USER_NAME


@needs_root
async def test_environ_of_pid_1_and_of_the_worker_cannot_be_read(
    aws, redis_server, redis_client, tmp_path, workers
):
    events = await run_on_worker_process(
        aws, redis_server, redis_client, workers, tmp_path,
        'cat /proc/1/environ; echo "pid1=$?"; cat /proc/{pid}/environ; echo "worker=$?"',
    )
    assert value_of(events, "pid1") != "0"
    assert value_of(events, "worker") != "0"
    assert "Permission denied" in output_text(events)
    assert_no_secret_in(output_text(events))


@needs_root
async def test_the_workers_open_files_cannot_be_listed_or_read(
    aws, redis_server, redis_client, tmp_path, workers
):
    events = await run_on_worker_process(
        aws, redis_server, redis_client, workers, tmp_path,
        'ls /proc/{pid}/fd; echo "list=$?"; cat /proc/{pid}/fd/1 </dev/null; echo "read=$?"; '
        'cat /proc/{pid}/mem; echo "memory=$?"',
    )
    assert value_of(events, "list") != "0"
    assert value_of(events, "read") != "0"
    assert value_of(events, "memory") != "0"
    assert "Permission denied" in output_text(events)


@needs_root
async def test_commands_run_under_a_user_id_of_their_own_one_per_slot(
    aws, redis_server, redis_client, tmp_path
):
    # Each command waits for the other to arrive, so they certainly run at the same time.
    barrier = tmp_path / "barrier"
    barrier.mkdir(mode=0o1777)
    barrier.chmod(0o1777)
    for project, other in (("one", "two"), ("two", "one")):
        aws.send({"projectId": project, "terminalId": "t", "commandId": "c1",
                  "timeoutSeconds": 60, "command": (
                      f'echo "ids=$(id -u) $(id -g) $(id -G)"; touch {barrier}/{project}; '
                      f"until [ -e {barrier}/{other} ]; do sleep 0.05; done"
                  )})
    env = aws.worker_env(redis_server.url, tmp_path / "ws", WORKER_CONCURRENCY=2)
    async with running_worker(env):
        first = await wait_for_events(redis_client, "one", "t", has_exit())
        second = await wait_for_events(redis_client, "two", "t", has_exit())
    uids = []
    for events in (first, second):
        assert events[-1]["exitCode"] == 0, output_text(events)
        uid, gid, groups = value_of(events, "ids").split(" ", 2)
        assert uid != "0"
        assert gid == uid
        assert groups == gid  # no supplementary group, root's least of all
        uids.append(uid)
    assert uids[0] != uids[1]


@needs_root
async def test_other_projects_the_workspace_root_and_the_manifests_cannot_be_read(
    aws, redis_server, redis_client, tmp_path
):
    aws.put_file("victim", "secret.txt", b"victim's data")
    aws.send({"projectId": "victim", "terminalId": "t", "commandId": "c1",
              "command": "chmod 644 secret.txt"})
    aws.send({"projectId": "hostile", "terminalId": "t", "commandId": "c2", "command": (
        'ls ..; echo "list=$?"; cat ../victim/secret.txt; echo "read=$?"; '
        'ls ../.manifests; echo "manifests=$?"; cat ../.manifests/victim.json; '
        'echo "manifest=$?"'
    )})
    async with running_worker(aws.worker_env(redis_server.url, tmp_path)):
        await wait_for_events(redis_client, "victim", "t", has_exit("c1"))
        events = await wait_for_events(redis_client, "hostile", "t", has_exit("c2"))
    assert (tmp_path / ".manifests" / "victim.json").exists()  # there to be read
    for probe in ("list", "read", "manifests", "manifest"):
        assert value_of(events, probe) != "0", probe
    assert "victim's data" not in output_text(events)


async def test_no_descriptor_of_the_worker_is_inherited(
    aws, redis_server, redis_client, tmp_path
):
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        # ls, a child, lists the shell's descriptors; the shell itself opens none for it.
        events = await run_command(aws, redis_server, redis_client, tmp_path,
                                   'ls /proc/$$/fd > fds; echo "fds=$(tr "\\n" " " < fds)"')
    finally:
        os.close(read_end)
        os.close(write_end)
    # 0-2 are the terminal; 255 is where bash keeps its own copy of it.
    fds = set(value_of(events, "fds").split())
    assert {"0", "1", "2"} <= fds <= {"0", "1", "2", "255"}  # listed, and nothing more


async def test_the_command_leads_a_session_of_its_own(aws, redis_server, redis_client, tmp_path):
    events = await run_command(
        aws, redis_server, redis_client, tmp_path,
        'read -r _ _ _ _ _ sid _ < /proc/$$/stat; echo "session=$sid"; echo "pid=$$"',
    )
    assert value_of(events, "session") == value_of(events, "pid")
    assert int(value_of(events, "session")) != os.getsid(0)


# The worker's code is loaded first (this Python may live where uid 65534 cannot go),
# then the process drops root and starts the worker as `python -m runtime` would.
AS_NOBODY = (
    "import os, sys\n"
    "from runtime.__main__ import main\n"
    f"os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})\n"
    "sys.exit(main())\n"
)


async def test_a_worker_that_is_not_root_refuses_to_start_unless_told_to(
    aws, redis_server, tmp_path
):
    env = aws.worker_env(redis_server.url, tmp_path, COMMANDS_AS_WORKER_USER="false")
    argv = [sys.executable, "-c", AS_NOBODY] if os.geteuid() == 0 else [
        sys.executable, "-m", "runtime"]
    result = await trio.to_thread.run_sync(lambda: subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
    ))
    assert result.returncode == 2, result.stderr
    stderr_lines = result.stderr.splitlines()
    assert len(stderr_lines) == 1, result.stderr
    assert f"uid {os.geteuid() or NOBODY}, not root" in stderr_lines[0]
    assert "COMMANDS_AS_WORKER_USER=true" in stderr_lines[0]
    assert result.stdout == ""
