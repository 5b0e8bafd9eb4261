"""Which S3 keys may become files in a workspace."""

from __future__ import annotations

MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4000


class UnsafePath(ValueError):
    """A key that would land outside the workspace, or cannot be a file name."""


def safe_relative_path(relative: str) -> tuple[str, ...]:
    """Split a key (already stripped of the project prefix) into safe path segments.

    Rejects what could escape the workspace or alias another file: absolute paths,
    ``.``/``..`` segments, empty segments (``a//b``, a trailing ``/``) and NUL.
    """
    if not relative:
        raise UnsafePath("empty path")
    if "\x00" in relative:
        raise UnsafePath("path contains NUL")
    if relative.startswith("/"):
        raise UnsafePath("absolute path")
    try:
        encoded_length = len(relative.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnsafePath("path is not valid UTF-8") from None
    if encoded_length > MAX_PATH_BYTES:
        raise UnsafePath("path too long")
    segments = tuple(relative.split("/"))
    for segment in segments:
        if segment == "":
            raise UnsafePath("empty path segment")
        if segment in (".", ".."):
            raise UnsafePath(f"{segment!r} segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise UnsafePath("path segment too long")
    return segments


def folder_conflicts(paths) -> dict[str, str]:
    """Keys that cannot all be files at once (``a`` and ``a/b``): the deeper ones lose.

    S3 allows both; a file system does not, so the deeper keys are skipped with a reason.
    """
    files = set(paths)
    conflicts: dict[str, str] = {}
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in files:
                conflicts[path] = f"{prefix!r} is a file, so it cannot also be a folder"
                break
    return conflicts
