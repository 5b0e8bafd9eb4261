"""The whole system as processes on one machine: what `make run` starts and the
end-to-end tests drive.

AWS is emulated by a moto server in this process and Redis is a redis-server on a free
port, unless ``AWS_ENDPOINT_URL`` / ``REDIS_URL`` name running ones (LocalStack, say).
The scaler (``python -m scaler``, local launcher) and the gateway (``python -m gateway``)
run as separate processes, each in its own process group, so a Ctrl-C reaches this
process alone and everything is stopped in order: the gateway drains, the scaler stops
its workers, which hand their commands back. Whatever still runs after that is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.tokens import mint_token  # noqa: E402
from tests.servers import TEST_CREDENTIALS, MotoServer, RedisServer, free_port  # noqa: E402

SAMPLE_PROJECT = ROOT / "dev" / "sample-project"
# A guard against a program that never comes up, not a timing assertion.
START_LIMIT_S = 60
STOP_LIMIT_S = 45


def emulator_client(service: str, endpoint: str):
    # The emulators' stand-in credentials, never whatever this machine may hold.
    return boto3.client(service, endpoint_url=endpoint,
                        region_name=TEST_CREDENTIALS["AWS_REGION"],
                        aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def create_command_queue(sqs, name: str, max_receive_count: int = 5) -> tuple[str, str]:
    """The command queue and its dead-letter queue; returns both URLs."""
    dead_letter_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=dead_letter_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=name, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(max_receive_count)}),
    })["QueueUrl"]
    return queue_url, dead_letter_url


def local_environment() -> dict[str, str]:
    """What every program started here runs with, before its own settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        **TEST_CREDENTIALS,
        # Only root can run commands under ids of their own; on a laptop without it,
        # commands run as the developer, which the worker refuses unless told.
        **({} if os.geteuid() == 0 else {"COMMANDS_AS_WORKER_USER": "true"}),
    }


def terminal_socket_url(port: int, secret: str, project: str, terminal: str) -> str:
    """The gateway's websocket for one terminal, with a token minted for it."""
    token = mint_token(secret, project_id=project, terminal_id=terminal, ttl_s=600,
                       now=time.time())
    return f"ws://127.0.0.1:{port}/terminals/{project}/{terminal}?token={token}"


def wait_for_http(url: str, processes: dict[str, subprocess.Popen], logs: Path) -> None:
    """Until ``url`` answers with success; fails at once if one of ``processes`` exits."""
    deadline = time.monotonic() + START_LIMIT_S
    while time.monotonic() < deadline:
        for name, process in processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; see {logs}")
        with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered at {url}; see {logs}")


def _stat(pid: int | str) -> list[str]:
    # After the command name (which may hold spaces): state ppid pgrp session ..., the
    # start time (clock ticks since boot) at index 19.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(roots: list[int]) -> dict[int, str]:
    """Every live process below ``roots``, with its start time, so that a pid reused
    meanwhile is never taken for one of them."""
    children: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(stat.parent.name)
            children.setdefault(int(fields[1]), []).append((int(stat.parent.name), fields[19]))
    found: dict[int, str] = {}
    frontier = list(roots)
    while frontier:
        for child, started in children.get(frontier.pop(), []):
            if child not in found:
                found[child] = started
                frontier.append(child)
    return found


