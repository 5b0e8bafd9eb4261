"""What every fault case needs: real processes, a way to break AWS calls, a client that
reconnects the way the page does, and the check that everything ends cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from dev.system import LocalSystem, descendants, start_time, still_running
from tests.faults.proxy import FaultProxy
from tests.integration.processes import WorkerProcess

# How long a program may take to exit after SIGTERM: a hang guard, not a timing check.
EXIT_LIMIT_S = 60


@pytest.fixture
def fault_proxy(moto_server):
    proxy = FaultProxy(moto_server.url).start()
    yield proxy
    proxy.stop()


# --- processes ---------------------------------------------------------------------------

def process_tree(*roots: int) -> dict[int, str]:
    """The roots and every live process below them, each with its start time, so a pid
    reused later is never taken for one of them."""
    tree = {pid: started for pid in roots if (started := start_time(pid)) is not None}
    return tree | descendants(list(tree))


async def wait_for_no_survivors(snapshot: dict[int, str], what: str) -> None:
    with trio.move_on_after(10):
        while still_running(snapshot):
            await trio.sleep(0.1)
    left = {pid: command_line(pid) for pid in still_running(snapshot)}
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
