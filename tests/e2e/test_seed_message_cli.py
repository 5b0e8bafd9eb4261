"""The seed's flow with the real programs: `aws sqs send-message`, `python -m runtime`, and
a plain Redis subscriber on the seed's channel, as `redis-cli subscribe` would be.

npm cannot run offline here, so the command differs from the seed's `npm install express`;
the message's shape (projectId, terminalId, command and nothing else) is the seed's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from tests.integration.harness import WAIT_LIMIT_S
from tests.servers import TEST_CREDENTIALS

pytestmark = pytest.mark.e2e

AWS_CLI = Path(sys.executable).parent / "aws"
CHANNEL = "terminal:abc123:term-1"
SEED_SHAPED_BODY = (
    '{"projectId": "abc123", "terminalId": "term-1", '
    '"command": "echo hello > greeting.txt && ls"}'
)


class ChannelReader:
    """A plain pub/sub subscriber in a thread, collecting every message of one channel."""

    def __init__(self, client, channel: str):
        # Held: a client built by from_url closes its pool, the subscription's
        # connection too, when it is garbage-collected.
        self._client = client
        self._pubsub = client.pubsub()
        self._pubsub.subscribe(channel)
        # The subscription is confirmed before anything is sent.
        confirmation = self._pubsub.get_message(timeout=WAIT_LIMIT_S)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"
        self.events: list[dict] = []
        self.failure: Exception | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                message = self._pubsub.get_message(timeout=0.1)
                if message is not None and message["type"] == "message":
                    with self._lock:
                        self.events.append(json.loads(message["data"]))
        except Exception as exc:
            self.failure = exc

    def seen(self) -> list[dict]:
        if self.failure is not None:
            raise AssertionError(f"the subscriber failed: {self.failure!r}")
        with self._lock:
            return list(self.events)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


@pytest.fixture
def channel_reader(redis_server):
    reader = ChannelReader(redis_server.client(), CHANNEL)
    yield reader
    reader.close()


def aws_cli(endpoint: str, tmp_path: Path, *args: str) -> dict:
    env = {
        **TEST_CREDENTIALS,
        "PATH": f"{AWS_CLI.parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }
    result = subprocess.run(
        [str(AWS_CLI), *args, "--endpoint-url", endpoint, "--output", "json"],
        env=env, capture_output=True, text=True, timeout=WAIT_LIMIT_S, check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def test_seed_shaped_message_from_aws_cli_streams_to_a_plain_subscriber(
    aws, channel_reader, redis_server, tmp_path, workers
):
    sent = await trio.to_thread.run_sync(lambda: aws_cli(
        aws.endpoint, tmp_path, "sqs", "send-message", "--queue-url", aws.queue_url,
        "--message-body", SEED_SHAPED_BODY,
    ))
    message_id = sent["MessageId"]
    worker = workers.start(aws.worker_env(redis_server.url, tmp_path / "ws"))

    with trio.fail_after(WAIT_LIMIT_S):
        while not any(e["type"] == "exit" for e in channel_reader.seen()):
            await trio.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert await worker.wait() == 0

    events = channel_reader.seen()
    types = [e["type"] for e in events]
    assert types[0] == "started"
    assert types[-1] == "exit"
    assert set(types) <= {"started", "output", "exit"}
    assert events[0]["attempt"] == 1
    # No commandId in the seed's message: the SQS MessageId stands in for it.
    assert {e["commandId"] for e in events} == {message_id}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    output = "".join(e["data"] for e in events if e["type"] == "output")
    assert output.split() == ["greeting.txt"]
    assert events[-1]["exitCode"] == 0
    assert events[-1]["signal"] is None
    assert aws.files("abc123") == {"greeting.txt": b"hello\n"}
    assert aws.queue_counts() == (0, 0)
