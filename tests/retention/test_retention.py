"""Retention with an injected clock over a real store (SQLite, folders): exactly the expired
files go and the chunks a staying file shares stay; the dry run lists what the run removes;
reads are noted in memory and written in one transaction; orphans planted on disk and rows whose
bytes were deleted by hand are found and repaired; inactive users lose sessions, not files."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from tests.storage.ondisk import on_disk
from tests.storage.test_store import CS, THRESHOLD, put, read_all, result_of
from tgateway.config import StorageConfig
from tgateway.retention.core import Rules, RunReport
from tgateway.retention.runner import PAGE, Retention
from tgateway.storage.auth_sessions import SessionStore
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.storage.store import LocalContentStore

DAY = 86400.0
OWNER = "a" * 64
RULES = Rules(cleanup_age=90 * DAY, max_file_age=365 * DAY, inactive_user_age=180 * DAY)


class Counting(SyncDatabase):
    """A database that counts the transactions it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.txns: list[str] = []

    def run(self, fn: Any, *args: Any, durable: bool = False) -> Any:
        self.txns.append(fn.__name__)
        return super().run(fn, *args, durable=durable)


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(time.time())  # the store dates files with the wall clock; retention's is this one
    return c


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LocalContentStore:
    db = Counting()
    db.open()
    s = LocalContentStore(
        reactor=clock, db=db, layout=DiskLayout(tmp_path / "blobs", tmp_path / "chunks"),
        config=StorageConfig(blob_threshold=THRESHOLD, chunk_size=CS, chunk_cache_size=1 << 20),
        threaded=False)
    s.start()
    return s


def retention(store: LocalContentStore, clock: Clock, rules: Rules = RULES) -> Retention:
    return Retention(store=store, db=store.db, clock=clock, rules=rules)


def run(r: Retention, dry_run: bool = False) -> RunReport:
    report: RunReport = result_of(r.run(dry_run=dry_run))
    return report


def stored(store: LocalContentStore) -> set[str]:
    return {r[0] for r in store.db.run_sync(lambda c: c.execute("SELECT sha256 FROM files").fetchall())}



def names(f: StoredFile) -> set[str]:
    return {c.sha256 for c in f.chunks} if f.storage == "chunked" else {f.sha256}


def download(store: LocalContentStore, f: StoredFile) -> bytes:
    """What the HTTP routes do (download, webseed, Blossom GET): a range producer."""
    t = StringTransport()
    result_of(store.reader.producer(f, 0, f.size, t).start())
    return t.value()


def removed(report: RunReport) -> list[str]:
    return sorted(e.sha256 for e in report.files.items)


# --------------------------------------------------------------------------- the rules


def test_exactly_the_expired_files_go_and_shared_chunks_stay(store: LocalContentStore,
                                                            clock: Clock) -> None:
    common = os.urandom(3 * CS)
    idle = put(store, common + os.urandom(2 * CS), ctx=UploadContext(owner=OWNER)).file
    used = put(store, common + os.urandom(2 * CS), ctx=UploadContext(owner=OWNER)).file
    blob = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    assert idle.storage == used.storage == "chunked" and blob.storage == "blob"
    shared = names(idle) & names(used)
    assert len(shared) == 3

    clock.advance(60 * DAY)
    assert download(store, used)  # read at day 60: idle until day 150
    clock.advance(30 * DAY + 60)  # day 90 and a minute
    report = run(retention(store, clock))

    assert removed(report) == sorted([idle.sha256, blob.sha256])
    assert report.by_reason == {"cleanup_age": 2, "max_file_age": 0}
    assert stored(store) == {used.sha256}
    assert on_disk(store) == names(used)  # the shared chunks stayed, idle's own went
    assert hashlib.sha256(read_all(store, used)).hexdigest() == used.sha256  # read at day 90

    clock.advance(89 * DAY)  # day 179: still within cleanup_age of that read
    assert run(retention(store, clock)).files.count == 0
    clock.advance(2 * DAY)
    assert removed(run(retention(store, clock))) == [used.sha256]
    assert on_disk(store) == set()


