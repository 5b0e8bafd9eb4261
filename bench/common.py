"""What every benchmark shares: servers on free ports, the system's programs as
processes, the peer's server, percentiles, and the report (a table, then one JSON line).

The programs run as separate processes, as they do in production, so the client that
measures (this process) never shares an interpreter with what it measures. The moto
server runs in a process of its own for the same reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import trio
from trio_websocket import open_websocket_url

from dev.system import (
    create_command_queue,
    emulator_client,
    local_environment,
    terminal_socket_url,
    wait_for_http,
)
from tests.servers import TEST_CREDENTIALS, RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
# A guard against a program that never comes up, not a measurement.
START_LIMIT_S = 60
STOP_LIMIT_S = 10
MB = 1_000_000
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# The measuring clients (ours and the peer's) read their socket 256 KiB at a time, as a
# browser does, rather than trio-websocket's default 4 KiB: the client shares the cores
# with what it measures, and at 4 KiB it was the busiest process of the throughput row.
CLIENT_RECEIVE_BYTES = 256 * 1024


# --- reporting -------------------------------------------------------------------------------

def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(share * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def table(rows: list[list[str]]) -> str:
    """Rows of cells as aligned columns: the first left-aligned, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                        strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def report(title: str, rows: list[list[str]], figures: dict, notes: list[str] = ()) -> None:
    """The benchmark's table for a person, then its figures as one JSON line."""
    print(title)
    print(table(rows))
    for note in notes:
        print(f"  {note}")
    print(json.dumps(figures, separators=(",", ":")), flush=True)


