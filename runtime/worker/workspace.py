"""A project's local copy: brought up to date from S3, and its changes sent back.

The local copy lives at ``<workspace root>/<projectId>/``; its manifest (what was last
in sync, see ``runtime.policy.sync_plan``) at ``<workspace root>/.manifests/``, where no
project id can point. Transfers run concurrently in worker threads.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import secrets
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import trio

from runtime.aws.storage import ProjectStorage, StorageError
from runtime.contract import events
from runtime.policy.limits import CommandLimits
from runtime.policy.paths import UnsafePath, folder_conflicts, safe_relative_path
from runtime.policy.sync_plan import ManifestEntry, plan_download, plan_upload

from . import files

logger = logging.getLogger(__name__)

# Beside the projects in the workspace root; no project id can start with a dot.
MANIFESTS_DIR = ".manifests"
DEFAULT_LIMITS = CommandLimits()


class SyncFailed(Exception):
    """Some files could not be transferred; the message says how many and the first why."""


class WorkspaceOverLimit(SyncFailed):
    """The project is past a limit of the worker's, so nothing of it was sent.

    The command's doing, not a fault of the sync: trying again cannot help. ``code`` is
    the error event's.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class SyncReport:
    transferred: int = 0
    removed: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0

    def as_log(self) -> dict:
        return {
            "transferred": self.transferred,
            "removed": self.removed,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "durationS": round(self.duration_s, 3),
        }


