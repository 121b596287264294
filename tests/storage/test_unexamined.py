"""``ContentStore.unexamined_videos``: the uploaded videos whose probe never reached their
metadata, listed page by page from a partial index (schema/002), and the mark kept up to date."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import StorageConfig
from tgateway.storage.db import SyncDatabase, _split_sql, connect, migrate, schema_files
from tgateway.storage.disk import DiskLayout
from tgateway.storage.files import _unexamined_videos_txn
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.storage.store import LocalContentStore

OWNER = "aa" * 32


class UnexaminedVideosTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tgateway-unexamined-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.store = LocalContentStore(
            reactor=Clock(), db=self.db,  # type: ignore[arg-type]
            layout=DiskLayout(self.dir / "b", self.dir / "c"), config=StorageConfig(),
            threaded=False)
        self.store.start()

    def put(self, name: str, ctx: UploadContext | None = None, data: bytes | None = None
            ) -> StoredFile:
        data = data if data is not None else os.urandom(1000)
        ingest = self.store.begin_upload(size_hint=len(data), max_size=len(data))
        ingest.write(data)
        ctx = ctx or UploadContext(owner=OWNER, name=name)
        return self.successResultOf(Deferred.fromCoroutine(self.store.commit(ingest, ctx))).file

    def listed(self, after: tuple[float, str] | None = None, limit: int = 100) -> list[str]:
        return [f.sha256 for f in self.successResultOf(Deferred.fromCoroutine(
            self.store.unexamined_videos(after=after, limit=limit)))]

    def set_meta(self, sha: str, **meta: object) -> None:
        self.successResultOf(Deferred.fromCoroutine(self.store.set_meta(sha, **meta)))

    def test_uploaded_videos_until_their_probe_or_its_error_is_recorded(self) -> None:
        a, b, c = (self.put(f"{n}.mp4") for n in "abc")
        self.put("notes.txt")
        derived = self.put("a 720p.mp4", UploadContext(
            owner="transcode:" + a.sha256, name="a 720p.mp4", source="transcode"))
        self.assertEqual(derived.mime, "video/mp4")
        self.assertEqual(sorted(self.listed()), sorted([a.sha256, b.sha256, c.sha256]))
        self.set_meta(a.sha256, video={"width": 1})
        self.set_meta(b.sha256, video_error="not a video")
        self.set_meta(c.sha256, transcoding={"state": "failed"})  # other facts: still unexamined
        self.assertEqual(self.listed(), [c.sha256])
        # a derived copy uploaded by someone is theirs to examine; gone again when they delete it
        self.put("copy.mp4", UploadContext(owner=OWNER, name="copy.mp4"),
                 data=self.store.layout.blob_path(derived.sha256).read_bytes())
        self.assertIn(derived.sha256, self.listed())
        self.successResultOf(Deferred.fromCoroutine(self.store.remove_owner(derived.sha256, OWNER)))
        self.assertEqual(self.listed(), [c.sha256])

    def test_a_video_declared_as_something_else_is_marked_by_its_first_bytes(self) -> None:
        webm = b"\x1a\x45\xdf\xa3" + os.urandom(996)  # Matroska / WebM magic
        ingest = self.store.begin_upload(size_hint=len(webm), max_size=len(webm))
        ingest.write(webm)
        f = self.successResultOf(Deferred.fromCoroutine(self.store.commit(
            ingest, UploadContext(owner=OWNER, name="clip"),
            declared_type="application/x-www-form-urlencoded"))).file  # curl's, urllib's
        self.assertEqual(f.mime, "application/x-www-form-urlencoded")
        self.assertEqual(self.listed(), [f.sha256])

    def test_pages_in_upload_order_from_the_partial_index(self) -> None:
        files = [self.put(f"{i}.webm") for i in range(5)]
        order = [f.sha256 for f in sorted(files, key=lambda f: (f.created_at, f.sha256))]
        pages, after = [], None
        while True:
            page = self.successResultOf(Deferred.fromCoroutine(
                self.store.unexamined_videos(after=after, limit=2)))
            if not page:
                break
            pages.append([f.sha256 for f in page])
            after = (page[-1].created_at, page[-1].sha256)
        self.assertEqual([len(p) for p in pages], [2, 2, 1])
        self.assertEqual(sum(pages, []), order)
        plan = self.db.run_sync(lambda conn: " ".join(
            str(tuple(r)) for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM files INDEXED BY files_unexamined_videos"
                " WHERE unexamined_video = 1 ORDER BY created_at, sha256 LIMIT 2")))
        self.assertIn("files_unexamined_videos", plan)
        self.assertNotIn("TEMP B-TREE", plan)  # no sort: the index's order


def test_the_migration_marks_the_videos_stored_before_it() -> None:
    conn = connect(":memory:")
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at REAL NOT NULL)")
    [(version, name, sql)] = [m for m in schema_files() if m[0] == 1]
    for statement in _split_sql(sql):
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (version, name))
    rows = [("a" * 64, "video/mp4", "{}", "api"), ("b" * 64, "video/webm", '{"video": {}}', "api"),
            ("c" * 64, "video/mp4", '{"video_error": "x"}', "api"),
            ("d" * 64, "video/mp2t", "{}", "transcode"), ("e" * 64, "image/png", "{}", "api"),
            ("f" * 64, "video/mp4", '{"transcoding": {}}', "blossom")]
    for i, (sha, mime, meta, source) in enumerate(rows):
        conn.execute("INSERT INTO files (sha256, size, name, mime, storage, piece_length,"
                     " info_hash, info, created_at, meta) VALUES (?, 1, 'n', ?, 'blob', 16384,"
                     " ?, x'00', ?, ?)", (sha, mime, f"{i:040x}", float(i), meta))
        conn.execute("INSERT INTO file_owners (sha256, owner, name, source, created_at)"
                     " VALUES (?, '', 'n', ?, 0)", (sha, source))
    assert "002_unexamined_videos.sql" in migrate(conn)
    listed = [f.sha256 for f in _unexamined_videos_txn(conn, None, 10)]
    assert listed == ["a" * 64, "f" * 64]
