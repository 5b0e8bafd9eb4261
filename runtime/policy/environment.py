"""The environment a user's command sees: an allowlist, never the worker's own."""

from __future__ import annotations

from collections.abc import Mapping

# Only these pass from the worker to a command; credentials (AWS_*, REDIS_URL, ...) never do.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def command_environment(worker_env: Mapping[str, str]) -> dict:
    # No COLUMNS/LINES: programs prefer them to the PTY's size, which a resize changes.
    env = {name: worker_env[name] for name in PASSED_THROUGH if name in worker_env}
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("LANG", "C.UTF-8")
    env["TERM"] = "xterm-256color"
    return env


def for_user(env: Mapping[str, str], *, name: str, home: str) -> dict:
    """``env`` for a command under a user id of its own, which no passwd entry names."""
    return {**env, "HOME": home, "USER": name, "LOGNAME": name}
