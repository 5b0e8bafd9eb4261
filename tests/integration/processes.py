"""The worker as a real separate process (``python -m runtime``), for tests.

Its stdout (JSON log lines) and stderr go to files, read while it runs and after it
exits. ``WorkerProcesses`` remembers every process it started and kills what is still
alive at teardown, so a failing test never leaves a worker behind.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from pathlib import Path

import trio

from tests.integration.harness import WAIT_LIMIT_S

REPO = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], log_dir: Path, name: str,
                 wrapper: tuple[str, ...] = ()):
        self.name = name
        self.stdout_path = log_dir / f"{name}.stdout"
        self.stderr_path = log_dir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [*wrapper, sys.executable, "-m", "runtime"], env=env, cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )

    def __str__(self) -> str:
        return f"{self.name} (pid {self.process.pid})"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def logs(self) -> list[dict]:
        """The JSON log lines written so far (a line still being written is skipped)."""
        found = []
        for line in self.stdout().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
        return found

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait_for_log(self, predicate, limit_s: float = WAIT_LIMIT_S) -> dict:
        """The first log line for which ``predicate(line)`` holds; fails if the process ends."""
        with trio.fail_after(limit_s):
            while True:
                for line in self.logs():
                    if predicate(line):
                        return line
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"{self} exited with {self.process.returncode} before the expected "
                        f"log line\nstdout:\n{self.stdout()}\nstderr:\n{self.stderr()}"
                    )
                await trio.sleep(0.05)

    async def wait(self, limit_s: float = WAIT_LIMIT_S) -> int:
        """The exit status; ``limit_s`` only guards against a hung test."""
        try:
            return await trio.to_thread.run_sync(self.process.wait, limit_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self} still running after {limit_s} s\nstdout:\n{self.stdout()}"
            ) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class WorkerProcesses:
    """Starts workers for one test; ``close()`` kills every one still running."""

    def __init__(self, log_dir: Path):
        self._log_dir = log_dir
        self._log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[WorkerProcess] = []

    def start(self, env: dict[str, str], wrapper: tuple[str, ...] = ()) -> WorkerProcess:
        """``wrapper`` (a command that ends by exec-ing its arguments) runs the worker
        in a changed setting, a mount namespace of its own, say; the pid stays the same."""
        worker = WorkerProcess(env, self._log_dir, f"worker{len(self.started) + 1}", wrapper)
        self.started.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.started:
            worker.kill()


def message_text(line: dict) -> str:
    return str(line.get("message", ""))


def is_serving(line: dict) -> bool:
    return ": serving " in message_text(line)


def worker_running(marker: str) -> int | None:
    """The pid of the worker whose command's command line holds ``marker``."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() not in cmdline.read_bytes():
                continue
            parent = int((cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if b"runtime" in Path(f"/proc/{parent}/cmdline").read_bytes():
                return parent
        except (OSError, ValueError, IndexError):
            continue
    return None
