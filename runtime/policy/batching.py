"""Turning PTY reads into output events: few enough to be cheap, soon enough to feel live."""

from __future__ import annotations

import codecs
import math

DEFAULT_MAX_DELAY_S = 0.005
DEFAULT_MAX_BYTES = 32 * 1024
# A gap between reads this long means the command is not flooding: a flood's reads come
# back to back, well inside it, while a keystroke's echo follows the last output by a
# whole round trip through the gateway.
DEFAULT_QUIET_S = 0.001


class OutputBatcher:
    """Collects PTY bytes until a batch is due, then hands out decoded text.

    A batch is due when it holds ``max_bytes`` or its oldest byte has waited
    ``max_delay_s``, except that the first read after a quiet spell (no read for
    ``quiet_s``) is due at once: a keystroke's echo or a prompt must not wait for
    company that is not coming, while a flood of output is still sent in batches.
    Decoding is incremental, so a UTF-8 character split across reads (or across batches)
    comes out whole.
    """

    def __init__(self, *, max_delay_s: float = DEFAULT_MAX_DELAY_S,
                 max_bytes: int = DEFAULT_MAX_BYTES, quiet_s: float = DEFAULT_QUIET_S):
        self.max_delay_s = max_delay_s
        self.max_bytes = max_bytes
        self.quiet_s = quiet_s
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._oldest_at: float | None = None
        self._last_read_at = -math.inf

    def add(self, data: bytes, now: float) -> None:
        if not data:
            return
        if self._oldest_at is None:
            quiet = now - self._last_read_at >= self.quiet_s
            # After a quiet spell the batch is as good as aged out already.
            self._oldest_at = now - self.max_delay_s if quiet else now
        self._last_read_at = now
        self._pending.append(data)
        self._pending_bytes += len(data)

    @property
    def deadline(self) -> float:
        """When the pending batch falls due by age; infinity when nothing is pending."""
        if self._oldest_at is None:
            return math.inf
        return self._oldest_at + self.max_delay_s

    def due(self, now: float) -> bool:
        return self._pending_bytes >= self.max_bytes or now >= self.deadline

    def take(self) -> str:
        """Decoded text of everything pending; a trailing partial character is kept back."""
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._oldest_at = None
        return self._decoder.decode(data)

    def finish(self) -> str:
        """Everything left, with an unfinished character replaced: the stream has ended."""
        text = self.take()
        return text + self._decoder.decode(b"", final=True)
