"""Transcode outputs are derived files: served over HTTP, never announced as torrents (issue 15).

The whole plugin (``unified``: gateway API, Blossom, tracker, DHT, peer, Nostr, transcoding) on
loopback with a real nostr-relay 1.14 and FFmpeg. A 2 s video is uploaded and transcoded into two
renditions, each with its HLS playlist and 1 s segments, and a master playlist. Every one of those
outputs is stored (and served: a segment through ``/api/stream``, a rendition through Blossom),
but none is a torrent the gateway announces: the tracker never listed the gateway's peer for it,
the DHT never queued an announce of it and does not count it among its torrents, the peer does
not announce it, no NIP-35 event names it (the video itself gets its NIP-71 event), and the same
holds after a restart (the peer and the DHT start from the store's announced torrents). The
original upload is the control: announced everywhere.
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

from harness.gateway import serving_config
from harness.ports import free_tcp_port, free_udp_port
from harness.procs import read_relay_until_found, run_node_json_deferred
from harness.servers import start_nostr_relay
from tests.integration.test_nostr_gateway import Gateway, call
from tests.integration.test_transcode_gateway import call as fetch
from tests.integration.test_transcode_gateway import make_clip
from tgateway.config import Config

pytestmark = pytest.mark.integration


def sleep(seconds: float) -> Any:
    return deferLater(reactor, seconds, lambda: None)


class DerivedFilesTests(TestCase):
    timeout = 300

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-derived-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, relay_url: str) -> Config:
        data = os.path.join(self.dir, "gw")
        return serving_config(
            data,
            nostr={"relays": [relay_url], "video_relays": [relay_url]},
            tracker={"enabled": True, "udp_port": 0, "host": "127.0.0.1"},
            dht={"enabled": True, "port": free_udp_port(), "host": "127.0.0.1",
                 "bootstrap_nodes": []},
            peer={"port": free_tcp_port(), "host": "127.0.0.1"},
            transcoding={"enabled": True, "min_file_size": 0, "preset": "ultrafast",
                         "concurrent_jobs": 1, "work_dir": os.path.join(data, "work"),
                         "hls_segment_duration": "1s"},
        )

    def start(self, config: Config) -> Gateway:
        gw = Gateway(config)
        self.addCleanup(gw.stop)
        return gw

    async def test_hls_outputs_are_not_announced(self) -> None:
        relay = start_nostr_relay(os.path.join(self.dir, "relay"))
        self.addCleanup(relay.stop)
        config = self.config(relay.url)
        gw = self.start(config)
        g = gw.gateway
        tracker, dht, peer = g.components.tracker, g.components.dht, g.components.peer
        listed: list[bytes] = []  # info-hashes the tracker was ever told the gateway seeds
        dht_queued: list[bytes] = []
        add_local_peer, dht_announce = tracker.add_local_peer, dht.announce

        def record_listed(ih: bytes, ip: str, port: int) -> None:
            listed.append(ih)
            add_local_peer(ih, ip, port)

        def record_dht(ih: bytes) -> None:
            dht_queued.append(ih)
            dht_announce(ih)

        tracker.add_local_peer = record_listed  # the peer's announcer calls it
        dht.announce = record_dht  # the DHT's stored-event subscriber and its schedule call it

        clip = make_clip(os.path.join(self.dir, "land.webm"), "webm")
        with open(clip, "rb") as fh:
            code, original = await call("PUT", gw.url("/api/upload"), data=fh.read(),
                                        headers={"X-Filename": "land.webm", "X-Title": "Clip"})
        self.assertEqual(code, 201, original)
        sha = original["sha256"]
        transcoder = g.components.transcode
        deadline = time.monotonic() + 180
        job = None
        while time.monotonic() < deadline:
            job = await transcoder.job(sha)
            if job is not None and job.state in ("done", "failed"):
                break
            await sleep(0.1)
        assert job is not None
        self.assertEqual(job.state, "done", (job.error, job.stderr_tail))
        variants = job.results["variants"]
        segments = [s for v in variants for s in v["segments"]]
        outputs = set(job.results["outputs"])
        self.assertEqual(len(variants), 2)
        self.assertGreaterEqual(len(segments), 4)
        self.assertEqual(outputs, {job.results["master"], *segments,
                                   *(v["sha256"] for v in variants),
                                   *(v["playlist"] for v in variants)})
        derived = {}
        for out in outputs:
            f = await g.store.get(out)
            self.assertIsNotNone(f, out)
            derived[out] = f.info_hash_bytes
        own = bytes.fromhex(original["info_hash"])

        # served over HTTP: a segment through the stream routes, a rendition through Blossom
        code, _, _ = await fetch("GET", gw.url(f"/api/stream/{sha}/{segments[0]}.ts"))
        self.assertEqual(code, 200)
        code, _, _ = await fetch("HEAD", f"http://127.0.0.1:{config.blossom_server.port}/"
                                      f"{variants[0]['sha256']}")
        self.assertEqual(code, 200)

        # the original's NIP-35 and NIP-71 events went out: anything else queued has too
        answer = await read_relay_until_found(
            reactor, relay.url, {"kinds": [21], "authors": [gw.nostr.pubkey]}, within=60)
        self.assertEqual(answer["verified"], [True])
        await read_relay_until_found(
            reactor, relay.url, {"kinds": [2003], "authors": [gw.nostr.pubkey]}, within=60)
        await sleep(1.0)
        answer = await run_node_json_deferred(
            reactor, "nostr_relay_read.mjs", relay.url,
            json.dumps({"kinds": [2003], "authors": [gw.nostr.pubkey]}), timeout=60)
        self.assertEqual({t[1] for e in answer["events"] for t in e["tags"] if t[0] == "x"},
                         {original["info_hash"]})

        # the original is announced everywhere; no output anywhere
        self.assertEqual(set(listed), {own})
        self.assertEqual(set(dht_queued), {own})
        self.assertEqual(dht.status()["known_torrents"], 1)
        self.assertEqual(set(tracker.store.local), {own})
        self.assertEqual(set(peer.announcer.torrents), {own})
        self.assertEqual(g.store.announced_info_hashes(), {own})
        for ih in derived.values():
            self.assertTrue(g.store.has_info_hash(ih))  # stored all the same

        # after a restart, the peer and the DHT start from the announced torrents only
        await gw.stop()
        again = self.start(config)
        g = again.gateway
        await sleep(0.5)
        self.assertEqual(set(g.components.peer.announcer.torrents), {own})
        self.assertEqual(set(g.components.tracker.store.local), {own})
        self.assertEqual(g.components.dht.status()["known_torrents"], 1)
        self.assertEqual(g.store.announced_info_hashes(), {own})
