"""What every fault case needs: real processes, a way to break AWS calls, a client that
reconnects the way the page does, and the check that everything ends cleanly."""

from __future__ import annotations

import contextlib
import json
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, connect_websocket_url

from dev.system import LocalSystem
from tests.faults.proxy import FaultProxy
from tests.integration.harness import WAIT_LIMIT_S
from tests.integration.processes import WorkerProcess, WorkerProcesses

# How long a program may take to exit after SIGTERM: a hang guard, not a timing check.
EXIT_LIMIT_S = 60


def fresh_id(name: str) -> str:
    """Ids of their own per test, so a shared Redis or bucket mixes nothing."""
    return f"{name}-{secrets.token_hex(3)}"


@pytest.fixture
def workers(tmp_path):
    processes = WorkerProcesses(tmp_path / "logs")
    yield processes
    processes.close()


@pytest.fixture
def fault_proxy(moto_server):
    proxy = FaultProxy(moto_server.url).start()
    yield proxy
    proxy.stop()


# --- processes ---------------------------------------------------------------------------

def _stat(pid: int) -> list[str]:
    # After the command name (which may hold spaces): state ppid pgrp session ...
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(*roots: int) -> dict[int, str]:
    """The roots and every live process below them, each with its start time, so a pid
    reused later is never taken for one of them."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(int(stat.parent.name))
            pid = int(stat.parent.name)
            children.setdefault(int(fields[1]), []).append(pid)
            started[pid] = fields[19]
    found: dict[int, str] = {}
    frontier = [pid for pid in roots if pid in started]
    while frontier:
        pid = frontier.pop()
        if pid in found:
            continue
        found[pid] = started[pid]
        frontier.extend(children.get(pid, []))
    return found


def survivors(snapshot: dict[int, str]) -> list[int]:
    """Which processes of ``snapshot`` still run (a zombie has ended)."""
    alive = []
    for pid, started in snapshot.items():
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            if fields[19] == started and fields[0] != "Z":
                alive.append(pid)
    return alive


async def wait_for_no_survivors(snapshot: dict[int, str], what: str) -> None:
    with trio.move_on_after(10):
        while survivors(snapshot):
            await trio.sleep(0.1)
    left = {pid: command_line(pid) for pid in survivors(snapshot)}
    assert not left, f"{what} left processes behind: {left}"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def peak_rss_mib(pid: int) -> float | None:
    """The process's peak resident memory so far (the kernel's high-water mark)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def stop_worker_cleanly(worker: WorkerProcess) -> None:
    """SIGTERM, exit status 0, nothing left behind, no traceback on stderr."""
    tree = process_tree(worker.pid)
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait(EXIT_LIMIT_S) == 0, worker.stdout()[-4000:]
    await wait_for_no_survivors(tree, str(worker))
    assert "Traceback" not in worker.stderr(), worker.stderr()


async def stop_system_cleanly(system: LocalSystem) -> None:
    """Gateway, then scaler (which stops its workers), each by SIGTERM: every one exits
    with status 0 and no process any of them started is left."""
    tree = {}
    for process in system.processes().values():
        tree.update(process_tree(process.pid))
    for name in ("gateway", "scaler"):
        process = system.processes()[name]
        tree.update(process_tree(process.pid))
        process.send_signal(signal.SIGTERM)
        try:
            code = await trio.to_thread.run_sync(process.wait, EXIT_LIMIT_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still running {EXIT_LIMIT_S} s after SIGTERM") \
                from None
        assert code == 0, f"{name} exited with {code}"
    await wait_for_no_survivors(tree, "the system")
    logs = {name: (system.workdir / f"{name}.log").read_text(errors="replace")
            for name in ("gateway", "scaler")}
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}.log:\n{text[-4000:]}"
    # Local workers write to the scaler's log: each that started also stopped in order.
    lines = [json.loads(line) for line in logs["scaler"].splitlines()
             if line.startswith("{")]
    serving = [line for line in lines if ": serving " in line.get("message", "")]
    stopped = [line for line in lines if ": stopped after " in line.get("message", "")]
    assert serving
    assert len(stopped) == len(serving), "a worker ended without its orderly stop"


# --- a websocket client that reconnects like the page ------------------------------------

class ResumingTerminal:
    """One terminal's websocket client that, when the connection closes, reconnects with a
    fresh token and resumes after the last ``seq`` it received, as the page does."""

    def __init__(self, system: LocalSystem, project: str, terminal: str = "t"):
        self._system = system
        self.project, self.terminal = project, terminal
        self.frames: list[dict] = []
        self.closes: list[int] = []
        self._ws = None
        self._nursery: trio.Nursery | None = None

    @contextlib.asynccontextmanager
    async def opened(self):
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await self._connect()
            try:
                yield self
            finally:
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.aclose()
                nursery.cancel_scope.cancel()

    @property
    def last_seq(self) -> int:
        return max((f["seq"] for f in self.frames if "seq" in f), default=0)

    async def _connect(self) -> None:
        with trio.fail_after(WAIT_LIMIT_S):
            while True:
                try:
                    self._ws = await connect_websocket_url(
                        self._nursery, self._system.terminal_socket(self.project, self.terminal),
                        extra_headers=[(b"Origin", self._system.gateway_url.encode())])
                    break
                except (OSError, HandshakeError, ConnectionClosed):
                    await trio.sleep(0.1)  # the gateway is not back yet
        await self._ws.send_message(json.dumps({"type": "resume", "after": self.last_seq}))

    async def _receive(self) -> dict:
        while True:
            try:
                frame = json.loads(await self._ws.get_message())
            except ConnectionClosed as closed:
                self.closes.append(closed.reason.code)
                await self._connect()
                continue
            self.frames.append(frame)
            return frame

    async def run(self, command: str) -> str:
        await self._ws.send_message(json.dumps({"type": "command", "command": command}))
        while True:
            frame = await self._receive()
            if frame["type"] == "queued":
                return frame["commandId"]

    async def until(self, predicate, limit_s: float = 120) -> list[dict]:
        with trio.fail_after(limit_s):
            while not predicate(self.frames):
                await self._receive()
        return self.frames

    def events(self, command_id: str | None = None) -> list[dict]:
        return [f for f in self.frames if "seq" in f
                and command_id in (None, f.get("commandId"))]

    def output(self, command_id: str) -> str:
        return "".join(f["data"] for f in self.events(command_id) if f["type"] == "output")

    def exited(self, command_id: str) -> bool:
        return any(f["type"] == "exit" for f in self.events(command_id))


def assert_no_gap_no_duplicate(frames: list[dict]) -> None:
    seqs = [f["seq"] for f in frames if "seq" in f]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
