"""TokenBucket: a full burst at once, then one frame per 1/rate seconds, never above the burst."""

from __future__ import annotations

from gateway.rate import TokenBucket


def allowed(bucket: TokenBucket, now: float, times: int) -> int:
    return sum(bucket.allow(now) for _ in range(times))


def test_full_burst_is_allowed_at_once_then_refused():
    bucket = TokenBucket(rate_per_s=4, burst=3)

    assert [bucket.allow(0.0) for _ in range(5)] == [True, True, True, False, False]


def test_first_call_starts_with_a_full_bucket_whatever_the_clock_reads():
    bucket = TokenBucket(rate_per_s=1, burst=2)

    assert allowed(bucket, 12_345.0, 5) == 2


def test_no_refill_without_time_passing():
    bucket = TokenBucket(rate_per_s=4, burst=2)
    allowed(bucket, 10.0, 2)

    assert allowed(bucket, 10.0, 10) == 0


def test_one_token_per_interval():
    bucket = TokenBucket(rate_per_s=4, burst=2)
    allowed(bucket, 10.0, 2)

    assert bucket.allow(10.25)
    assert not bucket.allow(10.25)
    assert bucket.allow(10.5)
    assert not bucket.allow(10.5)


def test_refill_is_proportional_to_elapsed_time():
    bucket = TokenBucket(rate_per_s=4, burst=10)
    allowed(bucket, 0.0, 10)

    assert allowed(bucket, 1.0, 10) == 4


def test_partial_credit_is_kept_across_refused_calls():
    bucket = TokenBucket(rate_per_s=2, burst=1)
    assert bucket.allow(0.0)

    assert not bucket.allow(0.25)  # half a token so far
    assert bucket.allow(0.5)  # the other half arrives; the refused call lost nothing


def test_refused_calls_do_not_count_the_same_interval_twice():
    bucket = TokenBucket(rate_per_s=4, burst=1)
    assert bucket.allow(0.0)

    # A quarter token per call: the fourth call completes one token, and no earlier one.
    assert [bucket.allow(t / 16) for t in (1, 2, 3, 4)] == [False, False, False, True]


def test_refill_never_exceeds_the_burst():
    bucket = TokenBucket(rate_per_s=4, burst=3)
    allowed(bucket, 0.0, 3)

    assert allowed(bucket, 3600.0, 10) == 3


def test_steady_rate_is_sustained():
    bucket = TokenBucket(rate_per_s=4, burst=1)

    results = [bucket.allow(t * 0.25) for t in range(40)]

    assert all(results)
    assert not bucket.allow(39 * 0.25)


def test_fractional_burst_allows_only_whole_frames():
    bucket = TokenBucket(rate_per_s=1, burst=1.5)

    assert allowed(bucket, 0.0, 3) == 1
    assert bucket.allow(0.5)
