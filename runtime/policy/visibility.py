"""How long to keep a received message hidden, and when to extend it.

A short lease extended often means a dead worker's message comes back within one lease,
not after the queue's whole visibility timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

# SQS refuses to keep a message hidden for more than 12 hours from its receipt.
SQS_MAX_VISIBILITY_S = 12 * 60 * 60
# Margin kept back from the ceiling, so a late extension is never refused for it.
CEILING_MARGIN_S = 30


class LeaseCeilingReached(Exception):
    """The message cannot be kept hidden any longer (SQS's 12-hour ceiling)."""


@dataclass(frozen=True)
class LeasePolicy:
    lease_s: float = 60
    extend_every_s: float = 20

    def __post_init__(self):
        if not 0 < self.extend_every_s < self.lease_s:
            raise ValueError("the lease must be extended more often than it lasts")

    def next_visibility(self, held_for_s: float) -> int:
        """Visibility timeout (whole seconds) to ask for, ``held_for_s`` after receipt."""
        room = SQS_MAX_VISIBILITY_S - CEILING_MARGIN_S - held_for_s
        if room < 1:
            raise LeaseCeilingReached(
                f"message held for {held_for_s:.0f} s; SQS allows at most "
                f"{SQS_MAX_VISIBILITY_S} s"
            )
        return int(min(self.lease_s, room))

    def longest_command_s(self) -> float:
        """The longest a command can run before the ceiling would stop it."""
        return SQS_MAX_VISIBILITY_S - CEILING_MARGIN_S - self.lease_s
