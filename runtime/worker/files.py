"""File operations inside one workspace that never follow a symlink.

Every path is walked from the workspace's own directory one segment at a time with
``O_NOFOLLOW``, so a symlink a command left behind (``node_modules -> /``) can neither
redirect a download nor leak a file into an upload. These functions block; the
workspace runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from runtime.policy.sync_plan import LocalStat

TEMP_MARKER = ".cloudide-partial-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class SkippedFile(Exception):
    """A file that is not synchronised; the message says why."""


class TooManyEntries(Exception):
    """A tree holds more files, folders and links than a scan may list."""


@dataclass(frozen=True)
class ScannedFile:
    stat: LocalStat
    inode: tuple[int, int]
    links: int


@contextlib.contextmanager
def _open_parent(root: str, segments: tuple[str, ...], *, create: bool) -> Iterator[int]:
    """A directory fd for the parent of ``segments``, walked without following links.

    With ``create``, missing directories are made, and anything else in the way (a
    symlink, a file) is removed: S3 is the source of truth for what the path must be.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        for segment in segments[:-1]:
            child = _open_dir(fd, segment, create=create)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _open_dir(parent: int, name: str, *, create: bool) -> int:
    # Downloads run in parallel threads, so another one may be making the same directory
    # (or replacing the same symlink) right now: each step tolerates having been beaten.
    for _ in range(8):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not create:
                raise
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(name, dir_fd=parent)
    raise OSError(errno.EAGAIN, f"directory {name!r} kept changing while being made")


# A downloaded file never becomes setuid or writable by others, whatever S3 says.
ALLOWED_MODE_BITS = 0o755


def write_file(root: str, segments: tuple[str, ...], fill: Callable[[Callable], tuple]) -> tuple:
    """Create or replace a file: ``fill(write)`` streams its contents and returns
    ``(tag, mode or None)``.

    The data goes to a temporary file in the same directory, renamed over the target
    only when complete, so a reader never sees half a file and a symlink at the target
    is replaced, not written through. Returns ``(tag, LocalStat)``.
    """
    name = segments[-1]
    with _open_parent(root, segments, create=True) as parent:
        temp = f"{TEMP_MARKER}{secrets.token_hex(6)}"
        fd = os.open(
            temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644, dir_fd=parent,
        )
        try:
            with os.fdopen(fd, "wb", closefd=True) as out:
                tag, mode = fill(out.write)
                if mode is not None:
                    os.fchmod(out.fileno(), mode & ALLOWED_MODE_BITS)
            os.replace(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=parent)
            raise
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    return tag, _local_stat(st)


def _local_stat(st: os.stat_result) -> LocalStat:
    return LocalStat(size=st.st_size, mtime_ns=st.st_mtime_ns, mode=stat.S_IMODE(st.st_mode))


def remove_file(root: str, segments: tuple[str, ...]) -> None:
    """Remove a file (or a symlink, never its target); a missing one is fine."""
    try:
        with _open_parent(root, segments, create=False) as parent:
            os.unlink(segments[-1], dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR):
            raise