def test_max_file_age_removes_a_file_however_much_it_is_used(store: LocalContentStore,
                                                             clock: Clock) -> None:
    f = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    r = retention(store, clock)
    for _ in range(12):  # read every month for a year
        clock.advance(30 * DAY)
        download(store, f)
        assert run(r).files.count == 0
    clock.advance(6 * DAY)
    download(store, f)
    report = run(r)
    assert removed(report) == [f.sha256]
    assert report.by_reason == {"cleanup_age": 0, "max_file_age": 1}


def test_an_upload_again_and_a_watched_rendition_count_as_use(store: LocalContentStore,
                                                              clock: Clock) -> None:
    again = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    video = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    rendition = put(store, os.urandom(CS), ctx=UploadContext(
        owner=f"transcode:{video.sha256}", source="transcode")).file
    clock.advance(80 * DAY)
    # another owner uploads the same bytes (the store dates it with the wall clock: move it)
    ev = put(store, read_all(store, again), ctx=UploadContext(owner="b" * 64))
    store.db.run_sync(lambda c: c.execute(
        "UPDATE file_owners SET created_at = ? WHERE sha256 = ? AND owner = ?",
        (clock.seconds(), again.sha256, "b" * 64)))
    assert not ev.new
    download(store, rendition)  # the HLS player reads the rendition, never the original
    clock.advance(20 * DAY)
    report = run(retention(store, clock))
    assert removed(report) == []
    assert stored(store) == {again.sha256, video.sha256, rendition.sha256}


# --------------------------------------------------------------------------- the dry run


