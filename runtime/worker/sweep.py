"""Ending everything a command's user id left behind.

Killing a command's session misses whatever left it (``setsid``, a double fork, a
daemon). A process cannot leave its user id, so after each command a helper takes that
id and calls ``kill(-1, SIGKILL)``, which reaches every process of the id, until none is
left. These functions block; the worker runs them in threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Where any user may create files, which outlive the command that made them.
SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


@dataclass(frozen=True)
class UserProcess:
    pid: int
    ppid: int
    zombie: bool


def processes_of(uid: int) -> list[UserProcess]:
    """Every process (zombies included) whose real user id is ``uid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", "rb") as status:
                text = status.read()
            if int(_status_field(text, b"Uid")) == uid:
                found.append(UserProcess(
                    pid=int(entry), ppid=int(_status_field(text, b"PPid")),
                    zombie=_status_field(text, b"State") == b"Z",
                ))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def _status_field(status: bytes, name: bytes) -> bytes:
    """The first word of a field of /proc/<pid>/status. Only the three fields needed are
    looked for: splitting all fifty-odd lines of every process took 60% of a sweep."""
    start = status.index(b"\n" + name + b":") + len(name) + 2
    return status[start:status.index(b"\n", start)].split()[0]


def kill_all_as(uid: int) -> None:
    """SIGKILL every process of ``uid``, from a short-lived helper running as ``uid``.

    As that user, ``kill(-1)`` reaches exactly that user's processes (and not the helper
    itself); bash's built-in ``kill`` makes the call without another program.
    """
    if uid == 0:
        # As root, kill(-1) would reach every process on the machine.
        raise ValueError("refusing to kill every process of root")
    subprocess.run(
        ["/bin/bash", "-c", "kill -s KILL -- -1"], user=uid, group=uid, extra_groups=[],
        env={}, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, check=False,
    )


def reap_orphans(processes: list[UserProcess]) -> None:
    """Reap the zombies handed to the worker: it is their parent when it runs as PID 1
    (a container without an init), and nobody else will."""
    me = os.getpid()
    for process in processes:
        if process.zombie and process.ppid == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(process.pid, os.WNOHANG)


def remove_leftovers(uid: int) -> None:
    """Remove what ``uid`` left at the top of the shared temporary directories, so the
    next command of that id (perhaps another project's) cannot read it."""
    for directory in SHARED_TEMP_DIRS:
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    _remove_if_owned(fd, entry, uid, directory)
        finally:
            os.close(fd)


def _remove_if_owned(fd: int, entry: os.DirEntry, uid: int, directory: str) -> None:
    try:
        st = entry.stat(follow_symlinks=False)
        if st.st_uid != uid:
            return
        if stat.S_ISDIR(st.st_mode):
            # rmtree walks by file descriptor and never follows a link out of the tree.
            shutil.rmtree(entry.name, dir_fd=fd)
        else:
            os.unlink(entry.name, dir_fd=fd)
    except OSError as exc:
        logger.warning("could not remove %s/%s left by uid %d: %s", directory, entry.name,
                       uid, exc)