def machine() -> dict:
    """What the figures came from (no host names, no paths)."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    with contextlib.suppress(OSError), open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memoryGiB": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{os_name}, Linux {platform.release().split('-')[0]}",
        "python": platform.python_version(),
        "load1": round(os.getloadavg()[0], 2),
    }


def arguments(description: str, extra=None, *, profile: bool = True) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="the smallest run: checks the script works, measures little")
    if profile:
        parser.add_argument("--profile", metavar="DIR",
                            help="sample the worker and gateway with py-spy into DIR "
                                 "(collapsed stacks, one file per program)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


# --- processes -------------------------------------------------------------------------------

def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal, wait a bounded time, then kill; always reaped."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(STOP_LIMIT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class MotoProcess:
    """A moto server (SQS, S3) in a process of its own, on a free port."""

    def __init__(self, logs: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._logs = logs
        self.process: subprocess.Popen | None = None

    def start(self) -> MotoProcess:
        log = open(self._logs / "moto.log", "ab")  # noqa: SIM115 - the child holds it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0,
        )
        log.close()
        wait_for_http(f"{self.url}/moto-api/", {"moto server": self.process}, self._logs)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


class Profiler:
    """py-spy sampling a running program into collapsed stacks, stopped with SIGINT."""

    def __init__(self, pid: int, output: Path):
        self.output = output
        self._process = subprocess.Popen(
            [_py_spy(), "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
             "--threads", "--nonblocking", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        stop_process(self._process, signal.SIGINT)


def _py_spy() -> str:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed; `make bench` installs the dev dependencies")
    return found


class Stack:
    """Redis, the moto server, a queue and bucket, and (on request) a worker and a gateway,
    each a process of its own; everything is stopped on leaving the block."""

    def __init__(self, *, worker: bool = True, gateway: bool = True,
                 worker_settings: dict[str, str] | None = None,
                 gateway_settings: dict[str, str] | None = None,
                 profile: str | None = None):
        self._want_worker = worker
        self._want_gateway = gateway
        self._worker_settings = worker_settings or {}
        self._gateway_settings = gateway_settings or {}
        self._profile = Path(profile) if profile else None
        self.logs = Path(tempfile.mkdtemp(prefix="cloudide-bench-"))
        # Commands run under user ids of their own, which must reach their workspaces.
        self.workspaces = Path(tempfile.mkdtemp(prefix="cloudide-bench-workspaces-"))
        self.workspaces.chmod(0o711)
        self.secret = secrets.token_urlsafe(32)
        self.gateway_port = free_port()
        self.origin = f"http://127.0.0.1:{self.gateway_port}"
        self.moto: MotoProcess | None = None
        self.redis: RedisServer | None = None
        self.worker: subprocess.Popen | None = None
        self.gateway: subprocess.Popen | None = None
        self._profilers: list[Profiler] = []
        suffix = secrets.token_hex(3)
        self.bucket = f"bench-{suffix}"
        self.queue_name = f"bench-{suffix}"
        self.queue_url = ""

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
        if exc_info[0] is None:
            shutil.rmtree(self.logs, ignore_errors=True)
        else:
            print(f"logs kept in {self.logs}", file=sys.stderr)

    def client(self, service: str):
        return emulator_client(service, self.moto.url)

    def start(self) -> None:
        # The emulator's stand-in credentials for clients made in this process too, never
        # whatever this machine may hold.
        os.environ.update(TEST_CREDENTIALS)
        self.moto = MotoProcess(self.logs).start()
        self.redis = RedisServer().start()
        self.queue_url, _ = create_command_queue(self.client("sqs"), self.queue_name)
        self.client("s3").create_bucket(Bucket=self.bucket)
        if self._want_worker:
            self.worker = self._spawn("worker", [sys.executable, "-m", "runtime"],
                                      {**self.environment(), **self._worker_settings})
        if self._want_gateway:
            self.gateway = self._spawn("gateway", [sys.executable, "-m", "gateway"],
                                       self.gateway_environment())
            wait_for_http(f"{self.origin}/healthz", {"gateway": self.gateway}, self.logs)
        if self._want_worker:
            self.wait_worker_ready()
        if self._profile is not None:
            self._profile.mkdir(parents=True, exist_ok=True)
            for name, process in (("worker", self.worker), ("gateway", self.gateway)):
                if process is not None:
                    self._profilers.append(Profiler(process.pid, self._profile / f"{name}.txt"))

    def wait_worker_ready(self) -> None:
        """Until the worker has logged that it serves (its first poll follows at once)."""
        deadline = time.monotonic() + START_LIMIT_S
        log = self.logs / "worker.log"
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"worker exited with {self.worker.returncode}; see {log}")
            with contextlib.suppress(OSError):
                if b"polling" in log.read_bytes() or b"serving" in log.read_bytes():
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start; see {log}")

    def environment(self) -> dict[str, str]:
        return {
            **local_environment(),
            "AWS_ENDPOINT_URL": self.moto.url, "SQS_QUEUE_URL": self.queue_url,
            "S3_BUCKET": self.bucket, "REDIS_URL": self.redis.url,
            "WORKSPACE_ROOT": str(self.workspaces),
            "IDLE_TIMEOUT_SECONDS": "0",
            # Short long polls: a worker told to stop first waits for the poll in flight.
            "RECEIVE_WAIT_SECONDS": "2",
        }

    def gateway_environment(self) -> dict[str, str]:
        return {
            **self.environment(),
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_SECRET": self.secret, "GATEWAY_ALLOWED_ORIGINS": self.origin,
            **self._gateway_settings,
        }

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        # Outside the repository, so a developer's .env cannot change the settings.
        process = subprocess.Popen(command, env=env, cwd=self.logs, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, process_group=0)
        log.close()
        return process

    def stop(self) -> None:
        for profiler in self._profilers:
            profiler.stop()
        for process in (self.gateway, self.worker):
            if process is not None:
                stop_process(process)
        if self.redis is not None:
            self.redis.stop()
        if self.moto is not None:
            self.moto.stop()
        shutil.rmtree(self.workspaces, ignore_errors=True)

    def terminal_url(self, project: str, terminal: str) -> str:
        return terminal_socket_url(self.gateway_port, self.secret, project, terminal)

    def open_terminal(self, project: str, terminal: str):
        """An async context manager: a websocket to the gateway for one terminal."""
        return open_websocket_url(self.terminal_url(project, terminal),
                                  extra_headers=[("Origin", self.origin)],
                                  max_message_size=MAX_MESSAGE_BYTES,
                                  receive_buffer_size=CLIENT_RECEIVE_BYTES)


# --- the peer: terminado ---------------------------------------------------------------------

@contextlib.contextmanager
def terminado_server(command: str) -> Iterator[str]:
    """terminado (tornado) serving a new terminal running ``command`` per websocket; yields
    the websocket URL. Its own process, like the gateway."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.terminado_peer", "--port", str(port), "--command", command],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        process_group=0,
    )
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"terminado exited: {process.stderr.read().decode()[-500:]}")
            with contextlib.suppress(urllib.error.HTTPError, OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError("terminado did not start")
            time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/websocket"
    finally:
        stop_process(process)
        process.stderr.close()


def open_terminado(url: str):
    origin = url.replace("ws://", "http://").rsplit("/", 1)[0]
    return open_websocket_url(url, extra_headers=[("Origin", origin)],
                              max_message_size=MAX_MESSAGE_BYTES,
                              receive_buffer_size=CLIENT_RECEIVE_BYTES)


async def receive_frame(ws, limit_s: float = 60):
    with trio.fail_after(limit_s):
        return json.loads(await ws.get_message())
