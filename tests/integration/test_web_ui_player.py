"""The file page's player in Chromium (issue 19, point 2): a video uploaded through the page plays
from the original while it is transcoded, with the transcode's live progress, then from HLS
(hls.js, the vendored build) with the quality choice listed; an image shows, audio gets a player.

FFmpeg is the real one (Debian's), reached through a wrapper on PATH whose encode waits until the
test opens a gate: the page must be seen playing the original, with the transcode running, before
the transcode can finish (on 2 cores a short clip transcodes in a second or two).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from harness.tools import chromium_browser, ffmpeg
from harness.twistd import GatewayProcess
from tests.webui import open_page, web_config

pytestmark = pytest.mark.integration

PLAYING = """([source, after]) => {
  const v = document.querySelector('#media video')
  return v && v.dataset.source === source && !v.paused && v.currentTime > after
}"""


def gated_ffmpeg(folder: Path, gate: Path) -> Path:
    """A folder with an ``ffmpeg`` whose encodes wait until ``gate`` exists, two minutes at most
    (the HLS segmenting after an encode copies streams and does not wait)."""
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "ffmpeg"
    wrapper.write_text(
        '#!/bin/sh\n'
        f'case "$*" in *libx264*) i=0; while [ ! -e {gate} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done;; esac\n'
        f'exec {ffmpeg()} "$@"\n')
    wrapper.chmod(0o755)
    return folder


def make_clip(path: Path) -> Path:
    subprocess.run([ffmpeg(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=10:duration=20",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=20",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10",
                    "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart", str(path)],
                   check=True, timeout=60)
    return path


def test_video_plays_the_original_then_hls_with_qualities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = make_clip(tmp_path / "clip.mp4")
    gate = tmp_path / "encode"
    monkeypatch.setenv("PATH", f"{gated_ffmpeg(tmp_path / 'bin', gate)}:{os.environ['PATH']}")
    cfg = web_config(tmp_path / "data", transcoding={
        "enabled": True, "min_file_size": 0, "preset": "ultrafast", "concurrent_jobs": 1,
        "hls_segment_duration": "1s", "work_dir": str(tmp_path / "data" / "work"),
        "profiles": [{"name": "360p", "height": 360, "video_bitrate": "500k", "audio_bitrate": "64k"},
                     {"name": "240p", "height": 240, "video_bitrate": "250k", "audio_bitrate": "48k"}]})
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, gw.url("/"))
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.set_input_files("#upload-files", [str(clip)])
        page.get_by_role("link", name="Open file page").click()
        video = page.locator("#media video[data-source]")
        video.wait_for()
        page.evaluate("""() => { window.statuses = []
          new MutationObserver(() => window.statuses.push(document.querySelector('.player-status').textContent))
            .observe(document.querySelector('.player-status'), { childList: true, characterData: true, subtree: true }) }""")
        assert video.get_attribute("data-source") == "original"
        page.evaluate("() => { const v = document.querySelector('#media video'); v.muted = true; v.play() }")
        page.wait_for_function(PLAYING, arg=["original", 0.5])
        # queued, then running with its progress (first "Playing the original" while the upload
        # is not probed yet); the encode waits at the gate meanwhile
        page.wait_for_function("""() => /^Preparing streams: \\d+ % · playing the original meanwhile$/
            .test(document.querySelector('.player-status').textContent)""")
        gate.touch()

        page.wait_for_function(PLAYING, arg=["hls", 0], timeout=60_000)
        statuses = page.evaluate("() => window.statuses")
        assert any(re.match(r"Preparing streams: \d+ % · playing the original meanwhile", t) for t in statuses), statuses
        switched_at = page.evaluate("() => document.querySelector('#media video').currentTime")
        page.wait_for_function(PLAYING, arg=["hls", switched_at + 0.5])
        assert switched_at > 0.5  # it went on from where the original was, not from the start
        quality = page.get_by_label("Quality")
        assert quality.locator("option").all_inner_texts()[1:] == ["360p", "240p"]
        for height in ("360p", "240p"):  # the choice switches the rendition that plays
            quality.select_option(label=height)
            page.wait_for_function("(q) => document.querySelector('#media video').dataset.quality === q",
                                   arg=height)
        assert page.locator(".player-status").inner_text() == "Streaming in 360p, 240p"
        assert any(u.endswith("/playlist.m3u8") for u in requested)
        assert any(u.endswith(".ts") for u in requested)
        assert any("/static/vendor/hls-" in u for u in requested)
        watched.check()


def test_image_shows_and_audio_gets_a_player(tmp_path: Path) -> None:
    png, ogg = tmp_path / "pic.png", tmp_path / "tone.ogg"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x48",
                    "-frames:v", "1", str(png)], check=True)
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "libvorbis", str(ogg)], check=True)
    cfg = web_config(tmp_path / "data")
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        shas = {}
        for path, ctype in ((png, "image/png"), (ogg, "audio/ogg")):
            request = urllib.request.Request(gw.url("/api/upload"), data=path.read_bytes(), method="PUT",
                                             headers={"X-Filename": path.name, "Content-Type": ctype})
            with urllib.request.urlopen(request, timeout=30) as r:
                shas[path.name] = json.loads(r.read())["sha256"]
        context, page, watched = open_page(browser, gw.url(f"/f/{shas['pic.png']}"))
        image = page.get_by_role("img", name="Preview of pic.png")
        image.wait_for()
        page.wait_for_function("() => document.querySelector('#media img').naturalWidth === 64")
        page.goto(gw.url(f"/f/{shas['tone.ogg']}"))
        page.wait_for_function("() => { const a = document.querySelector('#media audio'); return a && a.duration > 0.5 }")
        watched.check()
