"""Content store: chunking at exact boundaries, metainfo, dedup, ownership, durability."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from tgateway import bencode
from tgateway.config import StorageConfig
from tgateway.errors import InsufficientStorage, PayloadTooLarge
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.ingest import HEAD_BYTES
from tgateway.storage.model import StoredEvent, UploadContext
from tgateway.storage.store import EmptyUpload, LocalContentStore

CS = 16384
THRESHOLD = 4 * CS


def result_of(coro: Any) -> Any:
    out: list[Any] = []
    ensureDeferred(coro).addBoth(out.append)
    assert out, "coroutine did not finish synchronously"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def make_store(tmp_path: Path, direct_io: bool = True, db: SyncDatabase | None = None) -> LocalContentStore:
    if db is None:
        db = SyncDatabase()
        db.open()
    s = LocalContentStore(
        reactor=Clock(),
        db=db,
        layout=DiskLayout(tmp_path / "blobs", tmp_path / "chunks"),
        config=StorageConfig(blob_threshold=THRESHOLD, chunk_size=CS, chunk_cache_size=1 << 20),
        threaded=False,
        direct_io=direct_io,
    )
    s.start()
    return s


@pytest.fixture(params=[(True, True), (False, True), (True, False)],
                ids=["direct-io", "page-cache", "direct-io-hashlib-only"])
def store(tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> LocalContentStore:
    """Both write paths, and the hashlib-only SHA-256 chain (no ``_sha256x2`` extension)."""
    direct_io, pair = request.param
    if not pair:
        import tgateway.storage.stages as stages_mod

        monkeypatch.setattr(stages_mod, "pair_available", lambda: False)
    return make_store(tmp_path, direct_io)


def put(store: LocalContentStore, data: bytes, *, hint: int | None = -1, step: int = 5000,
        ctx: UploadContext | None = None) -> StoredEvent:
    ingest = store.begin_upload(size_hint=len(data) if hint == -1 else hint, max_size=1 << 40)
    for i in range(0, len(data), step):
        ingest.write(data[i : i + step])
    return result_of(store.commit(ingest, ctx or UploadContext(name="f.bin")))


def reference_pieces(data: bytes, pl: int) -> bytes:
    return b"".join(hashlib.sha1(data[i : i + pl]).digest() for i in range(0, len(data), pl))


def read_all(store: LocalContentStore, f: Any) -> bytes:
    return b"".join(result_of(_block(store, f, i)) for i in range(f.piece_count))


async def _block(store: LocalContentStore, f: Any, i: int) -> bytes:
    return await store.reader.read_block(f, i)


def tmp_entries(store: LocalContentStore) -> list[str]:
    return sorted(os.listdir(store.layout.blob_tmp)) + sorted(os.listdir(store.layout.chunk_tmp))


@pytest.mark.parametrize(
    "size",
    [1, CS - 1, CS, CS + 1, 3 * CS + 7, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 10 * CS, 10 * CS + 1],
)
def test_boundaries(store: LocalContentStore, size: int) -> None:
    data = os.urandom(size)
    ev = put(store, data)
    f = ev.file
    assert ev.new
    assert f.sha256 == hashlib.sha256(data).hexdigest()
    assert f.size == size
    assert f.storage == ("chunked" if size >= THRESHOLD else "blob")
    assert f.piece_length == CS
    assert f.piece_count == -(-size // CS)
    info = bencode.decode(f.info)
    assert info[b"pieces"] == reference_pieces(data, CS)
    assert info[b"length"] == size and info[b"piece length"] == CS
    assert f.info_hash == hashlib.sha1(f.info).hexdigest()
    if f.storage == "chunked":
        assert len(f.chunks) == f.piece_count
        for c in f.chunks:
            part = data[c.offset : c.offset + c.size]
            assert c.sha256 == hashlib.sha256(part).hexdigest()
            assert store.layout.chunk_path(c.sha256).read_bytes() == part
    else:
        assert store.layout.blob_path(f.sha256).read_bytes() == data
    assert read_all(store, f) == data
    assert tmp_entries(store) == []
    assert store.has_info_hash(bytes.fromhex(f.info_hash))
    assert result_of(store.get(f.sha256)) == f
    assert result_of(store.get_by_info_hash(f.info_hash)) == f


@pytest.mark.parametrize("size", [1, CS - 1, CS, CS + 1, 3 * CS + 7, THRESHOLD + 1, 10 * CS + 1])
def test_bytes_received_into_reserved_space(store: LocalContentStore, size: int) -> None:
    """How a body thread feeds: receive into ``reserve()`` and feed that prefix (not copied),
    mixed with copied pieces, views of the reserve that do not start at it, and reserves left
    unused; the file, its chunks and pieces come out the same."""
    import random

    rng = random.Random(size)
    data = os.urandom(size)
    ingest = store.begin_upload(size_hint=size, max_size=1 << 40)
    pos = in_place = 0
    while pos < size:
        room = ingest.reserve()
        n = min(len(room), size - pos, rng.choice([1, 7, 4096, 70_000, CS]))
        way = rng.random()
        if way < 0.6:  # received in place
            room[:n] = data[pos:pos + n]
            ingest.feed(room[:n])
            in_place += n
        elif way < 0.8:  # the reserve is not used: bytes from elsewhere
            ingest.feed(data[pos:pos + n])
        else:  # a view into the reserve that does not start at it: copied, not mistaken
            k = min(3, len(room) - n)  # 0 when the piece fills the reserve: in place after all
            room[k:k + n] = data[pos:pos + n]
            ingest.feed(room[k:k + n])
            in_place += n if k == 0 else 0
        room.release()
        pos += n
    assert ingest.copied == size - in_place
    f = result_of(store.commit(ingest, UploadContext(name="f.bin"))).file
    assert f.sha256 == hashlib.sha256(data).hexdigest() and f.size == size
    assert bencode.decode(f.info)[b"pieces"] == reference_pieces(data, CS)
    assert read_all(store, f) == data
    assert tmp_entries(store) == []


@pytest.mark.parametrize("size", [8, HEAD_BYTES - 1, HEAD_BYTES, CS + 1, THRESHOLD + 1])
@pytest.mark.parametrize("fed", [False, True], ids=["write", "feed"])
def test_the_type_is_sniffed_from_the_head_the_ingest_keeps(store: LocalContentStore, size: int,
                                                           fed: bool) -> None:
    """The ingest keeps the first HEAD_BYTES bytes of every upload, whichever way they came
    (the reactor's ``write``, a body thread's ``feed``, in any piece sizes): no caller captures
    them, and a file with neither a declared type nor a telling name is sniffed from them."""
    data = (b"\x89PNG\r\n\x1a\n" + os.urandom(size))[:size]
    ingest = store.begin_upload(size_hint=size, max_size=1 << 40)
    for i in range(0, size, 3):  # a head that arrives in tiny pieces
        (ingest.feed if fed else ingest.write)(data[i:i + 3])
    result = result_of(ingest.finish())
    assert result.head == data[:HEAD_BYTES]
    result_of(ingest.abort())

    ingest = store.begin_upload(size_hint=size, max_size=1 << 40)
    (ingest.feed if fed else ingest.write)(data)
    f = result_of(store.commit(ingest, UploadContext(name="no-extension"))).file
    assert f.mime == "image/png"


def test_empty_upload_is_refused_and_leaves_nothing(store: LocalContentStore) -> None:
    with pytest.raises(EmptyUpload):
        put(store, b"")
    assert tmp_entries(store) == []
    assert result_of(store.stats())["files"] == 0


@pytest.mark.parametrize("hint", [None, 10, THRESHOLD * 4])
def test_wrong_or_missing_size_hint_is_recut(store: LocalContentStore, hint: int | None) -> None:
    for size in (CS + 5, THRESHOLD + 5):
        data = os.urandom(size)
        f = put(store, data, hint=hint).file
        assert f.storage == ("chunked" if size >= THRESHOLD else "blob")
        assert read_all(store, f) == data
    assert tmp_entries(store) == []


def test_identical_content_is_stored_once(store: LocalContentStore) -> None:
    data = os.urandom(THRESHOLD + 100)
    a = put(store, data, ctx=UploadContext(owner="a" * 64, name="one.bin"))
    b = put(store, data, ctx=UploadContext(owner="b" * 64, name="two.bin"))
    assert a.new and not b.new
    assert a.file == b.file
    assert a.file.name == "one.bin"  # the info dict (and info-hash) never changes
    owners = result_of(store.owners(a.file.sha256))
    assert {o.owner for o in owners} == {"a" * 64, "b" * 64}
    assert {o.name for o in owners} == {"one.bin", "two.bin"}
    chunk_files = list(store.layout.chunk_dir.rglob("*"))
    assert len([p for p in chunk_files if p.is_file() and ".tmp" not in p.parts]) == len(a.file.chunks)


def test_chunks_shared_between_files_survive_deletion_of_one(store: LocalContentStore) -> None:
    common = os.urandom(4 * CS)
    f1 = put(store, common + b"x" * CS, ctx=UploadContext(owner="a" * 64)).file
    f2 = put(store, common + b"y" * CS, ctx=UploadContext(owner="a" * 64)).file
    assert f1.sha256 != f2.sha256
    shared = {c.sha256 for c in f1.chunks} & {c.sha256 for c in f2.chunks}
    assert len(shared) == 4
    gone = result_of(store.remove_owner(f1.sha256, "a" * 64))
    assert gone is not None and gone.sha256 == f1.sha256
    for c in shared:
        assert store.layout.chunk_path(c).exists()
    only_f1 = {c.sha256 for c in f1.chunks} - shared
    for c in only_f1:
        assert not store.layout.chunk_path(c).exists()
    assert read_all(store, f2) == common + b"y" * CS
    assert not store.has_info_hash(bytes.fromhex(f1.info_hash))


def test_bytes_go_only_with_the_last_owner(store: LocalContentStore) -> None:
    data = os.urandom(1000)
    f = put(store, data, ctx=UploadContext(owner="a" * 64)).file
    put(store, data, ctx=UploadContext(owner="b" * 64))
    assert result_of(store.remove_owner(f.sha256, "a" * 64)) is None
    assert store.layout.blob_path(f.sha256).exists()
    with pytest.raises(KeyError):
        result_of(store.remove_owner(f.sha256, "a" * 64))
    assert result_of(store.remove_owner(f.sha256, "b" * 64)) is not None
    assert not store.layout.blob_path(f.sha256).exists()
    assert result_of(store.get(f.sha256)) is None


def test_usage_and_owner_files(store: LocalContentStore) -> None:
    owner = "c" * 64
    sizes = [100, 200, THRESHOLD + 1]
    for n in sizes:
        put(store, os.urandom(n), ctx=UploadContext(owner=owner))
    assert result_of(store.usage(owner)) == (3, sum(sizes))
    page, total = result_of(store.owner_files(owner, limit=2, offset=0))
    assert total == 3 and len(page) == 2
    page2, _ = result_of(store.owner_files(owner, limit=2, offset=2))
    assert len(page2) == 1


def test_events_are_raised_after_commit(store: LocalContentStore) -> None:
    seen: list[Any] = []
    deleted: list[Any] = []
    store.subscribe_stored(seen.append)
    store.subscribe_deleted(deleted.append)
    ev = put(store, b"hello world", ctx=UploadContext(owner="d" * 64))
    assert seen == []  # delivered on the next reactor turn, not re-entrantly
    store._reactor.advance(0)
    assert seen == [ev]
    result_of(store.remove_owner(ev.file.sha256, "d" * 64))
    store._reactor.advance(0)
    assert [f.sha256 for f in deleted] == [ev.file.sha256]


def test_a_failing_subscriber_does_not_break_the_others(store: LocalContentStore) -> None:
    seen: list[Any] = []

    def boom(ev: Any) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe_stored(boom)
    store.subscribe_stored(seen.append)
    put(store, b"abc")
    store._reactor.advance(0)
    assert len(seen) == 1


def test_abort_removes_temporary_files(store: LocalContentStore) -> None:
    ingest = store.begin_upload(size_hint=THRESHOLD * 2, max_size=1 << 40)
    ingest.write(os.urandom(THRESHOLD + 10))
    assert tmp_entries(store) != []
    result_of(_await(ingest.abort()))
    assert tmp_entries(store) == []
    assert result_of(store.stats())["files"] == 0


async def _await(d: Any) -> Any:
    return await d


def test_size_limit_while_streaming(store: LocalContentStore) -> None:
    ingest = store.begin_upload(size_hint=None, max_size=1000)
    ingest.write(b"x" * 600)
    with pytest.raises(PayloadTooLarge):
        ingest.write(b"x" * 600)
    result_of(_await(ingest.abort()))
    assert tmp_entries(store) == []


def test_disk_full_is_507_and_leaves_nothing(store: LocalContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    import tgateway.storage.directio as directio_mod

    real_write, real_pwrite = directio_mod.write_all, directio_mod.pwrite_all
    calls = {"n": 0}

    def full() -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    def write(fd: int, view: memoryview) -> None:
        full()
        real_write(fd, view)

    def pwrite(fd: int, view: memoryview, offset: int) -> None:
        full()
        real_pwrite(fd, view, offset)

    monkeypatch.setattr(directio_mod, "write_all", write)
    monkeypatch.setattr(directio_mod, "pwrite_all", pwrite)
    ingest = store.begin_upload(size_hint=THRESHOLD * 3, max_size=1 << 40)
    with pytest.raises(InsufficientStorage):
        for _ in range(40):
            ingest.write(os.urandom(1 << 20) if False else b"z" * (1 << 20))
        result_of(store.commit(ingest, UploadContext()))
    result_of(_await(ingest.abort()))
    assert tmp_entries(store) == []
    assert result_of(store.stats())["files"] == 0


def test_leftovers_of_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    layout = DiskLayout(tmp_path / "b", tmp_path / "c")
    layout.prepare()
    (layout.chunk_tmp / "deadbeef").mkdir()
    (layout.chunk_tmp / "deadbeef" / "0").write_bytes(b"partial")
    (layout.blob_tmp / "stray").write_bytes(b"partial")
    assert layout.prepare() == 2
    assert list(layout.chunk_tmp.iterdir()) == [] and list(layout.blob_tmp.iterdir()) == []


def test_a_row_is_only_committed_after_the_bytes_are_placed(store: LocalContentStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*a: Any) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr("tgateway.storage.placing.place", crash)
    with pytest.raises(OSError):
        put(store, os.urandom(THRESHOLD + 3))
    assert result_of(store.stats())["files"] == 0
    assert tmp_entries(store) == []


def test_placed_files_have_every_folder_above_them_fsynced(store: LocalContentStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob in new shard folders: its folder, both shards and the blob folder are fsynced; a
    chunked file: each chunk's shard and the chunk folder, each once (several at a time)."""
    import tgateway.storage.disk as disk_mod

    synced: list[Path] = []
    real = disk_mod.fsync_dir

    def record(path: Path) -> None:
        synced.append(Path(path))
        real(path)

    monkeypatch.setattr(disk_mod, "fsync_dir", record)
    blob = put(store, os.urandom(100)).file
    final = store.layout.blob_path(blob.sha256)
    assert sorted(synced) == sorted([final.parent, final.parent.parent, store.layout.blob_dir])
    synced.clear()
    big = put(store, os.urandom(10 * CS + 1)).file
    shards = {store.layout.chunk_path(c.sha256).parent for c in big.chunks}
    assert sorted(synced) == sorted(shards | {store.layout.chunk_dir})


