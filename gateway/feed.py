"""What one connection still has to send: a bounded buffer and the gap rules.

Events carry the terminal's ``seq``. A connection sends each seq at most once and in
order: anything at or below the last one sent is a duplicate (history and live delivery
overlap on a resume), and a jump ahead is a gap to fill from the history stream first.
"""

from __future__ import annotations

from collections import deque


class EventBuffer:
    """Live events waiting for a slow socket, bounded in bytes."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._events: deque[tuple[int, str]] = deque()
        self._bytes = 0
        self.overflowed = False

    def __len__(self) -> int:
        return len(self._events)

    def offer(self, seq: int, text: str, size: int | None = None) -> bool:
        """Queue an event; False (and ``overflowed``) when the client has fallen too far.

        ``size`` is the event's UTF-8 length, when the caller already knows it.
        """
        if self.overflowed:
            return False
        if size is None:
            size = len(text.encode("utf-8"))
        if self._bytes + size > self.max_bytes:
            self.overflowed = True
            self._events.clear()
            self._bytes = 0
            return False
        self._events.append((seq, text))
        self._bytes += size
        return True

    def take(self) -> list[tuple[int, str]]:
        events = list(self._events)
        self._events.clear()
        self._bytes = 0
        return events


class SeqCursor:
    """The last seq a connection delivered, and what a new event means for it."""

    def __init__(self, after: int | None = None):
        self.last = after

    def classify(self, seq: int) -> str:
        """``"send"``, ``"duplicate"``, or ``"gap"`` (fetch history up to seq first)."""
        if self.last is None or seq == self.last + 1:
            return "send"
        if seq <= self.last:
            return "duplicate"
        return "gap"

    def sent(self, seq: int) -> None:
        self.last = seq
