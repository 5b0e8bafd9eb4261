"""Workspace pull/push against a real moto server: what changes moves, nothing escapes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import boto3
import pytest
import trio
from botocore.config import Config

from runtime.aws.clients import make_client
from runtime.aws.storage import ProjectStorage
from runtime.worker.files import TEMP_MARKER
from runtime.worker.workspace import SyncFailed, Workspace
from tests.servers import TEST_REGION, free_port

PROJECT = "P"


def make_workspace(root: Path, aws, client=None, project: str = PROJECT) -> Workspace:
    client = client or make_client("s3", endpoint_url=aws.endpoint)
    return Workspace(
        root, project, ProjectStorage(client, aws.bucket, aws.prefix),
        limiter=trio.CapacityLimiter(8),
    )


def local_tree(path: Path) -> dict[str, bytes]:
    """Every regular file under ``path`` by relative path (symlinks are not followed)."""
    found = {}
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            full = Path(dirpath) / name
            if full.is_file() and not full.is_symlink():
                found[full.relative_to(path).as_posix()] = full.read_bytes()
    return found


def all_entries(path: Path) -> set[str]:
    """Every name (file, directory, link) under ``path``, relative, without following links."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            found.add((Path(dirpath) / name).relative_to(path).as_posix())
    return found


def put_key(aws, key: str, data: bytes) -> None:
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=data)


def file_identity(path: Path) -> tuple[int, int, int]:
    st = path.stat(follow_symlinks=False)
    return st.st_dev, st.st_ino, st.st_mtime_ns


SEED = {
    "README.md": b"# demo\n",
    "src/app.py": b"print('hi')\n",
    "src/lib/util/helpers.py": b"def helper():\n    return 1\n",
    "src/lib/util/more.py": b"X = 2\n",
    "src/lib/util/even_more.py": b"Y = 3\n",
    "donn\u00e9es/\u00e9t\u00e9 r\u00e9sum\u00e9.txt": "caf\u00e9".encode(),
    "\u65e5\u672c\u8a9e/\u30d5\u30a1\u30a4\u30eb.md": "\u3053\u3093\u306b\u3061\u306f".encode(),
    "emoji/\U0001f600 smile.txt": b":)",
    "empty.txt": b"",
    "big/blob.bin": os.urandom(3 * 1024 * 1024),
}


def seed(aws, files: dict[str, bytes] = SEED, project: str = PROJECT) -> None:
    for relative, data in files.items():
        aws.put_file(project, relative, data)


# --- pull -------------------------------------------------------------------------------


async def test_cold_pull_brings_every_object_down(aws, tmp_path):
    seed(aws)
    workspace = make_workspace(tmp_path, aws)

    report = await workspace.pull()

    assert report.transferred == len(SEED)
    assert report.removed == 0
    assert report.skipped == {}
    assert report.failed == {}
    assert local_tree(tmp_path / PROJECT) == SEED
    assert (tmp_path / PROJECT / "empty.txt").stat().st_size == 0
    assert (tmp_path / PROJECT / "big/blob.bin").stat().st_size == 3 * 1024 * 1024
    assert not any(TEMP_MARKER in name for name in all_entries(tmp_path / PROJECT))


async def test_cold_pull_of_many_files_in_one_new_directory_succeeds(aws, tmp_path):
    # Concurrent downloads all need the same not-yet-existing parent directories.
    many = {f"deep/nested/dir/file{i:02}.txt": f"n{i}".encode() for i in range(48)}
    seed(aws, many)
    workspace = make_workspace(tmp_path, aws)

    report = await workspace.pull()

    assert report.failed == {}
    assert report.transferred == len(many)
    assert local_tree(tmp_path / PROJECT) == many


async def test_second_pull_with_nothing_changed_transfers_nothing_and_rewrites_nothing(
    aws, tmp_path
):
    seed(aws)
    workspace = make_workspace(tmp_path, aws)
    await workspace.pull()
    before = {rel: file_identity(tmp_path / PROJECT / rel) for rel in SEED}

    report = await workspace.pull()

    assert report.transferred == 0
    assert report.removed == 0
    assert {rel: file_identity(tmp_path / PROJECT / rel) for rel in SEED} == before
    assert local_tree(tmp_path / PROJECT) == SEED


