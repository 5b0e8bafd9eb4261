"""Who a user's command runs as, and what is done before and after it.

Each concurrent slot of a worker runs its commands under a user id (and a group id of the
same number) of its own. That is what keeps a command from what the worker holds: the
kernel refuses another user ``/proc/<worker>/environ`` (the AWS credentials, the
credentials endpoint's path), the worker's open files, the manifests and the other
workspaces. Before a command, its workspace and a fresh home become that user's; its
process starts with rlimits, umask 077 and no_new_privs, in a new session, with an
allowlisted environment and no inherited descriptors. After it, every process of that
user is killed wherever it went, what it left in the shared temporary directories and
its home are removed, and the workspace is root's alone again.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import trio

from runtime.policy.environment import for_user
from runtime.policy.limits import CommandLimits

from . import files, sweep
from .pty_command import SpawnFailed
from .settings import COMMAND_UID_SPAN, WorkerSettings
from .workspace import MANIFESTS_DIR

logger = logging.getLogger(__name__)

PRLIMIT, CHOOM, SETPRIV = "/usr/bin/prlimit", "/usr/bin/choom", "/usr/bin/setpriv"
PRLIMIT_OPTIONS = {
    resource.RLIMIT_FSIZE: "fsize", resource.RLIMIT_NOFILE: "nofile",
    resource.RLIMIT_CORE: "core", resource.RLIMIT_NPROC: "nproc",
}
# A command's files are its own: no other user id may read them.
COMMAND_UMASK = 0o077
# The ids have no passwd entry; this is the name their commands see in $USER.
USER_NAME = "cloudide"
HOMES_DIR = ".homes"
# How long killing a user's processes may take before the worker gives up and says so.
SWEEP_LIMIT_S = 5
SWEEP_ROUND_S = 0.02


class ConfinementUnavailable(Exception):
    """Commands cannot be run under user ids of their own here; the message says why."""


def isolation_problem(settings: WorkerSettings, euid: int) -> str | None:
    """Why this worker cannot confine commands as configured, or None."""
    if settings.commands_as_worker_user or euid == 0:
        return None
    return (
        f"the worker runs as uid {euid}, not root, so it cannot start commands under user "
        "ids of their own; run it as root, or set COMMANDS_AS_WORKER_USER=true to run them "
        f"as uid {euid}, where they can read everything the worker holds, its credentials "
        "included"
    )


@dataclass(frozen=True)
class CommandUser:
    """The user a slot's commands run as; no ``uid``: the worker's own user."""

    uid: int | None = None
    home: Path | None = None

    def __str__(self) -> str:
        return "the worker's user" if self.uid is None else f"uid {self.uid}"

    def environment(self, base: Mapping[str, str]) -> dict:
        if self.uid is None:
            return dict(base)
        return for_user(base, name=USER_NAME, home=str(self.home))

    def launcher(self, limits: CommandLimits) -> list[str]:
        """The util-linux programs that set the command's process up before its shell,
        each exec'ing the next: rlimits, then the out-of-memory score, then (last, so the
        steps before still run as root) this user with no supplementary groups, and no
        way back to privileges."""
        argv = [PRLIMIT]
        for which, value in limits.rlimits(own_user=self.uid is not None).items():
            _, hard = resource.getrlimit(which)  # what the command inherits
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)  # a worker that is not root cannot raise it
            argv.append(f"--{PRLIMIT_OPTIONS[which]}={value}:{value}")
        # The kernel's out-of-memory killer then takes the command, not the worker.
        argv += ["--", CHOOM, "-n", "1000", "--", SETPRIV]
        if self.uid is not None:
            argv += [f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
        # No setuid or file-capability program can give back what was dropped.
        return [*argv, "--no-new-privs", "--"]

    async def make_ready(self) -> None:
        """Before a command, while its files come down: nothing of this user left
        running, and a fresh home."""
        if self.uid is None:
            return
        # A worker killed during a command leaves that command's processes behind.
        await self._end_processes()
        try:
            await trio.to_thread.run_sync(self._fresh_home)
        except OSError as exc:
            raise SpawnFailed(f"cannot prepare a home for {self}: {exc}") from exc

    async def take_workspace(self, workspace: Path) -> None:
        """Once its files are down and it is ready: the workspace this user's (and no
        one else's but root's)."""
        if self.uid is None:
            return
        try:
            await trio.to_thread.run_sync(files.give_to, str(workspace), self.uid, self.uid)
        except OSError as exc:
            raise SpawnFailed(f"cannot prepare the workspace for {self}: {exc}") from exc

    async def leave(self, workspace: Path) -> None:
        """After a command: every process of this user gone, its files outside the
        workspace removed, the workspace root's alone."""
        if self.uid is None:
            return
        await self._end_processes()
        await trio.to_thread.run_sync(self._clear_up, workspace)

    async def _end_processes(self) -> None:
        with trio.move_on_after(SWEEP_LIMIT_S):
            while True:
                left = await trio.to_thread.run_sync(sweep.processes_of, self.uid)
                if not left:
                    return
                if not all(p.zombie for p in left):
                    await trio.to_thread.run_sync(sweep.kill_all_as, self.uid)
                sweep.reap_orphans(left)
                await trio.sleep(SWEEP_ROUND_S)
        left = await trio.to_thread.run_sync(sweep.processes_of, self.uid)
        logger.error("%s: %d process(es) could not be ended", self, len(left),
                     extra={"pids": [p.pid for p in left[:20]]})

    def _fresh_home(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        os.mkdir(self.home, 0o700)
        os.chown(self.home, self.uid, self.uid)

    def _clear_up(self, workspace: Path) -> None:
        sweep.remove_leftovers(self.uid)
        shutil.rmtree(self.home, ignore_errors=True)
        files.take_back(str(workspace))


class CommandUsers:
    """The users a worker's slots run commands as, held while the worker runs."""

    def __init__(self, users: list[CommandUser], claims: list[socket.socket]):
        self.users = tuple(users)
        self._free = list(reversed(users))
        self._claims = claims

    def __str__(self) -> str:
        uids = [user.uid for user in self.users]
        if None in uids:
            return "the worker's own user"
        return f"uid {uids[0]}" if len(uids) == 1 else f"uids {', '.join(map(str, uids))}"

    @classmethod
    def claim(cls, settings: WorkerSettings, euid: int) -> CommandUsers:
        """One user per slot, the first ids from COMMAND_UID_BASE up that no other worker
        on this machine holds (``make run`` starts several)."""
        isolated = not settings.commands_as_worker_user
        prepare_workspace_root(settings.workspace_root, euid, isolated=isolated)
        if not isolated:
            return cls([CommandUser()] * settings.concurrency, [])
        problem = isolation_problem(settings, euid)
        if problem is not None:
            raise ConfinementUnavailable(problem)
        users, claims = [], []
        homes = settings.workspace_root / HOMES_DIR
        base = settings.command_uid_base
        for uid in range(base, base + COMMAND_UID_SPAN):
            claim = _claim_uid(uid)
            if claim is None:
                continue
            users.append(CommandUser(uid, homes / str(uid)))
            claims.append(claim)
            if len(users) == settings.concurrency:
                return cls(users, claims)
        for claim in claims:
            claim.close()
        raise ConfinementUnavailable(
            f"no {settings.concurrency} free user ids for commands from COMMAND_UID_BASE "
            f"{base} to {base + COMMAND_UID_SPAN - 1}: other workers on this machine hold them"
        )

    def take(self) -> CommandUser:
        return self._free.pop()

    def give_back(self, user: CommandUser) -> None:
        self._free.append(user)

    def close(self) -> None:
        for claim in self._claims:
            claim.close()
        self._claims = []


def _claim_uid(uid: int) -> socket.socket | None:
    """Hold ``uid`` for this worker: a name in the abstract socket namespace is bound by
    one process at a time, and freed by the kernel when that process dies."""
    claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        claim.bind(f"\0cloudide-command-uid-{uid}")
    except OSError:
        claim.close()
        return None
    return claim


def prepare_workspace_root(root: Path, euid: int, *, isolated: bool) -> None:
    """The workspace root: searchable by commands but not listable (a command reaches its
    own workspace by name, never learns other projects' ids), manifests private."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        st = os.lstat(root)
    except OSError as exc:
        raise ConfinementUnavailable(f"WORKSPACE_ROOT {root}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != euid:
        raise ConfinementUnavailable(
            f"WORKSPACE_ROOT {root} must be a directory of the worker's own user (uid {euid}), "
            "not a link or another user's"
        )
    os.chmod(root, 0o711)
    for name, mode in ((MANIFESTS_DIR, 0o700), (HOMES_DIR, 0o711)):
        (root / name).mkdir(mode=mode, exist_ok=True)
        os.chmod(root / name, mode)
    if not isolated:
        return
    for parent in root.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ConfinementUnavailable(
                f"WORKSPACE_ROOT {root}: other users may not enter {parent} (mode "
                f"{stat.S_IMODE(mode):o}), so commands, which run under user ids of their "
                "own, could not reach their workspaces"
            )
