"""One command on a worker, from a received message to its deletion.

Everything a command needs while it runs lives in one nursery: the visibility heartbeat,
the project lease, the output publisher, and (while the process lives) the PTY pump, the
input listener and the periodic upload. When the command ends, or its lease is lost,
that nursery's cancel scope ends them all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from dataclasses import dataclass

import trio

from runtime.aws.queue import CommandQueue, QueueError, ReceivedMessage
from runtime.aws.storage import ProjectStorage
from runtime.bus.terminal_bus import BusUnavailable, InputSubscription, TerminalBus
from runtime.contract import events
from runtime.contract.messages import MAX_TERMINAL_SIZE, CommandMessage
from runtime.policy.backoff import backoff_delay, deferral_delay_s
from runtime.policy.batching import OutputBatcher

from .heartbeat import ProjectLease, VisibilityHeartbeat
from .output import OutputPublisher
from .pty_command import ExitStatus, PtyCommand, SpawnFailed
from .settings import WorkerSettings
from .workspace import SyncFailed, Workspace

logger = logging.getLogger(__name__)

# After the shell exits, how long output from its last writes may still trickle in.
DRAIN_S = 0.5
# How long cleanup steps (publishing the last events, releasing) may take at most.
CLEANUP_S = 10
# How long to keep trying Redis before handing a command back to the queue.
BUS_PATIENCE_S = 60
FINAL_UPLOAD_ATTEMPTS = 3


@dataclass
class WorkerContext:
    """What every command on a worker shares."""

    settings: WorkerSettings
    queue: CommandQueue
    storage: ProjectStorage
    bus: TerminalBus
    transfer_limiter: trio.CapacityLimiter
    workspaces: dict

    def workspace(self, project_id: str) -> Workspace:
        if project_id not in self.workspaces:
            self.workspaces[project_id] = Workspace(
                self.settings.workspace_root, project_id, self.storage,
                limiter=self.transfer_limiter,
            )
        return self.workspaces[project_id]


class CommandRun:
    def __init__(self, context: WorkerContext, message: ReceivedMessage, command: CommandMessage):
        self._context = context
        self._settings = context.settings
        self._queue = context.queue
        self._bus = context.bus
        self.message = message
        self.command = command
        self._interrupted = False
        self._wait_scope: trio.CancelScope | None = None
        self._lease_scope: trio.CancelScope | None = None
        self.lease_lost: str | None = None
        self.outcome = "pending"

    def __str__(self) -> str:
        return f"command {self.command}"

    def _log(self, level: int, text: str, **fields) -> None:
        logger.log(level, "%s: %s", self, text, extra={
            "projectId": self.command.project_id,
            "terminalId": self.command.terminal_id,
            "commandId": self.command.command_id,
            "messageId": self.message.message_id,
            **fields,
        })

    def interrupt(self) -> None:
        """Stop the command because the worker is shutting down; it will run elsewhere."""
        self._interrupted = True
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _on_lease_lost(self, reason: str) -> None:
        self.lease_lost = reason
        if self._lease_scope is not None:
            self._lease_scope.cancel()

    async def execute(self) -> None:
        """Run the command and settle its message; never raises for the command's faults."""
        started = trio.current_time()
        self._log(logging.INFO, "received", receiveCount=self.message.receive_count)
        heartbeat = VisibilityHeartbeat(self._queue, self.message, self._settings.lease)
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as self._lease_scope:
                nursery.start_soon(heartbeat.run, self._on_lease_lost)
                await self._with_project(nursery)
            nursery.cancel_scope.cancel()
        if self.lease_lost is not None:
            self.outcome = "lease_lost"
            self._log(logging.ERROR, "lease lost; stopped without upload or delete",
                      reason=self.lease_lost)
        self._log(
            # Handing a command back or deferring it is routine; the rest needs a look.
            logging.INFO if self.outcome in ("finished", "duplicate", "deferred", "released")
            else logging.WARNING,
            self.outcome, outcome=self.outcome,
            durationS=round(trio.current_time() - started, 3),
        )

    async def _with_project(self, nursery: trio.Nursery) -> None:
        if self._queue.fifo:
            # The queue delivers a message group (the project) one message at a time.
            await self._run(nursery)
            return
        lease = ProjectLease(
            self._bus, self.command.project_id, f"{self._settings.worker_id}:"
            f"{secrets.token_hex(8)}", self._settings.lease,
        )
        acquired = await self._patiently(lease.acquire)
        if acquired is None:
            return
        if not acquired:
            await self._defer()
            return
        try:
            async with trio.open_nursery() as holding:
                holding.start_soon(lease.keep)
                await self._run(nursery)
                holding.cancel_scope.cancel()
        finally:
            with trio.move_on_after(CLEANUP_S, shield=True):
                try:
                    await lease.release()
                except BusUnavailable as exc:
                    self._log(logging.WARNING, "project lease not released; it will expire",
                              error=str(exc))

    async def _patiently(self, call):
        """Retry a Redis call while Redis is down; hand the message back if it stays down."""
        deadline = trio.current_time() + BUS_PATIENCE_S
        failures = 0
        while True:
            try:
                return await call()
            except BusUnavailable as exc:
                failures += 1
                if trio.current_time() >= deadline:
                    self._log(logging.ERROR, "redis unavailable; handing the command back",
                              error=str(exc))
                    await self._release(after_s=int(self._settings.lease.lease_s))
                    self.outcome = "released"
                    return None
                await trio.sleep(backoff_delay(failures, cap_s=5))

    async def _defer(self) -> None:
        """The project is busy elsewhere: come back later, without burning a receive."""
        deferrals = self.message.deferrals + 1
        delay = deferral_delay_s(deferrals)
        # Copy first, then delete: a crash in between leaves a duplicate, which is harmless
        # (the commandId is pinned in the copy), never a lost command.
        with trio.move_on_after(CLEANUP_S, shield=True):
            await self._queue.send(
                self.command.to_body(), delay_s=delay, attributes={"deferrals": deferrals}
            )
            await self._queue.delete(self.message)
        self.outcome = "deferred"
        self._log(logging.INFO, "project busy; deferred", delayS=delay, deferrals=deferrals)

    async def _release(self, *, after_s: int = 0) -> None:
        with trio.move_on_after(CLEANUP_S, shield=True):
            try:
                await self._queue.release(self.message, after_s=after_s)
            except QueueError as exc:
                self._log(logging.WARNING, "release failed; the lease will expire",
                          error=str(exc))

    async def _run(self, nursery: trio.Nursery) -> None:
        cmd = self.command
        record = await self._patiently(
            lambda: self._bus.begin_attempt(cmd.project_id, cmd.command_id)
        )
        if record is None:
            return
        if record.exited:
            # A worker published the exit but died before deleting the message.
            with trio.move_on_after(CLEANUP_S, shield=True):
                await self._queue.delete(self.message)
            self.outcome = "duplicate"
            return
        publisher = OutputPublisher(self._bus, cmd.project_id, cmd.terminal_id, cmd.command_id)
        await nursery.start(publisher.run)
        try:
            await self._attempt(publisher, record.attempt, record.released)
        finally:
            if self.lease_lost is not None:
                publisher.send_event(events.error(
                    cmd.command_id, events.LEASE_LOST,
                    "the worker lost its hold on this command and stopped it",
                ))
            with trio.move_on_after(CLEANUP_S, shield=True):
                await publisher.flush()

    async def _attempt(self, publisher: OutputPublisher, attempt: int, released: bool) -> None:
        cmd = self.command
        if attempt > 1 and not released:
            publisher.send_event(events.error(
                cmd.command_id, events.WORKER_LOST,
                f"the worker running attempt {attempt - 1} was lost; running the command again",
            ))
        workspace = self._context.workspace(cmd.project_id)
        try:
            await workspace.pull()
        except SyncFailed as exc:
            publisher.send_event(events.error(cmd.command_id, events.SYNC_FAILED, str(exc)))
            await self._release(after_s=int(self._settings.lease.lease_s))
            self.outcome = "sync_failed"
            return
        if self._interrupted:
            await self._hand_back(publisher)
            return
        # Subscribed before `started` goes out, so input sent on seeing it is not missed.
        subscription = self._bus.input_subscription(cmd.project_id, cmd.terminal_id)
        try:
            try:
                await subscription.open()
            except BusUnavailable as exc:
                self._log(logging.WARNING, "input channel unavailable", error=str(exc))
            publisher.send_event(events.started(
                cmd.command_id, worker_id=self._settings.worker_id, attempt=attempt
            ))
            self._log(logging.INFO, "started", attempt=attempt)
            status, reason = await self._run_process(publisher, workspace, subscription)
        finally:
            with trio.move_on_after(2, shield=True):
                await subscription.close()

        upload_error = await self._final_upload(workspace)
        if reason == "interrupted":
            await self._hand_back(publisher)
            return
        if upload_error is not None:
            publisher.send_event(events.error(
                cmd.command_id, events.SYNC_FAILED,
                f"the command's changes could not be saved; it will run again: {upload_error}",
            ))
            await self._release(after_s=int(self._settings.lease.lease_s))
            self.outcome = "upload_failed"
            return
        if reason == "timeout":
            publisher.send_event(events.error(
                cmd.command_id, events.TIMEOUT,
                f"the command ran longer than {self._timeout_s():g} s and was stopped",
            ))
        exit_event = events.exit_(
            cmd.command_id, exit_code=status.exit_code, signal=status.signal, reason=reason
        )
        # Output and upload before the delete, never after.
        await publisher.flush()
        await self._publish_exit(exit_event)
        await self._queue.delete(self.message)
        self.outcome = "finished"
        self._log(logging.INFO, "exited", exitCode=status.exit_code, signal=status.signal,
                  reason=reason)

    async def _hand_back(self, publisher: OutputPublisher) -> None:
        """The worker is stopping: tell the terminal, and let another worker run it now."""
        cmd = self.command
        publisher.send_event(events.error(
            cmd.command_id, events.WORKER_STOPPING,
            "the worker is shutting down; the command will run again on another worker",
        ))
        with trio.move_on_after(CLEANUP_S, shield=True):
            await publisher.flush()
            with contextlib.suppress(BusUnavailable):
                await self._bus.mark_released(cmd.project_id, cmd.command_id)
        await self._release()
        self.outcome = "released"

    async def _publish_exit(self, exit_event: str) -> None:
        cmd = self.command
        failures = 0
        with trio.move_on_after(BUS_PATIENCE_S) as scope:
            while True:
                try:
                    await self._bus.publish_exit(
                        cmd.project_id, cmd.terminal_id, cmd.command_id, [exit_event]
                    )
                    return
                except BusUnavailable:
                    failures += 1
                    await trio.sleep(backoff_delay(failures, cap_s=5))
        if scope.cancelled_caught:
            self._log(logging.ERROR, "exit event could not be published; deleting anyway, "
                      "the files are saved")

    def _timeout_s(self) -> float:
        limit = self._settings.command_timeout_s
        if self.command.timeout_s is not None:
            return min(limit, self.command.timeout_s)
        return limit

    async def _final_upload(self, workspace: Workspace) -> str | None:
        error = None
        for attempt in range(1, FINAL_UPLOAD_ATTEMPTS + 1):
            try:
                await workspace.push()
                return None
            except SyncFailed as exc:
                self._log(logging.WARNING, "upload failed", attempt=attempt, error=str(exc))
                error = str(exc)
                if attempt < FINAL_UPLOAD_ATTEMPTS:
                    await trio.sleep(backoff_delay(attempt, base_s=1, cap_s=10))
        return error

    async def _run_process(
        self, publisher: OutputPublisher, workspace: Workspace, subscription: InputSubscription
    ) -> tuple[ExitStatus, str | None]:
        cmd = self.command
        try:
            process = await PtyCommand.spawn(
                cmd.command, cwd=workspace.path, env=dict(self._settings.command_env),
                cols=cmd.cols, rows=cmd.rows,
            )
        except SpawnFailed as exc:
            publisher.send_event(events.error(cmd.command_id, events.SPAWN_FAILED, str(exc)))
            return ExitStatus(127, None), "spawn_failed"
        batcher = OutputBatcher()
        reason = None
        try:
            async with trio.open_nursery() as nursery:
                pump_done = trio.Event()
                nursery.start_soon(self._pump, process, batcher, publisher, pump_done)
                nursery.start_soon(self._listen_input, process, subscription)
                nursery.start_soon(self._upload_periodically, workspace)
                with trio.CancelScope(
                    deadline=trio.current_time() + self._timeout_s()
                ) as self._wait_scope:
                    if self._interrupted:
                        self._wait_scope.cancel()
                    await process.wait()
                if self._wait_scope.cancelled_caught:
                    reason = "interrupted" if self._interrupted else "timeout"
                    self._log(logging.WARNING, "stopping command", reason=reason)
                # The shell has exited, or must now: stop everything it started.
                await process.terminate(self._settings.kill_grace_s)
                status = await process.wait()
                with trio.move_on_after(DRAIN_S):
                    await pump_done.wait()
                nursery.cancel_scope.cancel()
            batcher.add(process.read_available(), trio.current_time())
            await publisher.send_output(batcher.finish())
        finally:
            with trio.move_on_after(self._settings.kill_grace_s + 2, shield=True):
                await process.terminate(self._settings.kill_grace_s)
                await process.wait()
            process.close()
        return status, reason

    async def _pump(self, process: PtyCommand, batcher: OutputBatcher,
                    publisher: OutputPublisher, done: trio.Event) -> None:
        while True:
            with trio.move_on_at(batcher.deadline):
                data = await process.read()
                if not data:
                    break
                batcher.add(data, trio.current_time())
            if batcher.due(trio.current_time()):
                # Shielded: once taken from the batcher, the text must reach the publisher.
                # It waits only while a healthy Redis drains the buffer.
                with trio.CancelScope(shield=True):
                    await publisher.send_output(batcher.take())
        with trio.CancelScope(shield=True):
            await publisher.send_output(batcher.take())
        done.set()

    async def _listen_input(self, process: PtyCommand, subscription: InputSubscription) -> None:
        failures = 0
        while True:
            try:
                if failures or not subscription.opened:
                    await subscription.open()
                while True:
                    raw = await subscription.next_message()
                    failures = 0
                    await self._apply_input(process, raw)
            except BusUnavailable as exc:
                failures += 1
                if failures == 1:
                    self._log(logging.WARNING, "input channel unavailable", error=str(exc))
                await trio.sleep(backoff_delay(failures, cap_s=2))

    async def _apply_input(self, process: PtyCommand, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not an object")
            if message.get("commandId") not in (None, self.command.command_id):
                return  # meant for another command of this terminal
            kind = message.get("type")
            if kind == "stdin" and isinstance(message.get("data"), str):
                await process.write(message["data"].encode("utf-8", "replace"))
            elif kind == "resize":
                cols, rows = message.get("cols"), message.get("rows")
                if not all(isinstance(v, int) and 1 <= v <= MAX_TERMINAL_SIZE
                           for v in (cols, rows)):
                    raise ValueError(f"resize must be 1..{MAX_TERMINAL_SIZE}")
                process.resize(cols, rows)
            elif kind == "signal":
                process.send_signal(str(message.get("name")))
            else:
                raise ValueError(f"unknown input type {kind!r}")
        except (ValueError, TypeError) as exc:
            self._log(logging.WARNING, "input ignored", error=str(exc))

    async def _upload_periodically(self, workspace: Workspace) -> None:
        while True:
            await trio.sleep(self._settings.upload_interval_s)
            try:
                await workspace.push()
            except SyncFailed as exc:
                self._log(logging.WARNING, "periodic upload failed", error=str(exc))
