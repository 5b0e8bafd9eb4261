"""Real servers for tests, each on a free port: a moto server and a redis-server."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import redis
import trio
from moto.server import ThreadedMotoServer
from moto.sqs import models as sqs_models

TEST_REGION = "us-east-1"
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": TEST_REGION,
    "AWS_REGION": TEST_REGION,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoServer:
    """moto's in-process threaded server: SQS, S3 and ECS over real HTTP."""

    def __init__(self):
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        # One access-log line per AWS call would drown what a person or a test reads.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        sqs_deletes_under_the_queue_lock()
        self._server.start()
        return self

    def keep_ecs_tasks_running(self) -> None:
        """Tasks stay RUNNING however often they are described (moto otherwise walks them
        toward STOPPED one step per DescribeTasks); stop_task still stops them."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/state-manager/set-transition", method="POST",
            data=json.dumps({"model_name": "ecs::task",
                             "transition": {"progression": "manual", "times": 10**9}}).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def stop(self) -> None:
        self._server.stop()


class RedisServer:
    """A real ``redis-server`` that keeps nothing on disk; can be stopped and restarted.

    ``config_lines`` go into its redis.conf (ACL users, for one); ``user`` (``name:password``)
    is the one its ``url`` and its own check at start log in as.
    """

    def __init__(self, port: int | None = None, *, config_lines: Sequence[str] = (),
                 user: str | None = None):
        self.port = port or free_port()
        login = f"{user}@" if user else ""
        self.url = f"redis://{login}127.0.0.1:{self.port}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._config = self._dir / "redis.conf"
        self._config.write_text("".join(f"{line}\n" for line in config_lines))
        self._process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it")
        self._process = subprocess.Popen(
            [binary, str(self._config), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._dir), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if self._process.poll() is not None:
                    raise RuntimeError("redis-server exited at start") from None
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def sqs_deletes_under_the_queue_lock() -> None:
    """moto's SQS DeleteMessage rebuilds a queue's message list without the lock that
    SendMessage takes: two deletes at once can bring a deleted message back, and a message
    sent at that moment can be lost (seen under the 200-command load test). Here deletes
    take the queue's lock too."""
    original = sqs_models.Queue.delete_message
    if getattr(original, "under_queue_lock", False):
        return

    def delete_message(queue, receipt_handle: str) -> None:
        with queue._messages_lock:
            original(queue, receipt_handle)

    delete_message.under_queue_lock = True
    sqs_models.Queue.delete_message = delete_message


@contextlib.asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """The URL of a server that accepts connections, reads, and never answers: a Redis
    that is stuck, or a path to it that went dark."""

    async def read_and_say_nothing(stream: trio.SocketStream) -> None:
        await stream.receive_some(1024)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, read_and_say_nothing, 0, host="127.0.0.1"))
        yield f"redis://127.0.0.1:{listeners[0].socket.getsockname()[1]}/0"
        nursery.cancel_scope.cancel()
