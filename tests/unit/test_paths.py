"""safe_relative_path: which S3 keys may become files in a workspace."""

from __future__ import annotations

import pytest

from runtime.policy.paths import (
    MAX_PATH_BYTES,
    MAX_SEGMENT_BYTES,
    UnsafePath,
    folder_conflicts,
    safe_relative_path,
)


@pytest.mark.parametrize(
    ("relative", "segments"),
    [
        ("package.json", ("package.json",)),
        ("src/index.js", ("src", "index.js")),
        ("a/b/c/d/e.txt", ("a", "b", "c", "d", "e.txt")),
        (".env", (".env",)),
        (".github/workflows/ci.yml", (".github", "workflows", "ci.yml")),
        ("notes/...", ("notes", "...")),
        ("..hidden/x", ("..hidden", "x")),
        ("my docs/read me.md", ("my docs", "read me.md")),
        ("日本語/ファイル.txt", ("日本語", "ファイル.txt")),
        ("émoji/👍🏽.md", ("émoji", "👍🏽.md")),
        ("a\\b", ("a\\b",)),  # a backslash is an ordinary character on Linux
    ],
)
def test_accepts_normal_paths(relative, segments):
    assert safe_relative_path(relative) == segments


def test_segment_and_path_at_their_limits_are_accepted():
    assert safe_relative_path("a" * MAX_SEGMENT_BYTES) == ("a" * MAX_SEGMENT_BYTES,)
    # 127 two-byte characters plus one byte: exactly 255 bytes.
    assert safe_relative_path("é" * 127 + "x") == ("é" * 127 + "x",)
    long_path = "/".join(["d" * 199] * 20)  # 20 * 199 + 19 = 3999 bytes
    long_path += "e"
    assert len(long_path.encode()) == MAX_PATH_BYTES
    assert len(safe_relative_path(long_path)) == 20


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("", "empty path"),
        ("/abs", "absolute"),
        ("/etc/passwd", "absolute"),
        ("..", "'..' segment"),
        ("a/../b", "'..' segment"),
        ("../outside", "'..' segment"),
        ("a/..", "'..' segment"),
        (".", "'.' segment"),
        ("./a", "'.' segment"),
        ("a/./b", "'.' segment"),
        ("a//b", "empty path segment"),
        ("a/", "empty path segment"),
        ("a\x00b", "NUL"),
        ("a/b\x00", "NUL"),
        ("a" * (MAX_SEGMENT_BYTES + 1), "segment too long"),
        ("dir/" + "a" * (MAX_SEGMENT_BYTES + 1), "segment too long"),
        ("é" * 128, "segment too long"),  # 128 characters, 256 bytes
        ("/".join(["d" * 200] * 21), "path too long"),
    ],
)
def test_rejects_unsafe_paths(relative, reason):
    with pytest.raises(UnsafePath, match=reason):
        safe_relative_path(relative)


def test_unsafe_path_is_a_value_error():
    assert issubclass(UnsafePath, ValueError)


def test_a_file_and_a_folder_of_the_same_name_keep_the_file():
    conflicts = folder_conflicts(["foo", "foo/bar", "foo/baz/qux", "other/a", "other2"])
    assert set(conflicts) == {"foo/bar", "foo/baz/qux"}
    assert "'foo' is a file" in conflicts["foo/bar"]
    assert folder_conflicts(["a/b", "a/c", "ab"]) == {}
