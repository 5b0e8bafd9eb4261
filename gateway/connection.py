"""One browser terminal's websocket, after its token has been accepted.

Two tasks share the connection: the receiver turns client frames into commands on the
queue and input on Redis; the sender writes the terminal's events, each seq once and in
order (see ``feed``), filling gaps from the history stream. A client whose buffer
overflows is told and disconnected; nobody else waits for it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import deque

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from runtime.aws.queue import CommandQueue, QueueError
from runtime.bus.connection import RedisError
from runtime.contract.messages import DEFAULT_COLS, DEFAULT_ROWS, CommandMessage

from .feed import EventBuffer, SeqCursor
from .frames import FrameError, Resize, Resume, RunCommand, SendSignal, Stdin, parse_client_frame
from .hub import TerminalHub
from .rate import TokenBucket
from .settings import GatewaySettings
from .store import HISTORY_PAGE, GatewayStore
from .tokens import TerminalGrant

logger = logging.getLogger(__name__)

SLOW_CLIENT_CLOSE = 4008
RESTART_CLOSE = 1012
CLOSE_TIMEOUT_S = 2
# A client that fell behind gets this long to take what is already on its way, the error
# and the close; one that reads nothing at all is then cut off. So is one on which a
# single frame has been waiting to go out this long.
SLOW_CLIENT_GRACE_S = 5
# Live events wait this long for the client's first frame: a reconnecting client says
# where it stopped (`resume`) before anything newer may be sent to it.
FIRST_FRAME_WAIT_S = 1


def gateway_error(code: str, message: str) -> str:
    return json.dumps({"type": "error", "code": code, "message": message})


class TerminalConnection:
    def __init__(self, ws: WebSocketConnection, grant: TerminalGrant, *, hub: TerminalHub,
                 store: GatewayStore, queue: CommandQueue, settings: GatewaySettings):
        self._ws = ws
        self.grant = grant
        self._hub = hub
        self._store = store
        self._queue = queue
        self._buffer = EventBuffer(settings.client_buffer_bytes)
        self._cursor = SeqCursor()
        self._control: deque[str] = deque()
        self._changed = trio.Event()
        self._resume_after: int | None = None
        self._check_history = False
        self._rate = TokenBucket(settings.frames_per_s, burst=2 * settings.frames_per_s)
        self._rate_warned_at = -1.0
        self._size = (DEFAULT_COLS, DEFAULT_ROWS)
        self._closing: tuple[int, str] | None = None
        self._fell_behind = trio.Event()
        # While catching up from history, live events are redundant: only their seqs are
        # noted, so the catch-up knows how far to go. A new connection starts this way
        # until the client says where it stopped (or says nothing for a moment).
        self._catching_up = True
        self._newest_live = 0
        self._first_live: int | None = None
        self._client_spoke = trio.Event()
        self._send_started: float | None = None
        # Set when a send begins or the client falls behind: only then is there anything
        # for the stuck-client watch to look at, so idle connections cost no wake-ups.
        self._may_be_stuck = trio.Event()

    def __str__(self) -> str:
        return f"connection {self.grant}"

    # What the hub calls (no awaiting: the hub serves every connection from one task).
    def offer(self, seq: int, text: str, size: int) -> None:
        if self._catching_up:
            self._newest_live = max(self._newest_live, seq)
            if self._first_live is None:
                self._first_live = seq
            return
        if not self._buffer.offer(seq, text, size):
            self._fell_behind.set()
            self._may_be_stuck.set()
        self._wake()

    def gap_possible(self) -> None:
        self._check_history = True
        self._wake()

    def close_for_restart(self) -> None:
        """The gateway is draining: ask the client to reconnect (to another gateway)."""
        self._closing = (RESTART_CLOSE, "gateway restarting; reconnect and resume")
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _say(self, frame: str) -> None:
        self._control.append(frame)
        self._wake()

    async def serve(self) -> None:
        grant = self.grant
        await self._hub.join(grant.project_id, grant.terminal_id, self)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, nursery.cancel_scope)
                nursery.start_soon(self._cut_off_if_stuck, nursery.cancel_scope)
                await self._receive_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT_S, shield=True):
                await self._hub.leave(grant.project_id, grant.terminal_id, self)
                code, reason = self._closing or (1000, None)
                await self._ws.aclose(code=code, reason=reason)

    async def _receive_loop(self) -> None:
        while True:
            try:
                text = await self._ws.get_message()
            except ConnectionClosed:
                return
            now = trio.current_time()
            if not self._rate.allow(now):
                if now - self._rate_warned_at >= 1:
                    self._rate_warned_at = now
                    self._say(gateway_error("rate_limited", "too many frames; some were dropped"))
                continue
            try:
                frame = parse_client_frame(text)
            except FrameError as exc:
                self._say(gateway_error("bad_frame", str(exc)))
                self._client_spoke.set()
                continue
            try:
                await self._act(frame)
            except (QueueError, RedisError) as exc:
                logger.warning("%s: %s", self, exc)
                self._say(gateway_error("unavailable", "the terminal service is unavailable; "
                                        "try again"))

    async def _act(self, frame) -> None:
        grant = self.grant
        if isinstance(frame, RunCommand):
            command_id = uuid.uuid4().hex
            cols, rows = self._size
            message = CommandMessage(
                project_id=grant.project_id, terminal_id=grant.terminal_id,
                command=frame.command, command_id=command_id, cols=cols, rows=rows,
            )
            await self._queue.send(
                message.to_body(), group_id=grant.project_id, deduplication_id=command_id
            )
            self._say(json.dumps({"type": "queued", "commandId": command_id}))
            await self._store.wake_scaler()
            logger.info("%s: queued %s", self, command_id, extra={
                "projectId": grant.project_id, "terminalId": grant.terminal_id,
                "commandId": command_id, "user": grant.user,
            })
        elif isinstance(frame, Stdin):
            await self._store.send_input(grant.project_id, grant.terminal_id,
                                         {"type": "stdin", "data": frame.data})
        elif isinstance(frame, Resize):
            self._size = (frame.cols, frame.rows)
            await self._store.send_input(grant.project_id, grant.terminal_id,
                                         {"type": "resize", "cols": frame.cols,
                                          "rows": frame.rows})
        elif isinstance(frame, SendSignal):
            await self._store.send_input(grant.project_id, grant.terminal_id,
                                         {"type": "signal", "name": frame.name})
        elif isinstance(frame, Resume):
            # Never behind what this connection already delivered: exactly once holds.
            self._resume_after = max(frame.after, self._cursor.last or 0)
            self._wake()
        self._client_spoke.set()

    async def _send(self, text: str) -> None:
        self._send_started = trio.current_time()
        self._may_be_stuck.set()
        try:
            await self._ws.send_message(text)
        finally:
            self._send_started = None

    def _stuck(self, now: float) -> bool:
        return self._send_started is not None and now - self._send_started > SLOW_CLIENT_GRACE_S

    async def _cut_off_if_stuck(self, scope: trio.CancelScope) -> None:
        # A send in progress is never interrupted (that would cut a frame in half), so a
        # client that stopped reading is cut off here, after a grace, by cancelling it all.
        fell_behind_at = None
        while not self._stuck(trio.current_time()):
            if self._send_started is None and not self._fell_behind.is_set():
                await self._may_be_stuck.wait()
                self._may_be_stuck = trio.Event()
                continue
            await trio.sleep(1)
            if self._fell_behind.is_set():
                fell_behind_at = fell_behind_at or trio.current_time()
                if trio.current_time() - fell_behind_at > SLOW_CLIENT_GRACE_S:
                    break
        logger.warning("%s: client stopped reading; cut off", self)
        self._closing = (SLOW_CLIENT_CLOSE, "client too slow")
        scope.cancel()

    async def _send_loop(self, scope: trio.CancelScope) -> None:
        with trio.move_on_after(FIRST_FRAME_WAIT_S):
            await self._client_spoke.wait()
        if self._resume_after is None and self._first_live is not None:
            # No resume: start from the first event published since the client came.
            self._resume_after = self._first_live - 1
        self._catching_up = self._resume_after is not None
        try:
            while True:
                # Taken before sending: a wake-up that comes while a frame goes out is
                # then still seen, not lost with a replaced event.
                changed = self._changed
                await self._send_pending()
                if self._closing is not None:
                    code, reason = self._closing
                    with trio.move_on_after(CLOSE_TIMEOUT_S):
                        await self._ws.aclose(code=code, reason=reason)
                    scope.cancel()
                    return
                await changed.wait()
        except ConnectionClosed:
            scope.cancel()

    async def _send_pending(self) -> None:
        while self._control:
            await self._send(self._control.popleft())
        if self._buffer.overflowed:
            logger.warning("%s: client too slow; disconnecting", self)
            with trio.move_on_after(CLOSE_TIMEOUT_S):
                await self._send(gateway_error(
                    "slow_client", "output arrived faster than this client read it; "
                    "reconnect and resume"))
            self._closing = (SLOW_CLIENT_CLOSE, "client too slow")
            return
        if self._resume_after is not None:
            self._cursor.last = self._resume_after
            self._resume_after = None
            await self._catch_up()
        elif self._check_history and self._cursor.last is not None:
            self._check_history = False
            await self._catch_up()
        for seq, text in self._buffer.take():
            verdict = self._cursor.classify(seq)
            if verdict == "gap":
                await self._catch_up()
                verdict = self._cursor.classify(seq)
            if verdict == "duplicate":
                continue
            await self._send(text)
            self._cursor.sent(seq)

    async def _history_was_reset(self, after: int) -> bool:
        """Redis lost the terminal's data (a restart without persistence): seq restarted.

        The client is told, and delivery starts again from the new beginning, rather than
        every new event looking like one it already has.
        """
        grant = self.grant
        try:
            newest = await self._store.newest_seq(grant.project_id, grant.terminal_id)
        except RedisError:
            return False
        if newest >= after:
            return False
        await self._send(gateway_error(
            "history_reset", "the terminal's history was lost; numbering starts again"))
        self._cursor.last = 0
        return True

    async def _catch_up(self) -> None:
        """Send kept history after the cursor until nothing newer has been seen live."""
        grant = self.grant
        self._catching_up = True
        try:
            for seq, _ in self._buffer.take():
                self._newest_live = max(self._newest_live, seq)
            while True:
                after = self._cursor.last or 0
                try:
                    page = await self._store.history_page(
                        grant.project_id, grant.terminal_id, after
                    )
                except RedisError as exc:
                    logger.warning("%s: history unavailable: %s", self, exc)
                    self._check_history = True  # try again on the next wake-up
                    return
                if not page and after and (self._cursor.last or 0) >= self._newest_live \
                        and await self._history_was_reset(after):
                    continue
                if page and page[0][0] > after + 1 and self._cursor.last is not None:
                    await self._send(gateway_error(
                        "history_truncated",
                        f"events {after + 1}..{page[0][0] - 1} are no longer kept",
                    ))
                for seq, text in page:
                    await self._send(text)
                    self._cursor.sent(seq)
                if len(page) < HISTORY_PAGE and (self._cursor.last or 0) >= self._newest_live:
                    return
                if not page:
                    # Seen live but not yet read back: the history write precedes the
                    # publish, so the next read has it.
                    await trio.sleep(0.01)
        finally:
            self._catching_up = False
            self._newest_live = 0