def read_file(root: str, segments: tuple[str, ...], send: Callable, *, max_bytes: int):
    """Open a regular file without following links; ``send(fileobj, size, mode)`` sends it.

    Returns ``(tag, LocalStat)`` with the stat taken before reading, so a file that
    changes while it is sent is seen as changed on the next pass.
    """
    with _open_parent(root, segments, create=False) as parent:
        try:
            # O_NONBLOCK: a FIFO swapped in after the scan must not hang the upload.
            fd = os.open(
                segments[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=parent,
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SkippedFile("became a symlink") from None
            raise
    with os.fdopen(fd, "rb", closefd=True) as fileobj:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SkippedFile("not a regular file")
        if st.st_size > max_bytes:
            raise SkippedFile(f"larger than {max_bytes} bytes")
        os.set_blocking(fd, True)
        tag = send(fileobj, st.st_size, stat.S_IMODE(st.st_mode))
    return tag, _local_stat(st)


def scan(root: str, on_skip: Callable[[str, str], None], *,
         max_entries: int | None = None) -> dict[str, ScannedFile]:
    """Every regular file under ``root`` by relative path; nothing else is followed.

    Past ``max_entries`` (files, folders, links and anything else met) it stops with
    ``TooManyEntries``: a command can make millions of empty files, which cost its disk
    nothing, and listing them all would cost the worker its memory.
    """
    walk = _Walk(on_skip, math.inf if max_entries is None else max_entries)
    try:
        top = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return walk.found
    _scan_dir(top, "", walk)
    return walk.found


@dataclass
class _Walk:
    on_skip: Callable[[str, str], None]
    entries_left: float
    found: dict[str, ScannedFile] = field(default_factory=dict)


def _scan_dir(fd: int, prefix: str, walk: _Walk) -> None:
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                walk.entries_left -= 1
                if walk.entries_left < 0:
                    raise TooManyEntries
                relative = prefix + entry.name
                if entry.name.startswith(TEMP_MARKER):
                    continue
                if entry.is_symlink():
                    walk.on_skip(relative, "symlink")
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                    except OSError as exc:
                        walk.on_skip(relative, f"directory not readable: {exc.strerror}")
                        continue
                    _scan_dir(child, relative + "/", walk)
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    walk.found[relative] = ScannedFile(
                        stat=_local_stat(st),
                        inode=(st.st_dev, st.st_ino),
                        links=st.st_nlink,
                    )
                else:
                    walk.on_skip(relative, "not a regular file")
    finally:
        os.close(fd)


def prune_empty_dirs(root: str, relative_dir: str) -> None:
    """Remove ``relative_dir`` and its parents while they are empty (not the root)."""
    parts = [p for p in relative_dir.split("/") if p]
    while parts:
        try:
            with _open_parent(root, tuple(parts), create=False) as parent:
                os.rmdir(parts[-1], dir_fd=parent)
        except OSError:
            return
        parts.pop()


def give_to(root: str, uid: int, gid: int) -> None:
    """Make ``root`` and everything under it owned by ``uid:gid``, ``root`` private to it.

    Called while nothing of ``uid`` runs. A regular file with several links is left as
    it is unless it is already ``uid``'s: its other names may be outside the workspace
    (a hard link to a file of the system), and giving it away would give those away too.
    """
    fd = os.open(root, _DIR_FLAGS)
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, 0o700)
        _give_dir(fd, uid, gid)
    finally:
        os.close(fd)


def take_back(root: str) -> None:
    """Make ``root`` the worker's and private again: no other user can reach what is
    under it, whoever owns that."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        os.fchown(fd, os.geteuid(), os.getegid())
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _give_dir(fd: int, uid: int, gid: int) -> None:
    with os.scandir(fd) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if (st.st_uid, st.st_gid) != (uid, gid) and not (
                stat.S_ISREG(st.st_mode) and st.st_nlink > 1
            ):
                os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                try:
                    _give_dir(child, uid, gid)
                finally:
                    os.close(child)


def disk_use(roots: list[str], stop_above: int) -> int:
    """Bytes the trees under ``roots`` take, counting each file at its allocated or its
    apparent size, whichever is larger (a sparse file costs little disk but a full
    upload). Stops counting once past ``stop_above``."""
    total = 0
    for root in roots:
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:
            continue
        total = _add_dir(fd, total, stop_above)
        if total > stop_above:
            break
    return total


def _add_dir(fd: int, total: int, stop_above: int) -> int:
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                    total += max(st.st_size, st.st_blocks * 512)
                    if stat.S_ISDIR(st.st_mode) and total <= stop_above:
                        child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
                        total = _add_dir(child, total, stop_above)
                except OSError:
                    continue  # removed, or replaced by a link, by the running command
                if total > stop_above:
                    return total
    finally:
        os.close(fd)
    return total
