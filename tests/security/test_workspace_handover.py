"""Handing a workspace to a command's user, and measuring it, never reach outside it.

What a previous command left in the workspace (hard links, symlinks, sparse files) is
what the worker, as root, then walks: these run the worker's own file functions on real
directories.
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.worker import files
from tests.security.conftest import needs_root

COMMAND_UID = 20000


@needs_root
def test_handover_gives_the_tree_but_nothing_a_link_points_to(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("a file of the system")
    link_target = tmp_path / "target.txt"
    link_target.write_text("reached through a symlink")
    workspace = tmp_path / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "app.py").write_text("print('hi')")
    os.link(outside, workspace / "hard-link.txt")
    os.symlink(link_target, workspace / "symlink.txt")

    files.give_to(str(workspace), COMMAND_UID, COMMAND_UID)

    for path in (workspace, workspace / "src", workspace / "src" / "app.py"):
        assert (path.stat().st_uid, path.stat().st_gid) == (COMMAND_UID, COMMAND_UID)
    assert (workspace / "symlink.txt").lstat().st_uid == COMMAND_UID
    assert workspace.stat().st_mode & 0o777 == 0o700
    # Giving the hard link would give the file itself, outside the workspace.
    assert outside.stat().st_uid == 0
    assert link_target.stat().st_uid == 0


@needs_root
def test_take_back_makes_the_workspace_roots_and_private(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    files.give_to(str(workspace), COMMAND_UID, COMMAND_UID)
    os.chmod(workspace, 0o777)  # as the command may have done

    files.take_back(str(workspace))

    assert workspace.stat().st_uid == 0
    assert workspace.stat().st_mode & 0o777 == 0o700


def test_disk_use_counts_a_sparse_file_at_its_size_and_follows_no_link(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with open(workspace / "sparse.bin", "wb") as sparse:
        sparse.truncate(2 ** 30)  # a gigabyte that takes no disk, but a full upload
    big_outside = tmp_path / "outside"
    big_outside.mkdir()
    with open(big_outside / "big.bin", "wb") as big:
        big.truncate(2 ** 40)
    os.symlink(big_outside, workspace / "outside-link")

    used = files.disk_use([str(workspace)], stop_above=2 ** 41)

    assert 2 ** 30 <= used < 2 ** 30 + 2 ** 20


def test_disk_use_stops_counting_past_the_limit_and_skips_missing_places(tmp_path):
    for n in range(3):
        Path(tmp_path / f"part{n}").write_bytes(b"x" * 4096)
    used = files.disk_use([str(tmp_path / "missing"), str(tmp_path)], stop_above=4096)
    assert 4096 < used <= 2 * 4096 + 4096  # at most one entry past the limit, then it stops
