"""The storage check: bytes without a row are removed, rows without bytes reported, and nothing
an upload or another file still uses is ever touched (also while uploads run)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred

from tests.storage.ondisk import on_disk
from tgateway.storage.consistency import CheckReport, StorageCheck
from tgateway.storage.crashpoints import CrashPoints
from tgateway.storage.db import SyncDatabase, transaction
from tgateway.storage.model import UploadContext
from tgateway.storage.store import LocalContentStore

from .test_store import CS, THRESHOLD, make_store, put, read_all, result_of

OWNER = "a" * 64


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return make_store(tmp_path)


def plant_chunk(store: LocalContentStore, data: bytes) -> str:
    name = hashlib.sha256(data).hexdigest()
    path = store.layout.chunk_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name


def plant_blob(store: LocalContentStore, data: bytes) -> str:
    name = hashlib.sha256(data).hexdigest()
    path = store.layout.blob_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return name



def referenced(store: LocalContentStore) -> set[str]:
    def txn(conn: Any) -> set[str]:
        names = {r[0] for r in conn.execute("SELECT chunk_sha256 FROM file_chunks")}
        names |= {r[0] for r in conn.execute("SELECT sha256 FROM files WHERE storage = 'blob'")}
        return names

    return set(store.db.run_sync(txn))


def held_until(gate: Deferred[None], d: Deferred[Any]) -> Deferred[Any]:
    """``d``'s result, delivered only once ``gate`` has fired (a thread that takes its time)."""

    async def wait() -> Any:
        await gate
        return await d

    return Deferred.fromCoroutine(wait())


def check(store: LocalContentStore, remove: bool = True) -> CheckReport:
    report: CheckReport = result_of(store.check(remove=remove))
    return report


def forget_row(store: LocalContentStore, sha256: str) -> None:
    """What a crash right after a deletion's commit leaves: the row gone, every byte still there."""
    store.db.run_sync(lambda conn: conn.execute("DELETE FROM files WHERE sha256 = ?", (sha256,)))


# --------------------------------------------------------------------------- orphans


def test_planted_orphans_are_removed_and_what_is_used_stays(store: LocalContentStore) -> None:
    common = os.urandom(3 * CS)
    live = put(store, common + os.urandom(2 * CS), ctx=UploadContext(owner=OWNER)).file
    small = put(store, os.urandom(500), ctx=UploadContext(owner=OWNER)).file
    # a deleted file that shared three chunks with the live one: its row went, its bytes did not
    gone = put(store, common + os.urandom(2 * CS), ctx=UploadContext(owner=OWNER)).file
    forget_row(store, gone.sha256)
    shared = {c.sha256 for c in live.chunks} & {c.sha256 for c in gone.chunks}
    gone_only = {c.sha256 for c in gone.chunks} - shared
    assert len(shared) == 3 and len(gone_only) == 2
    # an upload placed but never committed: a blob and loose chunks
    orphan_blob = plant_blob(store, b"blob bytes without a row")
    loose = {plant_chunk(store, os.urandom(CS)) for _ in range(3)}
    # a temporary folder and file no upload owns any more
    (store.layout.chunk_tmp / "0123abcd").mkdir()
    (store.layout.chunk_tmp / "0123abcd" / "0").write_bytes(b"t" * 100)
    (store.layout.blob_tmp / "blob").write_bytes(b"t" * 50)
    # a file the store never writes: reported, left alone
    stray = store.layout.chunk_dir / "ab" / "notes.txt"
    stray.write_bytes(b"operator's")

    report = check(store)

    assert report.complete and report.removed
    assert set(report.orphan_chunks.names) == gone_only | loose
    assert report.orphan_chunks.count == 5 and report.orphan_chunks.bytes == 5 * CS
    assert report.orphan_blobs.names == [orphan_blob]
    assert report.orphan_blobs.bytes == len(b"blob bytes without a row")
    assert report.temp_leftovers.count == 2 and report.temp_leftovers.bytes == 150
    assert report.stray.names == [str(stray)] and stray.exists()
    assert report.missing_files == 0
    assert report.chunks_seen == len({c.sha256 for c in live.chunks}) + 2 + 3
    assert report.blobs_seen == 2
    assert report.orphan_bytes == 5 * CS + len(b"blob bytes without a row") + 150
    assert on_disk(store) - {"notes.txt"} == referenced(store)
    assert list(store.layout.chunk_tmp.iterdir()) == [] and list(store.layout.blob_tmp.iterdir()) == []
    assert store.layout.blob_path(small.sha256).exists()
    assert hashlib.sha256(read_all(store, live)).hexdigest() == live.sha256

    again = check(store)
    assert again.orphan_chunks.count == again.orphan_blobs.count == again.temp_leftovers.count == 0
    assert again.stray.count == 1 and not again.clean


