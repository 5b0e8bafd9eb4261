"""The command message contract: what parses, what is refused and why, and the round trip."""

from __future__ import annotations

import json

import pytest

from runtime.contract.messages import (
    DEFAULT_COLS,
    DEFAULT_ROWS,
    MAX_COMMAND_BYTES,
    CommandMessage,
    InvalidCommand,
    parse_command,
)

SEED = {"projectId": "abc123", "terminalId": "term-1", "command": "npm install express"}
MESSAGE_ID = "0f5c6a1e-8d7b-4d8e-9a55-3a1f2b7c9d10"


def body(**changes) -> str:
    """The seed message with fields replaced (or removed, when given ``...``)."""
    data = dict(SEED)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data)


def test_seed_message_parses_with_defaults():
    command = parse_command(json.dumps(SEED), MESSAGE_ID)

    assert command == CommandMessage(
        project_id="abc123",
        terminal_id="term-1",
        command="npm install express",
        command_id=MESSAGE_ID,
        cols=80,
        rows=24,
        timeout_s=None,
    )
    assert (DEFAULT_COLS, DEFAULT_ROWS) == (80, 24)


def test_explicit_optional_fields_are_used():
    command = parse_command(
        body(commandId="cmd.7", cols=132, rows=50, timeoutSeconds=90), MESSAGE_ID
    )

    assert command.command_id == "cmd.7"
    assert (command.cols, command.rows) == (132, 50)
    assert command.timeout_s == 90.0
    assert isinstance(command.timeout_s, float)


def test_null_timeout_means_no_per_command_limit():
    assert parse_command(body(timeoutSeconds=None), MESSAGE_ID).timeout_s is None


def test_fractional_timeout_is_kept():
    assert parse_command(body(timeoutSeconds=0.5), MESSAGE_ID).timeout_s == 0.5


def test_command_text_is_kept_verbatim():
    text = "  echo 'héllo 日本' | tr a-z A-Z\n"
    assert parse_command(body(command=text), MESSAGE_ID).command == text


def test_str_names_the_command_by_its_ids():
    command = parse_command(body(commandId="c1"), MESSAGE_ID)
    assert str(command) == "abc123/term-1/c1"


@pytest.mark.parametrize(
    "changes",
    [
        {"projectId": "a" * 64},
        {"terminalId": "A.b_c-9"},
        {"commandId": "9" * 64},
        {"cols": 1, "rows": 1},
        {"cols": 1000, "rows": 1000},
        {"command": "x" * MAX_COMMAND_BYTES},
    ],
    ids=["64-char id", "id punctuation", "64-char commandId", "size 1", "size 1000",
         "command at the limit"],
)
def test_boundary_values_are_accepted(changes):
    command = parse_command(body(**changes), MESSAGE_ID)
    assert command.project_id == changes.get("projectId", "abc123")
    assert command.terminal_id == changes.get("terminalId", "term-1")
    assert command.command_id == changes.get("commandId", MESSAGE_ID)
    assert command.cols == changes.get("cols", 80)
    assert command.command == changes.get("command", "npm install express")


def test_round_trip_through_to_body():
    original = CommandMessage(
        project_id="p-1", terminal_id="t_2", command="ls -la 'ü'", command_id="c.3",
        cols=200, rows=60, timeout_s=12.5,
    )
    assert parse_command(original.to_body(), "another-message-id") == original


def test_round_trip_without_timeout_omits_the_field():
    original = parse_command(json.dumps(SEED), MESSAGE_ID)
    encoded = json.loads(original.to_body())

    assert "timeoutSeconds" not in encoded
    assert parse_command(original.to_body(), "another-message-id") == original


def test_to_body_pins_the_command_id():
    """A re-enqueued body keeps its commandId, not the new SQS message id."""
    original = parse_command(json.dumps(SEED), MESSAGE_ID)
    again = parse_command(original.to_body(), "a-different-message-id")

    assert again.command_id == MESSAGE_ID
    assert json.loads(original.to_body())["commandId"] == MESSAGE_ID


# --- refused messages -----------------------------------------------------------------

ALL_IDS = ("abc123", "term-1", MESSAGE_ID)
NO_IDS = (None, None, None)


