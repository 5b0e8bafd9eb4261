"""The whole system, driven from outside: websocket clients and browsers against the
gateway, the scaler launching real workers, emulated AWS and a real redis-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from dev.system import LocalSystem, descendants, still_running
from tests.browser.pages import (
    WAIT_LIMIT_S,
    chromium,
    needs_chromium,
    save_screenshot,
    wait_for_lines,
    wait_for_status,
)
from tests.e2e.conftest import E2E_SETTINGS
from tests.integration.processes import worker_running
from tests.terminal_client import (
    TerminalClient,
    assert_no_gap_no_duplicate,
    fresh_id,
    system_terminal,
)

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


async def wait_for_empty_queue(system: LocalSystem) -> None:
    with trio.fail_after(WAIT_LIMIT_S):
        while await trio.to_thread.run_sync(system.queue_counts) != (0, 0):
            await trio.sleep(0.2)


LINES = 300


def numbered_lines(marker: str) -> str:
    # Each command lasts a while, so that one warm worker cannot drain a burst of them
    # before the scaler sees it.
    return f"sleep 0.5; for i in $(seq 1 {LINES}); do echo {marker} $i; done"


async def test_a_burst_of_30_commands_is_drained_by_several_workers_complete_and_in_order(
    system,
):
    projects = [fresh_id(f"burst{n}") for n in range(10)]
    async with AsyncExitStack() as stack:
        terminals = [await stack.enter_async_context(system_terminal(system, project).opened())
                     for project in projects]
        sent: dict[str, tuple[TerminalClient, str]] = {}
        for round_ in range(3):
            for n, terminal in enumerate(terminals):
                marker = f"c{n}r{round_}"
                sent[await terminal.run(numbered_lines(marker))] = (terminal, marker)
        for terminal in terminals:
            await terminal.until(lambda frames, terminal=terminal: len(terminal.exits()) == 3)
    workers = set()
    for command_id, (terminal, marker) in sent.items():
        control = [(f["type"], f.get("attempt"), f.get("code"), f.get("message"))
                   for f in terminal.events(command_id) if f["type"] != "output"]
        assert [kind for kind, *_ in control] == ["started", "exit"], (marker, control)  # once
        lines = terminal.output(command_id).splitlines()
        assert lines == [f"{marker} {i}" for i in range(1, LINES + 1)], marker
        workers.add(next(f["workerId"] for f in terminal.events(command_id)
                         if f["type"] == "started"))
    for terminal in terminals:
        assert all(e["exitCode"] == 0 for e in terminal.exits())
        assert_no_gap_no_duplicate(terminal.frames)
    assert len(workers) >= 2
    assert system.scaler_figures()["tasks_launched_total"] >= 2
    await wait_for_empty_queue(system)


async def test_a_worker_killed_mid_command_loses_nothing(system):
    project = fresh_id("killed")
    marker = fresh_id("tick")
    async with system_terminal(system, project).opened() as terminal:
        command_id = await terminal.run(
            f"for i in $(seq 1 30); do echo {marker} $i; sleep 0.1; done")
        await terminal.until(lambda frames: f"{marker} 3" in terminal.output(command_id))
        worker = worker_running(marker)
        assert worker is not None
        os.kill(worker, signal.SIGKILL)
        frames = await terminal.until(lambda frames: any(
            f["type"] == "exit" and f["commandId"] == command_id for f in frames))
    kinds = [(f["type"], f.get("attempt"), f.get("code")) for f in frames
             if f["type"] in ("started", "error", "exit")]
    assert kinds == [("started", 1, None), ("error", None, "worker_lost"),
                     ("started", 2, None), ("exit", None, None)]
    assert frames[-1]["exitCode"] == 0
    # The second attempt's output is whole: the rerun is reported, and nothing is lost.
    second = frames.index(next(f for f in frames if f.get("attempt") == 2))
    rerun = "".join(f["data"] for f in frames[second:] if f["type"] == "output")
    assert rerun.splitlines() == [f"{marker} {i}" for i in range(1, 31)]
    await wait_for_empty_queue(system)


@needs_chromium
def test_two_browsers_on_two_projects_see_only_their_own_output(system, tmp_path):
    first, second = fresh_id("alpha"), fresh_id("beta")
    with chromium(2) as (browser_a, browser_b):
        pages = {}
        for browser, project in ((browser_a, first), (browser_b, second)):
            page = browser.new_page(viewport={"width": 900, "height": 500})
            page.goto(system.terminal_page(project, "main"))
            wait_for_status(page, "connected")
            wait_for_lines(page, lambda lines: lines[0] == "$", "the prompt")
            pages[project] = page
        try:
            # Both type at once: each command runs while the other's runs.
            for project, page in pages.items():
                page.locator(".xterm-helper-textarea").focus()
                page.keyboard.type(f"for i in 1 2 3 4 5; do echo {project} $i; sleep 0.2; done")
                page.keyboard.press("Enter")
            for project, page in pages.items():
                lines = wait_for_lines(page, lambda lines: "[exit 0]" in lines, "the exit")
                mine = [line for line in lines if line.startswith(project)]
                assert mine == [f"{project} {i}" for i in range(1, 6)]
                other = second if project == first else first
                assert not any(other in line for line in lines)
            # Keys reach a running command of the full system too.
            page = pages[first]
            page.keyboard.type("read x; echo got $x")
            page.keyboard.press("Enter")
            wait_for_status(page, "command running")
            page.keyboard.type("abc")
            page.keyboard.press("Enter")
            wait_for_lines(page, lambda lines: "got abc" in lines, "read's answer")
        finally:
            for project, page in pages.items():
                save_screenshot(page, tmp_path, f"two-browsers-{project.split('-')[0]}.png")


def read_line_with(process: subprocess.Popen, needle: str, seen: list[str]) -> str:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"never printed {needle!r}:\n" + "".join(seen))


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


class StackProcess:
    """``dev/stack.py`` (what `make run` runs) as a person starts it, output read back."""

    def __init__(self, home: Path):
        self.process = subprocess.Popen(
            [sys.executable, "dev/stack.py"], cwd=REPO, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"},
        )
        self.seen: list[str] = []
        self.page_url = read_line_with(self.process, "web terminal:", self.seen).split()[-1]
        self.status_url = read_line_with(self.process, "status page:", self.seen).split()[-1]
        self.port = int(self.page_url.split(":")[2].split("/")[0])

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)  # what Ctrl-C sends
        code = self.process.wait(WAIT_LIMIT_S)
        self.seen.extend(self.process.stdout.readlines())
        return code

    def close(self) -> None:
        """Whatever the test did: stopped the way a person stops it, killed if it hangs."""
        if self.process.poll() is None:
            try:
                self.interrupt()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def stack_process(tmp_path):
    stack = StackProcess(tmp_path)
    yield stack
    stack.close()


async def test_make_run_serves_the_sample_project_and_ctrl_c_leaves_no_process(
    stack_process,
):
    """A person's first minute with `make run`, then Ctrl-C."""
    stack = stack_process
    token_url = f"http://127.0.0.1:{stack.port}/dev/token?project=sample&terminal=term-1"
    # As the page does: a development token from the gateway (good for one connection).
    token = json.loads(await trio.to_thread.run_sync(fetch, token_url))["token"]
    socket_url = f"ws://127.0.0.1:{stack.port}/terminals/sample/term-1?token={token}"
    client = TerminalClient(lambda: socket_url, f"http://127.0.0.1:{stack.port}")
    async with client.opened() as terminal:
        listing = await terminal.run("ls")
        await terminal.until(lambda frames: len(terminal.exits()) == 1)
        await terminal.run("python3 -c 'print(1)' > made-here.txt")
        await terminal.until(lambda frames: len(terminal.exits()) == 2)
    assert terminal.output(listing).split() == ["README.md", "package.json", "src"]
    assert all(e["exitCode"] == 0 for e in terminal.exits()), terminal.frames
    idle_queue = {"waiting": 0, "inFlight": 0, "deadLetters": 0}
    # The worker deletes a command's message just after its exit event goes out.
    with trio.fail_after(30):
        while True:
            status = json.loads(await trio.to_thread.run_sync(
                fetch, f"{stack.status_url}status.json"))
            if status["queue"] == idle_queue:
                break
            await trio.sleep(0.2)
    files = {f["path"]: f["bytes"] for f in status["projects"]["sample"]}
    assert files["made-here.txt"] == 2
    assert status["workers"]["live"] >= 1
    assert b"live workers" in await trio.to_thread.run_sync(fetch, stack.status_url)

    started = descendants([stack.process.pid])
    assert len(started) >= 4  # redis-server, scaler, gateway, a worker
    assert await trio.to_thread.run_sync(stack.interrupt) == 0
    assert "stopped" in stack.seen[-1]
    assert still_running(started) == []


async def test_with_no_redis_server_the_system_runs_on_fakeredis(tmp_path):
    with LocalSystem(tmp_path / "system", fake_redis=True, settings=E2E_SETTINGS) as system:
        async with system_terminal(system, fresh_id("fake")).opened() as terminal:
            command_id = await terminal.run("echo one; echo two")
            await terminal.until(lambda frames: terminal.exits())
    assert terminal.output(command_id).split() == ["one", "two"]
    assert terminal.exits()[0]["exitCode"] == 0
