"""encode_command: a RESP array of bulk strings, lengths in bytes."""

from __future__ import annotations

import hiredis
import pytest

from runtime.bus.connection import encode_command


def parsed(data: bytes):
    """What a RESP parser (redis-py's own) reads back from the encoding."""
    reader = hiredis.Reader()
    reader.feed(data)
    value = reader.gets()
    assert reader.gets() is False  # nothing left over
    return value


def test_subscribe_is_encoded_exactly():
    assert encode_command("SUBSCRIBE", "terminal:p1:t1:out") == (
        b"*2\r\n$9\r\nSUBSCRIBE\r\n$18\r\nterminal:p1:t1:out\r\n"
    )


def test_bytes_arguments_pass_through():
    assert encode_command(b"PING") == b"*1\r\n$4\r\nPING\r\n"


def test_no_arguments_is_an_empty_array():
    assert encode_command() == b"*0\r\n"


def test_empty_argument_has_length_zero():
    assert encode_command("ECHO", "") == b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"


@pytest.mark.parametrize(("text", "length"), [("é", 2), ("终端", 6), ("🖥", 4), ("aé🖥", 7)])
def test_non_ascii_lengths_count_utf8_bytes(text, length):
    encoded = encode_command("SUBSCRIBE", text)

    assert encoded == b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (length, text.encode())
    assert parsed(encoded) == [b"SUBSCRIBE", text.encode()]


def test_arguments_containing_crlf_are_length_delimited():
    encoded = encode_command("PUBLISH", "ch", b"a\r\n$3\r\nbad\r\n")

    assert parsed(encoded) == [b"PUBLISH", b"ch", b"a\r\n$3\r\nbad\r\n"]


def test_many_arguments_round_trip():
    args = ["UNSUBSCRIBE"] + [f"terminal:p{i}:t{i}:out" for i in range(12)]

    assert parsed(encode_command(*args)) == [arg.encode() for arg in args]