class Workspace:
    def __init__(
        self, root: Path, project_id: str, storage: ProjectStorage, *,
        limiter: trio.CapacityLimiter, limits: CommandLimits = DEFAULT_LIMITS,
    ):
        self.project_id = project_id
        self._limits = limits
        self.path = root / project_id
        self._manifest_path = root / MANIFESTS_DIR / f"{project_id}.json"
        self._storage = storage
        self._limiter = limiter
        self._lock = trio.Lock()

    def __str__(self) -> str:
        return f"workspace {self.project_id}"

    async def pull(self) -> SyncReport:
        """Make the local copy mirror S3, fetching only what changed there."""
        async with self._lock:
            return await self._pull()

    async def push(self) -> SyncReport:
        """Send what changed locally since the last sync; delete keys of removed files."""
        async with self._lock:
            return await self._push()

    async def _pull(self) -> SyncReport:
        started = trio.current_time()
        report = SyncReport()
        await trio.to_thread.run_sync(self._prepare_directories)
        manifest = await trio.to_thread.run_sync(self._load_manifest)
        # The listing waits on S3 and the scan on the disk: both at once. Each outcome is
        # kept and acted on once both are in, so a failed listing leaves the copy as it was.
        local: dict[str, files.ScannedFile] | None = None
        scan_failed: Exception | None = None

        async def scan_local() -> None:
            nonlocal local, scan_failed
            try:
                local = await self._scan(report)
            except (files.TooManyEntries, OSError) as exc:
                scan_failed = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(scan_local)
            try:
                remote = await self._run(self._storage.list_etags, self.project_id)
            except StorageError as exc:
                listing_failed: StorageError | None = exc
            else:
                listing_failed = None
        if listing_failed is not None:
            raise SyncFailed(str(listing_failed)) from listing_failed
        if isinstance(scan_failed, files.TooManyEntries):
            # Only a command (whose upload was refused for it) leaves so many; S3 holds
            # the project, so the local copy is rebuilt from there.
            logger.warning("%s: local copy past WORKSPACE_MAX_FILES; starting afresh", self,
                           extra={"projectId": self.project_id})
            await trio.to_thread.run_sync(self._discard_local_copy)
            local = {}
        elif scan_failed is not None:
            raise scan_failed
        safe: dict[str, str] = {}
        for relative, etag in remote.items():
            if not relative or relative.endswith("/"):
                continue  # a console-made "folder" marker, not a file
            try:
                safe_relative_path(relative)
            except UnsafePath as exc:
                report.skipped[relative] = str(exc)
                continue
            safe[relative] = etag
        for relative, reason in folder_conflicts(safe).items():
            report.skipped[relative] = reason
            del safe[relative]
        plan = plan_download(safe, {p: f.stat for p, f in local.items()}, manifest)

        async def fetch(relative: str) -> None:
            segments = safe_relative_path(relative)
            try:
                etag, stat = await self._run(
                    files.write_file, str(self.path), segments,
                    lambda write: self._storage.download(self.project_id, relative, write),
                )
            except (StorageError, OSError) as exc:
                report.failed[relative] = str(exc)
                return
            manifest[relative] = ManifestEntry.synced(etag, stat)
            report.transferred += 1

        await self._for_each(plan.fetch, fetch)
        for relative in plan.remove:
            await self._run(files.remove_file, str(self.path), safe_relative_path(relative))
            await self._run(files.prune_empty_dirs, str(self.path), os.path.dirname(relative))
            manifest.pop(relative, None)
            report.removed += 1
        for relative in list(manifest):
            if relative not in safe:
                del manifest[relative]
        return await self._finish(manifest, report, started, "pull")

    async def _push(self) -> SyncReport:
        started = trio.current_time()
        report = SyncReport()
        manifest = await trio.to_thread.run_sync(self._load_manifest)
        limits = self._limits
        try:
            local = await self._scan(report)
        except files.TooManyEntries:
            raise WorkspaceOverLimit(
                events.FILE_LIMIT,
                f"the project holds more than {limits.workspace_max_files} files, folders "
                "and links (WORKSPACE_MAX_FILES); none of its changes were saved",
            ) from None
        # Sizes as the scan saw them, before anything is read: a sparse file claims
        # terabytes it never stored, and sending them would take hours.
        total = sum(f.stat.size for f in local.values())
        if total > limits.workspace_max_bytes:
            raise WorkspaceOverLimit(
                events.DISK_LIMIT,
                f"the project's files take {total} bytes, more than {limits.workspace_max_bytes}"
                " (WORKSPACE_MAX_BYTES); none of its changes were saved",
            )
        plan = plan_upload({p: f.stat for p, f in local.items()}, manifest)

        async def put(relative: str) -> None:
            try:
                etag, stat = await self._run(
                    files.read_file, str(self.path), safe_relative_path(relative),
                    lambda fileobj, size, mode: self._storage.upload(
                        self.project_id, relative, fileobj, size, mode
                    ),
                    # A file grown since the scan is checked again once opened.
                    max_bytes=limits.workspace_max_bytes,
                )
            except files.SkippedFile as exc:
                report.skipped[relative] = str(exc)
                return
            except FileNotFoundError:
                return  # removed since the scan; the next pass deletes its key
            except (StorageError, OSError) as exc:
                report.failed[relative] = str(exc)
                return
            manifest[relative] = ManifestEntry.synced(etag, stat)
            report.transferred += 1

        await self._for_each(plan.put, put)
        if plan.delete:
            try:
                await self._run(self._storage.delete, self.project_id, plan.delete)
            except StorageError as exc:
                report.failed.update({relative: str(exc) for relative in plan.delete})
            else:
                for relative in plan.delete:
                    manifest.pop(relative, None)
                report.removed += len(plan.delete)
        return await self._finish(manifest, report, started, "push")

    async def _scan(self, report: SyncReport) -> dict[str, files.ScannedFile]:
        local = await trio.to_thread.run_sync(functools.partial(
            files.scan, str(self.path), report.skipped.__setitem__,
            max_entries=self._limits.workspace_max_files,
        ))
        # A hard link shares its contents with every other name of the file; upload it
        # only when all those names are inside the workspace.
        seen = Counter(f.inode for f in local.values())
        for relative, scanned in list(local.items()):
            try:
                safe_relative_path(relative)  # a command may make names S3 cannot hold
            except UnsafePath as exc:
                report.skipped[relative] = str(exc)
                del local[relative]
                continue
            if scanned.links > seen[scanned.inode]:
                report.skipped[relative] = "hard link to a file outside the workspace"
                del local[relative]
        return local

    async def _finish(self, manifest, report, started, direction) -> SyncReport:
        try:
            await trio.to_thread.run_sync(self._save_manifest, manifest)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # The disk is full (a command filled it): without room for the manifest the
            # local copy cannot be trusted, and running the command again would fill it
            # again. The copy goes, so the next project has room; S3 holds what was sent.
            await trio.to_thread.run_sync(self._discard_local_copy)
            raise WorkspaceOverLimit(
                events.DISK_FULL, f"the worker's disk filled up ({exc.strerror}); the "
                "command's files were sent to storage as far as they could be read, and the "
                "worker's copy of the project was dropped") from exc
        report.duration_s = trio.current_time() - started
        if report.skipped:
            # One line, not one per file: node_modules alone holds hundreds of symlinks.
            examples = dict(list(report.skipped.items())[:5])
            logger.info(
                "%s: %s skipped %d path(s), e.g. %s", self, direction, len(report.skipped),
                examples, extra={"projectId": self.project_id, "skipped": examples},
            )
        logger.info("%s: %s done", self, direction,
                    extra={"projectId": self.project_id, **report.as_log()})
        if report.failed:
            relative, reason = next(iter(report.failed.items()))
            raise SyncFailed(
                f"{direction} of project {self.project_id}: {len(report.failed)} file(s) "
                f"failed, first {relative}: {reason}"
            )
        return report

    async def _for_each(self, paths: list[str], transfer) -> None:
        """``transfer(path)`` for every path, as many at once as the limiter lets run.

        A few tasks take paths in turn rather than one task per path: a trio task costs
        a few kilobytes, and a project holds up to WORKSPACE_MAX_FILES paths.
        """
        pending = iter(paths)

        async def take_in_turn() -> None:
            for relative in pending:
                await transfer(relative)

        async with trio.open_nursery() as nursery:
            for _ in range(min(len(paths), int(self._limiter.total_tokens))):
                nursery.start_soon(take_in_turn)

    async def _run(self, fn, *args, **kwargs):
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs), limiter=self._limiter)

    def _prepare_directories(self) -> None:
        # Private to the worker until a command's user is given the project (see
        # confinement); the manifests always, as commands must not read them.
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._manifest_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _discard_local_copy(self) -> None:
        # rmtree walks by file descriptor on Linux: a link in the tree is removed, never
        # followed out of it.
        shutil.rmtree(self.path)
        self._prepare_directories()

    def _load_manifest(self) -> dict[str, ManifestEntry]:
        try:
            raw = json.loads(self._manifest_path.read_text())
            return {path: ManifestEntry(*entry) for path, entry in raw.items()}
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError):
            logger.warning("%s: manifest unreadable, syncing everything", self)
            return {}

    def _save_manifest(self, manifest: dict[str, ManifestEntry]) -> None:
        self._manifest_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self._manifest_path.with_suffix(f".{secrets.token_hex(4)}.tmp")
        data = json.dumps(
            {path: [e.etag, e.size, e.mtime_ns, e.mode] for path, e in manifest.items()}
        ).encode()
        # O_EXCL|O_NOFOLLOW: never write through a link someone planted at the temp name.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temp, self._manifest_path)
