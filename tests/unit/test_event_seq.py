"""seq_of: an event's place, read from the prefix Redis writes, or from the whole event."""

from __future__ import annotations

import pytest

from runtime.contract.events import seq_of


def test_seq_is_read_from_the_prefix_redis_writes():
    assert seq_of('{"seq":42,"type":"output","commandId":"c","data":"{\\"seq\\":1,"}') == 42


def test_an_event_with_its_seq_elsewhere_is_parsed_whole():
    assert seq_of('{"type":"exit","commandId":"c","seq":7}') == 7


@pytest.mark.parametrize("event", [
    '{"type":"exit","commandId":"c"}', "not json", "[1, 2]", '{"seq":"x"}', '{"seq":null}',
])
def test_an_event_without_a_whole_number_seq_is_refused(event):
    with pytest.raises(ValueError, match="without a whole-number seq"):
        seq_of(event)