def test_the_dry_run_lists_what_the_run_removes_and_changes_nothing(store: LocalContentStore,
                                                                    clock: Clock) -> None:
    common = os.urandom(2 * CS)
    files = [put(store, common + os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
             for _ in range(3)] + [put(store, os.urandom(100 + i), ctx=UploadContext(owner=OWNER)).file
                                    for i in range(4)]
    clock.advance(50 * DAY)
    for f in files[::2]:
        download(store, f)
    clock.advance(45 * DAY)
    before, disk = stored(store), on_disk(store)

    dry = run(retention(store, clock), dry_run=True)
    assert dry.dry_run and dry.files.count == 3
    assert (stored(store), on_disk(store)) == (before, disk)

    real = run(retention(store, clock))
    assert removed(real) == removed(dry) == sorted(f.sha256 for f in files[1::2])
    assert (real.files.bytes, real.by_reason) == (dry.files.bytes, dry.by_reason)


def test_a_file_read_after_the_decision_is_kept(store: LocalContentStore, clock: Clock) -> None:
    """The run decides a page, then removes it: a read in between keeps the file."""
    f = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    clock.advance(100 * DAY)
    r = retention(store, clock)
    real_remove = store.remove_files

    async def read_first(sha256s: list[str], **kw: Any) -> list[StoredFile]:
        download(store, f)
        return await real_remove([s for s in sha256s if not store.access.touched_since(s, 0)],
                                 **kw)

    store.remove_files = read_first  # type: ignore[method-assign]
    report = run(r)
    assert report.files.count == 0 and report.kept_in_use == 1
    assert stored(store) == {f.sha256}


# --------------------------------------------------------------------------- last access


def test_reads_are_noted_in_memory_and_written_in_one_transaction(store: LocalContentStore,
                                                                   clock: Clock) -> None:
    files = [put(store, os.urandom(3 * CS + i), ctx=UploadContext(owner=OWNER)).file
             for i in range(3)]
    db: Counting = store.db  # type: ignore[assignment]
    db.txns.clear()
    clock.advance(5)
    for _ in range(100):
        download(store, files[0])  # downloads, webseed, Blossom GET: a range producer
        result_of(store.reader.read_block(files[1], 1))  # the peer: a piece
    assert db.txns == []  # 200 reads, no database write
    assert store.access.pending == 2
    assert result_of(store.access.flush()) == 2
    assert db.txns == ["_record_access_txn"]
    access = dict(db.run_sync(lambda c: c.execute(
        "SELECT sha256, last_access FROM files").fetchall()))
    assert access == {files[0].sha256: clock.seconds(), files[1].sha256: clock.seconds(),
                      files[2].sha256: None}


def test_the_storage_service_writes_reads_every_minute_and_at_stop(tmp_path: Path) -> None:
    from tgateway.storage.access import FLUSH_INTERVAL
    from tgateway.storage.db import Database
    from tgateway.storage.service import StorageService

    clock = Clock()
    db = Database(clock, str(tmp_path / "m.db"))  # type: ignore[arg-type]
    s = LocalContentStore(reactor=clock, db=db,  # type: ignore[arg-type]
                          layout=DiskLayout(tmp_path / "b", tmp_path / "c"),
                          config=StorageConfig(), threaded=False)
    from tgateway.storage.policy import Policy

    service = StorageService(db, s, clock, Policy.build(db, clock, default_limit=0))
    flushed: list[bool] = []
    s.access.flush = lambda **kw: flushed.append(True) or _zero()  # type: ignore[method-assign]
    s.check = lambda **kw: _zero()  # type: ignore[method-assign]
    service.startService()
    try:
        clock.advance(FLUSH_INTERVAL - 1)
        assert flushed == []
        clock.advance(1)
        assert flushed == [True]
    finally:
        service.stopService()
    assert flushed == [True, True]


async def _zero() -> int:
    return 0


# --------------------------------------------------------------------------- the storage check


def test_planted_orphans_and_rows_without_bytes_are_found_and_repaired(store: LocalContentStore,
                                                                       clock: Clock) -> None:
    common = os.urandom(2 * CS)
    keep = put(store, common + os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
    broken = put(store, common + os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
    blob = put(store, os.urandom(CS), ctx=UploadContext(owner=OWNER)).file
    # bytes no row references: a chunk and a blob planted by hand
    orphan = os.urandom(CS)
    orphan_name = hashlib.sha256(orphan).hexdigest()
    store.layout.chunk_path(orphan_name).parent.mkdir(parents=True, exist_ok=True)
    store.layout.chunk_path(orphan_name).write_bytes(orphan)
    orphan_blob = os.urandom(99)
    blob_name = hashlib.sha256(orphan_blob).hexdigest()
    store.layout.blob_path(blob_name).parent.mkdir(parents=True, exist_ok=True)
    store.layout.blob_path(blob_name).write_bytes(orphan_blob)
    # bytes deleted by hand: one of broken's own chunks, and the blob
    own = sorted(names(broken) - names(keep))[0]
    store.layout.chunk_path(own).unlink()
    store.layout.blob_path(blob.sha256).unlink()
    deleted: list[str] = []
    store.subscribe_deleted(lambda f: deleted.append(f.sha256))

    dry = run(retention(store, clock), dry_run=True)
    assert dry.storage is not None
    assert dry.storage["orphan_chunks"]["names"] == [orphan_name]
    assert dry.storage["orphan_blobs"]["names"] == [blob_name]
    assert sorted(dry.repaired.items) == sorted([broken.sha256, blob.sha256])
    assert orphan_name in on_disk(store) and stored(store) == {keep.sha256, broken.sha256,
                                                                blob.sha256}

    real = run(retention(store, clock))
    assert real.files.count == 0  # nothing expired: only the check's findings
    assert real.storage is not None and real.storage["orphan_chunks"]["count"] == 1
    assert sorted(i for i in real.repaired.items) == sorted(dry.repaired.items)
    clock.advance(0)
    assert sorted(deleted) == sorted([broken.sha256, blob.sha256])
    assert stored(store) == {keep.sha256}
    assert on_disk(store) == names(keep)  # broken's other own chunks went with its row
    assert hashlib.sha256(read_all(store, keep)).hexdigest() == keep.sha256
    again = run(retention(store, clock))
    assert again.storage is not None and again.repaired.count == 0
    assert again.storage["orphan_chunks"]["count"] == again.storage["missing_files"] == 0


# --------------------------------------------------------------------------- users, upkeep


def test_inactive_users_lose_their_sessions_not_their_files(store: LocalContentStore,
                                                            clock: Clock) -> None:
    sessions = SessionStore(store.db, ttl=365 * DAY)
    gone, signs_in, uploads = "1" * 64, "2" * 64, "3" * 64
    for pubkey in (gone, signs_in, uploads):
        result_of(sessions.create(pubkey, "nip07", clock.seconds()))
    f = put(store, os.urandom(CS), ctx=UploadContext(owner=gone)).file
    clock.advance(100 * DAY)
    result_of(sessions.create(signs_in, "nip07", clock.seconds()))
    g = put(store, os.urandom(CS), ctx=UploadContext(owner=uploads)).file
    store.db.run_sync(lambda c: c.execute("UPDATE file_owners SET created_at = ? WHERE sha256 = ?",
                                          (clock.seconds(), g.sha256)))
    clock.advance(81 * DAY)
    rules = Rules(cleanup_age=1000 * DAY, max_file_age=2000 * DAY, inactive_user_age=180 * DAY)

    dry = run(retention(store, clock, rules), dry_run=True)
    assert dry.users.items == [gone]
    report = run(retention(store, clock, rules))
    assert report.users.items == [gone] and report.sessions_removed == 1
    left = store.db.run_sync(lambda c: c.execute(
        "SELECT DISTINCT pubkey FROM auth_sessions ORDER BY pubkey").fetchall())
    assert [r[0] for r in left] == [signs_in, uploads]
    assert stored(store) == {f.sha256, g.sha256}  # files follow the files' rules
    assert run(retention(store, clock, rules)).users.count == 0


def test_upkeep_optimizes_and_gives_free_pages_back(tmp_path: Path, clock: Clock) -> None:
    db = Counting()
    db.path = str(tmp_path / "m.db")
    db.open()
    s = LocalContentStore(reactor=clock, db=db, layout=DiskLayout(tmp_path / "b", tmp_path / "c"),
                          config=StorageConfig(blob_threshold=THRESHOLD, chunk_size=CS),
                          threaded=False)
    s.start()
    db.run_sync(lambda c: c.execute("CREATE TABLE filler (x BLOB)"))
    db.run_sync(lambda c: c.executemany("INSERT INTO filler VALUES (?)",
                                        [(os.urandom(3000),) for _ in range(300)]))
    db.run_sync(lambda c: c.execute("DELETE FROM filler"))
    dry = run(retention(s, clock), dry_run=True)
    assert dry.database["auto_vacuum"] == "incremental" and dry.database["pages_freed"] == 0
    assert dry.database["free_pages"] > 200
    report = run(retention(s, clock))
    assert report.database["pages_freed"] >= dry.database["free_pages"] - 1
    assert db.run_sync(lambda c: c.execute("PRAGMA freelist_count").fetchone()[0]) <= 1


def test_a_run_goes_page_by_page(store: LocalContentStore, clock: Clock) -> None:
    files = [put(store, os.urandom(64) + i.to_bytes(4, "big"), ctx=UploadContext(owner=OWNER)).file
             for i in range(PAGE + 7)]
    clock.advance(91 * DAY)
    db: Counting = store.db  # type: ignore[assignment]
    db.txns.clear()
    report = run(retention(store, clock))
    assert report.files.count == len(files) and stored(store) == set()
    assert db.txns.count("_candidates_txn") == 3  # two pages and the empty one
    assert db.txns.count("_remove_files_txn") == 2


def test_the_cache_sweep_drops_blocks_idle_since_the_last_sweep(store: LocalContentStore) -> None:
    a = put(store, os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
    b = put(store, os.urandom(3 * CS), ctx=UploadContext(owner=OWNER)).file
    read_all(store, a)
    read_all(store, b)
    cache = store.reader.cache
    assert cache.sweep() == 0  # both read since the start
    read_all(store, a)
    assert cache.sweep() == 3  # b's three blocks
    assert cache.stats()["blocks"] == 3 and cache.stats()["swept"] == 3
