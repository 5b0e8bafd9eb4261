"""Retry delays: exponential, capped, full jitter; and a busy project's deferral."""

from __future__ import annotations

import pytest

from runtime.policy.backoff import backoff_delay, deferral_delay_s


def always(value: float):
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (7, 12.8), (8, 20.0), (50, 20.0)],
)
def test_ceiling_doubles_per_attempt_up_to_the_cap(attempt, ceiling):
    assert backoff_delay(attempt, rand=always(1.0)) == pytest.approx(ceiling)


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempts_below_one_use_the_base(attempt):
    assert backoff_delay(attempt, rand=always(1.0)) == pytest.approx(0.2)


def test_custom_base_and_cap():
    assert backoff_delay(1, base_s=1, cap_s=30, rand=always(1.0)) == 1
    assert backoff_delay(5, base_s=1, cap_s=30, rand=always(1.0)) == 16
    assert backoff_delay(6, base_s=1, cap_s=30, rand=always(1.0)) == 30


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.999])
def test_full_jitter_scales_the_ceiling(fraction):
    assert backoff_delay(4, base_s=1, cap_s=30, rand=always(fraction)) == 8 * fraction


def test_default_random_stays_within_the_ceiling():
    delays = [backoff_delay(3, base_s=1, cap_s=30) for _ in range(200)]
    assert all(0 <= d <= 4 for d in delays)
    assert len(set(delays)) > 1  # jittered, not a constant


# Failure counters of endless outages grow without bound; the delay must still be the cap.
@pytest.mark.parametrize("attempt", [1100, 5000])
def test_very_many_attempts_still_give_the_cap(attempt):
    assert backoff_delay(attempt, base_s=0.1, cap_s=2.0, rand=always(1.0)) == 2.0


@pytest.mark.parametrize(
    ("deferrals", "delay"),
    [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (5, 30), (6, 30), (1000, 30)],
)
def test_deferral_delay_doubles_up_to_thirty_seconds(deferrals, delay):
    assert deferral_delay_s(deferrals) == delay
