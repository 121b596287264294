"""Probing through the store's FFmpeg input (:mod:`tgateway.transcode.probing`), fake FFmpeg."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from tests.transcode.test_process import FakeReactor, ended
from tgateway.config import StorageConfig
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.model import StoredFile, UploadContext
from tgateway.storage.store import LocalContentStore
from tgateway.transcode.probe import ProbeError
from tgateway.transcode.probing import Prober
from tgateway.transcode.tools import FFmpegTools

CS = 16384


class ProberTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tgateway-probing-"))
        self.addCleanup(shutil.rmtree, self.dir, True)
        db = SyncDatabase()
        db.open()
        self.reactor = FakeReactor()
        self.store = LocalContentStore(
            reactor=self.reactor, db=db,  # type: ignore[arg-type]
            layout=DiskLayout(self.dir / "b", self.dir / "c"),
            config=StorageConfig(blob_threshold=4 * CS, chunk_size=CS), threaded=False)
        self.store.start()

    def put(self, size: int) -> StoredFile:
        ingest = self.store.begin_upload(size_hint=size, max_size=size)
        ingest.write(os.urandom(size))
        d = Deferred.fromCoroutine(self.store.commit(ingest, UploadContext(name="v.mp4")))
        return self.successResultOf(d).file

    def temps(self) -> list[str]:
        return os.listdir(self.store.layout.chunk_tmp) + os.listdir(self.store.layout.blob_tmp)

    def test_ffprobe_reads_the_chunked_file_through_the_stores_list(self) -> None:
        f = self.put(5 * CS)
        prober = Prober(self.store, self.reactor, FFmpegTools("ffmpeg", "ffprobe", "path"))
        d = prober.probe_soon(f)
        [(proto, exe, argv)] = self.reactor.spawned
        self.assertEqual(exe, "ffprobe")
        self.assertTrue(argv[-1].startswith("concatf:"))
        listing = argv[-1].removeprefix("concatf:")
        self.assertEqual(Path(listing).read_text().splitlines(),
                         [f"file:{self.store.layout.chunk_path(c.sha256)}" for c in f.chunks])
        info = {"format": {"duration": "4.0", "bit_rate": "1000"},
                "streams": [{"codec_type": "video", "codec_name": "h264", "width": 640,
                             "height": 360, "avg_frame_rate": "25/1", "pix_fmt": "yuv420p"}]}
        proto.childDataReceived(1, json.dumps(info).encode())
        proto.processEnded(ended(0))
        result = self.successResultOf(d)
        self.assertEqual((result.width, result.height, result.duration), (640, 360, 4.0))
        self.assertFalse(Path(listing).exists())
        self.assertEqual(self.temps(), [])

    def test_at_most_two_uploads_are_probed_at_once(self) -> None:
        files = [self.put(1000 + i) for i in range(3)]
        prober = Prober(self.store, self.reactor, FFmpegTools("ffmpeg", "ffprobe", "path"))
        waiting = [prober.probe_soon(f) for f in files]
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.spawned[0][0].processEnded(ended(1))
        self.failureResultOf(waiting[0], ProbeError)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertTrue(self.reactor.spawned[2][2][-1].startswith("file:"))  # a blob: in place

    def test_cancel_all_stops_running_probes(self) -> None:
        f = self.put(5 * CS)
        prober = Prober(self.store, self.reactor, FFmpegTools("/x/ffmpeg", None, "imageio-ffmpeg"))
        d = Deferred.fromCoroutine(prober.probe(f))
        [(proto, exe, argv)] = self.reactor.spawned
        self.assertEqual(argv[:4], ["/x/ffmpeg", "-hide_banner", "-nostdin", "-i"])
        prober.cancel_all()
        self.assertEqual(proto.transport.signals, ["TERM"])  # type: ignore[attr-defined]
        proto.processEnded(ended(None, 15))
        self.failureResultOf(d, ProbeError)
        self.assertEqual(self.temps(), [])
