"""Transcoding across a crash, and the NIP-71 event read back from a loopback relay.

- ``twistd tgateway`` killed (SIGKILL) while FFmpeg runs, restarted with the same config: the job
  runs again and ends, and the stream serves the transcoded MP4;
- a transcoded video is announced as kind 21 to ``nostr.video_relays``; nostr-tools reads it back,
  ``verifyEvent`` accepts it, and it carries one ``imeta`` per rendition and one for the HLS
  master playlist.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import pytest
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from harness.gateway import RunningGateway, small_config
from harness.procs import read_relay_until_found
from harness.servers import start_nostr_relay
from harness.twistd import GatewayProcess, gateway_config, wait_until
from tests.integration.test_transcode_gateway import call, make_clip

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_killed_mid_transcode_resumes_after_restart(tmp_path: Path) -> None:
    clip = make_clip(str(tmp_path / "long.webm"), "webm", seconds=30)
    data = tmp_path / "gw"
    config = gateway_config(data, transcoding={
        "enabled": True, "min_file_size": 0, "preset": "ultrafast", "concurrent_jobs": 1,
        "work_dir": str(data / "work"), "hls_segment_duration": "2s"})
    gw = GatewayProcess(config, tmp_path / "run").start()
    try:
        req = urllib.request.Request(gw.url("/api/upload"), data=Path(clip).read_bytes(),
                                     method="PUT", headers={"X-Filename": "long.webm"})
        with urllib.request.urlopen(req, timeout=30) as r:
            sha = json.loads(r.read())["sha256"]
        # wait until FFmpeg has written output, then crash the whole process group
        work = data / "work" / sha
        assert wait_until(lambda: (work / "720p.mp4").exists()
                          and (work / "720p.mp4").stat().st_size > 0, timeout=60), gw.log()[-3000:]
        gw.kill()
        code, body = 0, b""
        gw.start()
        assert wait_until(lambda: _get(gw.url(f"/api/files/{sha}"))[0] == 200, timeout=30)
        assert wait_until(
            lambda: json.loads(_get(gw.url(f"/api/files/{sha}"))[1]).get("meta", {})
            .get("transcoding", {}).get("state") == "done", timeout=180), gw.log()[-3000:]
        assert "interrupted transcoding jobs queued again" in gw.log()
        code, body = _get(gw.url(f"/api/stream/{sha}/playlist.m3u8"))
        assert code == 200 and b"RESOLUTION=1280x720" in body
    finally:
        gw.stop()


class Nip71Tests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-nip71-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    async def test_video_event_read_back_and_verified(self) -> None:
        relay = start_nostr_relay(os.path.join(self.dir, "relay"))
        self.addCleanup(relay.stop)
        data = os.path.join(self.dir, "gw")
        config = small_config(
            data, nostr={"video_relays": [relay.url], "publish_nip71": True},
            transcoding={"enabled": True, "min_file_size": 0, "preset": "ultrafast",
                         "work_dir": os.path.join(data, "work"), "hls_segment_duration": "1s"})
        gw = RunningGateway(config)
        self.addCleanup(gw.stop)
        nostr = gw.gateway.components.nostr
        nostr.outbox.publish_timeout, nostr.outbox.retry_initial = 2.0, 0.5
        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        with open(clip, "rb") as fh:
            code, body, _ = await call("PUT", gw.url("/api/upload"), data=fh.read(),
                                       headers={"X-Filename": "land.webm", "X-Title": "Test clip"})
        f = json.loads(body)
        answer = await read_relay_until_found(
            reactor, relay.url, {"kinds": [21, 22], "authors": [nostr.pubkey]}, within=120)
        self.assertEqual(answer["verified"], [True])
        [event] = answer["events"]
        self.assertEqual(event["kind"], 21)
        job = await gw.gateway.components.transcode.job(f["sha256"])
        imeta = [t for t in event["tags"] if t[0] == "imeta"]
        # one per rendition, and one for the HLS master playlist
        self.assertEqual(len(imeta), len(job.results["variants"]) + 1)
        self.assertEqual(len(imeta), 3)
        self.assertIn("m application/x-mpegURL", imeta[-1])
        self.assertIn(f"x {job.results['master']}", imeta[-1])
        self.assertIn("dim 1280x720", imeta[0])
        self.assertIn("m video/mp4", imeta[0])
        self.assertIn(f"x {job.results['variants'][0]['sha256']}", imeta[0])
        tags = {t[0]: t[1] for t in event["tags"] if t[0] != "imeta"}
        self.assertEqual(tags["title"], "Test clip")
        self.assertEqual(tags["i"], f["info_hash"])
        self.assertTrue(tags["magnet"].startswith("magnet:?xt=urn:btih:" + f["info_hash"]))
        self.assertIn("published_at", tags)
        self.assertIn("alt", tags)
        self.assertIn("duration", tags)
