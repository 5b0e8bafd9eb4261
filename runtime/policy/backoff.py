"""Retry delays: exponential, capped, with full jitter so retries don't march together."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int, *, base_s: float = 0.2, cap_s: float = 20.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (1 for the first retry)."""
    # The exponent is bounded so that endless outages cannot overflow the float.
    ceiling = min(cap_s, base_s * 2.0 ** min(max(0, attempt - 1), 64))
    return ceiling * rand()


def deferral_delay_s(deferrals: int) -> int:
    """How long a command waits, hidden, before it tries again for its busy project."""
    return min(30, 2 ** min(deferrals, 5))
