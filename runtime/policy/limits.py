"""What one user command may use, and the rlimits that hold it there.

A fork bomb, a runaway log file or a leak of file descriptors must hurt only the
command that does it, never the worker or the next command.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

MIB = 1024 ** 2
GIB = 1024 ** 3


@dataclass(frozen=True)
class CommandLimits:
    max_processes: int = 512  # per user id, threads included: RLIMIT_NPROC
    max_file_bytes: int = 4 * GIB  # one file: RLIMIT_FSIZE
    max_open_files: int = 4096  # RLIMIT_NOFILE
    workspace_max_bytes: int = 10 * GIB  # the project's folder and the command's home
    # Files, folders and links a project may hold and still be synced (a large
    # node_modules holds tens of thousands).
    workspace_max_files: int = 100_000
    workspace_check_s: float = 5  # how often the worker measures them while a command runs

    def rlimits(self, *, own_user: bool) -> dict[int, int]:
        """The rlimits a command starts with, soft and hard alike so it cannot raise them.

        ``own_user``: the command has a user id of its own. Otherwise (commands run as the
        worker's user) RLIMIT_NPROC would count every process of that user, the worker's
        and the developer's included, so it is left as it is.
        """
        limits = {
            resource.RLIMIT_FSIZE: self.max_file_bytes,
            resource.RLIMIT_NOFILE: self.max_open_files,
            # A core file would land in the workspace and be uploaded with it.
            resource.RLIMIT_CORE: 0,
        }
        if own_user:
            limits[resource.RLIMIT_NPROC] = self.max_processes
        return limits
