"""The live terminal of a running command: PTY output out, user input in."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import trio

from runtime.bus.connection import RedisError
from runtime.bus.terminal_bus import InputSubscription
from runtime.contract.messages import MAX_TERMINAL_SIZE
from runtime.policy.backoff import backoff_delay
from runtime.policy.batching import OutputBatcher

from .output import OutputPublisher
from .pty_command import PtyCommand

logger = logging.getLogger(__name__)

# How long the pump may wait for room in the output buffer before it drops a batch.
OUTPUT_STALL_S = 30
# Keystrokes waiting for a command that does not read them; beyond this they are dropped.
STDIN_BACKLOG = 256


async def pump_output(process: PtyCommand, batcher: OutputBatcher,
                      publisher: OutputPublisher, done: trio.Event) -> None:
    """Read the PTY until no process holds it, publishing batches as they fall due.

    A flood's reads mostly find output waiting, so the loop reads without entering trio
    and sets a timer (for the batch's deadline) only when it has to wait.
    """
    while True:
        data = process.read_nowait()
        if data is None:
            with trio.move_on_at(batcher.deadline):
                await process.wait_readable()
        elif not data:
            break
        else:
            batcher.add(data, trio.current_time())
        if batcher.due(trio.current_time()):
            await _hand_over(publisher, batcher.take())
            # Let the publisher send while the command writes on: in a flood the PTY
            # always has output waiting, and the reads above never yield.
            await trio.lowlevel.checkpoint()
    await _hand_over(publisher, batcher.take())
    done.set()


async def _hand_over(publisher: OutputPublisher, text: str) -> None:
    # Shielded: text taken from the batcher must reach the publisher, which waits only
    # while a healthy Redis drains its buffer; past the deadline the text is counted lost.
    with trio.move_on_after(OUTPUT_STALL_S, shield=True) as scope:
        await publisher.send_output(text)
    if scope.cancelled_caught:
        publisher.count_dropped(text)


class InputRouter:
    """Applies a terminal's input messages to the running command.

    Resize and signal act at once; keystrokes go through a bounded queue to their own
    task, so a command that stops reading cannot hold up a Ctrl-C sent as a signal.
    """

    def __init__(self, process: PtyCommand, command_id: str,
                 log: Callable[..., None]):
        self._process = process
        self._command_id = command_id
        self._log = log
        self._stdin_send, self._stdin_receive = trio.open_memory_channel(STDIN_BACKLOG)

    async def run(self, subscription: InputSubscription) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._feed_stdin)
            failures = 0
            while True:
                try:
                    if failures or not subscription.opened:
                        await subscription.open()
                    while True:
                        raw = await subscription.next_message()
                        failures = 0
                        self.apply(raw)
                except RedisError as exc:
                    failures += 1
                    if failures == 1:
                        self._log(logging.WARNING, "input channel unavailable", error=str(exc))
                    await trio.sleep(backoff_delay(failures, cap_s=2))

    async def _feed_stdin(self) -> None:
        async for data in self._stdin_receive:
            await self._process.write(data)

    def apply(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not an object")
            if message.get("commandId") not in (None, self._command_id):
                return  # meant for another command of this terminal
            kind = message.get("type")
            if kind == "stdin" and isinstance(message.get("data"), str):
                try:
                    self._stdin_send.send_nowait(message["data"].encode("utf-8", "replace"))
                except trio.WouldBlock:
                    raise ValueError("the command is not reading its input") from None
            elif kind == "resize":
                cols, rows = message.get("cols"), message.get("rows")
                if not all(isinstance(v, int) and not isinstance(v, bool)
                           and 1 <= v <= MAX_TERMINAL_SIZE for v in (cols, rows)):
                    raise ValueError(f"resize must be 1..{MAX_TERMINAL_SIZE}")
                self._process.resize(cols, rows)
            elif kind == "signal":
                self._process.send_signal(str(message.get("name")))
            else:
                raise ValueError(f"unknown input type {kind!r}")
        except (ValueError, TypeError) as exc:
            self._log(logging.WARNING, "input ignored", error=str(exc))
