"""The system on one machine, with no AWS account and no Docker.

Starts a moto server (SQS, S3, ECS) in-process and a redis-server on free ports,
creates the command queue with its dead-letter queue and the project bucket, uploads a
sample project, starts the scaler (``python -m scaler``, launching workers as local
processes: one kept warm, more while commands wait) and the gateway
(``python -m gateway``, with development tokens) and prints the web terminal's URL.
From a keyboard it also reads command lines, enqueues each as the seed's message and
prints the terminal's events as they stream back through Redis. Ctrl-C (or Ctrl-D)
stops everything it started.
"""

from __future__ import annotations

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
from pathlib import Path

import boto3
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.contract import keys  # noqa: E402
from tests.servers import TEST_CREDENTIALS, MotoServer, RedisServer, free_port  # noqa: E402

PROJECT, TERMINAL = "sample", "term-1"


def step(text: str, started: float) -> None:
    print(f"  {text} ({time.monotonic() - started:.1f} s)", flush=True)


def create_resources(endpoint: str) -> dict[str, str]:
    kwargs = {"endpoint_url": endpoint, "region_name": TEST_CREDENTIALS["AWS_REGION"]}
    sqs, s3 = boto3.client("sqs", **kwargs), boto3.client("s3", **kwargs)
    dlq = sqs.create_queue(QueueName="commands-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="commands", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
    })["QueueUrl"]
    s3.create_bucket(Bucket="cloudide-projects")
    sample = ROOT / "dev" / "sample-project"
    for path in sample.rglob("*"):
        if path.is_file():
            s3.upload_file(str(path), "cloudide-projects",
                           f"projects/{PROJECT}/{path.relative_to(sample)}")
    return {"queue": queue, "dlq": dlq, "bucket": "cloudide-projects"}


def print_events(client: redis.Redis, done: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.output_channel(PROJECT, TERMINAL))
    while not done.is_set():
        try:
            message = pubsub.get_message(timeout=0.2)
        except redis.ConnectionError:
            return
        if not message:
            continue
        event = json.loads(message["data"])
        if event["type"] == "output":
            sys.stdout.write(event["data"])
        elif event["type"] == "exit":
            print(f"\n[exit {event['exitCode'] if event['signal'] is None else event['signal']}]"
                  "\n$ ", end="")
        elif event["type"] == "error":
            print(f"\n[error {event['code']}: {event['message']}]")
        sys.stdout.flush()
    pubsub.close()


def main() -> int:
    started = time.monotonic()
    os.environ.update(TEST_CREDENTIALS)
    print("starting the local stack", flush=True)
    moto = MotoServer().start()
    step(f"emulated AWS (moto) on {moto.url}", started)
    redis_server = RedisServer().start()
    step(f"redis-server on {redis_server.url}", started)
    resources = create_resources(moto.url)
    step(f"queue {resources['queue']}, bucket {resources['bucket']}, sample project", started)
    workspaces = tempfile.mkdtemp(prefix="cloudide-workspaces-")
    env = {
        **os.environ, **TEST_CREDENTIALS,
        "AWS_ENDPOINT_URL": moto.url, "SQS_QUEUE_URL": resources["queue"],
        "S3_BUCKET": resources["bucket"], "REDIS_URL": redis_server.url,
        "WORKSPACE_ROOT": workspaces, "IDLE_TIMEOUT_SECONDS": "30", "RECEIVE_WAIT_SECONDS": "2",
        "SCALER_LAUNCHER": "local", "ECS_MIN_TASKS": "1", "ECS_MAX_TASKS": "4",
        "SCALER_INTERVAL_SECONDS": "10",
    }
    log = open(Path(workspaces) / "scaler-and-workers.log", "w")  # noqa: SIM115
    scaler = subprocess.Popen([sys.executable, "-m", "scaler"], env=env, cwd=ROOT,
                              stdout=log, stderr=subprocess.STDOUT)
    step(f"scaler pid {scaler.pid} (local workers), log {log.name}", started)
    port = int(os.environ.get("GATEWAY_PORT") or free_port())
    gateway_log = open(Path(workspaces) / "gateway.log", "w")  # noqa: SIM115
    gateway = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env={
        **env, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port),
        "GATEWAY_SECRET": secrets.token_urlsafe(32), "GATEWAY_DEV_TOKENS": "true",
        "GATEWAY_ALLOWED_ORIGINS": f"http://127.0.0.1:{port},http://localhost:{port}",
    }, stdout=gateway_log, stderr=subprocess.STDOUT)
    step(f"gateway pid {gateway.pid}, log {gateway_log.name}", started)
    print(f"\nweb terminal: http://127.0.0.1:{port}/?project={PROJECT}&terminal={TERMINAL}",
          flush=True)
    sqs = boto3.client("sqs", endpoint_url=moto.url,
                       region_name=TEST_CREDENTIALS["AWS_REGION"])
    done = threading.Event()
    printer = threading.Thread(
        target=print_events, args=(redis_server.client(), done), daemon=True
    )
    printer.start()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if sys.stdin.isatty():
            print("or type a command here (same terminal), Ctrl-D to stop\n$ ", end="",
                  flush=True)
            for line in sys.stdin:
                if line.strip():
                    sqs.send_message(QueueUrl=resources["queue"], MessageBody=json.dumps(
                        {"projectId": PROJECT, "terminalId": TERMINAL, "command": line.strip()}
                    ))
                else:
                    print("$ ", end="", flush=True)
        else:
            print("Ctrl-C to stop", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping", flush=True)
        done.set()
        printer.join(5)
        for process in (gateway, scaler):
            process.terminate()
        for process in (gateway, scaler):
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
        redis_server.stop()
        moto.stop()
        log.close()
        gateway_log.close()
        shutil.rmtree(workspaces, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
