"""Storing FFmpeg's output files (:mod:`tgateway.transcode.outputs`) in a real store."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import StorageConfig
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.model import UploadContext
from tgateway.storage.store import LocalContentStore
from tgateway.transcode.outputs import read_head, read_text, store_file, write_text

CS = 16384


def inline(fn: Any, *args: Any) -> Deferred[Any]:
    return maybeDeferred(fn, *args)


class StoreFileTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tgateway-outputs-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        db = SyncDatabase()
        db.open()
        self.store = LocalContentStore(
            reactor=Clock(), db=db, layout=DiskLayout(self.dir / "b", self.dir / "c"),  # type: ignore[arg-type]
            config=StorageConfig(blob_threshold=4 * CS, chunk_size=CS), threaded=False)
        self.store.start()

    def test_a_work_file_is_stored_with_its_context_and_type(self) -> None:
        data = os.urandom(5 * CS + 3)  # big enough for several reads and chunks
        path = self.dir / "seg0.ts"
        path.write_bytes(data)
        ctx = UploadContext(owner="transcode:" + "ab" * 32, name="v 720p seg0.ts",
                            source="transcode", announce_dht=False)
        f = self.successResultOf(Deferred.fromCoroutine(
            store_file(self.store, str(path), ctx, "video/mp2t", inline)))
        self.assertEqual((f.size, f.mime, f.name), (len(data), "video/mp2t", "v 720p seg0.ts"))
        blocks = [self.successResultOf(self.store.reader.read_block(f, i))
                  for i in range(f.piece_count)]
        self.assertEqual(b"".join(blocks), data)
        [owner] = self.successResultOf(Deferred.fromCoroutine(self.store.owners(f.sha256)))
        self.assertEqual((owner.owner, owner.source), (ctx.owner, "transcode"))

    def test_a_failing_read_stores_nothing(self) -> None:
        path = self.dir / "out.mp4"
        path.write_bytes(b"x" * 1000)

        def failing(fn: Any, *args: Any) -> Deferred[Any]:
            if getattr(fn, "__name__", "") == "read":
                raise OSError("read error")
            return maybeDeferred(fn, *args)

        d = Deferred.fromCoroutine(store_file(self.store, str(path), UploadContext(), "video/mp4",
                                              failing))
        self.failureResultOf(d, OSError)
        stats = self.successResultOf(Deferred.fromCoroutine(self.store.stats()))
        self.assertEqual(stats["files"], 0)
        self.assertEqual(os.listdir(self.store.layout.blob_tmp), [])

    def test_small_file_helpers(self) -> None:
        p = str(self.dir / "index.m3u8")
        write_text(p, "#EXTM3U\n")
        self.assertEqual(read_text(p), "#EXTM3U\n")
        self.assertEqual(read_head(p, 4), b"#EXT")
