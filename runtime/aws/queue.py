"""The command queue: receive, keep hidden, release, delete, dead-letter."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import trio
from botocore.exceptions import BotoCoreError, ClientError

from .clients import error_code

logger = logging.getLogger(__name__)

MAX_RECEIVE_BATCH = 10
MAX_WAIT_S = 20
# Codes SQS answers when a receipt handle no longer holds the message. SQS also answers
# InvalidParameterValue ("Message does not exist or is not available for visibility
# timeout change") for a handle whose message was received again since.
LEASE_LOST_CODES = frozenset({
    "ReceiptHandleIsInvalid",
    "MessageNotInflight",
    "AWS.SimpleQueueService.MessageNotInflight",
})
LEASE_LOST_HINTS = ("receipt handle", "not available for visibility")


class QueueError(Exception):
    """SQS refused or failed a call, after the client's own retries."""


class LeaseLost(QueueError):
    """The receipt handle no longer holds the message: another receiver may have it."""


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    received_at: float  # trio clock
    attributes: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.message_id

    @property
    def deferrals(self) -> int:
        value = self.attributes.get("deferrals", {}).get("StringValue", "0")
        return int(value) if value.isdigit() else 0


def is_fifo(queue_url: str) -> bool:
    return queue_url.endswith(".fifo")


def _lease_lost(exc: BaseException | None) -> bool:
    code = error_code(exc)
    if code in LEASE_LOST_CODES:
        return True
    return code == "InvalidParameterValue" and any(h in str(exc) for h in LEASE_LOST_HINTS)


class CommandQueue:
    """SQS calls for one queue.

    ``poll_client`` serves the long poll; ``client``, with short timeouts, serves every
    other call, so a hung lease extension ends well before the lease does.
    """

    def __init__(self, client, queue_url: str, *, limiter: trio.CapacityLimiter,
                 poll_client=None):
        self._client = client
        self._poll_client = poll_client or client
        self.url = queue_url
        self.fifo = is_fifo(queue_url)
        self._limiter = limiter
        self._dead_letter_url: str | None = None
        self._dead_letter_known = False

    def __str__(self) -> str:
        return self.url

    async def _call(self, method: str, *, client=None, **kwargs):
        fn = getattr(client or self._client, method)
        try:
            return await trio.to_thread.run_sync(lambda: fn(**kwargs), limiter=self._limiter)
        except ClientError as exc:
            raise QueueError(f"{method} failed: {error_code(exc)}: {exc}") from exc
        except BotoCoreError as exc:
            raise QueueError(f"{method} failed: {exc}") from exc

    async def check(self) -> None:
        """Fail early, with the queue's URL, if the queue cannot be reached."""
        await self._call("get_queue_attributes", QueueUrl=self.url, AttributeNames=["QueueArn"])

    async def receive(self, *, max_messages: int, wait_s: int, visibility_s: int):
        """Long-poll for up to ``max_messages``.

        Shielded: a receive hides what it returns, so it is never abandoned half-way;
        a caller that is stopping releases what came back. The poll client's timeouts
        bound how long the shield can hold.
        """
        with trio.CancelScope(shield=True):
            response = await self._call(
                "receive_message",
                client=self._poll_client,
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(MAX_RECEIVE_BATCH, max_messages)),
                WaitTimeSeconds=max(0, min(MAX_WAIT_S, wait_s)),
                VisibilityTimeout=visibility_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
                MessageAttributeNames=["All"],
            )
        now = trio.current_time()
        return [
            ReceivedMessage(
                message_id=raw["MessageId"],
                receipt_handle=raw["ReceiptHandle"],
                body=raw.get("Body", ""),
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                received_at=now,
                attributes=raw.get("MessageAttributes", {}),
            )
            for raw in response.get("Messages", [])
        ]

    async def depth(self) -> tuple[int, int]:
        """Messages waiting, and messages in flight (received, not yet deleted)."""
        attributes = (await self._call(
            "get_queue_attributes", QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages",
                            "ApproximateNumberOfMessagesNotVisible"],
        ))["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    async def set_visibility(self, message: ReceivedMessage, seconds: int) -> None:
        """Change how long the message stays hidden; ``LeaseLost`` if it is no longer ours."""
        try:
            await self._call(
                "change_message_visibility",
                QueueUrl=self.url,
                ReceiptHandle=message.receipt_handle,
                VisibilityTimeout=seconds,
            )
        except QueueError as exc:
            if _lease_lost(exc.__cause__):
                raise LeaseLost(f"lease on message {message} lost: {exc}") from exc.__cause__
            raise

    async def release(self, message: ReceivedMessage, *, after_s: int = 0) -> None:
        """Make the message visible again (now, or after ``after_s``)."""
        await self.set_visibility(message, after_s)

    async def delete(self, message: ReceivedMessage) -> None:
        await self._call("delete_message", QueueUrl=self.url, ReceiptHandle=message.receipt_handle)

    async def send(self, body: str, *, delay_s: int = 0, attributes: dict | None = None,
                   group_id: str | None = None, deduplication_id: str | None = None) -> str:
        kwargs = {"QueueUrl": self.url, "MessageBody": body}
        if attributes:
            kwargs["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": str(value)}
                for name, value in attributes.items()
            }
        if self.fifo:
            if not group_id:
                raise ValueError("a FIFO queue needs a message group (the project id)")
            kwargs["MessageGroupId"] = group_id
            if deduplication_id:
                kwargs["MessageDeduplicationId"] = deduplication_id
        elif delay_s:
            kwargs["DelaySeconds"] = delay_s
        response = await self._call("send_message", **kwargs)
        return response["MessageId"]

    async def dead_letter_url(self) -> str | None:
        """The dead-letter queue named by this queue's redrive policy, if it has one."""
        if not self._dead_letter_known:
            attributes = (await self._call(
                "get_queue_attributes", QueueUrl=self.url, AttributeNames=["RedrivePolicy"]
            )).get("Attributes", {})
            policy = attributes.get("RedrivePolicy")
            if policy:
                arn = json.loads(policy)["deadLetterTargetArn"]
                _, _, _, _, account, name = arn.split(":", 5)
                self._dead_letter_url = (await self._call(
                    "get_queue_url", QueueName=name, QueueOwnerAWSAccountId=account
                ))["QueueUrl"]
            self._dead_letter_known = True
        return self._dead_letter_url

    async def dead_letter(self, message: ReceivedMessage, reason: str) -> bool:
        """Move a message that must never run to the dead-letter queue, with its reason.

        Returns False, leaving the message where it is, when the queue has no
        dead-letter queue: it is then left for redrive, never silently deleted.
        """
        target = await self.dead_letter_url()
        if target is None:
            return False
        kwargs = {
            "QueueUrl": target,
            "MessageBody": message.body or "(empty body)",
            "MessageAttributes": {
                "reason": {"DataType": "String", "StringValue": reason[:1024]},
                "sourceMessageId": {"DataType": "String", "StringValue": message.message_id},
                "sourceQueueUrl": {"DataType": "String", "StringValue": self.url},
            },
        }
        if is_fifo(target):
            kwargs["MessageGroupId"] = "dead-letter"
            kwargs["MessageDeduplicationId"] = message.message_id
        await self._call("send_message", **kwargs)
        await self.delete(message)
        return True
