"""Transcoding through the whole plugin (makeService) on loopback, with clips made by FFmpeg.

- a VP9/Opus WebM 1280x720: 720p and 480p H.264/AAC MP4s (ffprobe: codecs, sizes, duration
  within 0.1 s), progress seen rising, the HLS master played end to end by ``ffmpeg -i URL``,
  ``/api/stream`` picks the transcoded MP4 (``?original=true`` the original, ``?quality=``);
- a 720x1280 portrait clip: 720x1280 and 480x854, never upscaled;
- an H.264/AAC 640x360 MP4: one rendition, remuxed (stream copy), not re-encoded;
- a corrupt video: the job fails with a readable error and the gateway keeps serving;
- the file deleted: its job and outputs go.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

import pytest
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from harness.gateway import RunningGateway, small_config
from harness.tools import ffmpeg, ffprobe

pytestmark = pytest.mark.integration

POOL = HTTPConnectionPool(reactor, persistent=False)


def make_clip(path: str, kind: str, seconds: float = 2.0) -> str:
    """Short, small test clips (2 cores shared: low frame rate, fast encoders)."""
    if kind == "webm":
        args = ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=10:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
                "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
                "-c:a", "libopus", "-shortest"]
    elif kind == "portrait":
        args = ["-f", "lavfi", "-i", f"testsrc2=size=720x1280:rate=10:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}",
                "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
                "-c:a", "libopus", "-shortest"]
    elif kind == "h264":
        args = ["-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=10:duration={seconds}",
                "-f", "lavfi", "-i", f"sine=frequency=550:duration={seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "300k", "-pix_fmt", "yuv420p",
                "-g", "20", "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart"]
    else:
        raise ValueError(kind)
    subprocess.run([ffmpeg(), "-v", "error", "-y", *args, path], check=True, timeout=120)
    return path


def ffprobe_json(path_or_url: str) -> dict[str, Any]:
    out = subprocess.run([ffprobe(), "-v", "error", "-print_format", "json", "-show_format",
                          "-show_streams", path_or_url], check=True, capture_output=True,
                         timeout=60).stdout
    return json.loads(out)


async def call(method: str, url: str, **kw: Any) -> tuple[int, Any, Any]:
    r = await treq.request(method, url, pool=POOL, **kw)
    body = await r.content()
    return r.code, body, r.headers


class TranscodeGatewayTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-transcode-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, **transcoding: Any) -> RunningGateway:
        data = os.path.join(self.dir, "gw")
        config = small_config(
            data,
            transcoding={"enabled": True, "min_file_size": 0, "preset": "ultrafast",
                         "concurrent_jobs": 1, "work_dir": os.path.join(data, "work"),
                         "hls_segment_duration": "1s", **transcoding},
        )
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        return gw

    async def upload(self, gw: RunningGateway, path: str, name: str) -> dict[str, Any]:
        with open(path, "rb") as fh:
            data = fh.read()
        code, body, _ = await call("PUT", gw.url("/api/upload"), data=data,
                                   headers={"X-Filename": name,
                                            "Content-Type": "application/octet-stream"})
        self.assertIn(code, (200, 201), body)
        return json.loads(body)

    async def wait_job(self, gw: RunningGateway, sha: str, timeout: float = 150.0) -> tuple[Any, list[float]]:
        transcoder = gw.gateway.components.transcode
        seen: list[float] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = await transcoder.job(sha)
            if job is not None and job.state == "running":
                p = transcoder.live_progress(sha)
                if p is not None and (not seen or p != seen[-1]):
                    seen.append(p)
            if job is not None and job.state in ("done", "failed"):
                return job, seen
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"job of {sha} did not end")

    async def fetch(self, url: str, path: str) -> dict[str, Any]:
        code, body, headers = await call("GET", url)
        self.assertEqual(code, 200, body[:200])
        with open(path, "wb") as fh:
            fh.write(body)
        return {"headers": headers}

    def check_mp4(self, path: str, width: int, height: int, duration: float) -> None:
        info = ffprobe_json(path)
        v = [s for s in info["streams"] if s["codec_type"] == "video"]
        a = [s for s in info["streams"] if s["codec_type"] == "audio"]
        self.assertEqual([s["codec_name"] for s in v], ["h264"])
        self.assertEqual([s["codec_name"] for s in a], ["aac"])
        self.assertEqual((v[0]["width"], v[0]["height"]), (width, height))
        self.assertLessEqual(abs(float(info["format"]["duration"]) - duration), 0.1,
                             info["format"]["duration"])
        # +faststart: the moov box comes before mdat
        with open(path, "rb") as fh:
            head = fh.read(1 << 16)
        self.assertLess(head.find(b"moov"), max(head.find(b"mdat"), 1 << 16))
        self.assertGreater(head.find(b"moov"), 0)

    async def test_webm_to_h264_hls_and_stream(self) -> None:
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        src = ffprobe_json(clip)
        duration = float(src["format"]["duration"])
        gw = self.start()
        f = await self.upload(gw, clip, "land.bin")  # by content: the name says nothing
        sha = f["sha256"]
        # before the job ends: the original
        job, progress = await self.wait_job(gw, sha)
        self.assertEqual(job.state, "done", (job.error, job.stderr_tail))
        self.assertTrue(progress, "no progress seen while running")
        self.assertEqual(progress, sorted(progress))
        self.assertEqual([v["name"] for v in job.results["variants"]], ["720p", "480p"])
        self.assertEqual([v["mode"] for v in job.results["variants"]], ["transcode"] * 2)

        code, body, _ = await call("GET", gw.url(f"/api/files/{sha}"))
        meta = json.loads(body)["meta"]
        self.assertEqual((meta["video"]["width"], meta["video"]["height"]), (1280, 720))
        self.assertEqual(meta["video"]["video_codec"], "vp9")
        self.assertEqual(meta["video"]["audio_codec"], "opus")
        self.assertAlmostEqual(meta["video"]["fps"], 10.0)
        self.assertEqual(meta["transcoding"]["state"], "done")

        best = os.path.join(self.dir, "best.mp4")
        r = await self.fetch(gw.url(f"/api/stream/{sha}"), best)
        self.assertEqual(r["headers"].getRawHeaders("x-stream-source"), ["transcoded"])
        await deferToThread(self.check_mp4, best, 1280, 720, duration)
        low = os.path.join(self.dir, "480.mp4")
        await self.fetch(gw.url(f"/api/stream/{sha}?quality=480p"), low)
        await deferToThread(self.check_mp4, low, 854, 480, duration)
        code, body, headers = await call("GET", gw.url(f"/api/stream/{sha}?original=true"),
                                         headers={"Range": "bytes=0-99"})
        self.assertEqual((code, len(body)), (206, 100))
        with open(clip, "rb") as fh:
            self.assertEqual(body, fh.read(100))
        code, body, _ = await call("GET", gw.url(f"/api/stream/{sha}?quality=1080p"))
        self.assertEqual((code, json.loads(body)["error"]), (404, "quality_not_found"))
        # ranges on the transcoded MP4
        code, body, headers = await call("GET", gw.url(f"/api/stream/{sha}"),
                                         headers={"Range": "bytes=10-19"})
        self.assertEqual((code, len(body)), (206, 10))

        # HLS: master with BANDWIDTH/RESOLUTION/CODECS, played end to end by ffmpeg
        code, body, headers = await call("GET", gw.url(f"/api/stream/{sha}/playlist.m3u8"))
        self.assertEqual(code, 200)
        master = body.decode()
        self.assertIn("RESOLUTION=1280x720", master)
        self.assertIn("RESOLUTION=854x480", master)
        self.assertIn('CODECS="avc1.', master)
        self.assertIn("BANDWIDTH=", master)
        url = gw.url(f"/api/stream/{sha}/playlist.m3u8")
        played = await deferToThread(
            subprocess.run,
            [ffmpeg(), "-v", "error", "-i", url, "-map", "0:v:0", "-map", "0:a:0", "-f", "null", "-"],
            capture_output=True, timeout=120)
        self.assertEqual(played.returncode, 0, played.stderr[-2000:])
        hls = await deferToThread(ffprobe_json, url)
        self.assertLessEqual(abs(float(hls["format"]["duration"]) - duration), 0.25)

    async def test_portrait_never_upscaled_and_h264_remuxed(self) -> None:
        portrait = make_clip(os.path.join(self.dir, "port.webm"), "portrait")
        h264 = make_clip(os.path.join(self.dir, "small.mp4"), "h264")
        gw = self.start()
        p = await self.upload(gw, portrait, "portrait.webm")
        h = await self.upload(gw, h264, "small.mp4")
        job, _ = await self.wait_job(gw, p["sha256"])
        self.assertEqual(job.state, "done", (job.error, job.stderr_tail))
        self.assertEqual([(v["name"], v["width"], v["height"]) for v in job.results["variants"]],
                         [("720p", 720, 1280), ("480p", 480, 854)])
        out = os.path.join(self.dir, "p480.mp4")
        await self.fetch(gw.url(f"/api/stream/{p['sha256']}?quality=480p"), out)
        await deferToThread(self.check_mp4, out, 480, 854,
                            float(ffprobe_json(portrait)["format"]["duration"]))

        job, _ = await self.wait_job(gw, h["sha256"])
        self.assertEqual(job.state, "done", (job.error, job.stderr_tail))
        [v] = job.results["variants"]
        self.assertEqual((v["name"], v["width"], v["height"], v["mode"]), ("480p", 640, 360, "remux"))
        out = os.path.join(self.dir, "remuxed.mp4")
        await self.fetch(gw.url(f"/api/stream/{h['sha256']}"), out)
        await deferToThread(self.check_mp4, out, 640, 360,
                            float(ffprobe_json(h264)["format"]["duration"]))
        src, got = ffprobe_json(h264), ffprobe_json(out)
        sv = [s for s in src["streams"] if s["codec_type"] == "video"][0]
        gv = [s for s in got["streams"] if s["codec_type"] == "video"][0]
        # a stream copy: the same frames, the same encoder settings
        self.assertEqual((sv["nb_frames"], sv["profile"], sv["bit_rate"]),
                         (gv["nb_frames"], gv["profile"], gv["bit_rate"]))

    async def test_corrupt_video_fails_readably_and_delete_cancels(self) -> None:
        gw = self.start()
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        with open(clip, "rb") as fh:
            data = bytearray(fh.read())
        # keep the header (it probes as a video), garble the frames
        for i in range(600, len(data), 7):
            data[i] ^= 0x5A
        bad = os.path.join(self.dir, "bad.webm")
        with open(bad, "wb") as fh:
            fh.write(bytes(data))
        b = await self.upload(gw, bad, "bad.webm")
        transcoder = gw.gateway.components.transcode
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            f = await gw.store.get(b["sha256"])
            job = await transcoder.job(b["sha256"])
            if "video_error" in f.meta or (job is not None and job.state in ("failed", "done")):
                break
            await deferLater(reactor, 0.1, lambda: None)
        if job is not None:
            self.assertEqual(job.state, "failed")
            self.assertIn("ffmpeg failed", job.error)
            self.assertTrue(job.stderr_tail)
        else:
            self.assertIn("video_error", f.meta)
        # the gateway keeps serving
        code, _, _ = await call("GET", gw.url("/api/health"))
        self.assertEqual(code, 200)
        code, body, _ = await call("GET", gw.url(f"/api/stream/{b['sha256']}"))
        self.assertEqual((code, len(body)), (200, len(data)))

        # a long job deleted while running: ffmpeg stopped, job gone
        long = make_clip(os.path.join(self.dir, "long.webm"), "webm", seconds=20)
        lf = await self.upload(gw, long, "long.webm")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and lf["sha256"] not in transcoder.runner._runs:
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIn(lf["sha256"], transcoder.runner._runs)
        await gw.store.remove_owner(lf["sha256"], None)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lf["sha256"] in transcoder.runner._running:
            await deferLater(reactor, 0.05, lambda: None)
        self.assertNotIn(lf["sha256"], transcoder.runner._running)
        # the "file deleted" event arrives after the delete: the job row goes soon after (FFmpeg
        # may also have failed first, its chunks gone under it)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and await transcoder.job(lf["sha256"]) is not None:
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIsNone(await transcoder.job(lf["sha256"]))