class LocalSystem:
    def __init__(self, workdir: Path, *, aws_endpoint: str | None = None,
                 redis_url: str | None = None, gateway_port: int | None = None,
                 settings: dict[str, str] | None = None, fake_redis: bool = False,
                 progress: Callable[[str], None] = lambda text: None):
        self.workdir = Path(workdir)
        self.aws_endpoint = aws_endpoint
        self.redis_url = redis_url
        self.gateway_port = gateway_port or free_port()
        self.metrics_port = free_port()
        self.secret = secrets.token_urlsafe(32)
        self._settings = settings or {}
        self._fake_redis = fake_redis
        self._progress = progress
        self._started_at = time.monotonic()
        self._moto: MotoServer | None = None
        self._redis: RedisServer | FakeRedisServer | None = None
        self._processes: dict[str, subprocess.Popen] = {}
        self._clients: dict[str, object] = {}
        self._logs = []
        suffix = secrets.token_hex(3)
        self.queue_name, self.bucket = f"commands-{suffix}", f"cloudide-projects-{suffix}"
        self.queue_url = self.dead_letter_url = ""
        # Commands run under ids of their own, which must be able to reach their
        # workspace: not below a private temporary folder.
        self.workspaces = Path(tempfile.mkdtemp(prefix="cloudide-workspaces-"))
        self.workspaces.chmod(0o711)

    # --- start ----------------------------------------------------------------------------

    def _step(self, text: str) -> None:
        self._progress(f"{text} ({time.monotonic() - self._started_at:.1f} s)")

    def start(self) -> LocalSystem:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.aws_endpoint is None:
            self._moto = MotoServer().start()
            self.aws_endpoint = self._moto.url
            self._step(f"emulated AWS (moto server) on {self.aws_endpoint}")
        else:
            self._step(f"AWS APIs at {self.aws_endpoint}")
        if self.redis_url is None and self._fake_redis:
            self._redis = FakeRedisServer().start()
            self.redis_url = self._redis.url
            self._step(f"no redis-server here: fakeredis's TCP server stands in on "
                       f"{self.redis_url} (install redis-server for the real one)")
        elif self.redis_url is None:
            self._redis = RedisServer().start()
            self.redis_url = self._redis.url
            self._step(f"redis-server on {self.redis_url}")
        else:
            self._step(f"Redis at {self.redis_url}")
        self._create_resources()
        self._step(f"queue {self.queue_name} with its dead-letter queue, bucket {self.bucket}")
        upload_project(self.client("s3"), self.bucket, "sample", SAMPLE_PROJECT)
        self._step("sample project uploaded as project 'sample'")
        self._spawn("scaler", [sys.executable, "-m", "scaler"], self.environment())
        self._step(f"scaler pid {self._processes['scaler'].pid} launching local workers")
        self._spawn("gateway", [sys.executable, "-m", "gateway"], self.gateway_environment())
        self._wait_healthy()
        self._step(f"gateway on {self.gateway_url}")
        return self

    def client(self, service: str):
        """A client of the emulated service, made once (clients are safe across threads)."""
        if service not in self._clients:
            self._clients[service] = emulator_client(service, self.aws_endpoint)
        return self._clients[service]

    def _create_resources(self) -> None:
        self.queue_url, self.dead_letter_url = create_command_queue(
            self.client("sqs"), self.queue_name)
        self.client("s3").create_bucket(Bucket=self.bucket)

    def environment(self) -> dict[str, str]:
        """What the scaler runs with; its local workers inherit it."""
        return {
            **local_environment(),
            "AWS_ENDPOINT_URL": self.aws_endpoint, "SQS_QUEUE_URL": self.queue_url,
            "S3_BUCKET": self.bucket, "REDIS_URL": self.redis_url,
            "WORKSPACE_ROOT": str(self.workspaces),
            "IDLE_TIMEOUT_SECONDS": "30", "RECEIVE_WAIT_SECONDS": "2",
            "SCALER_LAUNCHER": "local", "ECS_MIN_TASKS": "1", "ECS_MAX_TASKS": "4",
            "SCALER_INTERVAL_SECONDS": "10",
            "SCALER_METRICS_PORT": str(self.metrics_port),
            "SCALER_METRICS_HOST": "127.0.0.1",
            **self._settings,
        }

    def gateway_environment(self) -> dict[str, str]:
        origins = f"http://127.0.0.1:{self.gateway_port},http://localhost:{self.gateway_port}"
        return {
            **self.environment(),
            "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_SECRET": self.secret, "GATEWAY_DEV_TOKENS": "true",
            "GATEWAY_ALLOWED_ORIGINS": origins,
        }

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        self._logs.append(log)
        # Its own process group: a Ctrl-C at the keyboard reaches this process only, which
        # then stops everything in order. Run outside the repository, so a developer's
        # .env cannot change what the system is told here.
        self._processes[name] = subprocess.Popen(
            command, env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, process_group=0,
        )

    def _wait_healthy(self) -> None:
        # /healthz answers 503 until the gateway's Redis subscription is up.
        wait_for_http(f"{self.gateway_url}/healthz", self._processes, self.workdir)

    # --- what callers look at ---------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def terminal_page(self, project: str, terminal: str) -> str:
        return f"{self.gateway_url}/?project={project}&terminal={terminal}"

    def terminal_socket(self, project: str, terminal: str) -> str:
        return terminal_socket_url(self.gateway_port, self.secret, project, terminal)

    def scaler_figures(self) -> dict[str, float]:
        """The scaler's Prometheus figures, by name (without the common prefix)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as page:
            text = page.read().decode()
        prefix = "cloudide_scaler_"
        figures = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                name, _, value = line.partition(" ")
                figures[name[len(prefix):]] = float(value)
        return figures

    def queue_counts(self, queue_url: str | None = None) -> tuple[int, int]:
        """(waiting, in flight) of the command queue, or of ``queue_url``."""
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=queue_url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def processes(self) -> dict[str, subprocess.Popen]:
        return dict(self._processes)

    def descendants(self) -> dict[int, str]:
        """Every live process below the programs this system started (workers, commands)."""
        return descendants([p.pid for p in self._processes.values()])

    def restart_gateway(self) -> int:
        """Stop the gateway as a deployment does (SIGTERM: it drains, asking its clients to
        reconnect), start it again on the same port; return the old one's exit status."""
        process = self._processes["gateway"]
        process.send_signal(signal.SIGTERM)
        code = process.wait(STOP_LIMIT_S)
        self._spawn("gateway", [sys.executable, "-m", "gateway"], self.gateway_environment())
        self._wait_healthy()
        return code

    # --- stop ------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop in order, then kill whatever is left of what this system started."""
        leftovers = self.descendants()
        for name in ("gateway", "scaler"):
            process = self._processes.get(name)
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_LIMIT_S)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        leftovers.update(self.descendants())
        for pid, started in leftovers.items():
            kill_if_same(pid, started)
        for log in self._logs:
            log.close()
        if self._redis is not None:
            self._redis.stop()
        if self._moto is not None:
            self._moto.stop()
        shutil.rmtree(self.workspaces, ignore_errors=True)

    def __enter__(self) -> LocalSystem:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class FakeRedisServer:
    """fakeredis's TCP server in a thread of this process: the fallback where no
    redis-server can be had. It speaks the protocol, Lua included, but is no Redis."""

    def __init__(self):
        from fakeredis import TcpFakeServer

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server = TcpFakeServer(("127.0.0.1", self.port), server_type="redis")
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeRedisServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot); None when there is no such process."""
    try:
        return _stat(pid)[19]
    except (OSError, IndexError):
        return None


def still_running(snapshot: dict[int, str]) -> list[int]:
    """The processes of ``snapshot`` (pid: start time) that still run (a zombie has ended)."""
    running = []
    for pid, started in snapshot.items():
        with contextlib.suppress(OSError, IndexError):
            fields = _stat(pid)
            if fields[19] == started and fields[0] != "Z":
                running.append(pid)
    return running


def upload_project(s3, bucket: str, project: str, folder: Path) -> int:
    """Put every file under ``folder`` into the project's keys; return how many."""
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket,
                           f"projects/{project}/{path.relative_to(folder).as_posix()}")
            count += 1
    return count


def kill_if_same(pid: int, started: str) -> None:
    """SIGKILL ``pid`` and its process group, if it is still the process that started at
    ``started`` and not in this process's own group."""
    with contextlib.suppress(OSError, IndexError):
        if _stat(pid)[19] != started:
            return
        group = os.getpgid(pid)
        if group != os.getpgrp():
            os.killpg(group, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
