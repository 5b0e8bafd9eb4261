"""EventBuffer: bounded in bytes, overflow is final; SeqCursor: send, duplicate or gap."""

from __future__ import annotations

import pytest

from gateway.feed import EventBuffer, SeqCursor

# EventBuffer.


def test_buffer_hands_back_events_in_order_and_empties():
    buffer = EventBuffer(max_bytes=100)

    assert buffer.offer(1, "one")
    assert buffer.offer(2, "two")
    assert len(buffer) == 2
    assert buffer.take() == [(1, "one"), (2, "two")]
    assert len(buffer) == 0
    assert buffer.take() == []


def test_buffer_accepts_events_up_to_exactly_its_bound():
    buffer = EventBuffer(max_bytes=10)

    assert buffer.offer(1, "a" * 4)
    assert buffer.offer(2, "b" * 6)
    assert not buffer.overflowed
    assert buffer.take() == [(1, "aaaa"), (2, "bbbbbb")]


def test_one_byte_over_the_bound_overflows():
    buffer = EventBuffer(max_bytes=10)
    buffer.offer(1, "a" * 4)

    assert buffer.offer(2, "b" * 7) is False
    assert buffer.overflowed


def test_single_event_larger_than_the_bound_overflows():
    buffer = EventBuffer(max_bytes=10)

    assert buffer.offer(1, "x" * 11) is False
    assert buffer.overflowed


def test_overflow_frees_what_was_queued():
    buffer = EventBuffer(max_bytes=10)
    buffer.offer(1, "a" * 5)
    buffer.offer(2, "b" * 5)

    buffer.offer(3, "c")

    assert len(buffer) == 0
    assert buffer.take() == []


def test_overflow_sticks():
    buffer = EventBuffer(max_bytes=10)
    buffer.offer(1, "x" * 11)

    # Not even a tiny event, not even after the socket drained what it could.
    assert buffer.offer(2, "y") is False
    buffer.take()
    assert buffer.offer(3, "z") is False
    assert buffer.overflowed
    assert len(buffer) == 0


def test_take_frees_the_budget():
    buffer = EventBuffer(max_bytes=10)
    assert buffer.offer(1, "a" * 8)
    buffer.take()

    assert buffer.offer(2, "b" * 8)
    assert not buffer.overflowed


def test_bound_counts_utf8_bytes_not_characters():
    # Event text is JSON with ensure_ascii=False: "é" is two bytes on the wire.
    buffer = EventBuffer(max_bytes=10)

    assert buffer.offer(1, "é" * 6) is False
    assert buffer.overflowed


def test_multibyte_events_within_the_bound_are_kept():
    buffer = EventBuffer(max_bytes=10)

    assert buffer.offer(1, "é" * 5)
    assert buffer.take() == [(1, "ééééé")]


# SeqCursor.


@pytest.mark.parametrize("seq", [0, 1, 2, 57, 10**9])
def test_first_event_is_sent_when_nothing_was_sent_yet(seq):
    # A connection that did not resume joins the live stream wherever it is.
    cursor = SeqCursor()

    assert cursor.last is None
    assert cursor.classify(seq) == "send"


def test_classify_does_not_move_the_cursor():
    cursor = SeqCursor()
    cursor.classify(5)

    assert cursor.last is None
    cursor.sent(5)
    cursor.classify(6)
    assert cursor.last == 5


def test_next_seq_is_sent():
    cursor = SeqCursor()
    cursor.sent(5)

    assert cursor.classify(6) == "send"


@pytest.mark.parametrize("seq", [5, 4, 1, 0])
def test_seq_at_or_below_the_last_sent_is_a_duplicate(seq):
    cursor = SeqCursor()
    cursor.sent(5)

    assert cursor.classify(seq) == "duplicate"


@pytest.mark.parametrize("seq", [7, 8, 1000])
def test_seq_beyond_the_next_is_a_gap(seq):
    cursor = SeqCursor()
    cursor.sent(5)

    assert cursor.classify(seq) == "gap"


def test_cursor_follows_what_was_sent():
    cursor = SeqCursor()
    for seq in (3, 4, 5):
        assert cursor.classify(seq) == "send"
        cursor.sent(seq)

    assert cursor.last == 5
    assert cursor.classify(4) == "duplicate"
    assert cursor.classify(6) == "send"
    assert cursor.classify(7) == "gap"


def test_resumed_cursor_continues_after_the_resume_point():
    cursor = SeqCursor(after=10)

    assert cursor.classify(10) == "duplicate"
    assert cursor.classify(11) == "send"
    assert cursor.classify(12) == "gap"


def test_cursor_resumed_from_the_start_wants_seq_one_first():
    # Resuming after 0 means "from the beginning", unlike a cursor that never resumed.
    cursor = SeqCursor(after=0)

    assert cursor.classify(1) == "send"
    assert cursor.classify(5) == "gap"
    assert cursor.classify(0) == "duplicate"