def test_place_creates_a_missing_shard_and_keeps_what_is_there(tmp_path: Path) -> None:
    from tgateway.storage.disk import place

    temp = tmp_path / "t"
    temp.write_bytes(b"a")
    final = tmp_path / "x" / "y" / "f"
    assert place(temp, final) and final.read_bytes() == b"a" and not temp.exists()
    temp.write_bytes(b"a")
    assert not place(temp, final) and not temp.exists()  # already there: the temp goes
    with pytest.raises(FileNotFoundError):
        place(tmp_path / "missing", tmp_path / "z" / "f")


def test_restart_keeps_files_and_index(tmp_path: Path) -> None:
    dbfile = str(tmp_path / "m.db")
    cfg = StorageConfig(blob_threshold=THRESHOLD, chunk_size=CS)

    def open_store() -> LocalContentStore:
        db = SyncDatabase(dbfile)
        db.open()
        s = LocalContentStore(reactor=Clock(), db=db, layout=DiskLayout(tmp_path / "b", tmp_path / "c"),
                              config=cfg, threaded=False)
        s.start()
        return s

    s1 = open_store()
    data = os.urandom(THRESHOLD * 2)
    f = put(s1, data).file
    s1.db.close()
    s2 = open_store()
    assert s2.has_info_hash(bytes.fromhex(f.info_hash))
    assert read_all(s2, result_of(s2.get(f.sha256))) == data



