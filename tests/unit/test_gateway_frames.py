"""Client frames: each type parses into its value; anything malformed or oversized is refused."""

from __future__ import annotations

import json

import pytest

from gateway.frames import (
    MAX_FRAME_BYTES,
    MAX_STDIN_CHARS,
    SIGNALS,
    FrameError,
    Resize,
    Resume,
    RunCommand,
    SendSignal,
    Stdin,
    parse_client_frame,
)
from runtime.contract.messages import MAX_COMMAND_BYTES, MAX_TERMINAL_SIZE


def parse(frame: dict):
    return parse_client_frame(json.dumps(frame))


def refused(text: str | bytes) -> str:
    with pytest.raises(FrameError) as info:
        parse_client_frame(text)
    return str(info.value)


def padded(size: int, pad_char: str = "x") -> str:
    """A valid resize frame whose JSON text is ``size`` characters long."""
    base = json.dumps({"type": "resize", "cols": 80, "rows": 24, "pad": ""})
    return base[:-2] + pad_char * (size - len(base)) + base[-2:]


# Every frame type.


def test_command_frame():
    assert parse({"type": "command", "command": "npm test"}) == RunCommand("npm test")


def test_command_keeps_its_text_exactly():
    command = "  echo 'héllo' | wc -c\n"

    assert parse({"type": "command", "command": command}) == RunCommand(command)


def test_stdin_frame():
    assert parse({"type": "stdin", "data": "y\n"}) == Stdin("y\n")


def test_empty_stdin_is_allowed():
    assert parse({"type": "stdin", "data": ""}) == Stdin("")


def test_resize_frame():
    assert parse({"type": "resize", "cols": 120, "rows": 40}) == Resize(cols=120, rows=40)


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_signal_frame(name):
    assert parse({"type": "signal", "name": name}) == SendSignal(name)


def test_resume_frame():
    assert parse({"type": "resume", "after": 41}) == Resume(41)


def test_resume_defaults_to_the_start():
    assert parse({"type": "resume"}) == Resume(0)


def test_extra_fields_are_ignored():
    assert parse({"type": "stdin", "data": "q", "extra": [1, 2]}) == Stdin("q")


# Frame shape.


def test_binary_frame_is_refused():
    assert "binary" in refused(json.dumps({"type": "stdin", "data": "x"}).encode())


@pytest.mark.parametrize("text", ["", "{", "not json", "{'type': 'stdin'}", '{"type": "stdin",}'])
def test_invalid_json_is_refused(text):
    assert refused(text) == "frame is not valid JSON"


def test_deeply_nested_json_is_refused_not_crashed():
    assert refused("[" * 30_000 + "]" * 30_000) == "frame is not valid JSON"


@pytest.mark.parametrize("text", ["[]", '["command", "ls"]', '"command"', "42", "null", "true"])
def test_non_object_json_is_refused(text):
    assert refused(text) == "frame must be a JSON object"


@pytest.mark.parametrize("frame", [
    {"type": "exec", "command": "ls"},
    {"type": "COMMAND", "command": "ls"},
    {"command": "ls"},
    {"type": None},
    {"type": ["command"]},
    {"type": 1},
])
def test_unknown_type_is_refused(frame):
    assert refused(json.dumps(frame)).startswith("unknown frame type")


# Frame size.


def test_frame_of_exactly_the_limit_is_accepted():
    text = padded(MAX_FRAME_BYTES)

    assert len(text) == MAX_FRAME_BYTES
    assert parse_client_frame(text) == Resize(cols=80, rows=24)


def test_frame_over_the_limit_is_refused():
    text = padded(MAX_FRAME_BYTES + 1)

    assert refused(text) == f"frame larger than {MAX_FRAME_BYTES} bytes"


