"""Every Redis key and channel name, in one place (the gateway and the worker share them)."""

from __future__ import annotations


def output_channel(project_id: str, terminal_id: str) -> str:
    """Pub/sub channel of a terminal's events (the seed's name)."""
    return f"terminal:{project_id}:{terminal_id}"


def input_channel(project_id: str, terminal_id: str) -> str:
    """Pub/sub channel of stdin/resize/signal for the command running in a terminal."""
    return f"terminal:{project_id}:{terminal_id}:input"


def history_stream(project_id: str, terminal_id: str) -> str:
    """Stream of a terminal's recent events; entry ids are ``<seq>-0``."""
    return f"terminal:{project_id}:{terminal_id}:history"


def sequence_counter(project_id: str, terminal_id: str) -> str:
    """Counter behind a terminal's growing ``seq``."""
    return f"terminal:{project_id}:{terminal_id}:seq"


def command_record(project_id: str, command_id: str) -> str:
    """Hash of one command's delivery history: attempts, exited, released."""
    return f"command:{project_id}:{command_id}"


def project_lease(project_id: str) -> str:
    """Held while a command of the project runs, so two never run at once."""
    return f"project:{project_id}:lease"


def used_token(token_id: str) -> str:
    """Marks a gateway token (its ``jti``) as used until it expires."""
    return f"gateway:token:{token_id}"


SCALER_WAKE_CHANNEL = "scaler:wake"
"""The gateway publishes here when it enqueues a command, so a scaler with no live worker
evaluates at once instead of at its next interval."""