@pytest.mark.parametrize(
    ("raw", "reason", "ids"),
    [
        # The body itself
        ("not json at all", "not JSON", NO_IDS),
        ("", "not JSON", NO_IDS),
        ('{"projectId": "abc123"', "not JSON", NO_IDS),
        ('["abc123", "term-1", "ls"]', "JSON object", NO_IDS),
        ('"a string"', "JSON object", NO_IDS),
        ("null", "JSON object", NO_IDS),
        ("42", "JSON object", NO_IDS),
        # The ids
        (body(projectId=...), "projectId is required", (None, "term-1", MESSAGE_ID)),
        (body(terminalId=...), "terminalId is required", ("abc123", None, MESSAGE_ID)),
        (body(projectId="a" * 65), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId="-abc"), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId=""), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId="a/b"), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId="../x"), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId="abc\n"), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId=123), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(projectId=None), "projectId must match", (None, "term-1", MESSAGE_ID)),
        (body(terminalId="t" * 65), "terminalId must match", ("abc123", None, MESSAGE_ID)),
        (body(terminalId="-t"), "terminalId must match", ("abc123", None, MESSAGE_ID)),
        (body(terminalId=".t"), "terminalId must match", ("abc123", None, MESSAGE_ID)),
        (body(commandId="c" * 65), "commandId must match", ("abc123", "term-1", None)),
        (body(commandId="-c"), "commandId must match", ("abc123", "term-1", None)),
        (body(commandId=None), "commandId must match", ("abc123", "term-1", None)),
        (body(commandId=7), "commandId must match", ("abc123", "term-1", None)),
        # The command
        (body(command=...), "command must be a non-empty string", ALL_IDS),
        (body(command=""), "command must be a non-empty string", ALL_IDS),
        (body(command="   "), "command must be a non-empty string", ALL_IDS),
        (body(command=" \t\r\n "), "command must be a non-empty string", ALL_IDS),
        (body(command=["ls"]), "command must be a non-empty string", ALL_IDS),
        (body(command=None), "command must be a non-empty string", ALL_IDS),
        (body(command="ls\x00-la"), "NUL", ALL_IDS),
        (body(command="x" * (MAX_COMMAND_BYTES + 1)), "longer than 65536 bytes", ALL_IDS),
        # 32769 characters, but 65537 bytes: the limit is in bytes.
        (body(command="é" * (MAX_COMMAND_BYTES // 2) + "a"), "longer than", ALL_IDS),
        # The terminal size
        (body(cols=0), "cols must be between 1 and 1000", ALL_IDS),
        (body(rows=0), "rows must be between 1 and 1000", ALL_IDS),
        (body(cols=1001), "cols must be between 1 and 1000", ALL_IDS),
        (body(rows=1001), "rows must be between 1 and 1000", ALL_IDS),
        (body(cols=-5), "cols must be between", ALL_IDS),
        (body(cols=True), "cols must be a whole number", ALL_IDS),
        (body(rows=False), "rows must be a whole number", ALL_IDS),
        (body(cols=80.0), "cols must be a whole number", ALL_IDS),
        (body(rows=24.5), "rows must be a whole number", ALL_IDS),
        (body(cols="80"), "cols must be a whole number", ALL_IDS),
        (body(rows=None), "rows must be a whole number", ALL_IDS),
        # The timeout
        (body(timeoutSeconds="30"), "timeoutSeconds must be a number", ALL_IDS),
        (body(timeoutSeconds=True), "timeoutSeconds must be a number", ALL_IDS),
        (body(timeoutSeconds=[30]), "timeoutSeconds must be a number", ALL_IDS),
        (body(timeoutSeconds=0), "positive finite", ALL_IDS),
        (body(timeoutSeconds=-1), "positive finite", ALL_IDS),
        (body(timeoutSeconds=-0.5), "positive finite", ALL_IDS),
        (body(timeoutSeconds=float("inf")), "positive finite", ALL_IDS),
        (body(timeoutSeconds=float("-inf")), "positive finite", ALL_IDS),
        (body(timeoutSeconds=float("nan")), "positive finite", ALL_IDS),
        (body(timeoutSeconds=1e400), "positive finite", ALL_IDS),
        # Fields the contract does not have
        (body(env={"AWS_PROFILE": "x"}), "unknown field(s) 'env'", ALL_IDS),
    ],
)
def test_invalid_messages_are_refused_with_a_reason_and_readable_ids(raw, reason, ids):
    with pytest.raises(InvalidCommand) as caught:
        parse_command(raw, MESSAGE_ID)

    exc = caught.value
    assert reason in exc.reason
    assert str(exc) == exc.reason
    assert (exc.project_id, exc.terminal_id, exc.command_id) == ids


def test_invalid_default_command_id_is_refused():
    """The SQS message id stands in for commandId, so it must match the pattern too."""
    with pytest.raises(InvalidCommand, match="commandId must match") as caught:
        parse_command(json.dumps(SEED), "-not-an-id")
    assert (caught.value.project_id, caught.value.terminal_id) == ("abc123", "term-1")
    assert caught.value.command_id is None


def test_first_problem_is_reported():
    """Ids are checked before the command, the command before the terminal size."""
    with pytest.raises(InvalidCommand, match="projectId"):
        parse_command(body(projectId="-", command="", cols=0), MESSAGE_ID)
    with pytest.raises(InvalidCommand, match="command must"):
        parse_command(body(command="", cols=0), MESSAGE_ID)


def test_deeply_nested_body_is_refused_not_crashed():
    with pytest.raises(InvalidCommand, match="not JSON"):
        parse_command("[" * 1_000_000 + "]" * 1_000_000, MESSAGE_ID)


# An integer too large for a float must be refused as invalid, not crash the handler.
def test_integer_timeout_too_large_for_a_float_is_refused():
    raw = body(timeoutSeconds=10**400)

    with pytest.raises(InvalidCommand, match="timeoutSeconds") as caught:
        parse_command(raw, MESSAGE_ID)
    assert (caught.value.project_id, caught.value.terminal_id) == ("abc123", "term-1")
