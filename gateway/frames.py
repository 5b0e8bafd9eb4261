"""Client frames: JSON text, validated and bounded before anything acts on them."""

from __future__ import annotations

import json
from dataclasses import dataclass

from runtime.contract.messages import MAX_COMMAND_BYTES, MAX_TERMINAL_SIZE

# A command may be 64 KiB (the message contract); the frame around it needs a little more.
MAX_FRAME_BYTES = 65 * 1024
MAX_STDIN_CHARS = 16 * 1024
SIGNALS = frozenset({"SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGTSTP",
                     "SIGCONT", "SIGUSR1", "SIGUSR2"})


class FrameError(Exception):
    """A frame the gateway will not act on; the message goes back as an ``error`` frame."""


@dataclass(frozen=True)
class RunCommand:
    command: str


@dataclass(frozen=True)
class Stdin:
    data: str


@dataclass(frozen=True)
class Resize:
    cols: int
    rows: int


@dataclass(frozen=True)
class SendSignal:
    name: str


@dataclass(frozen=True)
class Resume:
    after: int


def clamp_size(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FrameError(f"{name} must be a number")
    if value != value:
        raise FrameError(f"{name} must be a number")
    return int(min(max(value, 1), MAX_TERMINAL_SIZE))


def parse_client_frame(text: str | bytes):
    if isinstance(text, bytes):
        raise FrameError("frames must be JSON text, not binary")
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise FrameError(f"frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError("frame must be a JSON object")
    kind = frame.get("type")
    if kind == "command":
        command = frame.get("command")
        if not isinstance(command, str) or not command.strip():
            raise FrameError("command must be a non-empty string")
        if "\x00" in command:
            raise FrameError("command must not contain NUL")
        if len(command.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
            raise FrameError(f"command longer than {MAX_COMMAND_BYTES} bytes")
        return RunCommand(command)
    if kind == "stdin":
        data = frame.get("data")
        if not isinstance(data, str):
            raise FrameError("stdin data must be a string")
        if len(data) > MAX_STDIN_CHARS:
            raise FrameError(f"stdin frame longer than {MAX_STDIN_CHARS} characters")
        return Stdin(data)
    if kind == "resize":
        return Resize(clamp_size(frame.get("cols"), "cols"), clamp_size(frame.get("rows"), "rows"))
    if kind == "signal":
        name = frame.get("name")
        if not isinstance(name, str) or name not in SIGNALS:
            raise FrameError(f"signal must be one of {', '.join(sorted(SIGNALS))}")
        return SendSignal(name)
    if kind == "resume":
        after = frame.get("after", 0)
        if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**53:
            raise FrameError("resume.after must be a non-negative integer")
        return Resume(after)
    raise FrameError(f"unknown frame type {str(kind)[:40]!r}")
