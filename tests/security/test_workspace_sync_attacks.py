"""Workspace sync attacks: hostile S3 keys and hostile files never take the worker outside
the workspace, never hang it, and end in a clear error when past a limit.

Real worker, moto server, redis-server and PTYs. The worker syncs as root, so a key it
follows out of the workspace, or a link it reads through, is a file of the system read
or written; each test fails if the defence it names is removed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import runtime
from tests.integration.harness import has_exit, output_text, running_worker, wait_for_events
from tests.security.conftest import lines, needs_root, run_command, value_of

PROJECT = "hostile"


def entries_under(path: Path) -> set[str]:
    """Every name under ``path``, relative, links not followed."""
    found = set()
    for directory, subdirectories, names in os.walk(path):
        for name in subdirectories + names:
            found.add((Path(directory) / name).relative_to(path).as_posix())
    return found


async def run_two(aws, redis_server, redis_client, workspace_root, first: str, second: str,
                  *, between=lambda: None, **worker_env) -> tuple[list[dict], list[dict]]:
    """Run ``first``, call ``between()``, then run ``second`` on the same warm worker."""
    env = aws.worker_env(redis_server.url, workspace_root, **worker_env)
    async with running_worker(env):
        aws.send({"projectId": PROJECT, "terminalId": "t", "commandId": "c1", "command": first})
        one = await wait_for_events(redis_client, PROJECT, "t", has_exit("c1"))
        between()
        aws.send({"projectId": PROJECT, "terminalId": "t", "commandId": "c2",
                  "command": second})
        two = await wait_for_events(redis_client, PROJECT, "t", has_exit("c2"))
    return one, [e for e in two if e.get("commandId") == "c2"]


# --- what S3 holds ------------------------------------------------------------------------


async def test_keys_that_would_escape_or_cannot_be_names_are_never_written(
    aws, redis_server, redis_client, tmp_path
):
    prefix = f"{aws.prefix}{PROJECT}/"
    hostile = ["../escape.txt", "../../sibling.txt", "/absolute.txt", "a//empty-segment.txt",
               "a/./dot.txt", "nul\x00.txt", "dir\x00/inner.txt", "a/../../../up.txt"]
    for relative in hostile:
        aws.s3.put_object(Bucket=aws.bucket, Key=prefix + relative, Body=b"attack")
    aws.put_file(PROJECT, "fine.txt", b"fine")
    workspace_root = tmp_path / "ws"

    events = await run_command(aws, redis_server, redis_client, workspace_root,
                               "find . -mindepth 1 | sort", project=PROJECT)

    assert lines(events) == ["./fine.txt"]
    assert events[-1]["exitCode"] == 0
    # `../../sibling.txt` would land beside the workspace root, `../escape.txt` in it.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]
    assert "escape.txt" not in os.listdir(workspace_root)
    assert set(aws.files(PROJECT)) == {*hostile, "fine.txt"}  # S3 keeps what it held


async def test_a_symlink_left_in_the_workspace_is_replaced_not_written_through(
    aws, redis_server, redis_client, tmp_path
):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"precious")
    plant = (f"ln -s {outside} linked-dir && ln -s {outside / 'precious.txt'} file.txt "
             "&& echo planted")

    def s3_then_names_the_links():
        aws.put_file(PROJECT, "linked-dir/inner.txt", b"inner from s3")
        aws.put_file(PROJECT, "file.txt", b"file from s3")

    planted, read = await run_two(
        aws, redis_server, redis_client, tmp_path / "ws", plant,
        "cat file.txt; echo; cat linked-dir/inner.txt; echo; "
        "test -L file.txt || test -L linked-dir || echo no-links",
        between=s3_then_names_the_links,
    )

    assert "planted" in lines(planted)
    assert lines(read) == ["file from s3", "inner from s3", "no-links"]
    assert entries_under(outside) == {"precious.txt"}
    assert (outside / "precious.txt").read_bytes() == b"precious"


# --- what a command leaves for the upload ----------------------------------------------------


async def test_links_a_command_makes_are_not_followed_by_the_upload(
    aws, redis_server, redis_client, tmp_path, caplog
):
    code = Path(runtime.__file__).parent
    # The kernel (fs.protected_hardlinks) lets a user hard-link only files it may read
    # and write; this one it may, and it is not the workspace's to upload.
    shared = tmp_path / "shared.txt"
    shared.write_bytes(b"outside the workspace")
    shared.chmod(0o666)
    command = (
        "ln -s / root-link; ln -s /proc/1/environ environ-link; "
        f"ln -s {code} code-link; ln -s {code / 'worker' / 'worker.py'} code-file-link; "
        f"ln {shared} hard-link; "
        'ln /etc/passwd passwd-link 2>/dev/null; echo "passwd_link=$?"; '
        "echo mine > regular.txt"
    )
    with caplog.at_level(logging.INFO, logger="runtime.worker.workspace"):
        events = await run_command(aws, redis_server, redis_client, tmp_path / "ws", command,
                                   project=PROJECT)

    assert events[-1]["exitCode"] == 0
    assert value_of(events, "passwd_link") != "0"
    # Only the file the command wrote: no link, nothing read through one, nothing a hard
    # link shares with a file outside the workspace.
    assert aws.files(PROJECT) == {"regular.txt": b"mine\n"}
    # The push's one-line note of what it skipped, and why.
    noted = next(record.skipped for record in caplog.records
                 if "push skipped" in record.getMessage())
    assert noted["root-link"] == "symlink"
    assert noted["environ-link"] == "symlink"
    assert "hard link" in noted["hard-link"]


@needs_root
async def test_fifos_sockets_and_device_files_do_not_hang_the_upload(
    aws, redis_server, redis_client, tmp_path
):
    project = tmp_path / PROJECT
    project.mkdir(mode=0o700)
    # Only root can make a device file; a command cannot (see `mknod` below). Reading
    # this one (/dev/zero) would never end.
    os.mknod(project / "zero", stat.S_IFCHR | 0o666, os.makedev(1, 5))
    command = (
        "mkfifo fifo; "
        "python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"socket\")'; "
        'mknod null c 1 3 2>/dev/null; echo "mknod=$?"; echo mine > regular.txt'
    )

    events = await run_command(aws, redis_server, redis_client, tmp_path, command,
                               project=PROJECT)

    assert value_of(events, "mknod") != "0"
    assert events[-1]["exitCode"] == 0
    assert aws.files(PROJECT) == {"regular.txt": b"mine\n"}
    assert stat.S_ISFIFO((project / "fifo").lstat().st_mode)
    assert stat.S_ISSOCK((project / "socket").lstat().st_mode)


# --- limits ---------------------------------------------------------------------------------


async def test_a_sparse_terabyte_file_is_refused_with_an_error_and_never_read(
    aws, redis_server, redis_client, tmp_path
):
    # RLIMIT_FSIZE would stop `truncate` first (see test_limits); raised here, so the
    # upload's own check is what is tested.
    made, after = await run_two(
        aws, redis_server, redis_client, tmp_path,
        "truncate -s 1T sparse.bin && echo small > small.txt && echo made",
        'echo "files=$(ls | tr "\\n" " ")"',
        COMMAND_MAX_FILE_BYTES=2 ** 41,
    )

    assert "made" in lines(made)
    errors = [e for e in made if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["disk_limit"]
    assert "WORKSPACE_MAX_BYTES" in errors[0]["message"]
    assert "none of its changes were saved" in errors[0]["message"]
    assert made[-1]["type"] == "exit"
    assert aws.files(PROJECT) == {}
    # The worker went on: the next command ran, in a copy that mirrors S3 again.
    assert value_of(after, "files") == ""
    assert after[-1]["exitCode"] == 0


MANY_FILES = (
    "python3 -c 'import os\n"
    "for d in range(100):\n"
    "    os.mkdir(\"d%d\" % d)\n"
    "    for f in range(1000):\n"
    "        open(\"d%d/f%d\" % (d, f), \"w\").close()\n"
    "print(\"made\", sum(len(os.listdir(\"d%d\" % d)) for d in range(100)))'"
)


async def test_a_hundred_thousand_files_end_with_a_clear_limit_error(
    aws, redis_server, redis_client, tmp_path
):
    made, after = await run_two(
        aws, redis_server, redis_client, tmp_path, MANY_FILES,
        'echo "count=$(find . -type f | wc -l)"',
    )

    assert "made 100000" in output_text(made)
    errors = [e for e in made if e["type"] == "error"]
    assert [e["code"] for e in errors] == ["file_limit"]
    assert "WORKSPACE_MAX_FILES" in errors[0]["message"]
    assert made[-1]["type"] == "exit"
    assert made[-1]["exitCode"] == 0
    assert aws.files(PROJECT) == {}
    assert value_of(after, "count") == "0"
