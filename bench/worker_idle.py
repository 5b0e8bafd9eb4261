"""Worker idle footprint: the resident memory (RSS) of ``python -m runtime`` waiting for
work, once it has started and again after it has run a command.

    python -m bench.worker_idle [--quick]
"""

from __future__ import annotations

import json
import time

import psutil
import redis

from bench.common import MB, Stack, arguments, report
from runtime.contract import keys

TARGET_MB = 80
SETTLE_S = 3
COMMAND_LIMIT_S = 60


def memory(pid: int) -> dict:
    info = psutil.Process(pid).memory_full_info()
    return {"rssMb": round(info.rss / MB, 1), "ussMb": round(info.uss / MB, 1)}


def run_one_command(stack: Stack) -> None:
    stack.client("s3").put_object(Bucket=stack.bucket, Key="projects/idle/README.md",
                                  Body=b"# idle\n")
    stack.client("sqs").send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(
        {"projectId": "idle", "terminalId": "t1", "command": "ls -la"}))
    client = redis.Redis.from_url(stack.redis.url)
    stream = keys.history_stream("idle", "t1")
    deadline = time.monotonic() + COMMAND_LIMIT_S
    while time.monotonic() < deadline:
        events = [json.loads(fields[b"event"]) for _, fields in client.xrange(stream)]
        if any(e["type"] == "exit" for e in events):
            return
        time.sleep(0.1)
    raise RuntimeError("the command did not finish")


def main() -> None:
    args = arguments(__doc__.splitlines()[0], profile=False)
    settle_s = 1 if args.quick else SETTLE_S
    with Stack(gateway=False) as stack:
        time.sleep(settle_s)
        started = memory(stack.worker.pid)
        threads_started = psutil.Process(stack.worker.pid).num_threads()
        run_one_command(stack)
        time.sleep(settle_s)
        after = memory(stack.worker.pid)
        threads_after = psutil.Process(stack.worker.pid).num_threads()
    started["threads"], after["threads"] = threads_started, threads_after
    rows = [["", "RSS MB", "USS MB", "threads"]]
    for name, figures in (("worker idle after start", started),
                          ("worker idle after one command", after)):
        rows.append([name, f"{figures['rssMb']:.1f}", f"{figures['ussMb']:.1f}",
                     str(figures["threads"])])
    report("worker idle footprint", rows, {
        "bench": "worker_idle", "quick": args.quick, "ours": {"started": started,
                                                               "afterCommand": after},
        "meets": {"rss": max(started["rssMb"], after["rssMb"]) < TARGET_MB},
    }, [f"USS: memory no other process shares (target: RSS under {TARGET_MB} MB)"])


if __name__ == "__main__":
    main()
