"""NIP-35 and NIP-71 events of a video as a Nostr client reads them (issue 16, points 2 and 4).

The whole plugin (gateway API, Blossom, Nostr, transcoding with FFmpeg) on loopback with a real
nostr-relay 1.14; nostr-tools reads the events back (``nostr_media_read.mjs``: verifyEvent,
validateEvent, the kind's class and name from nostr-tools' kinds, the filter matched by the relay
on ``#x``, ``#d``, ``#t`` and ``#i``) and the test follows the links they carry.

- NIP-35 (kind 2003, regular): published once the upload is probed, with NIP-35's tags (title,
  ``x`` = the magnet's info-hash, file, tracker, ``i tcat:video,streaming``) and the seed's (magnet,
  webseed, blossom, stream, hls, transcoded, duration, video WxH/fps/codec, m, t torrent/video/
  streaming, tcat); content a human line. While the transcode is queued the stream URL serves
  the original and the HLS and transcoded URLs answer 202 with Retry-After.
- NIP-71 with ``nostr.nip71_addressable``: kind 34235 with ``d`` = the video's sha256, out once
  probed with the original alone, then replaced (same ``d``, same ``published_at``) once the
  renditions are ready: one ``imeta`` per rendition and one for the HLS master playlist, every
  URL and fallback answering.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from harness.gateway import RunningGateway, serving_config
from harness.procs import run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.integration.test_transcode_gateway import call, make_clip

pytestmark = pytest.mark.integration


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class MediaEventsTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-media-events-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    async def read(self, relay_url: str, nostr_filter: dict[str, Any], *, until: Any = bool,
                   within: float = 120) -> list[dict[str, Any]]:
        """nostr-tools' reading of ``nostr_filter`` once ``until(events)`` holds."""
        deadline = time.monotonic() + within
        events: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            answer = await run_node_json_deferred(
                reactor, "nostr_media_read.mjs", relay_url, json.dumps(nostr_filter), timeout=60)
            events = answer["events"]
            if until(events):
                return events
            await sleep(0.5)
        self.fail(f"no events matching {nostr_filter} as expected: {events}")

    def check_client_view(self, item: dict[str, Any], kind_class: str, name: str) -> None:
        self.assertTrue(item["verified"], item)
        self.assertTrue(item["valid"], item)
        self.assertTrue(item["matches"], item)
        self.assertEqual((item["class"], item["kind_name"]), (kind_class, name))

    async def test_video_events_read_back_and_their_links_followed(self) -> None:
        relay = start_nostr_relay(os.path.join(self.dir, "relay"))
        self.addCleanup(relay.stop)
        data = os.path.join(self.dir, "gw")
        gw = RunningGateway(serving_config(
            data,
            nostr={"relays": [relay.url], "video_relays": [relay.url],
                   "nip71_addressable": True},
            transcoding={"enabled": True, "min_file_size": 0, "preset": "ultrafast",
                         "concurrent_jobs": 1, "work_dir": os.path.join(data, "work"),
                         "hls_segment_duration": "1s"}))
        self.addCleanup(gw.stop)
        nostr = gw.gateway.components.nostr
        nostr.outbox.publish_timeout, nostr.outbox.retry_initial = 2.0, 0.5
        transcoder = gw.gateway.components.transcode
        # hold the queue: the job stays queued while the test follows the event's links
        kick = transcoder.kick
        transcoder.kick = lambda: None

        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm", seconds=2)
        with open(clip, "rb") as fh:
            original = fh.read()
        code, body, _ = await call("PUT", gw.url("/api/upload"), data=original,
                                   headers={"X-Filename": "land.webm"})
        self.assertEqual(code, 201, body)
        f = json.loads(body)
        sha, ih = f["sha256"], f["info_hash"]

        # NIP-35, as nostr-tools reads it, found by the relay on its x, t and i tags
        [item] = await self.read(relay.url, {"kinds": [2003], "#x": [ih], "#t": ["streaming"],
                                             "#i": ["tcat:video,streaming"]})
        self.check_client_view(item, "regular", "Torrent")
        torrent, event = item["torrent"], item["event"]
        self.assertEqual(event["pubkey"], nostr.pubkey)
        self.assertEqual((torrent["info_hash"], torrent["magnet_btih"]), (ih, ih))
        self.assertEqual(torrent["files"], [["land.webm", len(original)]])
        self.assertEqual(torrent["categories"], [["video", "streaming"]])
        self.assertEqual(torrent["topics"], ["torrent", "video", "streaming"])
        self.assertEqual(event["content"], "New torrent: land.webm")
        tags = {t[0]: t[1:] for t in event["tags"]}
        base = gw.url(f"/api/stream/{sha}")
        self.assertEqual(tags["stream"], [base])
        self.assertEqual(tags["hls"], [f"{base}/playlist.m3u8"])
        self.assertEqual(tags["transcoded"], [f"{base}?transcoded=true"])
        self.assertLess(abs(float(tags["duration"][0]) - 2.0), 0.1, tags["duration"])
        self.assertEqual(tags["video"], ["1280x720", "10fps", "vp9"])
        self.assertEqual(tags["m"], ["video/webm"])
        self.assertEqual(tags["tcat"], ["video,streaming"])
        self.assertEqual(tags["blossom"], [sha, f"{gw.blossom_base}/{sha}"])
        self.assertEqual(tags["webseed"], [f["urls"]["webseed"]])
        self.assertEqual(tags["magnet"], [f["magnet"]])

        # its links, followed while the transcode is queued
        for url in (tags["hls"][0], tags["transcoded"][0]):
            code, body, headers = await call("GET", url)
            self.assertEqual(code, 202, (url, body))
            self.assertEqual(headers.getRawHeaders("retry-after"), ["10"])
        code, body, headers = await call("GET", tags["stream"][0])
        self.assertEqual((code, body == original), (200, True))
        self.assertEqual(headers.getRawHeaders("x-stream-source"), ["original"])
        for url in (tags["webseed"][0], tags["blossom"][1]):
            code, body, _ = await call("GET", url)
            self.assertEqual((code, body == original), (200, True), url)

        # NIP-71, addressable: the first version, with the original alone
        [item] = await self.read(relay.url, {"kinds": [34235], "#d": [sha]})
        self.check_client_view(item, "parameterized", "AddressableNormalVideo")
        first = item["video"]
        self.assertEqual(first["d"], sha)
        self.assertEqual([v["url"] for v in first["variants"]], [base])
        self.assertEqual(first["variants"][0]["x"], sha)

        # the transcode runs; the event is replaced
        transcoder.kick = kick
        kick()

        def replaced(events: list[dict[str, Any]]) -> bool:
            return any(len(e["video"]["variants"]) > 1 for e in events)

        items = await self.read(relay.url, {"kinds": [34235], "#d": [sha]}, until=replaced,
                                within=180)
        [item] = items  # the relay keeps only the newest version of the address
        self.check_client_view(item, "parameterized", "AddressableNormalVideo")
        final = item["video"]
        self.assertEqual(final["published_at"], first["published_at"])
        self.assertGreater(item["event"]["created_at"], 0)
        job = await transcoder.job(sha)
        self.assertEqual(job.state, "done")
        renditions = job.results["variants"]
        self.assertEqual(len(final["variants"]), len(renditions) + 1)
        for v, r in zip(final["variants"], renditions, strict=False):
            self.assertEqual((v["m"], v["x"], v["dim"]),
                             ("video/mp4", r["sha256"], f"{r['width']}x{r['height']}"))
            self.assertEqual((v["duration"], v["bitrate"]), (tags["duration"][0], str(r["bitrate"])))
            for url in (v["url"], *v["fallback"]):
                code, body, _ = await call("GET", url)
                self.assertEqual(code, 200, url)
                self.assertEqual(len(body), r["size"], url)
        hls = final["variants"][-1]
        self.assertEqual((hls["url"], hls["m"], hls["x"]),
                         (f"{base}/playlist.m3u8", "application/x-mpegURL", job.results["master"]))
        self.assertEqual(hls["dim"], "1280x720")
        self.assertEqual(hls["fallback"], [f"{gw.blossom_base}/{job.results['master']}"])
        for url in (hls["url"], *hls["fallback"]):
            code, body, _ = await call("GET", url)
            self.assertEqual(code, 200, url)
            self.assertIn(b"#EXT-X-STREAM-INF", body)
        # the links of the NIP-35 event now lead to the renditions
        code, body, headers = await call("GET", tags["stream"][0])
        self.assertEqual((code, headers.getRawHeaders("x-stream-source")), (200, ["transcoded"]))
        code, body, _ = await call("GET", tags["transcoded"][0])
        self.assertEqual(code, 200)
