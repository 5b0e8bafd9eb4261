"""A user's command in a pseudo-terminal, driven from trio.

The master side is non-blocking and read with ``wait_readable``, never with a blocking
read in the event loop; the child is awaited through a pidfd. The command runs as the
leader of a new session whose controlling terminal is the PTY, so everything it starts
(``&``, ``nohup``) can be found and stopped with it; what leaves the session is found by
its user id (see ``confinement``). The child inherits no descriptor but the terminal.

The worker is never forked: forking a process of its size and running Python in the
child took 12 ms here, against well under one for ``vfork``, which ``subprocess`` uses
when no Python runs in the child. What the child must do before the shell (a session,
limits, another user) is done by small programs that each exec the next.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trio
from ptyprocess import PtyProcess

logger = logging.getLogger(__name__)

READ_BYTES = 64 * 1024
# util-linux's setsid: a new session, with the terminal on its stdin as controlling one.
NEW_SESSION = ("/usr/bin/setsid", "--ctty")
# Signals a user may send to their own command from the terminal.
USER_SIGNALS = frozenset({
    "SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGTSTP", "SIGCONT",
    "SIGUSR1", "SIGUSR2", "SIGWINCH",
})


class SpawnFailed(Exception):
    """The command could not be started (no shell, no such directory)."""


@dataclass(frozen=True)
class ExitStatus:
    exit_code: int | None
    signal: str | None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        """From ``subprocess``'s return code: minus the signal that killed the process."""
        if returncode < 0:
            return cls(None, signal.Signals(-returncode).name)
        return cls(returncode, None)


class PtyCommand:
    def __init__(self, process: PtyProcess, child: subprocess.Popen):
        self._process = process
        self._child = child  # reaps the process; ``process`` is the terminal's side
        self.pid = process.pid
        self._fd = process.fd
        os.set_blocking(self._fd, False)
        self._pidfd = os.pidfd_open(self.pid)
        self._status: ExitStatus | None = None
        self._closed = False

    def __str__(self) -> str:
        return f"pid {self.pid}"

    @classmethod
    async def spawn(
        cls, command: str, *, cwd: Path, env: dict, cols: int, rows: int,
        launcher: Sequence[str] = (), umask: int = -1,
    ) -> PtyCommand:
        """Start ``bash -lc command``; each program of ``launcher`` (with its arguments)
        sets the process up and execs the rest, the shell last."""
        argv = [*NEW_SESSION, *launcher, "/bin/bash", "-lc", command]
        master, terminal = os.openpty()

        def start() -> subprocess.Popen:
            # restore_signals: Python ignores SIGPIPE and SIGXFSZ, and an ignored signal
            # stays ignored across exec; a command writing to a closed pipe or past its
            # file size limit must stop.
            return subprocess.Popen(
                argv, stdin=terminal, stdout=terminal, stderr=terminal, cwd=cwd, env=env,
                umask=umask, restore_signals=True, close_fds=True,
            )

        try:
            # Sized before the command starts, which may ask at once.
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            child = await trio.to_thread.run_sync(start)
        except OSError as exc:
            os.close(master)
            raise SpawnFailed(f"cannot start the command: {exc}") from exc
        finally:
            os.close(terminal)
        return cls(PtyProcess(child.pid, master), child)

    def read_nowait(self) -> bytes | None:
        """Output buffered right now; ``None`` when there is none yet, ``b""`` once no
        process holds the terminal any more."""
        try:
            return os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.EIO:  # Linux's way of saying the slave side closed
                return b""
            raise

    async def wait_readable(self) -> None:
        await trio.lowlevel.wait_readable(self._fd)

    def read_available(self, limit: int = 1024 * 1024) -> bytes:
        """Output buffered right now (up to ``limit`` bytes), without waiting."""
        chunks, total = [], 0
        while total < limit and (chunk := self.read_nowait()):
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    async def write(self, data: bytes) -> None:
        """Type into the terminal; waits while the terminal's input buffer is full."""
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return  # nobody reads the terminal any more
                raise
            view = view[written:]

    def resize(self, cols: int, rows: int) -> None:
        """Change the window size; the kernel sends SIGWINCH to the foreground job."""
        self._process.setwinsize(rows, cols)

    def send_signal(self, name: str) -> None:
        """Deliver a user's signal to the foreground job, as a terminal would."""
        if name not in USER_SIGNALS:
            raise ValueError(f"signal {name!r} is not allowed")
        try:
            group = os.tcgetpgrp(self._fd)
        except OSError:
            group = self.pid
        try:
            os.killpg(group, signal.Signals[name])
        except OSError as exc:  # gone already, or (after a setuid exec) not ours to signal
            logger.info("%s: signal %s not delivered: %s", self, name, exc)

    async def wait(self) -> ExitStatus:
        """Wait for the command's shell to exit (not for what it left running)."""
        if self._status is None:
            await trio.lowlevel.wait_readable(self._pidfd)
            # The pidfd is readable once the child has exited, so this does not block.
            self._status = ExitStatus.from_returncode(self._child.poll())
        return self._status

    def session_members(self) -> list[int]:
        """Processes still in the command's session or process group."""
        members = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            # After the name: state ppid pgrp session ...
            if fields[0] != "Z" and self.pid in (int(fields[2]), int(fields[3])):
                members.append(int(entry))
        return members

    def signal_session(self, sig: signal.Signals) -> int:
        members = self.session_members()
        for pid in members:
            # Exited meanwhile, or (after a setuid exec) not ours to signal.
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        return len(members)

    async def terminate(self, grace_s: float) -> None:
        """SIGTERM to the whole session, SIGKILL to whatever is left after ``grace_s``."""
        if self.signal_session(signal.SIGTERM):
            with trio.move_on_after(grace_s):
                # Processes of the session are not our children: nothing to await but polls.
                while self.session_members():  # noqa: ASYNC110
                    await trio.sleep(0.05)
        for _ in range(20):
            if not self.signal_session(signal.SIGKILL):
                break
            await trio.sleep(0.05)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        trio.lowlevel.notify_closing(self._fd)
        trio.lowlevel.notify_closing(self._pidfd)
        os.close(self._pidfd)
        # ptyprocess closes the master fd; the child is already reaped (or killed above).
        self._process.fileobj.close()
        self._process.closed = True
