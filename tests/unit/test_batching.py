"""OutputBatcher: when a batch falls due, and UTF-8 that survives any split."""

from __future__ import annotations

import math

import pytest

from runtime.policy.batching import OutputBatcher

REPLACEMENT = "\ufffd"
TEXTS = ["héllo", "日本語", "👍🏽", "a€𝄞b", "Привет, мир", "e\u0301 ok\r\n"]


# --- when a batch is due --------------------------------------------------------------

def test_empty_batcher_has_no_deadline_and_is_never_due():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=4)

    assert batcher.deadline == math.inf
    assert not batcher.due(0.0)
    assert not batcher.due(1e12)


def test_adding_nothing_starts_no_clock():
    batcher = OutputBatcher(max_delay_s=0.5)
    batcher.add(b"", now=10.0)

    assert batcher.deadline == math.inf
    assert not batcher.due(100.0)


def busy(batcher: OutputBatcher, now: float) -> OutputBatcher:
    """A batcher whose command has just sent a batch of output: the next read is batched."""
    batcher.add(b"x", now=now)
    batcher.take()
    return batcher


def test_the_first_read_after_a_quiet_spell_is_due_at_once():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=1024, quiet_s=0.05)
    batcher.add(b"$ ", now=10.0)
    assert batcher.due(10.0)
    assert batcher.take() == "$ "

    batcher.add(b"l", now=10.06)  # a keystroke's echo, a round trip later
    assert batcher.due(10.06)


def test_reads_that_keep_coming_are_batched():
    batcher = busy(OutputBatcher(max_delay_s=0.5, max_bytes=1024, quiet_s=0.05), now=10.0)
    batcher.add(b"a", now=10.01)  # 10 ms after the last read: a flood, not quiet
    assert not batcher.due(10.01)
    assert batcher.due(10.51)


def test_due_by_age_of_the_oldest_byte():
    batcher = busy(OutputBatcher(max_delay_s=0.5, max_bytes=1024), now=10.0)
    batcher.add(b"a", now=10.0)
    batcher.add(b"b", now=10.25)  # a later read does not push the deadline back

    assert batcher.deadline == 10.5
    assert not batcher.due(10.0)
    assert not batcher.due(10.25)
    assert batcher.due(10.5)
    assert batcher.due(11.0)


def test_due_by_size_before_the_deadline():
    batcher = busy(OutputBatcher(max_delay_s=0.5, max_bytes=4), now=10.0)
    batcher.add(b"abc", now=10.0)
    assert not batcher.due(10.0)

    batcher.add(b"d", now=10.0)
    assert batcher.due(10.0)


def test_one_large_read_is_due_at_once():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=4)
    batcher.add(b"0123456789", now=3.0)
    assert batcher.due(3.0)


def test_take_empties_the_batch_and_clears_the_deadline():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=4)
    batcher.add(b"abcd", now=1.0)

    assert batcher.take() == "abcd"
    assert batcher.deadline == math.inf
    assert not batcher.due(100.0)
    assert batcher.take() == ""


def test_next_batch_ages_from_its_own_first_byte():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=1024, quiet_s=0.5)
    batcher.add(b"first", now=1.0)
    batcher.take()
    batcher.add(b"second", now=1.25)

    assert batcher.deadline == 1.75
    assert not batcher.due(1.5)


def test_size_counts_bytes_not_characters():
    batcher = OutputBatcher(max_delay_s=0.5, max_bytes=6)
    batcher.add("日本".encode(), now=0.0)  # two characters, six bytes
    assert batcher.due(0.0)


def test_take_joins_reads_in_order():
    batcher = OutputBatcher()
    for chunk in (b"one ", b"two ", b"three"):
        batcher.add(chunk, now=0.0)
    assert batcher.take() == "one two three"


# --- decoding -------------------------------------------------------------------------

@pytest.mark.parametrize("text", TEXTS)
def test_split_at_every_byte_offset_into_one_batch(text):
    raw = text.encode()
    for offset in range(len(raw) + 1):
        batcher = OutputBatcher()
        batcher.add(raw[:offset], now=0.0)
        batcher.add(raw[offset:], now=0.0)

        assert batcher.take() + batcher.finish() == text, offset


@pytest.mark.parametrize("text", TEXTS)
def test_split_at_every_byte_offset_across_two_batches(text):
    raw = text.encode()
    for offset in range(len(raw) + 1):
        batcher = OutputBatcher()
        batcher.add(raw[:offset], now=0.0)
        first = batcher.take()
        batcher.add(raw[offset:], now=1.0)
        second = batcher.take()

        assert REPLACEMENT not in first + second, offset
        assert first + second == text, offset
        assert batcher.finish() == ""


@pytest.mark.parametrize("text", TEXTS)
def test_one_byte_per_read(text):
    batcher = OutputBatcher()
    out = []
    for i, byte in enumerate(text.encode()):
        batcher.add(bytes([byte]), now=float(i))
        out.append(batcher.take())
    assert "".join(out) + batcher.finish() == text


def test_partial_character_is_held_back_until_complete():
    batcher = OutputBatcher()
    batcher.add("ok日".encode()[:-1], now=0.0)

    assert batcher.take() == "ok"

    batcher.add("日".encode()[-1:], now=0.0)
    assert batcher.take() == "日"


def test_finish_replaces_an_unfinished_character():
    batcher = OutputBatcher()
    batcher.add(b"done " + "👍".encode()[:3], now=0.0)

    assert batcher.finish() == "done " + REPLACEMENT


def test_finish_replaces_a_partial_character_already_held_back():
    batcher = OutputBatcher()
    batcher.add("é".encode()[:1], now=0.0)
    assert batcher.take() == ""

    assert batcher.finish() == REPLACEMENT


def test_finish_of_complete_text_adds_nothing():
    batcher = OutputBatcher()
    batcher.add("fin ✓".encode(), now=0.0)
    assert batcher.finish() == "fin ✓"


def test_decoder_is_clean_after_finish():
    batcher = OutputBatcher()
    batcher.add(b"\xe6\x97", now=0.0)
    batcher.finish()

    batcher.add(b"next", now=1.0)
    assert batcher.take() == "next"


def test_invalid_utf8_is_replaced_not_raised():
    batcher = OutputBatcher()
    batcher.add(b"a\xffb\xc0\x80c", now=0.0)

    text = batcher.take()
    assert text.startswith("a" + REPLACEMENT + "b")
    assert text.endswith("c")
    assert REPLACEMENT in text[3:-1]