async def test_pull_by_a_new_workspace_object_reuses_the_saved_manifest(aws, tmp_path):
    seed(aws, {"a.txt": b"one", "b/c.txt": b"two"})
    await make_workspace(tmp_path, aws).pull()

    report = await make_workspace(tmp_path, aws).pull()

    assert report.transferred == 0


async def test_changed_object_is_fetched_again(aws, tmp_path):
    seed(aws, {"same.txt": b"unchanged", "changes.txt": b"version 1"})
    workspace = make_workspace(tmp_path, aws)
    await workspace.pull()
    untouched = file_identity(tmp_path / PROJECT / "same.txt")

    aws.put_file(PROJECT, "changes.txt", b"version 2")  # same size, new ETag
    report = await workspace.pull()

    assert report.transferred == 1
    assert (tmp_path / PROJECT / "changes.txt").read_bytes() == b"version 2"
    assert file_identity(tmp_path / PROJECT / "same.txt") == untouched


async def test_deleted_key_removes_local_file_and_prunes_empty_directory(aws, tmp_path):
    seed(aws, {"keep.txt": b"k", "gone/deeper/only.txt": b"x", "half/stays.txt": b"s",
               "half/goes.txt": b"g"})
    workspace = make_workspace(tmp_path, aws)
    await workspace.pull()

    aws.s3.delete_object(Bucket=aws.bucket, Key=f"{aws.prefix}{PROJECT}/gone/deeper/only.txt")
    aws.s3.delete_object(Bucket=aws.bucket, Key=f"{aws.prefix}{PROJECT}/half/goes.txt")
    report = await workspace.pull()

    assert report.removed == 2
    assert report.transferred == 0
    project = tmp_path / PROJECT
    assert not (project / "gone").exists()  # both now-empty levels pruned
    assert not (project / "half/goes.txt").exists()
    assert (project / "half").is_dir()  # still holds stays.txt
    assert local_tree(project) == {"keep.txt": b"k", "half/stays.txt": b"s"}
    # Nothing is fetched again or removed again afterwards.
    again = await workspace.pull()
    assert (again.transferred, again.removed) == (0, 0)


# --- push -------------------------------------------------------------------------------


async def test_push_uploads_new_and_changed_files_only_and_deletes_removed_keys(aws, tmp_path):
    seed(aws, {"keep.txt": b"keep", "edit.txt": b"old", "sub/remove.txt": b"bye"})
    workspace = make_workspace(tmp_path, aws)
    await workspace.pull()
    project = tmp_path / PROJECT
    # A change in S3 behind the workspace's back: re-uploading the unchanged local
    # keep.txt would overwrite it, so it shows whether the push sent keep.txt.
    aws.put_file(PROJECT, "keep.txt", b"changed remotely")

    (project / "edit.txt").write_bytes(b"new contents")
    (project / "sub/remove.txt").unlink()
    (project / "added").mkdir()
    (project / "added/new.txt").write_bytes(b"fresh")
    report = await workspace.push()

    assert report.transferred == 2
    assert report.removed == 1
    assert report.failed == {}
    assert aws.files(PROJECT) == {
        "keep.txt": b"changed remotely",
        "edit.txt": b"new contents",
        "added/new.txt": b"fresh",
    }

    second = await workspace.push()

    assert second.transferred == 0
    assert second.removed == 0


async def test_push_of_a_fresh_workspace_uploads_everything_then_nothing(aws, tmp_path):
    workspace = make_workspace(tmp_path, aws)
    await workspace.pull()  # empty project: creates the directory
    project = tmp_path / PROJECT
    (project / "n/e/s/t").mkdir(parents=True)
    (project / "n/e/s/t/deep.txt").write_bytes(b"deep")
    (project / "\u00e9t\u00e9.txt").write_bytes("\u00e9".encode())
    (project / "empty").write_bytes(b"")

    report = await workspace.push()

    assert report.transferred == 3
    assert aws.files(PROJECT) == {
        "n/e/s/t/deep.txt": b"deep", "\u00e9t\u00e9.txt": "\u00e9".encode(), "empty": b"",
    }
    assert (await workspace.push()).transferred == 0
    # What was pushed is in sync for the next pull, too.
    assert (await workspace.pull()).transferred == 0


# --- unsafe keys ------------------------------------------------------------------------