def test_direct_io_falls_back_to_the_page_cache_where_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses O_DIRECT (tmpfs: EINVAL at open) gets buffered writes; one that
    refuses an O_DIRECT write (EINVAL at write) gets that write through the page cache."""
    import tgateway.storage.directio as directio_mod

    store = make_store(tmp_path)
    real_open = os.open

    def no_direct_open(path: Any, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, mode)

    data = os.urandom(3 * CS + 123)
    with monkeypatch.context() as m:
        m.setattr(directio_mod.os, "open", no_direct_open)
        ingest = store.begin_upload(size_hint=len(data), max_size=1 << 40)
        assert ingest.direct_io is False
        ingest.write(data)
        f = result_of(store.commit(ingest, UploadContext(name="a.bin"))).file
    assert read_all(store, f) == data

    real_pwrite = directio_mod.pwrite_all
    refused = {"n": 0}

    def refuse_direct(fd: int, view: memoryview, offset: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused["n"] += 1
            raise OSError(errno.EINVAL, "Invalid argument")
        real_pwrite(fd, view, offset)

    data2 = os.urandom(5 * CS + 1)
    with monkeypatch.context() as m:
        m.setattr(directio_mod, "pwrite_all", refuse_direct)
        ingest = store.begin_upload(size_hint=len(data2), max_size=1 << 40)
        direct = ingest.direct_io
        ingest.write(data2)
        f2 = result_of(store.commit(ingest, UploadContext(name="b.bin"))).file
    assert read_all(store, f2) == data2
    assert f2.size == len(data2)
    assert refused["n"] == (6 if direct else 0)


# --------------------------------------------------------------------------- quota


def test_quota_counts_bytes_already_stored_by_others(store: LocalContentStore) -> None:
    """Deduplication saves disk, not quota: files another owner stored count in full."""
    from tgateway.storage.store import QuotaExceeded

    theirs = [os.urandom(n) for n in (400, 300, THRESHOLD + 10)]
    for data in theirs:
        put(store, data, ctx=UploadContext(owner="b" * 64))
    seen: list[Any] = []
    store.subscribe_stored(seen.append)
    mine = UploadContext(owner="a" * 64, name="mine.bin")

    def commit(data: bytes, quota: int) -> StoredEvent:
        ingest = store.begin_upload(size_hint=len(data), max_size=1 << 40)
        ingest.write(data)
        return result_of(store.commit(ingest, mine, quota=quota))

    assert not commit(theirs[0], quota=1000).new
    with pytest.raises(QuotaExceeded) as refused:
        commit(theirs[1], quota=600)  # 400 + 300 > 600, though no byte is new
    assert refused.value.status == 413 and refused.value.code == "quota_exceeded"
    assert "400 of 600" in refused.value.message
    with pytest.raises(QuotaExceeded):
        commit(theirs[2], quota=THRESHOLD)
    assert result_of(store.usage("a" * 64)) == (1, 400)
    assert commit(theirs[0], quota=400).file.size == 400  # already mine: nothing more to count
    store._reactor.advance(0)
    assert len(seen) == 2  # only the accepted uploads fired the event


def test_a_new_file_over_quota_leaves_no_bytes_no_row_and_no_event(store: LocalContentStore) -> None:
    from tgateway.storage.store import QuotaExceeded

    seen: list[Any] = []
    store.subscribe_stored(seen.append)
    for size in (500, THRESHOLD * 2):
        data = os.urandom(size)
        ingest = store.begin_upload(size_hint=size, max_size=1 << 40)
        ingest.write(data)
        with pytest.raises(QuotaExceeded):
            result_of(store.commit(ingest, UploadContext(owner="a" * 64), quota=size - 1))
        assert result_of(store.get(hashlib.sha256(data).hexdigest())) is None
    store._reactor.advance(0)
    assert seen == []
    assert tmp_entries(store) == []
    assert [p for p in store.layout.blob_dir.rglob("*") if p.is_file()] == []
    assert [p for p in store.layout.chunk_dir.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- names


def test_the_upload_name_is_cleaned_once_for_every_output(store: LocalContentStore) -> None:
    raw = "report\u202efdp.exe"
    ev = put(store, b"%PDF-1.4 x", ctx=UploadContext(owner="a" * 64, name=raw))
    assert ev.file.name == "reportfdp.exe" and ev.context.name == "reportfdp.exe"
    assert bencode.decode(ev.file.info)[b"name"] == b"reportfdp.exe"  # the torrent's name
    [own] = result_of(store.owners(ev.file.sha256))
    assert own.name == "reportfdp.exe"  # the per-owner name listed by /api/users/me/files
    page, _ = result_of(store.owner_files("a" * 64))
    assert page[0][1].name == "reportfdp.exe"


def test_names_stored_before_the_rule_are_cleaned_when_read(store: LocalContentStore) -> None:
    f = put(store, b"old bytes", ctx=UploadContext(owner="a" * 64, name="old.bin")).file
    raw = "old\u202egpj.exe\x9b"
    store.db.run_sync(lambda c: c.execute("UPDATE files SET name = ?", (raw,)))
    store.db.run_sync(lambda c: c.execute("UPDATE file_owners SET name = ?", (raw,)))
    store._index.changed(f.sha256)  # the record is read again
    assert result_of(store.get(f.sha256)).name == "oldgpj.exe_"
    assert [o.name for o in result_of(store.owners(f.sha256))] == ["oldgpj.exe_"]


# --------------------------------------------------------------------------- FFmpeg input


def _ffmpeg_reads(url: str) -> bytes:
    """The bytes FFmpeg reads from ``url`` (as raw 8-bit audio, copied out unchanged)."""
    import subprocess

    from tgateway.transcode.tools import find_ffmpeg

    tools = find_ffmpeg()
    if tools is None:
        pytest.skip("no FFmpeg on this machine")
    return subprocess.run([tools.ffmpeg, "-v", "error", "-f", "u8", "-ar", "8000", "-ac", "1",
                           "-i", url, "-c", "copy", "-f", "u8", "-"],
                          check=True, capture_output=True, timeout=60).stdout


def test_ffmpeg_reads_a_blob_where_it_is(store: LocalContentStore) -> None:
    data = os.urandom(3 * CS + 11)
    f = put(store, data).file
    assert f.storage == "blob"

    async def use() -> tuple[str, bytes]:
        async with store.ffmpeg_input(f) as url:
            return url, _ffmpeg_reads(url)

    url, read = result_of(use())
    assert url == "file:" + str(store.layout.blob_path(f.sha256))
    assert read == data
    assert tmp_entries(store) == []


def test_ffmpeg_reads_a_chunked_file_through_a_list_the_store_writes_and_removes(
    store: LocalContentStore,
) -> None:
    """The chunks in order, through a ``concatf:`` list in the store's temporary folder: the
    storage check leaves it alone while FFmpeg uses it, and it is gone after the block."""
    data = os.urandom(THRESHOLD + 3 * CS + 5)
    f = put(store, data).file
    assert f.storage == "chunked"
    seen: dict[str, Any] = {}

    async def use() -> None:
        async with store.ffmpeg_input(f) as url:
            listing = Path(url.removeprefix("concatf:"))
            seen["url"], seen["listing"] = url, listing
            seen["lines"] = listing.read_text(encoding="utf-8").splitlines()
            seen["report"] = await store.check()
            seen["kept"] = listing.exists()
            seen["read"] = _ffmpeg_reads(url)

    result_of(use())
    assert seen["url"].startswith("concatf:")
    assert seen["lines"] == [f"file:{store.layout.chunk_path(c.sha256)}" for c in f.chunks]
    assert seen["kept"] and seen["report"].temp_leftovers.count == 0
    assert seen["read"] == data
    assert not seen["listing"].exists() and tmp_entries(store) == []


def test_the_ffmpeg_list_is_removed_when_the_block_fails(store: LocalContentStore) -> None:
    f = put(store, os.urandom(THRESHOLD + 1)).file

    async def use() -> None:
        async with store.ffmpeg_input(f):
            raise RuntimeError("ffmpeg failed")

    with pytest.raises(RuntimeError):
        result_of(use())
    assert tmp_entries(store) == []


def test_derived_files_are_stored_but_not_announced(tmp_path: Path) -> None:
    """A file only derived owners hold (transcode outputs) is stored and found, but is not among
    the torrents the gateway announces, before and after a restart; an upload of the same bytes
    by a user makes it one, and it stops being one when only derived owners are left."""
    db = SyncDatabase(str(tmp_path / "m.db"))
    db.open()
    s = make_store(tmp_path, db=db)
    derived = UploadContext(owner="transcode:" + "ab" * 32, name="seg.ts", source="transcode")
    assert derived.derived and not UploadContext().derived
    seg = put(s, b"segment bytes", ctx=derived).file
    mine = put(s, b"an upload", ctx=UploadContext(owner="c" * 64, name="up.bin")).file
    seg_ih, mine_ih = seg.info_hash_bytes, mine.info_hash_bytes
    assert s.info_hashes() == {seg_ih, mine_ih}
    assert s.announced_info_hashes() == {mine_ih}
    assert s.has_info_hash(seg_ih) and result_of(s.get(seg.sha256)) == seg
    db.close()

    db = SyncDatabase(str(tmp_path / "m.db"))
    db.open()
    s = make_store(tmp_path, db=db)
    assert s.announced_info_hashes() == {mine_ih}
    assert all(o.derived for o in result_of(s.owners(seg.sha256)))
    put(s, b"segment bytes", ctx=UploadContext(owner="d" * 64, name="seg.ts"))  # a user's too
    assert s.announced_info_hashes() == {mine_ih, seg_ih}
    assert result_of(s.remove_owner(seg.sha256, "d" * 64)) is None  # the derived owner is left
    assert s.announced_info_hashes() == {mine_ih}
    assert s.has_info_hash(seg_ih)
