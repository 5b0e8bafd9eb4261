"""The shortcut our AWS clients take when parsing timestamps gives what botocore gives."""

from __future__ import annotations

import pytest
from botocore.utils import parse_timestamp

from runtime.aws.clients import parse_timestamp_quickly


@pytest.mark.parametrize("value", [
    "2026-12-06T04:00:00.000Z",  # an S3 listing's LastModified
    "2026-12-06T04:00:00Z",
    "2026-12-06T04:00:00.123456+02:00",
    "20261206T040000Z",
    "Sun, 06 Dec 2026 04:00:00 GMT",  # a header's form
    "1700000000",  # epoch seconds, as text
    "1700000000.5",
    1700000000,
    1700000000.5,
])
def test_quick_timestamps_equal_botocores(value):
    assert parse_timestamp_quickly(value) == parse_timestamp(value)