async def test_unsafe_keys_are_skipped_and_nothing_is_written_outside_the_workspace(
    aws, tmp_path
):
    root = tmp_path / "ws"
    prefix = f"{aws.prefix}{PROJECT}/"
    unsafe = {
        f"{prefix}../escape.txt": "../escape.txt",
        f"{prefix}/double": "/double",
        f"{prefix}a//double": "a//double",
        f"{prefix}a/./b": "a/./b",
        f"{prefix}/abs": "/abs",
        f"{prefix}../../sibling.txt": "../../sibling.txt",  # would land in tmp_path
    }
    for key in unsafe:
        put_key(aws, key, b"attack")
    put_key(aws, f"{prefix}folder/", b"")  # a console "folder" marker
    aws.put_file(PROJECT, "fine.txt", b"ok")

    report = await make_workspace(root, aws).pull()

    assert set(report.skipped) == set(unsafe.values())
    assert all(reason for reason in report.skipped.values())
    assert "folder/" not in report.skipped  # quietly ignored, not reported
    assert report.failed == {}
    assert report.transferred == 1
    # Nothing beside the workspace root, nothing in it beside the project and manifests.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]
    assert sorted(p.name for p in root.iterdir()) == [".manifests", PROJECT]
    assert all_entries(root / PROJECT) == {"fine.txt"}


async def test_folder_marker_of_the_project_itself_is_quietly_ignored(aws, tmp_path):
    put_key(aws, f"{aws.prefix}{PROJECT}/", b"")  # "Create folder P" in the S3 console
    aws.put_file(PROJECT, "fine.txt", b"ok")

    report = await make_workspace(tmp_path, aws).pull()

    assert report.skipped == {}
    assert report.transferred == 1
    assert local_tree(tmp_path / PROJECT) == {"fine.txt": b"ok"}


async def test_file_and_folder_of_one_name_keep_the_file_and_the_project_syncs(
    aws, tmp_path
):
    aws.put_file(PROJECT, "foo", b"file")
    aws.put_file(PROJECT, "foo/bar", b"nested")  # S3 allows both; a file system cannot

    report = await make_workspace(tmp_path, aws).pull()

    assert "'foo' is a file" in report.skipped["foo/bar"]
    assert local_tree(tmp_path / PROJECT) == {"foo": b"file"}


# --- symlinks on pull -------------------------------------------------------------------


async def test_pull_replaces_a_symlinked_directory_instead_of_writing_through_it(
    aws, tmp_path
):
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_bytes(b"precious")
    (root / PROJECT).mkdir(parents=True)
    (root / PROJECT / "link").symlink_to(outside, target_is_directory=True)
    aws.put_file(PROJECT, "link/inner.txt", b"from s3")

    report = await make_workspace(root, aws).pull()

    assert report.failed == {}
    assert all_entries(outside) == {"precious.txt"}
    assert (outside / "precious.txt").read_bytes() == b"precious"
    link = root / PROJECT / "link"
    assert not link.is_symlink()
    assert link.is_dir()
    assert (link / "inner.txt").read_bytes() == b"from s3"


async def test_pull_of_several_files_under_a_symlinked_directory(aws, tmp_path):
    # Several concurrent downloads all meet the same symlink in their parent path.
    root = tmp_path / "ws"
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / PROJECT).mkdir(parents=True)
    (root / PROJECT / "link").symlink_to(outside, target_is_directory=True)
    wanted = {f"link/f{i:02}.txt": f"{i}".encode() for i in range(32)}
    seed(aws, wanted)

    report = await make_workspace(root, aws).pull()

    assert report.failed == {}
    assert all_entries(outside) == set()
    assert not (root / PROJECT / "link").is_symlink()
    assert local_tree(root / PROJECT) == wanted


async def test_pull_replaces_a_symlink_at_the_file_path_instead_of_writing_through_it(
    aws, tmp_path
):
    root = tmp_path / "ws"
    outside_file = tmp_path / "outside.txt"
    outside_file.write_bytes(b"do not touch")
    (root / PROJECT).mkdir(parents=True)
    (root / PROJECT / "file.txt").symlink_to(outside_file)
    aws.put_file(PROJECT, "file.txt", b"from s3")

    report = await make_workspace(root, aws).pull()

    assert report.failed == {}
    assert outside_file.read_bytes() == b"do not touch"
    target = root / PROJECT / "file.txt"
    assert not target.is_symlink()
    assert stat.S_ISREG(target.stat(follow_symlinks=False).st_mode)
    assert target.read_bytes() == b"from s3"


