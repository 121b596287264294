"""A video upload's NIP-35 announcement survives a crash before its probe ended (the durability
rule: a restart loses no unpublished announcement).

``twistd tgateway`` with a real nostr-relay: a short video is uploaded with a title while its
probe cannot end (the ``ffprobe`` on the child's PATH never returns), the process is killed
(SIGKILL) right after the upload answered, then started again with the real FFmpeg: the start
examines the stored video, and nostr-tools reads its kind 2003 event, with the uploader's title
and the probe's tags, from the relay.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.procs import run_node_json
from harness.servers import start_nostr_relay
from harness.twistd import GatewayProcess, gateway_config
from tests.integration.test_transcode_gateway import ffmpeg, make_clip

pytestmark = pytest.mark.integration


def read_torrents(relay_url: str, info_hash: str) -> list[dict[str, Any]]:
    answer = run_node_json("nostr_media_read.mjs", relay_url,
                           json.dumps({"kinds": [2003], "#x": [info_hash]}), timeout=60)
    return list(answer["events"])


def test_a_video_killed_before_its_probe_is_announced_after_the_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = make_clip(str(tmp_path / "clip.webm"), "webm", seconds=1)
    relay = start_nostr_relay(tmp_path / "relay")
    try:
        # FFmpeg whose probe never ends: the upload is stored, its examination held back
        stuck = tmp_path / "stuck-ffmpeg"
        stuck.mkdir()
        (stuck / "ffmpeg").symlink_to(ffmpeg())
        (stuck / "ffprobe").write_text("#!/bin/sh\nexec sleep 600\n")
        (stuck / "ffprobe").chmod(0o755)
        path = os.environ["PATH"]
        monkeypatch.setenv("PATH", f"{stuck}:{path}")
        data = tmp_path / "gw"
        gw = GatewayProcess(gateway_config(data, nostr={"relays": [relay.url]}),
                            tmp_path / "run").start()
        try:
            # no Content-Type given: urllib sends application/x-www-form-urlencoded, as curl
            # does; the store tells a video by its first bytes
            req = urllib.request.Request(
                gw.url("/api/upload"), data=Path(clip).read_bytes(), method="PUT",
                headers={"X-Filename": "clip.webm", "X-Title": "Before the crash"})
            with urllib.request.urlopen(req, timeout=30) as r:
                assert r.status == 201
                info_hash = json.loads(r.read())["info_hash"]
            gw.kill()
            assert read_torrents(relay.url, info_hash) == []  # it waited for the probe

            monkeypatch.setenv("PATH", path)
            gw.start()
            deadline = time.monotonic() + 90
            events = read_torrents(relay.url, info_hash)
            while not events and time.monotonic() < deadline:
                time.sleep(0.5)
                events = read_torrents(relay.url, info_hash)
            assert events, gw.log()[-3000:]
        finally:
            gw.stop()
    finally:
        relay.stop()
    [item] = events
    assert item["verified"] and item["valid"], item
    assert item["torrent"]["title"] == "Before the crash"
    assert item["torrent"]["topics"] == ["torrent", "video", "streaming"]
    tags = {t[0]: t[1:] for t in item["event"]["tags"]}
    assert tags["video"] == ["1280x720", "10fps", "vp9"]  # probed after the restart
    assert abs(float(tags["duration"][0]) - 1.0) < 0.1
