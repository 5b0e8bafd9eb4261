"""plan_download / plan_upload: transfer only what changed, on the side where it changed."""

from __future__ import annotations

from runtime.policy.sync_plan import (
    DownloadPlan,
    LocalStat,
    ManifestEntry,
    UploadPlan,
    plan_download,
    plan_upload,
)

STAT = LocalStat(size=10, mtime_ns=1_000, mode=0o644)
ENTRY = ManifestEntry.synced("etag-1", STAT)


def test_synced_entry_copies_the_local_stat():
    assert ManifestEntry(etag="etag-1", size=10, mtime_ns=1_000, mode=0o644) == ENTRY
    assert ENTRY.matches(STAT)
    assert not ENTRY.matches(None)


# --- download -------------------------------------------------------------------------

def test_download_skips_unchanged_files():
    plan = plan_download({"a.txt": "etag-1"}, {"a.txt": STAT}, {"a.txt": ENTRY})
    assert plan == DownloadPlan(fetch=[], remove=[])


def test_download_fetches_a_changed_etag():
    plan = plan_download({"a.txt": "etag-2"}, {"a.txt": STAT}, {"a.txt": ENTRY})
    assert plan == DownloadPlan(fetch=["a.txt"], remove=[])


def test_download_fetches_a_new_remote_file():
    plan = plan_download({"new.txt": "etag-9"}, {}, {})
    assert plan == DownloadPlan(fetch=["new.txt"], remove=[])


def test_download_fetches_a_remote_file_present_locally_but_not_in_the_manifest():
    plan = plan_download({"a.txt": "etag-1"}, {"a.txt": STAT}, {})
    assert plan.fetch == ["a.txt"]


def test_download_refetches_when_the_local_file_changed():
    for changed in (
        LocalStat(size=11, mtime_ns=1_000, mode=0o644),
        LocalStat(size=10, mtime_ns=2_000, mode=0o644),
        LocalStat(size=10, mtime_ns=1_000, mode=0o755),
    ):
        plan = plan_download({"a.txt": "etag-1"}, {"a.txt": changed}, {"a.txt": ENTRY})
        assert plan.fetch == ["a.txt"], changed


def test_download_refetches_a_locally_deleted_file():
    plan = plan_download({"a.txt": "etag-1"}, {}, {"a.txt": ENTRY})
    assert plan == DownloadPlan(fetch=["a.txt"], remove=[])


def test_download_removes_what_is_gone_from_s3():
    plan = plan_download({}, {"gone.txt": STAT}, {"gone.txt": ENTRY})
    assert plan == DownloadPlan(fetch=[], remove=["gone.txt"])


def test_download_mixed_listing_is_sorted():
    remote = {"z.txt": "etag-1", "b.txt": "etag-new", "a.txt": "etag-1", "m.txt": "etag-1"}
    local = {"a.txt": STAT, "b.txt": STAT, "z.txt": STAT, "y-old.txt": STAT, "c-old.txt": STAT}
    manifest = {"a.txt": ENTRY, "b.txt": ENTRY, "z.txt": ENTRY, "y-old.txt": ENTRY}

    plan = plan_download(remote, local, manifest)

    assert plan.fetch == ["b.txt", "m.txt"]
    assert plan.remove == ["c-old.txt", "y-old.txt"]


# --- upload ---------------------------------------------------------------------------

def test_upload_skips_unchanged_files():
    assert plan_upload({"a.txt": STAT}, {"a.txt": ENTRY}) == UploadPlan(put=[], delete=[])


def test_upload_puts_a_new_local_file():
    assert plan_upload({"new.txt": STAT}, {}) == UploadPlan(put=["new.txt"], delete=[])


def test_upload_puts_a_file_whose_stat_changed():
    for changed in (
        LocalStat(size=11, mtime_ns=1_000, mode=0o644),
        LocalStat(size=10, mtime_ns=1_001, mode=0o644),
        LocalStat(size=10, mtime_ns=1_000, mode=0o755),  # chmod +x
    ):
        plan = plan_upload({"a.txt": changed}, {"a.txt": ENTRY})
        assert plan == UploadPlan(put=["a.txt"], delete=[]), changed


def test_upload_deletes_the_key_of_a_removed_file():
    assert plan_upload({}, {"gone.txt": ENTRY}) == UploadPlan(put=[], delete=["gone.txt"])


def test_upload_mixed_is_sorted():
    local = {
        "z.txt": STAT,
        "b.txt": LocalStat(size=99, mtime_ns=1_000),
        "a.txt": STAT,
        "new.txt": STAT,
    }
    manifest = {"a.txt": ENTRY, "b.txt": ENTRY, "z.txt": ENTRY, "y-gone": ENTRY, "c-gone": ENTRY}

    plan = plan_upload(local, manifest)

    assert plan.put == ["b.txt", "new.txt"]
    assert plan.delete == ["c-gone", "y-gone"]


def test_upload_ignores_the_etag():
    """Only the local side decides an upload; S3's ETag does not matter here."""
    other_etag = ManifestEntry.synced("etag-other", STAT)
    assert plan_upload({"a.txt": STAT}, {"a.txt": other_etag}).put == []
