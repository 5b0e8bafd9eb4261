"""The command message: the SQS body any producer may enqueue.

``{"projectId": "abc123", "terminalId": "term-1", "command": "npm install express"}``
plus the optional ``commandId``, ``cols``, ``rows`` and ``timeoutSeconds``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_COMMAND_BYTES = 64 * 1024
DEFAULT_COLS, DEFAULT_ROWS = 80, 24
MAX_TERMINAL_SIZE = 1000
FIELDS = frozenset({"projectId", "terminalId", "command", "commandId", "cols", "rows",
                    "timeoutSeconds"})


class InvalidCommand(Exception):
    """The message cannot be run; ``reason`` says why in words a user can act on.

    ``project_id``/``terminal_id``/``command_id`` are kept when they could be read, so
    the terminal can still be told.
    """

    def __init__(self, reason: str, *, project_id=None, terminal_id=None, command_id=None):
        super().__init__(reason)
        self.reason = reason
        self.project_id = project_id
        self.terminal_id = terminal_id
        self.command_id = command_id


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


@dataclass(frozen=True)
class CommandMessage:
    project_id: str
    terminal_id: str
    command: str
    command_id: str
    cols: int = DEFAULT_COLS
    rows: int = DEFAULT_ROWS
    timeout_s: float | None = None

    def __str__(self) -> str:
        return f"{self.project_id}/{self.terminal_id}/{self.command_id}"

    def to_body(self) -> str:
        """The SQS body for this command, with the commandId pinned."""
        body = {
            "projectId": self.project_id,
            "terminalId": self.terminal_id,
            "command": self.command,
            "commandId": self.command_id,
            "cols": self.cols,
            "rows": self.rows,
        }
        if self.timeout_s is not None:
            body["timeoutSeconds"] = self.timeout_s
        return json.dumps(body)


def parse_command(body: str, message_id: str) -> CommandMessage:
    """Validate an SQS body; raise ``InvalidCommand`` with the first reason found."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidCommand(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidCommand("body must be a JSON object")

    ids = {
        "project_id": data.get("projectId") if is_valid_id(data.get("projectId")) else None,
        "terminal_id": data.get("terminalId") if is_valid_id(data.get("terminalId")) else None,
    }
    command_id = data.get("commandId", message_id)
    ids["command_id"] = command_id if is_valid_id(command_id) else None

    def invalid(reason: str) -> InvalidCommand:
        return InvalidCommand(reason, **ids)

    for field in ("projectId", "terminalId"):
        if field not in data:
            raise invalid(f"{field} is required")
        if not is_valid_id(data[field]):
            raise invalid(f"{field} must match {ID_PATTERN.pattern}")
    if not is_valid_id(command_id):
        raise invalid(f"commandId must match {ID_PATTERN.pattern}")
    # A field the worker does not know (`env`, `cwd`, `user`) would be a producer's
    # mistake or a probe; running the command without it would not be what was asked.
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        named = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise invalid(f"unknown field(s) {named}; a command message has only "
                      f"{', '.join(sorted(FIELDS))}")

    command = data.get("command")
    if not isinstance(command, str) or not command.strip():
        raise invalid("command must be a non-empty string")
    if "\x00" in command:
        raise invalid("command must not contain NUL characters")
    if len(command.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
        raise invalid(f"command is longer than {MAX_COMMAND_BYTES} bytes")

    cols = _size(data, "cols", DEFAULT_COLS, invalid)
    rows = _size(data, "rows", DEFAULT_ROWS, invalid)

    timeout = data.get("timeoutSeconds")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise invalid("timeoutSeconds must be a number")
        try:
            timeout = float(timeout)
        except OverflowError:
            raise invalid("timeoutSeconds is too large") from None
        if not 0 < timeout < float("inf"):
            raise invalid("timeoutSeconds must be a positive finite number")

    return CommandMessage(
        project_id=data["projectId"],
        terminal_id=data["terminalId"],
        command=command,
        command_id=command_id,
        cols=cols,
        rows=rows,
        timeout_s=timeout,
    )


def _size(data: dict, field: str, default: int, invalid) -> int:
    value = data.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{field} must be a whole number")
    if not 1 <= value <= MAX_TERMINAL_SIZE:
        raise invalid(f"{field} must be between 1 and {MAX_TERMINAL_SIZE}")
    return value
