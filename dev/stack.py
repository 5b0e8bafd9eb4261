"""`make run`: the whole system on one machine, with no AWS account and no Docker.

Starts what ``dev/system.py`` describes (emulated AWS, a redis-server, the scaler with
local workers, the gateway with development tokens), a status page, and prints where
everything listens and the web terminal's URL. From a keyboard it also reads command
lines, enqueues each as the seed's message and prints the terminal's events as they
stream back through Redis. Ctrl-C (or Ctrl-D) stops everything it started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dev.status import StatusServer  # noqa: E402
from dev.system import LocalSystem  # noqa: E402
from runtime.contract import keys  # noqa: E402
from tests.servers import TEST_CREDENTIALS  # noqa: E402

PROJECT, TERMINAL = "sample", "term-1"


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
    print("starting the local system", flush=True)
    gateway_port = int(os.environ["GATEWAY_PORT"]) if os.environ.get("GATEWAY_PORT") else None
    workdir = Path(tempfile.mkdtemp(prefix="cloudide-local-"))
    system = LocalSystem(workdir, aws_endpoint=os.environ.get("AWS_ENDPOINT_URL"),
                         redis_url=os.environ.get("REDIS_URL"), gateway_port=gateway_port,
                         # Only where no redis-server can be had: a stand-in, said so.
                         fake_redis=shutil.which("redis-server") is None,
                         progress=lambda text: print(f"  {text}", flush=True))
    status, code = None, 0
    done = threading.Event()
    # From here on, Ctrl-C or SIGTERM stops whatever was started so far (SIGINT too when
    # started in the background, where it arrives ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        system.start()
        status = StatusServer(system).start()
        print(f"  logs in {workdir} ({time.monotonic() - started:.1f} s)\n", flush=True)
        print(f"web terminal: {system.terminal_page(PROJECT, TERMINAL)}")
        print(f"status page:  {status.url}", flush=True)
        printer = threading.Thread(
            target=print_events, args=(redis.Redis.from_url(system.redis_url), done),
            daemon=True,
        )
        printer.start()
        sqs = system.client("sqs")
        if sys.stdin.isatty():
            print("or type a command here (same terminal), Ctrl-D to stop\n$ ", end="",
                  flush=True)
            for line in sys.stdin:
                if line.strip():
                    sqs.send_message(QueueUrl=system.queue_url, MessageBody=json.dumps(
                        {"projectId": PROJECT, "terminalId": TERMINAL, "command": line.strip()}
                    ))
                else:
                    print("$ ", end="", flush=True)
        else:
            print("Ctrl-C to stop", flush=True)
            signal.pause()
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(f"could not start: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping", flush=True)
        done.set()
        if status is not None:
            status.stop()
        system.stop()
        print(f"stopped; logs kept in {workdir}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
