"""The stream and HLS URLs a NIP-35 event names, followed before the transcode is done.

The whole plugin on loopback with transcoding off, so that a job put in the queue by the test
stays where the test puts it (queued, running, failed): the stream URL serves the original until
a rendition exists; the HLS master playlist and ``?transcoded=true`` answer 202 with Retry-After
(and the job's state) while the job is queued or running, 404 ``not_transcoded`` without a job or
once it failed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from typing import Any

import treq
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool

from harness.gateway import RunningGateway, small_config
from tgateway.web.stream import retry_after

DATA = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


class StreamPendingTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-stream-pending-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def call(self, method: str, url: str, **kw: Any) -> tuple[int, bytes, Any]:
        r = await treq.request(method, url, pool=self.pool, **kw)
        return r.code, await r.content(), r.headers

    async def test_links_answer_while_the_transcode_is_under_way(self) -> None:
        gw = RunningGateway(small_config(self.dir + "/gw"))
        self.addCleanup(gw.stop)
        code, body, _ = await self.call("PUT", gw.url("/api/upload"), data=DATA,
                                        headers={"X-Filename": "clip.mp4"})
        self.assertEqual(code, 201, body)
        sha = json.loads(body)["sha256"]
        hls = gw.url(f"/api/stream/{sha}/playlist.m3u8")
        transcoded = gw.url(f"/api/stream/{sha}?transcoded=true")

        # no job: nothing will come
        for url in (hls, transcoded):
            code, body, _ = await self.call("GET", url)
            self.assertEqual((code, json.loads(body)["error"]), (404, "not_transcoded"))

        jobs = gw.gateway.components.transcode.jobs
        await jobs.add(sha, 2.0, {}, 0, 100.0)
        for method in ("GET", "HEAD"):
            for url in (hls, transcoded):
                code, body, headers = await self.call(method, url)
                self.assertEqual(code, 202, (method, url, body))
                self.assertEqual(headers.getRawHeaders("retry-after"), ["10"])
                self.assertIn("Retry-After",
                              headers.getRawHeaders("access-control-expose-headers")[0])
                if method == "GET":
                    self.assertEqual(json.loads(body)["state"], "queued")
        # the stream URL serves the original meanwhile
        code, body, headers = await self.call("GET", gw.url(f"/api/stream/{sha}"))
        self.assertEqual((code, body), (200, DATA))
        self.assertEqual(headers.getRawHeaders("x-stream-source"), ["original"])

        await jobs.claim_next(reactor.seconds())
        code, body, headers = await self.call("GET", hls)
        self.assertEqual(code, 202, body)
        self.assertEqual(json.loads(body)["state"], "running")
        self.assertTrue(1 <= int(headers.getRawHeaders("retry-after")[0]) <= 60)

        await jobs.fail(sha, "boom", None, reactor.seconds())
        for url in (hls, transcoded):
            code, body, _ = await self.call("GET", url)
            self.assertEqual((code, json.loads(body)["error"]), (404, "not_transcoded"))
        code, body, _ = await self.call("GET", gw.url(f"/api/stream/{sha}"))
        self.assertEqual((code, body), (200, DATA))


class RetryAfterTests(SynchronousTestCase):
    def test_estimates(self) -> None:
        self.assertEqual(retry_after("queued", 0.0, None, 50.0), 10)
        self.assertEqual(retry_after("running", 0.0, 40.0, 50.0), 5)  # no progress yet
        self.assertEqual(retry_after("running", 50.0, 40.0, 50.0), 10)  # 10 s done, 10 s left
        self.assertEqual(retry_after("running", 99.99, 40.0, 50.0), 1)
        self.assertEqual(retry_after("running", 1.0, 0.0, 50.0), 60)
