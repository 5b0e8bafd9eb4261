"""LeasePolicy: the visibility to ask for, and where SQS's 12-hour ceiling stops it."""

from __future__ import annotations

import pytest

from runtime.policy.visibility import (
    CEILING_MARGIN_S,
    SQS_MAX_VISIBILITY_S,
    LeaseCeilingReached,
    LeasePolicy,
)

# The last moment (seconds after receipt) at which a full extension is still allowed.
USABLE_S = SQS_MAX_VISIBILITY_S - CEILING_MARGIN_S


def test_ceiling_is_twelve_hours():
    assert SQS_MAX_VISIBILITY_S == 12 * 60 * 60


@pytest.mark.parametrize("held_for_s", [0, 1.5, 20, 3600, USABLE_S - 60])
def test_full_lease_when_far_from_the_ceiling(held_for_s):
    assert LeasePolicy(lease_s=60, extend_every_s=20).next_visibility(held_for_s) == 60


def test_result_is_whole_seconds():
    visibility = LeasePolicy(lease_s=45.9, extend_every_s=15).next_visibility(0)
    assert visibility == 45
    assert isinstance(visibility, int)


@pytest.mark.parametrize(
    ("held_for_s", "expected"),
    [
        (USABLE_S - 59, 59),
        (USABLE_S - 10, 10),
        (USABLE_S - 10.5, 10),
        (USABLE_S - 1, 1),
    ],
)
def test_lease_shrinks_near_the_ceiling(held_for_s, expected):
    visibility = LeasePolicy(lease_s=60, extend_every_s=20).next_visibility(held_for_s)

    assert visibility == expected
    # Never past the ceiling, margin included.
    assert held_for_s + visibility <= USABLE_S


@pytest.mark.parametrize(
    "held_for_s",
    [USABLE_S - 0.5, USABLE_S, SQS_MAX_VISIBILITY_S, SQS_MAX_VISIBILITY_S + 3600],
)
def test_ceiling_reached(held_for_s):
    with pytest.raises(LeaseCeilingReached, match="SQS allows at most 43200 s"):
        LeasePolicy(lease_s=60, extend_every_s=20).next_visibility(held_for_s)


def test_longest_command_leaves_one_lease_before_the_ceiling():
    assert LeasePolicy(lease_s=60, extend_every_s=20).longest_command_s() == USABLE_S - 60
    assert LeasePolicy(lease_s=300, extend_every_s=100).longest_command_s() == USABLE_S - 300


def test_defaults():
    policy = LeasePolicy()
    assert (policy.lease_s, policy.extend_every_s) == (60, 20)


@pytest.mark.parametrize(
    ("lease_s", "extend_every_s"),
    [(60, 60), (60, 61), (60, 0), (60, -1), (0, 0)],
)
def test_extend_every_must_be_shorter_than_the_lease(lease_s, extend_every_s):
    with pytest.raises(ValueError, match="extended more often than it lasts"):
        LeasePolicy(lease_s=lease_s, extend_every_s=extend_every_s)


def test_extend_just_under_the_lease_is_accepted():
    assert LeasePolicy(lease_s=60, extend_every_s=59.9).extend_every_s == 59.9
