"""The rlimits a command starts with."""

from __future__ import annotations

import resource

from runtime.policy.limits import CommandLimits

LIMITS = CommandLimits(max_processes=64, max_file_bytes=2 ** 20, max_open_files=256)


def test_a_command_with_a_user_of_its_own_gets_every_limit():
    assert LIMITS.rlimits(own_user=True) == {
        resource.RLIMIT_NPROC: 64,
        resource.RLIMIT_FSIZE: 2 ** 20,
        resource.RLIMIT_NOFILE: 256,
        resource.RLIMIT_CORE: 0,
    }


def test_the_process_limit_is_left_alone_for_the_workers_own_user():
    # It would count the worker's and the developer's processes too.
    limits = LIMITS.rlimits(own_user=False)
    assert resource.RLIMIT_NPROC not in limits
    assert limits[resource.RLIMIT_CORE] == 0
