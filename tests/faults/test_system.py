"""The whole system as processes (``LocalSystem``: scaler with local workers, gateway,
moto server, redis-server), driven by websocket clients that reconnect like the page."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import redis
import trio

from dev.system import LocalSystem
from tests.e2e.conftest import E2E_SETTINGS
from tests.faults.conftest import (
    peak_rss_mib,
    process_tree,
    stop_system_cleanly,
)
from tests.terminal_client import (
    TerminalClient,
    assert_no_gap_no_duplicate,
    fresh_id,
    system_terminal,
)

# Memory no program may pass under the load below: generous, a guard against a leak or
# an unbounded buffer, not a budget.
PEAK_RSS_BOUND_MIB = 400


async def test_gateway_restarted_while_a_command_streams_its_client_resumes_without_gap_or_dup(
    tmp_path,
):
    project, marker = fresh_id("restart"), fresh_id("line")
    system = LocalSystem(tmp_path / "system", settings=E2E_SETTINGS).start()
    try:
        async with system_terminal(system, project).opened() as terminal:
            command_id = await terminal.run(
                f"for i in $(seq 1 60); do echo {marker} $i; sleep 0.1; done")
            await terminal.until(lambda _: f"{marker} 5\r\n" in terminal.output(command_id))
            old_exit: list[int] = []

            async def restart():
                old_exit.append(await trio.to_thread.run_sync(system.restart_gateway))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(restart)
                frames = await terminal.until(lambda _: terminal.exited(command_id))
        await stop_system_cleanly(system)
    finally:
        system.stop()
    assert old_exit == [0]
    assert terminal.closes == [1012]  # told to reconnect, and it did
    assert terminal.output(command_id).splitlines() == [f"{marker} {i}" for i in range(1, 61)]
    assert_no_gap_no_duplicate(frames)
    assert [f["type"] for f in frames if f["type"] not in ("output",)] == ["queued", "started",
                                                                          "exit"]


PROJECTS, PER_PROJECT, LINES = 20, 10, 40


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def program(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            words = cmdline.read().split(b"\0")
    except OSError:
        return None
    for name in (b"runtime", b"gateway", b"scaler"):
        if b"-m" in words and name in words:
            if name == b"runtime" and program(parent_of(pid)) == "runtime":
                return None  # a worker's fork on its way to exec a command's shell
            return name.decode()
    # redis-server rewrites its title to "redis-server host:port".
    return "redis-server" if words and b"redis-server" in words[0] else None


async def test_200_commands_on_20_projects_and_4_workers_each_run_once_complete_and_in_order(
    tmp_path,
):
    settings = {**E2E_SETTINGS, "ECS_MIN_TASKS": "4", "ECS_MAX_TASKS": "4",
                "LEASE_SECONDS": "30"}
    system = LocalSystem(tmp_path / "system", settings=settings).start()
    projects = [fresh_id(f"load{n}") for n in range(PROJECTS)]
    peaks: dict[int, tuple[str, float]] = {}

    async def sample_memory():
        redis_pid = int(redis.Redis.from_url(system.redis_url).info("server")["process_id"])
        while True:
            roots = [p.pid for p in system.processes().values()]
            for pid in [*process_tree(*roots), redis_pid]:
                name, peak = program(pid), peak_rss_mib(pid)
                if name is not None and peak is not None:
                    peaks[pid] = (name, max(peak, peaks.get(pid, (name, 0.0))[1]))
            await trio.sleep(0.5)

    async def finish(terminal: TerminalClient) -> None:
        await terminal.until(lambda frames: sum(f["type"] == "exit" for f in frames)
                             == PER_PROJECT, limit_s=400)

    try:
        async with trio.open_nursery() as sampling, AsyncExitStack() as stack:
            sampling.start_soon(sample_memory)
            terminals = [await stack.enter_async_context(system_terminal(system, p).opened())
                         for p in projects]
            sent: dict[str, tuple[TerminalClient, str]] = {}
            for round_ in range(PER_PROJECT):
                for n, terminal in enumerate(terminals):
                    marker = f"p{n}c{round_}"
                    sent[await terminal.run(
                        f"echo {marker} >> runs.log; "
                        f"for i in $(seq 1 {LINES}); do echo {marker} $i; done")] = (
                        terminal, marker)
            async with trio.open_nursery() as clients:
                for terminal in terminals:
                    clients.start_soon(finish, terminal)
            sampling.cancel_scope.cancel()
        await stop_system_cleanly(system)
        s3 = system.client("s3")
        files = {project: s3.get_object(Bucket=system.bucket, Key=f"projects/{project}/runs.log")
                 ["Body"].read().decode() for project in projects}
    finally:
        system.stop()

    workers = set()
    for command_id, (terminal, marker) in sent.items():
        started = [f for f in terminal.events(command_id) if f["type"] == "started"]
        assert [f["attempt"] for f in started] == [1], marker  # run once
        workers.add(started[0]["workerId"])
        exits = [f for f in terminal.events(command_id) if f["type"] == "exit"]
        assert [e["exitCode"] for e in exits] == [0], marker
        assert terminal.output(command_id).splitlines() == [
            f"{marker} {i}" for i in range(1, LINES + 1)], marker
    for n, (project, terminal) in enumerate(zip(projects, terminals, strict=True)):
        assert_no_gap_no_duplicate(terminal.frames)
        assert sorted(files[project].split()) == sorted(
            f"p{n}c{r}" for r in range(PER_PROJECT))
    assert len(workers) == 4
    assert sum(name == "runtime" for name, _ in peaks.values()) == 4
    report = sorted(peaks.values())
    print("\npeak resident memory (MiB) under 200 commands:")
    for pid, (name, peak) in sorted(peaks.items(), key=lambda item: item[1]):
        print(f"  {name:<13} pid {pid:<8} {peak:7.1f}")
    print(json.dumps({"peakRssMiB": {f"{name}-{i}": round(peak, 1)
                                     for i, (name, peak) in enumerate(report)}}))
    assert {name for name, _ in report} == {"gateway", "scaler", "runtime", "redis-server"}
    assert all(peak < PEAK_RSS_BOUND_MIB for _, peak in report), report
