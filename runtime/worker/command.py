"""One command on a worker, from a received message to its settlement.

Everything a command needs while it runs lives in one nursery: the visibility heartbeat,
the project lease, the output publisher, and (while the process lives) the PTY pump, the
input router and the periodic upload. When the command ends, or a lease is lost, that
nursery's cancel scopes end them all.

A message is settled exactly one way: deleted (the command finished, or had finished
before), deferred (its project was busy), or released (handed back to run again). The
heartbeat stops before any of these, so it can never re-hide a settled message.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from dataclasses import dataclass

import trio

from runtime.aws.queue import CommandQueue, QueueError, ReceivedMessage
from runtime.aws.storage import ProjectStorage
from runtime.bus.connection import RedisError
from runtime.bus.terminal_bus import CommandRecord, TerminalBus
from runtime.contract import events
from runtime.contract.messages import CommandMessage
from runtime.contract.metrics import embedded_metrics
from runtime.policy.backoff import backoff_delay, deferral_delay_s
from runtime.policy.batching import OutputBatcher

from . import files
from .confinement import COMMAND_UMASK, CommandUser
from .heartbeat import ProjectLease, VisibilityHeartbeat
from .output import OutputPublisher
from .pty_command import ExitStatus, PtyCommand, SpawnFailed
from .settings import WorkerSettings
from .terminal_io import InputRouter, pump_output
from .workspace import SyncFailed, Workspace, WorkspaceOverLimit

logger = logging.getLogger(__name__)

# After the shell exits, how long output from its last writes may still trickle in.
DRAIN_S = 0.5
# How long a cleanup step (publishing the last events, releasing) may take at most.
CLEANUP_S = 10
# How long to keep trying Redis before handing a command back to the queue.
BUS_PATIENCE_S = 60
FINAL_UPLOAD_ATTEMPTS = 3
# Kept back from a shutdown deadline for handing the message back.
RELEASE_RESERVE_S = 3


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
                limiter=self.transfer_limiter, limits=self.settings.limits,
            )
        return self.workspaces[project_id]


class CommandRun:
    def __init__(self, context: WorkerContext, message: ReceivedMessage, command: CommandMessage,
                 user: CommandUser):
        self._context = context
        self.user = user
        self._settings = context.settings
        self._queue = context.queue
        self._bus = context.bus
        self.message = message
        self.command = command
        self._heartbeat = VisibilityHeartbeat(self._queue, message, self._settings.lease)
        self._heartbeat_scope: trio.CancelScope | None = None
        self._work_scope: trio.CancelScope | None = None  # ends when a lease is lost
        self._wait_scope: trio.CancelScope | None = None  # waiting for the process
        self._user_not_ready: SpawnFailed | None = None
        self._pull_scope: trio.CancelScope | None = None
        self._stop_bounded: dict[trio.CancelScope, float] = {}
        self._interrupted = False
        self._over_disk_limit = False
        self._stop_deadline = math.inf
        self._settled = False
        self.lease_lost: str | None = None
        self._project_lost = False
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

    # ---- signals from outside -------------------------------------------------------

    def interrupt(self, deadline: float = math.inf) -> None:
        """The worker is shutting down: stop, save, and hand back by ``deadline``."""
        self._interrupted = True
        self._stop_deadline = min(self._stop_deadline, deadline)
        for scope in (self._wait_scope, self._pull_scope):
            if scope is not None:
                scope.cancel()
        for scope, reserve_s in self._stop_bounded.items():
            scope.deadline = min(scope.deadline, self._stop_deadline - reserve_s)

    def _on_lease_lost(self, reason: str, *, project: bool = False) -> None:
        if self._settled:
            return
        self.lease_lost = reason
        self._project_lost = project
        if self._work_scope is not None:
            self._work_scope.cancel()

    @contextlib.contextmanager
    def _until_stop(self, reserve_s: float):
        """A scope that ends ``reserve_s`` before the shutdown deadline, if one comes."""
        with trio.CancelScope(deadline=self._stop_deadline - reserve_s) as scope:
            self._stop_bounded[scope] = reserve_s
            try:
                yield scope
            finally:
                del self._stop_bounded[scope]

    def _cleanup_deadline(self) -> float:
        return min(trio.current_time() + CLEANUP_S, self._stop_deadline)

    # ---- the run ----------------------------------------------------------------------

    async def execute(self) -> None:
        """Run the command and settle its message; never raises for the command's faults."""
        started = trio.current_time()
        self._log(logging.INFO, "received", receiveCount=self.message.receive_count)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keep_visibility)
                with trio.CancelScope() as self._work_scope:
                    await self._with_project(nursery)
                if self.lease_lost is not None:
                    await self._after_lease_lost()
                self._stop_heartbeat()
                nursery.cancel_scope.cancel()
        finally:
            duration_s = round(trio.current_time() - started, 3)
            # Handing back or deferring is routine; anything else needs a look.
            routine = self.outcome in ("finished", "duplicate", "left_to_holder", "deferred",
                                        "released")
            figures = {"commandsRun": (int(self.outcome == "finished"), "Count"),
                       "commandsFailed": (int(not routine), "Count")}
            # Only a command that ran to its end has a duration worth charting.
            if self.outcome == "finished":
                figures["commandSeconds"] = (duration_s, "Seconds")
            self._log(logging.INFO if routine else logging.WARNING,
                      self.outcome, outcome=self.outcome, durationS=duration_s,
                      **embedded_metrics("worker", figures))

    async def _keep_visibility(self) -> None:
        with trio.CancelScope() as self._heartbeat_scope:
            await self._heartbeat.run(self._on_lease_lost)

    def _stop_heartbeat(self) -> None:
        self._settled = True
        if self._heartbeat_scope is not None:
            self._heartbeat_scope.cancel()

    async def _after_lease_lost(self) -> None:
        self.outcome = "lease_lost"
        self._log(logging.ERROR, "lease lost; stopped without upload or delete",
                  reason=self.lease_lost)
        if self._project_lost and self._heartbeat.lost is None:
            # The message is still ours: it comes back once the project is free.
            await self._release(after_s=int(self._settings.lease.lease_s))

    async def _with_project(self, nursery: trio.Nursery) -> None:
        if self._interrupted:
            await self._release()
            self.outcome = "released"
            return
        if self._queue.fifo:
            # The queue delivers a message group (the project) one message at a time.
            await self._run(nursery)
            return
        # Neither a command id (see contract.messages) nor an SQS message id holds a
        # colon, so no other delivery's name starts with this one.
        lease = ProjectLease(
            self._bus, self.command.project_id,
            f"{self.command.command_id}:{self.message.message_id}",
            self._settings.worker_id, self._settings.lease,
        )
        acquired = await self._patiently(lease.acquire)
        if acquired is None:
            return
        if not acquired:
            holder = await self._patiently(lease.holder)
            if holder is not None and holder.runs_this_message:
                await self._leave_to_holder(holder.left_s)
            elif holder is not None:
                await self._defer()
            return
        try:
            async with trio.open_nursery() as holding:
                holding.start_soon(lease.keep, functools.partial(self._on_lease_lost,
                                                                 project=True))
                await self._run(nursery)
                holding.cancel_scope.cancel()
        finally:
            with trio.move_on_after(CLEANUP_S, shield=True):
                try:
                    await lease.release()
                except RedisError as exc:
                    self._log(logging.WARNING, "project lease not released; it will expire",
                              error=str(exc))

    async def _patiently(self, call):
        """Retry a Redis call while Redis is down; hand the message back if it stays down."""
        deadline = min(trio.current_time() + BUS_PATIENCE_S, self._stop_deadline)
        failures = 0
        while True:
            try:
                return await call()
            except RedisError as exc:
                failures += 1
                if trio.current_time() >= deadline or self._interrupted:
                    self._log(logging.ERROR, "redis unavailable; handing the command back",
                              error=str(exc))
                    await self._release(after_s=0 if self._interrupted
                                        else int(self._settings.lease.lease_s))
                    self.outcome = "released"
                    return None
                await trio.sleep(backoff_delay(failures, cap_s=5))

    async def _run(self, nursery: trio.Nursery) -> None:
        cmd = self.command
        if self._interrupted:
            await self._release()
            self.outcome = "released"
            return
        record = await self._patiently(
            lambda: self._bus.begin_attempt(cmd.project_id, cmd.command_id)
        )
        if record is None:
            return
        if record.exited:
            # A worker published the exit but died before deleting the message.
            await self._delete()
            self.outcome = "duplicate"
            return
        publisher = OutputPublisher(self._bus, cmd.project_id, cmd.terminal_id, cmd.command_id)
        await nursery.start(publisher.run)
        try:
            await self._attempt(publisher, record)
        finally:
            if self.lease_lost is not None:
                publisher.send_event(events.error(
                    cmd.command_id, events.LEASE_LOST,
                    "the worker lost its hold on this command and stopped it",
                ))
            with trio.move_on_at(self._cleanup_deadline(), shield=True):
                await publisher.flush()

    async def _attempt(self, publisher: OutputPublisher, record: CommandRecord) -> None:
        cmd = self.command
        if record.attempt > 1 and not record.released:
            publisher.send_event(events.error(
                cmd.command_id, events.WORKER_LOST,
                f"the worker running attempt {record.attempt - 1} was lost; "
                "running the command again",
            ))
        workspace = self._context.workspace(cmd.project_id)
        sync_error = None
        with trio.CancelScope() as self._pull_scope:
            if self._interrupted:
                self._pull_scope.cancel()
            async with trio.open_nursery() as nursery:
                # The command's user is made ready while its files come down: neither
                # needs the other, and the command waits for both.
                nursery.start_soon(self._make_user_ready)
                try:
                    await workspace.pull()
                except SyncFailed as exc:
                    sync_error = exc
                    nursery.cancel_scope.cancel()
        if sync_error is not None:
            publisher.send_event(events.error(cmd.command_id, events.SYNC_FAILED, str(sync_error)))
            await self._give_back(publisher, "sync_failed")
            return
        if self._interrupted:
            await self._hand_back(publisher)
            return

        # Subscribed before `started` goes out, so input sent on seeing it is not missed.
        subscription = self._bus.input_subscription(cmd.project_id, cmd.terminal_id)
        try:
            try:
                await subscription.open()
            except RedisError as exc:
                self._log(logging.WARNING, "input channel unavailable", error=str(exc))
            publisher.send_event(events.started(
                cmd.command_id, worker_id=self._settings.worker_id, attempt=record.attempt
            ))
            self._log(logging.INFO, "started", attempt=record.attempt)
            status, reason = await self._run_process(publisher, workspace, subscription)
        finally:
            with trio.move_on_after(2, shield=True):
                await subscription.close()

        await self._heartbeat.confirm(self._on_lease_lost)
        upload_error = await self._final_upload(workspace)
        if reason == "interrupted":
            await self._hand_back(publisher)
            return
        # Past a limit, the command ran and its changes stay unsaved: running it again
        # would only do the same, so it is settled like any other, with the error.
        over_limit = upload_error if isinstance(upload_error, WorkspaceOverLimit) else None
        if upload_error is not None and over_limit is None:
            publisher.send_event(events.error(
                cmd.command_id, events.SYNC_FAILED,
                f"the command's changes could not be saved; it will run again: {upload_error}",
            ))
            await self._give_back(publisher, "upload_failed")
            return
        if reason == "timeout":
            publisher.send_event(events.error(
                cmd.command_id, events.TIMEOUT,
                f"the command ran longer than {self._timeout_s():g} s and was stopped",
            ))
        elif reason == events.DISK_LIMIT:
            message = (f"the project's files took more than "
                       f"{self._settings.limits.workspace_max_bytes} bytes of disk and the "
                       "command was stopped")
            if over_limit is not None and over_limit.code == events.DISK_LIMIT:
                message += "; none of its changes were saved"
                over_limit = None  # one error event for one limit
            publisher.send_event(events.error(cmd.command_id, events.DISK_LIMIT, message))
        if over_limit is not None:
            publisher.send_event(events.error(cmd.command_id, over_limit.code, str(over_limit)))
        # Output and upload before the delete, never after.
        with trio.move_on_after(BUS_PATIENCE_S):
            await publisher.flush()
        await self._heartbeat.confirm(self._on_lease_lost)
        await self._publish_exit(events.exit_(
            cmd.command_id, exit_code=status.exit_code, signal=status.signal, reason=reason
        ), after=publisher.last_seq)
        await self._delete()
        self.outcome = "finished"
        self._log(logging.INFO, "exited", exitCode=status.exit_code, signal=status.signal,
                  reason=reason)

    # ---- settling the message ---------------------------------------------------------

    async def _release(self, *, after_s: int = 0) -> None:
        self._stop_heartbeat()
        with trio.move_on_after(CLEANUP_S, shield=True):
            try:
                await self._queue.release(self.message, after_s=after_s)
            except QueueError as exc:
                self._log(logging.WARNING, "release failed; the lease will expire",
                          error=str(exc))

    async def _delete(self) -> None:
        self._stop_heartbeat()
        with trio.move_on_after(CLEANUP_S, shield=True):
            try:
                await self._queue.delete(self.message)
            except QueueError as exc:
                # Its exit is recorded, so a redelivery is recognised and not run again.
                self._log(logging.WARNING, "delete failed", error=str(exc))

    async def _leave_to_holder(self, held_s: float) -> None:
        """A second delivery of a message another worker runs (SQS delivers at least
        once): deferring would delete the message from under that worker, whose lease
        would then be lost. It is hidden as long as that worker holds the project: a
        live one extends both (where SQS still honours its receipt) and deletes it; a
        dead one's message is back once the project is free."""
        self._log(logging.INFO, "running on another worker; this delivery is left to it",
                  heldS=round(held_s, 1))
        await self._release(after_s=max(1, math.ceil(held_s)))
        self.outcome = "left_to_holder"

    async def _defer(self) -> None:
        """The project is busy elsewhere: come back later, without burning a receive."""
        deferrals = self.message.deferrals + 1
        delay = deferral_delay_s(deferrals)
        self._stop_heartbeat()
        # Copy first, then delete: a crash in between leaves a duplicate, which is harmless
        # (the commandId is pinned in the copy), never a lost command.
        with trio.move_on_after(CLEANUP_S, shield=True):
            await self._queue.send(
                self.command.to_body(), delay_s=delay, attributes={"deferrals": deferrals},
                group_id=self.command.project_id,
            )
            await self._queue.delete(self.message)
        self.outcome = "deferred"
        self._log(logging.INFO, "project busy; deferred", delayS=delay, deferrals=deferrals)

    async def _give_back(self, publisher: OutputPublisher, outcome: str) -> None:
        """A fault of ours, not the command's: let it run again after a lease."""
        await self._mark_released(publisher)
        await self._release(after_s=int(self._settings.lease.lease_s))
        self.outcome = outcome

    async def _hand_back(self, publisher: OutputPublisher) -> None:
        """The worker is stopping: tell the terminal, and let another worker run it now."""
        publisher.send_event(events.error(
            self.command.command_id, events.WORKER_STOPPING,
            "the worker is shutting down; the command will run again on another worker",
        ))
        await self._mark_released(publisher)
        await self._release()
        self.outcome = "released"

    async def _mark_released(self, publisher: OutputPublisher) -> None:
        # The next attempt then knows this one ended on purpose, not by a lost worker.
        with trio.move_on_at(self._cleanup_deadline() - RELEASE_RESERVE_S, shield=True):
            await publisher.flush()
            with contextlib.suppress(RedisError):
                await self._bus.mark_released(self.command.project_id, self.command.command_id)

    async def _publish_exit(self, exit_event: str, *, after: int) -> None:
        cmd = self.command
        failures = 0
        with trio.move_on_after(BUS_PATIENCE_S) as scope:
            while True:
                try:
                    await self._bus.publish_exit(
                        cmd.project_id, cmd.terminal_id, cmd.command_id, [exit_event],
                        after=after,
                    )
                    return
                except RedisError:
                    failures += 1
                    await trio.sleep(backoff_delay(failures, cap_s=5))
        if scope.cancelled_caught:
            self._log(logging.ERROR, "exit event could not be published; deleting anyway, "
                      "the files are saved")

    # ---- the process --------------------------------------------------------------------

    def _timeout_s(self) -> float:
        limit = self._settings.command_timeout_s
        if self.command.timeout_s is not None:
            return min(limit, self.command.timeout_s)
        return limit

    async def _final_upload(self, workspace: Workspace) -> SyncFailed | None:
        error = SyncFailed("the worker had to stop before the upload finished")
        with self._until_stop(RELEASE_RESERVE_S):
            for attempt in range(1, FINAL_UPLOAD_ATTEMPTS + 1):
                try:
                    await workspace.push()
                    return None
                except WorkspaceOverLimit as exc:
                    self._log(logging.WARNING, "upload refused", error=str(exc))
                    return exc
                except SyncFailed as exc:
                    self._log(logging.WARNING, "upload failed", attempt=attempt, error=str(exc))
                    error = exc
                    if attempt < FINAL_UPLOAD_ATTEMPTS:
                        await trio.sleep(backoff_delay(attempt, base_s=1, cap_s=10))
        return error

    async def _make_user_ready(self) -> None:
        try:
            await self.user.make_ready()
        except SpawnFailed as exc:
            self._user_not_ready = exc  # told to the terminal where the command would start

    async def _run_process(
        self, publisher: OutputPublisher, workspace: Workspace, subscription
    ) -> tuple[ExitStatus, str | None]:
        try:
            return await self._run_as_user(publisher, workspace, subscription)
        finally:
            # Whatever the command left running, wherever it went, ends here.
            with trio.move_on_after(CLEANUP_S, shield=True):
                await self.user.leave(workspace.path)

    async def _run_as_user(
        self, publisher: OutputPublisher, workspace: Workspace, subscription
    ) -> tuple[ExitStatus, str | None]:
        cmd = self.command
        try:
            if self._user_not_ready is not None:
                raise self._user_not_ready
            await self.user.take_workspace(workspace.path)
            process = await PtyCommand.spawn(
                cmd.command, cwd=workspace.path,
                env=self.user.environment(self._settings.command_env),
                cols=cmd.cols, rows=cmd.rows,
                launcher=self.user.launcher(self._settings.limits), umask=COMMAND_UMASK,
            )
        except SpawnFailed as exc:
            publisher.send_event(events.error(cmd.command_id, events.SPAWN_FAILED, str(exc)))
            return ExitStatus(127, None), "spawn_failed"
        batcher = OutputBatcher()
        reason = None
        try:
            async with trio.open_nursery() as nursery:
                pump_done = trio.Event()
                nursery.start_soon(pump_output, process, batcher, publisher, pump_done)
                nursery.start_soon(InputRouter(process, cmd.command_id, self._log).run,
                                   subscription)
                nursery.start_soon(self._upload_periodically, workspace)
                nursery.start_soon(self._watch_disk_use, workspace)
                with trio.CancelScope(
                    deadline=trio.current_time() + self._timeout_s()
                ) as self._wait_scope:
                    if self._interrupted:
                        self._wait_scope.cancel()
                    await process.wait()
                if self._wait_scope.cancelled_caught:
                    reason = ("interrupted" if self._interrupted
                              else events.DISK_LIMIT if self._over_disk_limit else "timeout")
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

    async def _watch_disk_use(self, workspace: Workspace) -> None:
        """Stop the command once its project folder and home outgrow WORKSPACE_MAX_BYTES."""
        limits = self._settings.limits
        places = [str(workspace.path)]
        if self.user.home is not None:
            places.append(str(self.user.home))
        while True:
            await trio.sleep(limits.workspace_check_s)
            used = await trio.to_thread.run_sync(
                files.disk_use, places, limits.workspace_max_bytes
            )
            if used > limits.workspace_max_bytes:
                self._log(logging.WARNING, "disk limit reached", usedBytes=used)
                self._over_disk_limit = True
                if self._wait_scope is not None:
                    self._wait_scope.cancel()
                return

    async def _upload_periodically(self, workspace: Workspace) -> None:
        while True:
            await trio.sleep(self._settings.upload_interval_s)
            try:
                await workspace.push()
            except SyncFailed as exc:
                # Best effort: the final upload decides.
                self._log(logging.WARNING, "periodic upload failed", error=str(exc))
