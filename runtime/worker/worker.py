"""The worker's receive loop: what a Fargate task runs until it is idle or told to stop.

A checklist, in order: poll for as many messages as there are free slots; validate each
(an invalid one goes to the dead-letter queue, never runs); run each valid one in its
own ``CommandRun``; after enough empty polls with nothing running, exit so the task
stops costing money. On ``stop()`` (SIGTERM): stop polling, let running commands finish
within the grace, then interrupt them so their messages go back to the queue at once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os

import trio

from runtime.aws.clients import make_client
from runtime.aws.queue import CommandQueue, QueueError, ReceivedMessage
from runtime.aws.storage import ProjectStorage
from runtime.bus.connection import RedisError
from runtime.bus.terminal_bus import TerminalBus
from runtime.contract import events
from runtime.contract.messages import InvalidCommand, parse_command
from runtime.policy.backoff import backoff_delay

from .command import CLEANUP_S, CommandRun, WorkerContext
from .confinement import CommandUsers
from .settings import WorkerSettings

logger = logging.getLogger(__name__)

# A message with no dead-letter queue to go to stays hidden this long between tries.
NO_DEAD_LETTER_RETRY_S = 15 * 60
# S3 transfers a worker runs at once.
TRANSFER_THREADS = 16


class Worker:
    def __init__(
        self, settings: WorkerSettings, queue: CommandQueue, storage: ProjectStorage,
        bus: TerminalBus,
    ):
        self.settings = settings
        self._queue = queue
        self._bus = bus
        self._context = WorkerContext(
            settings=settings, queue=queue, storage=storage, bus=bus,
            transfer_limiter=trio.CapacityLimiter(TRANSFER_THREADS), workspaces={},
        )
        self._running: set[CommandRun] = set()
        self._users: CommandUsers | None = None
        self._handling = 0
        self._stopping = False
        self._stop_requested = trio.Event()
        self._stop_deadline = math.inf
        self._slot_freed = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.handled = 0

    def __str__(self) -> str:
        return f"worker {self.settings.worker_id}"

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> Worker:
        """A worker with real clients: SQS and S3 (or their emulator), and Redis."""
        queue = CommandQueue(
            # Short timeouts and few attempts: a lease extension must end before the lease.
            make_client("sqs", endpoint_url=settings.aws_endpoint_url, read_timeout_s=5,
                        attempts=2),
            settings.sqs_queue_url,
            # One thread per concurrent long poll and heartbeat, and a few spare.
            limiter=trio.CapacityLimiter(4 + 2 * settings.concurrency),
            # Above the 20 s long poll, so the socket never cuts a poll short.
            poll_client=make_client("sqs", endpoint_url=settings.aws_endpoint_url,
                                    read_timeout_s=30, attempts=3),
        )
        storage = ProjectStorage(
            make_client("s3", endpoint_url=settings.aws_endpoint_url, pool_size=TRANSFER_THREADS),
            settings.s3_bucket, settings.s3_prefix,
        )
        bus = TerminalBus(settings.redis_url)
        return cls(settings, queue, storage, bus)

    async def preflight(self) -> None:
        """Fail at start, naming what is unreachable, rather than at the first command;
        then claim the user ids commands will run as, held until ``run`` ends."""
        await self._queue.check()
        await self._bus.ping()
        self._users = await trio.to_thread.run_sync(
            CommandUsers.claim, self.settings, os.geteuid()
        )

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        logger.info("%s: serving %s; commands run as %s", self, self._queue, self._users,
                    extra={"workerId": self.settings.worker_id,
                           "concurrency": self.settings.concurrency})
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._receive_loop(nursery)
                while self._handling:
                    await self._slot_freed.wait()
                nursery.cancel_scope.cancel()  # only the grace timer can be left
        finally:
            self._users.close()
            with trio.CancelScope(shield=True):  # closing sockets does not wait
                await self._bus.aclose()
        logger.info("%s: stopped after %d messages", self, self.handled,
                    extra={"workerId": self.settings.worker_id})

    def stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM): finish within the grace, then hand back."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_requested.set()
        # Everything must be settled a little before SIGKILL arrives.
        self._stop_deadline = trio.current_time() + self.settings.stop_timeout_s - 1
        self._wake()
        logger.info("%s: stopping; %d command(s) running", self, len(self._running),
                    extra={"workerId": self.settings.worker_id})
        if self._nursery is not None:
            self._nursery.start_soon(self._interrupt_after_grace)

    async def _interrupt_after_grace(self) -> None:
        await trio.sleep(self.settings.shutdown_grace_s)
        for run in list(self._running):
            run.interrupt(self._stop_deadline)

    def _wake(self) -> None:
        self._slot_freed.set()
        self._slot_freed = trio.Event()

    async def _receive_loop(self, nursery: trio.Nursery) -> None:
        idle_since = trio.current_time()
        idle_timeout = self.settings.idle_timeout_s
        wait_s = self.settings.receive_wait_s
        if idle_timeout:
            wait_s = max(1, min(wait_s, math.ceil(idle_timeout)))
        failures = 0
        while not self._stopping:
            free = self.settings.concurrency - self._handling
            if free <= 0:
                await self._slot_freed.wait()
                idle_since = trio.current_time()
                continue
            if self._queue.fifo:
                # One at a time: a batch may hold several commands of one project (one
                # message group), which must run in order, not side by side.
                free = 1
            try:
                messages = await self._queue.receive(
                    max_messages=free, wait_s=wait_s,
                    visibility_s=int(self.settings.lease.lease_s),
                )
            except QueueError as exc:
                failures += 1
                logger.warning("%s: receive failed: %s", self, exc)
                with trio.move_on_after(backoff_delay(failures, base_s=1, cap_s=30)):
                    await self._stop_requested.wait()
                continue
            failures = 0
            if self._stopping:
                await self._hand_back_unstarted(messages)
                break
            if messages:
                idle_since = trio.current_time()
                for message in messages:
                    self._handling += 1
                    nursery.start_soon(self._handle, message)
                continue
            if self._handling:
                idle_since = trio.current_time()
            elif idle_timeout and trio.current_time() - idle_since >= idle_timeout:
                logger.info("%s: idle for %.0f s; exiting", self, idle_timeout,
                            extra={"workerId": self.settings.worker_id})
                break

    async def _hand_back_unstarted(self, messages: list[ReceivedMessage]) -> None:
        """A poll that returned during shutdown: make what it hid visible at once."""
        with trio.move_on_after(CLEANUP_S, shield=True):
            for message in messages:
                try:
                    await self._queue.release(message)
                except QueueError as exc:
                    logger.warning("%s: could not release %s: %s", self, message, exc)

    async def _handle(self, message: ReceivedMessage) -> None:
        run = None
        try:
            try:
                command = parse_command(message.body, message.message_id)
            except InvalidCommand as exc:
                await self._reject(message, exc)
                return
            run = CommandRun(self._context, message, command, self._users.take())
            self._running.add(run)
            if self._stopping:
                run.interrupt(self._stop_deadline)
            await run.execute()
        except Exception:
            # A fault in handling (not in the user's command). Hand the message back after
            # a lease: a message that fails every time reaches the dead-letter queue.
            ids = {"messageId": message.message_id}
            if run is not None:
                ids.update(projectId=run.command.project_id, commandId=run.command.command_id)
            logger.exception("%s: handling message %s failed", self, message, extra=ids)
            with trio.move_on_after(CLEANUP_S, shield=True):
                if run is not None:
                    cmd = run.command
                    # Otherwise the terminal waits in silence for a command that may end
                    # in the dead-letter queue.
                    with contextlib.suppress(RedisError):
                        await self._bus.publish(cmd.project_id, cmd.terminal_id, [events.error(
                            cmd.command_id, events.HANDLING_FAILED,
                            f"the worker failed while handling this command (receive "
                            f"{message.receive_count}); it will be tried again, and set "
                            "aside if it keeps failing",
                        )])
                        await self._bus.mark_released(cmd.project_id, cmd.command_id)
                with contextlib.suppress(QueueError):
                    await self._queue.release(
                        message, after_s=int(self.settings.lease.lease_s)
                    )
        finally:
            self.handled += 1
            self._handling -= 1
            if run is not None:
                self._running.discard(run)
                self._users.give_back(run.user)
            self._wake()

    async def _reject(self, message: ReceivedMessage, exc: InvalidCommand) -> None:
        logger.warning("%s: invalid message %s: %s", self, message, exc.reason, extra={
            "messageId": message.message_id, "reason": exc.reason,
            "projectId": exc.project_id, "terminalId": exc.terminal_id,
        })
        if exc.project_id and exc.terminal_id:
            try:
                await self._bus.publish(exc.project_id, exc.terminal_id, [events.error(
                    exc.command_id, events.INVALID_COMMAND, exc.reason,
                )])
            except RedisError as bus_exc:
                logger.warning("%s: could not tell the terminal: %s", self, bus_exc)
        with trio.move_on_after(CLEANUP_S, shield=True):
            moved = await self._queue.dead_letter(message, exc.reason)
            if not moved:
                logger.error(
                    "%s: queue has no dead-letter queue; invalid message %s left for redrive",
                    self, message, extra={"messageId": message.message_id},
                )
                await self._queue.release(message, after_s=NO_DEAD_LETTER_RETRY_S)
