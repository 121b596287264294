"""Uploading through the web page in Chromium (issue 19, points 1 and 7).

Two files go up through the page, one picked with the file chooser and one dropped on the drop
zone, while a third is cancelled half-way. Uploads are throttled by Chromium's network emulation
so the progress can be watched: each bar goes to 100 % through speed and time-left readings, the
cancelled one stops and never becomes a file. The cards show the sha256, the magnet and every
link; the bytes downloaded through a card's link equal the originals. A refused upload shows the
API's message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import open_page, throttle_upload, web_config

pytestmark = pytest.mark.integration

RECORD = """() => {
  window.seen = { meta: [], bars: {} }
  new MutationObserver(() => {
    for (const task of document.querySelectorAll('.task')) {
      const name = task.querySelector('.task-name').textContent
      const bar = task.querySelector('progress')
      ;(window.seen.bars[name] = window.seen.bars[name] || []).push(bar.value)
      window.seen.meta.push(name + ': ' + task.querySelector('.task-meta').textContent)
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true })
}"""

DROP = """async ([name, b64, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
  const data = new DataTransfer()
  data.items.add(new File([bytes], name, { type }))
  const zone = document.getElementById('drop')
  for (const kind of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(kind, { dataTransfer: data, bubbles: true, cancelable: true }))
  }
}"""


def api_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_upload_two_files_cancel_one_and_download_them(tmp_path: Path) -> None:
    files = {
        "video-notes.bin": os.urandom(2_500_000),
        "cancel-me.bin": os.urandom(12_000_000),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    dropped = ("readme.txt", b"Dropped on the page.\n" * 2000)
    cfg = web_config(tmp_path / "data")
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, gw.url("/"), accept_downloads=True)
        throttle_upload(context, page, 2_000_000)
        puts: dict[str, dict[str, str]] = {}
        page.on("request", lambda r: r.method == "PUT" and puts.__setitem__(
            urllib.parse.unquote(r.headers["x-filename"]), r.headers))
        page.evaluate(RECORD)
        page.set_input_files("#upload-files", [str(tmp_path / n) for n in files])
        cancel_row = page.locator(".task", has_text="cancel-me.bin")
        page.wait_for_function("""() => [...document.querySelectorAll('.task')].some((t) =>
            t.textContent.includes('cancel-me.bin') && t.querySelector('progress').value >= 5)""")
        cancel_row.get_by_role("button", name="Cancel the upload of cancel-me.bin").click()
        page.wait_for_selector(".task-cancelled")
        assert cancel_row.locator(".task-meta").inner_text() == "Cancelled"

        # the next file with a title and off the DHT
        page.get_by_text("Title, description and DHT").click()
        page.get_by_label("Title").fill("Read me first")
        page.get_by_label("Keep off the DHT").check()
        page.evaluate(DROP, [dropped[0], base64.b64encode(dropped[1]).decode(), "text/plain"])
        page.wait_for_function("() => document.querySelectorAll('.card').length === 2", timeout=30_000)

        seen = page.evaluate("() => window.seen")
        for name in ("video-notes.bin", "readme.txt"):
            bars = seen["bars"][name]
            assert bars[-1] == 100 and bars == sorted(bars), (name, bars)
            row = page.locator(".task", has_text=name)
            assert row.locator(".task-meta").inner_text().startswith("100 % · done")
        # speed and time left were shown on the way (the big file at ~2 MB/s takes > 1 s)
        readings = [m for m in seen["meta"] if m.startswith("video-notes.bin:")]
        assert any(re.search(r"\d+ % · [\d.]+ [kM]B/s · \d+ s left", m) for m in readings), readings
        assert max(seen["bars"]["cancel-me.bin"]) < 100

        originals = {"video-notes.bin": files["video-notes.bin"], "readme.txt": dropped[1]}
        for name, data in originals.items():
            sha = hashlib.sha256(data).hexdigest()
            card = page.locator(f'.card[data-sha256="{sha}"]')
            assert card.locator("code.hash").inner_text() == sha
            status, meta = api_json(gw.url(f"/api/files/{sha}"))
            assert status == 200
            assert card.locator('li[data-face="magnet"] a').get_attribute("href") == meta["magnet"]
            assert meta["magnet"].startswith(f"magnet:?xt=urn:btih:{meta['info_hash']}")
            for face in ("torrent", "download", "webseed", "stream", "blossom", "metadata"):
                assert card.locator(f'li[data-face="{face}"] a').get_attribute("href") == meta["urls"][face]
            assert card.locator('li[data-face="blossom_uri"] a').get_attribute("href") == meta["blossom_uri"]
            assert card.get_by_role("link", name="Open file page").get_attribute("href") == f"/f/{sha}"
            with page.expect_download() as download:
                card.get_by_role("link", name="Download", exact=True).click()
            assert Path(download.value.path()).read_bytes() == data, name
            # the QR code of the magnet opens in the card
            qr = card.get_by_role("button", name="QR code of the Magnet link")
            qr.click()
            card.get_by_role("img", name="QR code of the Magnet link").wait_for()
            assert qr.get_attribute("aria-expanded") == "true"

        # the File itself was the body (no multipart), with the options as headers
        assert puts["readme.txt"]["x-announce-dht"] == "false"
        assert urllib.parse.unquote(puts["readme.txt"]["x-title"]) == "Read me first"
        assert puts["readme.txt"]["content-type"] == "text/plain"
        assert "x-announce-dht" not in puts["video-notes.bin"] and "x-title" not in puts["video-notes.bin"]
        assert page.locator(".card h3", has_text="Read me first").count() == 1

        cancelled = hashlib.sha256(files["cancel-me.bin"]).hexdigest()
        assert api_json(gw.url(f"/api/files/{cancelled}"))[0] == 404
        watched.check()


def test_a_refused_upload_shows_the_api_message(tmp_path: Path) -> None:
    cfg = web_config(tmp_path / "data", rate_limiting={
        "upload": {"requests_per_second": 0.001, "burst_size": 1}})
    for name in ("one.bin", "two.bin"):
        (tmp_path / name).write_bytes(os.urandom(1000))
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, gw.url("/"))
        page.set_input_files("#upload-files", [str(tmp_path / "one.bin"), str(tmp_path / "two.bin")])
        row = page.locator(".task-failed")
        row.wait_for()
        assert row.locator(".task-meta").inner_text() == "too many upload requests; retry later"
        assert row.locator(".task-meta").get_attribute("role") == "alert"
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 1
        watched.check()


def test_files_picked_before_the_page_script_runs_are_uploaded(tmp_path: Path) -> None:
    """The page's module is imported after the page has loaded; a file picked in between (a quick
    user, or a loaded machine) has fired its change event before anyone listened. The module
    takes what the input already holds when it starts."""
    data = os.urandom(5000)
    (tmp_path / "early.bin").write_bytes(data)
    with GatewayProcess(web_config(tmp_path / "data"), tmp_path / "gw") as gw, \
            chromium_browser() as browser:
        context, page, watched = open_page(browser, "")
        held: list[object] = []
        page.route("**/upload-page.js", lambda route: held.append(route))
        page.goto(gw.url("/"))
        page.wait_for_function("() => document.documentElement.classList.contains('js')")
        assert len(held) == 1  # the module is still on its way
        page.set_input_files("#upload-files", [str(tmp_path / "early.bin")])
        held[0].continue_()  # type: ignore[attr-defined]
        card = page.locator(".card")
        card.wait_for()
        assert hashlib.sha256(data).hexdigest() in card.inner_text()
        watched.check()
