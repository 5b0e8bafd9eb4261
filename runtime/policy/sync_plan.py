"""What to transfer between a workspace and S3, decided from listings and a manifest.

The manifest remembers, for every file the workspace shares with S3, the object's ETag
and the local file's size and modification time when they last matched. A file whose
stat still matches is unchanged on this side; an object whose ETag still matches is
unchanged on the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_MODE = 0o644


@dataclass(frozen=True)
class LocalStat:
    size: int
    mtime_ns: int
    mode: int = DEFAULT_MODE  # permission bits; `chmod +x` is a change worth syncing


@dataclass(frozen=True)
class ManifestEntry:
    etag: str
    size: int
    mtime_ns: int
    mode: int = DEFAULT_MODE

    def matches(self, local: LocalStat | None) -> bool:
        return (
            local is not None
            and local.size == self.size
            and local.mtime_ns == self.mtime_ns
            and local.mode == self.mode
        )

    @classmethod
    def synced(cls, etag: str, local: LocalStat) -> ManifestEntry:
        return cls(etag=etag, size=local.size, mtime_ns=local.mtime_ns, mode=local.mode)


@dataclass
class DownloadPlan:
    fetch: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)


@dataclass
class UploadPlan:
    put: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def plan_download(
    remote_etags: Mapping[str, str],
    local: Mapping[str, LocalStat],
    manifest: Mapping[str, ManifestEntry],
) -> DownloadPlan:
    """Make the workspace mirror S3: fetch what changed there, remove what is gone."""
    plan = DownloadPlan()
    for path, etag in sorted(remote_etags.items()):
        entry = manifest.get(path)
        if entry is None or entry.etag != etag or not entry.matches(local.get(path)):
            plan.fetch.append(path)
    plan.remove = sorted(path for path in local if path not in remote_etags)
    return plan


def plan_upload(
    local: Mapping[str, LocalStat], manifest: Mapping[str, ManifestEntry]
) -> UploadPlan:
    """Put what the command created or changed; delete keys of files it removed."""
    plan = UploadPlan()
    for path, stat in sorted(local.items()):
        entry = manifest.get(path)
        if entry is None or not entry.matches(stat):
            plan.put.append(path)
    plan.delete = sorted(path for path in manifest if path not in local)
    return plan
