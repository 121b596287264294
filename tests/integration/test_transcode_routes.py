"""The transcoding routes over HTTP, transcoding switched off, and no FFmpeg at all.

- ``GET /api/users/me/files/<sha256>/transcoding-status``: the owner (a nostr-tools signed-in
  session) sees the state, rising progress, per-profile results and the HLS URL; anybody else
  gets 403, nobody signed in 401, a malformed hash 400, an unknown file 404;
- ``POST /api/admin/transcode/<sha256>/retry``: only an ``admin.pubkeys`` key may queue a job
  again (403 for the owner), bad JSON or priority is 400, a file without a job 404; the retried
  job runs again and ends, its attempts counted;
- ``transcoding.enabled: false`` with NIP-71 on: the upload is still probed and announced at
  once with the original as the only ``imeta`` (read back from nostr-relay, verified by
  nostr-tools), and no job is queued;
- no FFmpeg at all: one warning at start, ``/api/health`` says transcoding is disabled, and a
  video upload is stored and served like any other file.
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
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from harness.gateway import RunningGateway, small_config
from harness.procs import read_relay_until_found
from harness.servers import start_nostr_relay
from harness.tools import ffmpeg
from tests.integration.test_transcode_gateway import call, make_clip
from tests.integration.test_users_api import ALICE, BOB, bearer, session_for
from tgateway.nostr.event import public_key_hex

pytestmark = pytest.mark.integration

GENEROUS = {"auth": {"login_attempts_per_minute": 6000, "burst_size": 1000},
            "stream": {"requests_per_second": 1000, "burst_size": 1000}}


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class TranscodeRoutesTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-troutes-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def start(self, *, transcoding: dict[str, Any], **sections: Any) -> RunningGateway:
        data = os.path.join(self.dir, "gw")
        config = small_config(
            data, rate_limiting=GENEROUS,
            transcoding={"min_file_size": 0, "preset": "ultrafast", "concurrent_jobs": 1,
                         "work_dir": os.path.join(data, "work"), "hls_segment_duration": "1s",
                         **transcoding},
            **sections)
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        return gw

    async def upload(self, gw: RunningGateway, path: str, name: str,
                     headers: dict[str, str] | None = None) -> dict[str, Any]:
        with open(path, "rb") as fh:
            data = fh.read()
        code, body, _ = await call("PUT", gw.url("/api/upload"), data=data,
                                   headers={"X-Filename": name,
                                            "Content-Type": "application/octet-stream",
                                            **(headers or {})})
        self.assertIn(code, (200, 201), body)
        return dict(json.loads(body))

    async def status(self, gw: RunningGateway, sha: str, token: str | None) -> tuple[int, Any]:
        headers = bearer(token) if token else {}
        code, body, _ = await call(
            "GET", gw.url(f"/api/users/me/files/{sha}/transcoding-status"), headers=headers)
        return code, json.loads(body)

    async def wait_status(self, gw: RunningGateway, sha: str, token: str,
                          states: tuple[str, ...]) -> tuple[dict[str, Any], list[float]]:
        """Poll the status route until the state is one of ``states``; progress seen running."""
        seen: list[float] = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            code, body = await self.status(gw, sha, token)
            self.assertEqual(code, 200, body)
            if body["state"] == "running" and (not seen or body["progress"] != seen[-1]):
                seen.append(body["progress"])
            if body["state"] in states:
                return body, seen
            await sleep(0.05)
        self.fail(f"transcoding of {sha} did not reach {states}")

    async def job_end(self, transcoder: Any, sha: str) -> Any:
        """The job of ``sha`` once it is done or failed (the test fails after 120 s)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = await transcoder.job(sha)
            if job is not None and job.state in ("done", "failed"):
                return job
            await sleep(0.1)
        self.fail(f"the transcoding job of {sha} did not end")

    async def retry(self, gw: RunningGateway, sha: str, token: str | None,
                    data: bytes = b"") -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
        code, body, _ = await call("POST", gw.url(f"/api/admin/transcode/{sha}/retry"),
                                   data=data, headers=headers)
        return code, json.loads(body)

    async def test_status_and_admin_retry_over_http(self) -> None:
        admin_pub = public_key_hex(bytes.fromhex(ALICE))
        gw = self.start(transcoding={"enabled": True}, admin={"pubkeys": [admin_pub]})
        alice = await session_for(gw, ALICE)
        bob = await session_for(gw, BOB)
        # 4 s at 10 fps: long enough for the status route to see the job running
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm", seconds=4)
        f = await self.upload(gw, clip, "land.webm", bearer(bob))
        sha = f["sha256"]

        # refusals: not signed in, not an owner, malformed hash, unknown file
        code, body = await self.status(gw, sha, None)
        self.assertEqual(code, 401, body)
        code, body = await self.status(gw, sha, alice)
        self.assertEqual((code, body["error"]), (403, "not_owner"))
        code, body = await self.status(gw, "zz" * 32, bob)
        self.assertEqual((code, body["error"]), (400, "invalid_hash"), body)
        code, body = await self.status(gw, "ab" * 32, bob)
        self.assertEqual((code, body["error"]), (404, "file_not_found"))

        done, seen = await self.wait_status(gw, sha, bob, ("done", "failed"))
        self.assertEqual(done["state"], "done", done)
        self.assertTrue(seen, "the job was never seen running")
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(done["progress"], 100.0)
        self.assertEqual(done["attempts"], 1)
        self.assertIsNone(done["error"])
        self.assertEqual(done["video"]["width"], 1280)
        self.assertEqual([(p["name"], p["width"], p["height"]) for p in done["profiles"]],
                         [("720p", 1280, 720), ("480p", 854, 480)])
        self.assertEqual(done["hls"], f"/api/stream/{sha}/playlist.m3u8")
        for p in done["profiles"]:
            self.assertEqual(len(p["sha256"]), 64)
            code, mp4, headers = await call("GET", gw.url(p["url"]))
            self.assertEqual(code, 200)
            self.assertEqual(len(mp4), p["size"])
            code, playlist, _ = await call("GET", gw.url(p["playlist"]))
            self.assertEqual(code, 200)
            self.assertTrue(playlist.startswith(b"#EXTM3U"))

        # the admin route: signed in and an admin, a valid body, a job to retry
        code, body = await self.retry(gw, sha, None)
        self.assertEqual(code, 401, body)
        code, body = await self.retry(gw, sha, bob)
        self.assertEqual((code, body["error"]), (403, "not_admin"))
        code, body = await self.retry(gw, sha, alice, b"{not json")
        self.assertEqual((code, body["error"]), (400, "invalid_json"))
        code, body = await self.retry(gw, sha, alice, b'{"priority": "high"}')
        self.assertEqual((code, body["error"]), (400, "invalid_field"))
        code, body = await self.retry(gw, "ab" * 32, alice)
        self.assertEqual((code, body["error"]), (404, "job_not_found"))
        code, body = await self.retry(gw, sha[:10], alice)
        self.assertEqual(code, 400, body)
        # refusals changed nothing
        code, body = await self.status(gw, sha, bob)
        self.assertEqual((body["state"], body["attempts"]), ("done", 1))

        code, body = await self.retry(gw, sha, alice, b'{"priority": 5}')
        self.assertEqual(code, 202, body)
        self.assertEqual((body["sha256"], body["priority"]), (sha, 5))
        self.assertIn(body["state"], ("queued", "running"))
        again, _ = await self.wait_status(gw, sha, bob, ("done", "failed"))
        self.assertEqual((again["state"], again["attempts"], again["priority"]), ("done", 2, 5))
        # (libx264 on several threads need not give the same bytes twice)
        self.assertEqual([(p["name"], p["width"], p["height"]) for p in again["profiles"]],
                         [(p["name"], p["width"], p["height"]) for p in done["profiles"]])
        for p in again["profiles"]:
            code, _, _ = await call("HEAD", gw.url(p["url"]))
            self.assertEqual(code, 200)
        # the admin's view of the queue: the job, its attempts, the transcoder running
        code, body, _ = await call("GET", gw.url("/api/admin/transcode?state=done"),
                                   headers=bearer(alice))
        jobs = json.loads(body)
        self.assertEqual(code, 200, jobs)
        self.assertEqual([(j["sha256"], j["attempts"], j["priority"]) for j in jobs["jobs"]],
                         [(sha, 2, 5)])
        self.assertEqual((jobs["active"], jobs["counts"]["done"]), (True, 1))
        code, body, _ = await call("GET", gw.url("/api/admin/transcode"), headers=bearer(bob))
        self.assertEqual((code, json.loads(body)["error"]), (403, "not_admin"))

    async def test_stopping_while_outputs_are_stored_then_restart(self) -> None:
        """The gateway is stopped while a job stores its outputs (the moment the first one is
        stored): the stop completes, and the next start runs the job again to the end."""
        gw = self.start(transcoding={"enabled": True})
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        stopped: list[Any] = []

        def on_stored(event: Any) -> None:
            if event.context.source == "transcode" and not stopped:
                stopped.append(gw.stop())

        gw.store.subscribe_stored(on_stored)
        f = await self.upload(gw, clip, "land.webm")
        deadline = time.monotonic() + 120
        while not stopped and time.monotonic() < deadline:
            await sleep(0.05)
        self.assertTrue(stopped, "no output was stored")
        await stopped[0]  # trial's timeout fails the test if the stop hangs

        again = RunningGateway(gw.config)
        self.addCleanup(again.stop)
        transcoder = again.gateway.components.transcode
        job = await self.job_end(transcoder, f["sha256"])
        self.assertEqual((job.state, job.attempts), ("done", 2))
        code, body, _ = await call("GET", again.url(f"/api/stream/{f['sha256']}/playlist.m3u8"))
        self.assertEqual(code, 200, body)

    async def test_transcoding_off_announces_the_original_at_upload(self) -> None:
        relay = start_nostr_relay(os.path.join(self.dir, "relay"))
        self.addCleanup(relay.stop)
        gw = self.start(transcoding={"enabled": False},
                        nostr={"video_relays": [relay.url], "publish_nip71": True})
        nostr = gw.gateway.components.nostr
        nostr.outbox.publish_timeout, nostr.outbox.retry_initial = 2.0, 0.5
        bob = await session_for(gw, BOB)
        clip = make_clip(os.path.join(self.dir, "portrait.webm"), "portrait")
        f = await self.upload(gw, clip, "portrait.webm", {**bearer(bob), "X-Title": "Tall clip"})
        sha = f["sha256"]

        answer = await read_relay_until_found(
            reactor, relay.url, {"kinds": [21, 22], "authors": [nostr.pubkey]}, within=90)
        self.assertEqual(answer["verified"], [True])
        [event] = answer["events"]
        self.assertEqual(event["kind"], 22)  # portrait: a short video
        [imeta] = [t for t in event["tags"] if t[0] == "imeta"]
        self.assertIn(f"x {sha}", imeta)
        self.assertIn("m video/webm", imeta)
        self.assertIn("dim 720x1280", imeta)
        self.assertIn(f"url {gw.base}/api/stream/{sha}", imeta)
        self.assertIn(f"fallback {f['urls']['webseed']}", imeta)
        self.assertTrue(any(e.startswith("duration 2") for e in imeta), imeta)
        tags = {t[0]: t[1] for t in event["tags"] if t[0] != "imeta"}
        self.assertEqual((tags["title"], tags["i"]), ("Tall clip", f["info_hash"]))

        # probed and shown in the metadata, but never queued
        code, meta, _ = await call("GET", gw.url(f"/api/files/{sha}"))
        video = json.loads(meta)["meta"]["video"]
        self.assertEqual((video["display_width"], video["display_height"]), (720, 1280))
        self.assertLess(abs(video["duration"] - 2.0), 0.1, video)
        self.assertIsNone(await gw.gateway.components.transcode.job(sha))
        code, body = await self.status(gw, sha, bob)
        self.assertEqual((code, body["state"]), (200, "not_queued"))
        code, body = await self.retry(gw, sha, bob)
        self.assertEqual(code, 403)
        # the stream route serves the original
        code, data, headers = await call("GET", gw.url(f"/api/stream/{sha}"))
        self.assertEqual((code, len(data)), (200, os.path.getsize(clip)))

    async def test_no_ffmpeg_warns_once_and_uploads_still_work(self) -> None:
        import tgateway.transcode.tools as tools

        self.patch(tools, "find_ffmpeg", lambda *a, **kw: None)
        lines: list[str] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_namespace", "").startswith("tgateway.transcode"):
                lines.append(f"{event['log_level'].name}: {event.get('log_format')}")

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        gw = self.start(transcoding={"enabled": True})
        warnings = [line for line in lines if line.startswith("warn:")]
        self.assertEqual(len(warnings), 1, lines)
        self.assertIn("no FFmpeg found", warnings[0])
        self.assertIn("uploads still work", warnings[0])

        code, body, _ = await call("GET", gw.url("/api/health"))
        health = json.loads(body)
        self.assertEqual(code, 200)
        self.assertEqual(health["transcode"]["status"], "disabled", health)

        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        f = await self.upload(gw, clip, "land.webm")
        await sleep(0.5)
        code, meta, _ = await call("GET", gw.url(f"/api/files/{f['sha256']}"))
        self.assertEqual(code, 200)
        self.assertNotIn("video", json.loads(meta).get("meta", {}))
        self.assertIsNone(await gw.gateway.components.transcode.job(f["sha256"]))
        with open(clip, "rb") as fh:
            original = fh.read()
        for path in (f"/api/stream/{f['sha256']}", f"/api/download/{f['sha256']}"):
            code, data, _ = await call("GET", gw.url(path))
            self.assertEqual((code, data), (200, original))
        code, _, _ = await call("GET", gw.url(f"/api/stream/{f['sha256']}/playlist.m3u8"))
        self.assertEqual(code, 404)

    async def test_imageio_ffmpeg_probes_and_thresholds_are_honoured(self) -> None:
        """With only the imageio-ffmpeg wheel (no ffprobe), videos are probed from ``ffmpeg -i``;
        a video under ``min_file_size`` is probed but not queued, and with ``auto_transcode``
        off nothing is queued either, until an admin asks."""
        import imageio_ffmpeg

        import tgateway.transcode.tools as tools
        from tgateway.transcode.tools import FFmpegTools

        wheel = FFmpegTools(imageio_ffmpeg.get_ffmpeg_exe(), None, "imageio-ffmpeg")
        self.patch(tools, "find_ffmpeg", lambda *a, **kw: wheel)
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        size = os.path.getsize(clip)

        async def probed(gw: RunningGateway, sha: str) -> dict[str, Any]:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                f = await gw.store.get(sha)
                if "video" in f.meta or "video_error" in f.meta:
                    return dict(f.meta)
                await sleep(0.05)
            self.fail("never probed")

        gw = self.start(transcoding={"enabled": True, "min_file_size": size + 1})
        self.assertEqual((await gw.gateway.components.transcode.health())["ffmpeg"], "imageio-ffmpeg")
        f = await self.upload(gw, clip, "land.webm")
        meta = await probed(gw, f["sha256"])
        video = meta["video"]
        self.assertEqual((video["width"], video["height"], video["video_codec"],
                          video["audio_codec"]), (1280, 720, "vp9", "opus"))
        self.assertLess(abs(video["duration"] - 2.0), 0.1, video)
        await sleep(0.3)
        self.assertIsNone(await gw.gateway.components.transcode.job(f["sha256"]))
        await gw.stop()

        shutil.rmtree(os.path.join(self.dir, "gw"))
        gw = self.start(transcoding={"enabled": True, "auto_transcode": False})
        f = await self.upload(gw, clip, "land.webm")
        await probed(gw, f["sha256"])
        await sleep(0.3)
        transcoder = gw.gateway.components.transcode
        self.assertIsNone(await transcoder.job(f["sha256"]))
        # an admin queues it
        job = await transcoder.retry(f["sha256"], 3)
        assert job is not None
        self.assertEqual(job.priority, 3)
        job = await self.job_end(transcoder, f["sha256"])
        self.assertEqual(job.state, "done", job.error)
        self.assertEqual([v["name"] for v in job.results["variants"]], ["720p", "480p"])

    async def test_a_video_of_many_chunks_is_probed_and_transcoded(self) -> None:
        """Hundreds of chunks: FFmpeg reads them through a ``concatf:`` list (a ``concat:a|b|..``
        URL stops at 4096 bytes, some forty chunk paths)."""
        gw = self.start(transcoding={"enabled": True})
        clip = os.path.join(self.dir, "many.mp4")
        subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=640x360:rate=10:duration=6", "-f", "lavfi", "-i",
                        "anoisesrc=duration=6", "-c:v", "libx264", "-preset", "ultrafast", "-b:v",
                        "8M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", clip],
                       check=True, timeout=120)
        f = await self.upload(gw, clip, "many.mp4")
        stored = await gw.store.get(f["sha256"])
        self.assertGreater(len(stored.chunks), 60)
        transcoder = gw.gateway.components.transcode
        job = await self.job_end(transcoder, f["sha256"])
        self.assertEqual(job.state, "done", job.error)
        self.assertEqual((job.probe["width"], job.probe["height"]), (640, 360))
        self.assertEqual(os.listdir(os.path.join(self.dir, "gw", "work")), [])

    async def test_admin_queue_refuses_what_is_not_a_probed_video(self) -> None:
        """A stored file that is not a video: 404 and no job; the gateway keeps serving."""
        admin_pub = public_key_hex(bytes.fromhex(ALICE))
        gw = self.start(transcoding={"enabled": True}, admin={"pubkeys": [admin_pub]})
        alice = await session_for(gw, ALICE)
        path = os.path.join(self.dir, "notes.bin")
        with open(path, "wb") as fh:
            fh.write(os.urandom(50_000))
        f = await self.upload(gw, path, "notes.bin")
        code, body = await self.retry(gw, f["sha256"], alice)
        self.assertEqual((code, body["error"]), (404, "job_not_found"))
        self.assertIsNone(await gw.gateway.components.transcode.job(f["sha256"]))
        code, body = await self.retry(gw, f["sha256"], alice, b"\xff\xfe")
        self.assertEqual((code, body["error"]), (400, "invalid_json"))
        code, _, _ = await call("GET", gw.url(f"/api/download/{f['sha256']}"))
        self.assertEqual(code, 200)