def test_frame_limit_counts_utf8_bytes_not_characters():
    # Fewer characters than the limit, but more bytes: "é" is two bytes in UTF-8.
    text = padded(MAX_FRAME_BYTES // 2 + 100, pad_char="é")

    assert len(text) < MAX_FRAME_BYTES < len(text.encode())
    assert refused(text) == f"frame larger than {MAX_FRAME_BYTES} bytes"


# Commands.


def test_command_over_the_byte_limit_is_refused():
    # Two-byte characters: the frame is under its limit in characters, the command is not
    # under its limit in bytes.
    command = "é" * (MAX_COMMAND_BYTES // 2 + 1)

    message = refused(json.dumps({"type": "command", "command": command}, ensure_ascii=False))

    assert message == f"command longer than {MAX_COMMAND_BYTES} bytes"


def test_command_at_the_byte_limit_in_multibyte_characters_is_accepted():
    command = "é" * (MAX_COMMAND_BYTES // 2)

    frame = parse_client_frame(json.dumps({"type": "command", "command": command},
                                          ensure_ascii=False))

    assert frame == RunCommand(command)


@pytest.mark.parametrize("command", ["", " ", "   \t\n\r ", "\u3000"])
def test_empty_or_blank_command_is_refused(command):
    assert refused(json.dumps({"type": "command", "command": command})) == (
        "command must be a non-empty string"
    )


@pytest.mark.parametrize("command", [None, 42, ["ls"], {"cmd": "ls"}, True])
def test_non_string_command_is_refused(command):
    assert refused(json.dumps({"type": "command", "command": command})) == (
        "command must be a non-empty string"
    )


def test_missing_command_is_refused():
    assert refused(json.dumps({"type": "command"})) == "command must be a non-empty string"


@pytest.mark.parametrize("command", ["ls\x00", "\x00ls", "echo a\x00b"])
def test_command_with_nul_is_refused(command):
    assert refused(json.dumps({"type": "command", "command": command})) == (
        "command must not contain NUL"
    )


# Stdin.


def test_stdin_at_the_limit_is_accepted():
    data = "a" * MAX_STDIN_CHARS

    assert parse({"type": "stdin", "data": data}) == Stdin(data)


def test_stdin_over_the_limit_is_refused():
    message = refused(json.dumps({"type": "stdin", "data": "a" * (MAX_STDIN_CHARS + 1)}))

    assert message == f"stdin frame longer than {MAX_STDIN_CHARS} characters"


@pytest.mark.parametrize("data", [None, 1, ["y"], {"d": "y"}, False])
def test_non_string_stdin_is_refused(data):
    assert refused(json.dumps({"type": "stdin", "data": data})) == "stdin data must be a string"


def test_missing_stdin_data_is_refused():
    assert refused(json.dumps({"type": "stdin"})) == "stdin data must be a string"


# Signals.


@pytest.mark.parametrize("name", ["SIGSTOP", "SIGSEGV", "sigint", "INT", "SIGINT ", "", "9"])
def test_signal_outside_the_allowed_set_is_refused(name):
    assert refused(json.dumps({"type": "signal", "name": name})).startswith("signal must be one of")


@pytest.mark.parametrize("name", [None, 2, 9.0, True])
def test_non_string_signal_is_refused(name):
    assert refused(json.dumps({"type": "signal", "name": name})).startswith("signal must be one of")


@pytest.mark.parametrize("name", [["SIGINT"], {"name": "SIGINT"}])
def test_unhashable_signal_is_refused_not_crashed(name):
    assert refused(json.dumps({"type": "signal", "name": name})).startswith("signal must be one of")


def test_missing_signal_name_is_refused():
    assert refused(json.dumps({"type": "signal"})).startswith("signal must be one of")


# Resume.


@pytest.mark.parametrize("after", [-1, -100, True, False, 1.0, 2.5, "3", None, [1]])
def test_resume_after_must_be_a_non_negative_integer(after):
    assert refused(json.dumps({"type": "resume", "after": after})) == (
        "resume.after must be a non-negative integer"
    )


def test_resume_after_a_large_seq():
    assert parse({"type": "resume", "after": 2**53 - 1}) == Resume(2**53 - 1)


def test_resume_beyond_any_seq_redis_can_count_is_refused():
    # Redis cannot range a stream past such ids; the client would be stuck on errors.
    with pytest.raises(FrameError, match=r"resume\.after"):
        parse({"type": "resume", "after": 2**64})


# Resize: clamped to 1..MAX_TERMINAL_SIZE, never refused for being out of range.


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1),
    (80, 80),
    (MAX_TERMINAL_SIZE, MAX_TERMINAL_SIZE),
    (MAX_TERMINAL_SIZE + 1, MAX_TERMINAL_SIZE),
    (1e6, MAX_TERMINAL_SIZE),
    (10**30, MAX_TERMINAL_SIZE),
    (0, 1),
    (-5, 1),
    (-1e6, 1),
    (0.5, 1),
    (80.9, 80),
    (999.99, 999),
    (1000.5, MAX_TERMINAL_SIZE),
])
def test_resize_values_are_clamped(value, expected):
    frame = parse({"type": "resize", "cols": value, "rows": value})

    assert frame == Resize(cols=expected, rows=expected)
    assert type(frame.cols) is int
    assert type(frame.rows) is int


def test_resize_clamps_each_side_on_its_own():
    assert parse({"type": "resize", "cols": 5000, "rows": 0}) == Resize(cols=1000, rows=1)


@pytest.mark.parametrize(("text", "expected"), [("Infinity", MAX_TERMINAL_SIZE), ("-Infinity", 1)])
def test_resize_infinities_are_clamped(text, expected):
    frame = parse_client_frame(f'{{"type": "resize", "cols": {text}, "rows": 24}}')

    assert frame == Resize(cols=expected, rows=24)


@pytest.mark.parametrize("side", ["cols", "rows"])
def test_resize_nan_is_refused(side):
    other = "rows" if side == "cols" else "cols"

    message = refused(f'{{"type": "resize", "{side}": NaN, "{other}": 24}}')

    assert message == f"{side} must be a number"


@pytest.mark.parametrize("side", ["cols", "rows"])
@pytest.mark.parametrize("value", [True, False, "80", None, [80], {"n": 80}])
def test_resize_non_numbers_and_bools_are_refused(side, value):
    frame = {"type": "resize", "cols": 80, "rows": 24}
    frame[side] = value

    assert refused(json.dumps(frame)) == f"{side} must be a number"


@pytest.mark.parametrize("side", ["cols", "rows"])
def test_resize_missing_side_is_refused(side):
    frame = {"type": "resize", "cols": 80, "rows": 24}
    del frame[side]

    assert refused(json.dumps(frame)) == f"{side} must be a number"
