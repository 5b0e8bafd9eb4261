"""A command in a real PTY, spawned without forking the worker."""

from __future__ import annotations

import os

import pytest
import trio

from runtime.worker.pty_command import ExitStatus, PtyCommand, SpawnFailed


async def run(command: str, cwd) -> tuple[bytes, ExitStatus]:
    # A home of its own: the login shell reads no profile of the user running the tests.
    process = await PtyCommand.spawn(command, cwd=cwd, env={"PATH": "/usr/bin:/bin",
                                                            "HOME": str(cwd)},
                                     cols=100, rows=30)
    output = b""
    try:
        with trio.fail_after(30):
            while True:
                data = process.read_nowait()
                if data is None:
                    await process.wait_readable()
                elif not data:
                    break
                else:
                    output += data
            return output, await process.wait()
    finally:
        process.close()


async def test_the_shell_leads_a_session_with_the_pty_as_its_terminal(tmp_path):
    output, status = await run(
        'echo "sid=$(ps -o sid= -p $$ | tr -d " ")"; echo "pid=$$"; echo "tty=$(tty)"; '
        'echo "size=$(stty size)"; exit 3', tmp_path)
    fields = dict(line.split("=", 1) for line in output.decode().splitlines())
    assert fields["sid"] == fields["pid"]
    assert fields["tty"].startswith("/dev/pts/")
    assert fields["size"] == "30 100"
    assert status == ExitStatus(3, None)


async def test_a_shell_killed_by_a_signal_reports_it(tmp_path):
    _, status = await run("kill -TERM $$", tmp_path)
    assert status == ExitStatus(None, "SIGTERM")


async def test_a_command_that_cannot_start_leaks_no_descriptor(tmp_path):
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(SpawnFailed, match="no-such-folder"):
        await PtyCommand.spawn("true", cwd=tmp_path / "no-such-folder", env={},
                               cols=80, rows=24)
    assert sorted(os.listdir("/proc/self/fd")) == before