def test_a_dry_run_reports_and_removes_nothing(store: LocalContentStore) -> None:
    put(store, os.urandom(THRESHOLD + 1), ctx=UploadContext(owner=OWNER))
    planted = {plant_chunk(store, os.urandom(100)), plant_blob(store, os.urandom(100))}
    before = on_disk(store)
    dry = check(store, remove=False)
    assert not dry.removed
    assert set(dry.orphan_chunks.names + dry.orphan_blobs.names) == planted
    assert on_disk(store) == before
    real = check(store)
    assert real.to_json()["orphan_chunks"] == dry.to_json()["orphan_chunks"]
    assert real.to_json()["orphan_blobs"] == dry.to_json()["orphan_blobs"]
    assert on_disk(store) == before - planted


def test_names_are_capped_counts_are_not(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    for _ in range(30):
        plant_chunk(store, os.urandom(10))
    report = result_of(store.check(keep=5))
    assert report.orphan_chunks.count == 30 and len(report.orphan_chunks.names) == 5
    assert report.orphan_chunks.bytes == 300


def test_a_live_upload_keeps_its_temporary_folder(store: LocalContentStore) -> None:
    data = os.urandom(THRESHOLD * 2)
    ingest = store.begin_upload(size_hint=len(data), max_size=1 << 40)
    ingest.write(data[:THRESHOLD])
    report = check(store)
    assert report.temp_leftovers.count == 0
    assert ingest.tmp.exists()
    ingest.write(data[THRESHOLD:])
    f = result_of(store.commit(ingest, UploadContext(name="late.bin"))).file
    assert read_all(store, f) == data
    assert not ingest.tmp.exists()
    # once removed, the folder is no longer live: a leftover with its name would go
    ingest.tmp.mkdir()
    assert check(store).temp_leftovers.names == [str(ingest.tmp)]


# --------------------------------------------------------------------------- missing bytes


def test_rows_whose_bytes_were_deleted_by_hand_are_reported_not_touched(store: LocalContentStore) -> None:
    blob = put(store, os.urandom(300), ctx=UploadContext(owner=OWNER)).file
    chunked = put(store, os.urandom(4 * CS), ctx=UploadContext(owner=OWNER)).file
    ok = put(store, os.urandom(200), ctx=UploadContext(owner=OWNER)).file
    store.layout.blob_path(blob.sha256).unlink()
    lost = chunked.chunks[2].sha256
    store.layout.chunk_path(lost).unlink()

    report = check(store)

    assert report.missing_files == 2
    got = {m.sha256: (m.storage, m.missing) for m in report.missing}
    assert got == {blob.sha256: ("blob", (blob.sha256,)), chunked.sha256: ("chunked", (lost,))}
    assert report.to_json()["missing"][0]["sha256"] in got
    assert report.orphan_chunks.count == report.orphan_blobs.count == 0
    # reported, not repaired here: the rows stay (retention repairs them)
    assert result_of(store.get(blob.sha256)) is not None
    assert result_of(store.get(chunked.sha256)) is not None
    assert store.layout.blob_path(ok.sha256).exists()


# --------------------------------------------------------------------------- races


def test_a_chunk_an_upload_is_placing_is_never_removed(store: LocalContentStore,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The check runs while an upload has renamed its chunks into place but not yet committed
    its row: the check sees them without a row, waits for the store's lock, looks again and
    keeps them."""
    data = os.urandom(5 * CS)
    release: Deferred[None] = Deferred()
    real_in_thread = store._in_thread

    def in_thread(fn: Any, *args: Any) -> Deferred[Any]:
        d = real_in_thread(fn, *args)
        if fn == store._place:  # placed now; the row is committed once ``release`` fires
            return held_until(release, d)
        return d

    monkeypatch.setattr(store, "_in_thread", in_thread)
    ingest = store.begin_upload(size_hint=len(data), max_size=1 << 40)
    ingest.write(data)
    committed = ensureDeferred(store.commit(ingest, UploadContext(name="racing.bin")))
    assert not committed.called
    placed = on_disk(store)
    assert len(placed) == 5 and referenced(store) == set()  # bytes placed, no row yet

    checked = ensureDeferred(store.check())
    assert not checked.called  # waiting for the lock, with the five chunks as candidates
    release.callback(None)
    report = result_of(checked)
    f = result_of(committed).file

    assert report.orphan_chunks.count == 0 and report.complete
    assert on_disk(store) == placed == referenced(store)
    assert read_all(store, f) == data


def test_an_orphan_reused_by_an_upload_during_the_check_stays(tmp_path: Path) -> None:
    """A chunk left by a crash is a candidate once its shard is listed and its rows read; an
    upload of the same bytes then re-uses it (it finds it at its address) and commits before
    the check acts: the check looks again under the lock and keeps it."""
    store = make_store(tmp_path)
    data = os.urandom(5 * CS)
    first = hashlib.sha256(data[:CS]).hexdigest()
    plant_chunk(store, data[:CS])
    gate: Deferred[None] = Deferred()
    real_run = store.db.run

    def run(fn: Any, *args: Any, **kw: Any) -> Deferred[Any]:
        d = real_run(fn, *args, **kw)
        if fn.__name__ == "_shard_rows_txn" and args == (first[:2],):
            return held_until(gate, d)  # read before the upload, delivered after it
        return d

    store.db.run = run  # type: ignore[method-assign]
    checked = ensureDeferred(store.check())
    assert not checked.called  # the chunk is a candidate: on disk, no row
    f = put(store, data, ctx=UploadContext(owner=OWNER)).file  # re-uses the chunk, commits
    assert first in {c.sha256 for c in f.chunks}
    gate.callback(None)
    report = result_of(checked)
    assert report.orphan_chunks.count == 0
    assert store.layout.chunk_path(first).exists()
    assert read_all(store, f) == data


def test_stop_ends_a_run_early(store: LocalContentStore) -> None:
    gate: Deferred[None] = Deferred()
    real_in_thread = store._in_thread

    def in_thread(fn: Any, *args: Any) -> Deferred[Any]:
        d = real_in_thread(fn, *args)
        return held_until(gate, d) if args == ("10",) else d

    store._in_thread = in_thread  # type: ignore[method-assign]
    plant_chunk(store, b"in a late shard")
    checked = ensureDeferred(store.check())
    store.stop_check()
    gate.callback(None)
    report = result_of(checked)
    assert not report.complete and report.orphan_chunks.count == 0


# --------------------------------------------------------------------------- deletion order


def test_a_crash_between_a_deletions_row_and_its_bytes_leaves_only_unreferenced_bytes(
    store: LocalContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = os.urandom(2 * CS)
    keep = put(store, common + os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
    doomed = put(store, common + os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file

    def crash(paths: list[Path]) -> None:
        paths[0].unlink()
        raise SystemExit("killed half-way through the bytes")

    monkeypatch.setattr(store, "_remove_bytes", crash)
    with pytest.raises(SystemExit):
        result_of(store.remove_owner(doomed.sha256, OWNER))
    assert result_of(store.db.run(lambda c: c.execute(
        "SELECT count(*) FROM files WHERE sha256 = ?", (doomed.sha256,)).fetchone()[0])) == 0
    left = on_disk(store) - referenced(store)
    assert len(left) == 2  # of the three chunks only the deleted file used, one went
    assert referenced(store) <= on_disk(store)  # never a row without bytes

    report = check(store)
    assert set(report.orphan_chunks.names) == left
    assert on_disk(store) == referenced(store)
    assert read_all(store, keep)


def test_uploads_and_deletions_commit_durably(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """synchronous=FULL for the transaction that makes an upload visible (acknowledged means on
    disk) and for the one that removes a file's row (a power cut cannot bring the row back once
    its bytes are gone); NORMAL again afterwards."""
    import tgateway.storage.store as store_mod

    db = SyncDatabase(str(tmp_path / "m.db"))
    db.open()
    modes: list[tuple[str, int]] = []

    def spy(fn: Any) -> Any:
        def wrapped(conn: Any, *args: Any) -> Any:
            modes.append((fn.__name__, conn.execute("PRAGMA synchronous").fetchone()[0]))
            return fn(conn, *args)

        return wrapped

    monkeypatch.setattr(store_mod, "_remove_owner_txn", spy(store_mod._remove_owner_txn))
    monkeypatch.setattr(store_mod, "_insert_txn", spy(store_mod._insert_txn))
    s = make_store(tmp_path, db=db)
    f = put(s, b"some bytes", ctx=UploadContext(owner=OWNER)).file
    put(s, b"some bytes", ctx=UploadContext(owner="b" * 64))
    result_of(s.remove_owner(f.sha256, OWNER))
    result_of(s.remove_owner(f.sha256, "b" * 64))
    assert modes == [("_insert_txn", 2), ("_insert_txn", 2),
                     ("_remove_owner_txn", 2), ("_remove_owner_txn", 2)]  # FULL
    assert db.run_sync(lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1  # NORMAL
    assert transaction(db._conn, lambda c: c.execute("PRAGMA synchronous").fetchone()[0]) == 1


def test_crash_points_are_off_unless_named() -> None:
    assert CrashPoints.from_environ({}).armed == frozenset()
    assert CrashPoints.from_environ({"TGATEWAY_TEST_CRASH_AT": "place:all, delete:row"}).armed == {
        "place:all", "delete:row"}
    with pytest.raises(ValueError, match="unknown"):
        CrashPoints.from_environ({"TGATEWAY_TEST_CRASH_AT": "nowhere"})
    CrashPoints().reach("place:all")  # not armed: nothing happens


def test_the_check_is_a_reusable_piece(store: LocalContentStore) -> None:
    """Retention builds its own run over the same folders and lock (dry run, then for real)."""
    planted = plant_chunk(store, b"x" * 10)
    run = StorageCheck(db=store.db, layout=store.layout, lock=store._lock,
                       in_thread=store._in_thread, live_temps=frozenset)
    report = result_of(run.run(remove=False))
    assert report.orphan_chunks.names == [planted] and store.layout.chunk_path(planted).exists()
