"""The test emulator's SQS keeps every message through concurrent deletes and sends.

moto's DeleteMessage rebuilds a queue's message list outside the lock its SendMessage
takes; ``MotoServer`` makes deletes take that lock (``sqs_deletes_under_the_queue_lock``).
Without it, deleted messages come back and the load test's commands run twice or never.
"""

from __future__ import annotations

import sys
import threading

from moto.sqs.models import Message, Queue

from tests.servers import sqs_deletes_under_the_queue_lock

MESSAGES = 300


def test_concurrent_deletes_and_sends_lose_nothing_and_bring_nothing_back():
    sqs_deletes_under_the_queue_lock()
    queue = Queue("q", "us-east-1", "123456789012")
    for index in range(MESSAGES):
        message = Message(f"old{index}", "body")
        message.receipt_handle = f"handle{index}"
        queue.add_message(message)

    def delete(every_other: int) -> None:
        for index in range(every_other, MESSAGES, 2):
            queue.delete_message(f"handle{index}")

    def send() -> None:
        for index in range(MESSAGES):
            queue.add_message(Message(f"new{index}", "body"))

    threads = [threading.Thread(target=delete, args=(0,)),
               threading.Thread(target=delete, args=(1,)), threading.Thread(target=send)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as under a loaded server
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert sorted(m.id for m in queue._messages) == sorted(f"new{i}" for i in range(MESSAGES))