# --- what push sends --------------------------------------------------------------------


async def test_push_never_follows_symlinks_and_uploads_only_regular_files(aws, tmp_path):
    root = tmp_path / "ws"
    project = root / PROJECT
    project.mkdir(parents=True)
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "secret.txt").write_bytes(b"secret")
    (project / "regular.txt").write_bytes(b"regular")
    (project / "hostname").symlink_to("/etc/hostname")
    (project / "dirlink").symlink_to(outside_dir, target_is_directory=True)
    (project / "rootlink").symlink_to("/", target_is_directory=True)
    (project / "sub").mkdir()
    (project / "sub/dangling").symlink_to(tmp_path / "does-not-exist")
    os.mkfifo(project / "pipe")

    with trio.fail_after(60):  # a push that opened the FIFO would block here for ever
        report = await make_workspace(root, aws).push()

    assert report.failed == {}
    assert report.transferred == 1
    assert aws.files(PROJECT) == {"regular.txt": b"regular"}
    assert report.skipped == {
        "hostname": "symlink",
        "dirlink": "symlink",
        "rootlink": "symlink",
        "sub/dangling": "symlink",
        "pipe": "not a regular file",
    }


async def test_push_skips_hard_link_to_outside_file_but_uploads_inner_hard_links(
    aws, tmp_path
):
    root = tmp_path / "ws"
    project = root / PROJECT
    project.mkdir(parents=True)
    outside_file = tmp_path / "outside-secret.txt"
    outside_file.write_bytes(b"outside secret")
    os.link(outside_file, project / "stolen.txt")
    (project / "one.txt").write_bytes(b"shared inside")
    (project / "dir").mkdir()
    os.link(project / "one.txt", project / "dir/two.txt")

    report = await make_workspace(root, aws).push()

    assert report.failed == {}
    assert set(report.skipped) == {"stolen.txt"}
    assert "hard link" in report.skipped["stolen.txt"]
    assert report.transferred == 2
    assert aws.files(PROJECT) == {"one.txt": b"shared inside", "dir/two.txt": b"shared inside"}


# --- S3 unreachable ---------------------------------------------------------------------


def unreachable_client():
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        region_name=TEST_REGION,
        config=Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2,
                      read_timeout=2),
    )


async def test_push_while_s3_is_unreachable_fails_clearly_and_loses_nothing(aws, tmp_path):
    seed(aws, {"edit.txt": b"old", "gone.txt": b"remove me", "keep.txt": b"keep"})
    await make_workspace(tmp_path, aws).pull()
    project = tmp_path / PROJECT
    (project / "new.txt").write_bytes(b"written while offline")
    (project / "edit.txt").write_bytes(b"edited while offline")
    (project / "gone.txt").unlink()

    broken = make_workspace(tmp_path, aws, client=unreachable_client())
    with pytest.raises(SyncFailed) as failure:
        await broken.push()

    message = str(failure.value)
    assert "push" in message
    assert PROJECT in message
    assert "3 file(s) failed" in message
    assert "Could not connect" in message
    # S3 untouched, local changes kept.
    assert aws.files(PROJECT) == {"edit.txt": b"old", "gone.txt": b"remove me",
                                  "keep.txt": b"keep"}
    assert (project / "new.txt").read_bytes() == b"written while offline"

    report = await make_workspace(tmp_path, aws).push()

    assert report.transferred == 2
    assert report.removed == 1
    assert aws.files(PROJECT) == {
        "edit.txt": b"edited while offline",
        "new.txt": b"written while offline",
        "keep.txt": b"keep",
    }


async def test_pull_while_s3_is_unreachable_fails_clearly_and_keeps_local_files(
    aws, tmp_path
):
    seed(aws, {"a.txt": b"a"})
    await make_workspace(tmp_path, aws).pull()

    broken = make_workspace(tmp_path, aws, client=unreachable_client())
    with pytest.raises(SyncFailed, match="Could not connect"):
        await broken.pull()

    assert local_tree(tmp_path / PROJECT) == {"a.txt": b"a"}
    assert (await make_workspace(tmp_path, aws).pull()).transferred == 0
