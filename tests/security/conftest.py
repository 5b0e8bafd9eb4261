"""What the attack suite shares: running a hostile command on a real worker."""

from __future__ import annotations

import os

import pytest

from tests.integration.harness import has_exit, output_text, running_worker, wait_for_events

# Commands run under user ids of their own only when the worker is root.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason=f"only root can start commands under user ids of their own; these tests run as "
           f"uid {os.geteuid()}",
)


async def run_command(aws, redis_server, redis_client, workspace_root, command: str, *,
                      project: str = "hostile", worker_env: dict | None = None,
                      **fields) -> list[dict]:
    """Run ``command`` on an in-process worker; the terminal's events up to its exit."""
    aws.send({"projectId": project, "terminalId": "t", "commandId": "c1", "command": command,
              **fields})
    env = aws.worker_env(redis_server.url, workspace_root, **(worker_env or {}))
    async with running_worker(env):
        return await wait_for_events(redis_client, project, "t", has_exit("c1"))


def lines(events: list[dict]) -> list[str]:
    return output_text(events).replace("\r\n", "\n").splitlines()


def value_of(events: list[dict], name: str) -> str:
    """The value a command printed as ``name=value``."""
    for line in lines(events):
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1]
    raise AssertionError(f"no {name}= in the output:\n{output_text(events)}")
