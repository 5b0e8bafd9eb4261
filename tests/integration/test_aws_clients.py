"""Our AWS clients parse timestamps with a shortcut, which gives what botocore gives."""

from __future__ import annotations

from datetime import UTC

import pytest
from botocore.utils import parse_timestamp

from runtime.aws.clients import make_client, parse_timestamp_quickly


def test_a_listing_read_by_our_client_takes_the_shortcut(aws):
    aws.put_file("p", "a.txt", b"a")
    listing = make_client("s3", endpoint_url=aws.endpoint).list_objects_v2(Bucket=aws.bucket)
    # The standard library's parser gives its own UTC; botocore's gives dateutil's.
    assert listing["Contents"][0]["LastModified"].tzinfo is UTC


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
