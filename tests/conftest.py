"""Fixtures shared by every suite: real servers on free ports, fresh resources per test."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import boto3
import pytest

from tests.integration.processes import WorkerProcesses
from tests.servers import TEST_CREDENTIALS, MotoServer, RedisServer


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def own_redis():
    """A redis-server this test alone uses, so stopping it disturbs nobody else."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _temp_root():
    """Where each test's temporary directory goes: not under pytest's own, which pytest
    keeps private to its user (every run makes it so again), as commands run under user
    ids of their own and must pass through to their workspaces."""
    root = Path(tempfile.mkdtemp(prefix="cloudide-tests-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tmp_path(request, _temp_root) -> Path:
    """A fresh empty directory per test, which other users may pass through."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=_temp_root))
    path.chmod(0o711)
    return path


@pytest.fixture(autouse=True, scope="session")
def _test_credentials():
    """Fake credentials, so no test can reach a real AWS account."""
    saved = {name: os.environ.get(name) for name in TEST_CREDENTIALS}
    os.environ.update(TEST_CREDENTIALS)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


class AwsResources:
    """A fresh queue (with a dead-letter queue) and bucket on the moto server."""

    def __init__(self, endpoint: str, *, max_receive_count: int = 5, fifo: bool = False,
                 dead_letter: bool = True):
        self.endpoint = endpoint
        kwargs = {"endpoint_url": endpoint, "region_name": TEST_CREDENTIALS["AWS_REGION"]}
        self.sqs = boto3.client("sqs", **kwargs)
        self.s3 = boto3.client("s3", **kwargs)
        suffix = secrets.token_hex(4)
        ending = ".fifo" if fifo else ""
        fifo_attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
        self.dead_letter_url = None
        attributes = dict(fifo_attributes)
        if dead_letter:
            self.dead_letter_url = self.sqs.create_queue(
                QueueName=f"commands-dlq-{suffix}{ending}", Attributes=fifo_attributes
            )["QueueUrl"]
            dlq_arn = self.sqs.get_queue_attributes(
                QueueUrl=self.dead_letter_url, AttributeNames=["QueueArn"]
            )["Attributes"]["QueueArn"]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            )
        self.queue_url = self.sqs.create_queue(
            QueueName=f"commands-{suffix}{ending}", Attributes=attributes
        )["QueueUrl"]
        self.bucket = f"projects-{suffix}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.prefix = "projects/"

    def send(self, body: dict | str, **kwargs) -> str:
        text = body if isinstance(body, str) else json.dumps(body)
        return self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=text, **kwargs)[
            "MessageId"
        ]

    def queue_counts(self, url: str | None = None) -> tuple[int, int]:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def put_file(self, project: str, relative: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}{project}/{relative}", Body=data)

    def files(self, project: str) -> dict[str, bytes]:
        prefix = f"{self.prefix}{project}/"
        found = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        ):
            for item in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                found[item["Key"][len(prefix):]] = body
        return found

    def worker_env(self, redis_url: str, workspace_root, **overrides) -> dict[str, str]:
        env = {
            **TEST_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "SQS_QUEUE_URL": self.queue_url,
            "S3_BUCKET": self.bucket,
            "S3_PREFIX": self.prefix,
            "REDIS_URL": redis_url,
            "WORKSPACE_ROOT": str(workspace_root),
            "IDLE_TIMEOUT_SECONDS": "0",
            "RECEIVE_WAIT_SECONDS": "1",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
        }
        if os.geteuid() != 0:
            # Only root can start commands under user ids of their own.
            env["COMMANDS_AS_WORKER_USER"] = "true"
        env.update({k: str(v) for k, v in overrides.items()})
        return env


@pytest.fixture
def aws(moto_server):
    return AwsResources(moto_server.url)


@pytest.fixture
def redis_client(redis_server):
    """A client of the session's redis-server, emptied so each test starts clean."""
    client = redis_server.client()
    client.flushdb()
    return client


@pytest.fixture
def workers(tmp_path):
    """``python -m runtime`` processes for one test; any still running at the end is
    killed."""
    processes = WorkerProcesses(tmp_path / "logs")
    yield processes
    processes.close()
