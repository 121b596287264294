"""The web interface at desktop and phone width, by keyboard, and without JavaScript (issue 19,
point 7), and the screenshots in the README.

A signed-in person uploads a video, an image and a text file through the page. At 1280 and 390
pixels wide the upload page with its cards, the file page with the player (HLS once the
transcode is done) and "My files" fit the width (no sideways scrolling); every control has an
accessible name, every image a text alternative. By keyboard: the first Tab reaches "Skip to
content", the sign-in dialog opens with Enter and closes with Escape, focus back on its button.
Without JavaScript the file page still downloads the file.

Screenshots of each page at both widths go to the test's folder, or to ``docs/screenshots`` with
``TGATEWAY_SCREENSHOTS=docs/screenshots`` (``scripts/screenshots``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.tools import chromium_browser, ffmpeg
from harness.twistd import GatewayProcess
from tests.webui import (
    DESKTOP,
    PHONE,
    check_page,
    expect,
    install_nip07,
    open_page,
    web_config,
)

pytestmark = pytest.mark.integration

KEY = bytes.fromhex("4d" * 32)


def media(tmp: Path) -> dict[str, Path]:
    clip, pic = tmp / "Sunset timelapse.mp4", tmp / "harbour.png"
    subprocess.run([ffmpeg(), "-v", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=960x540:rate=10:duration=6",
                    "-f", "lavfi", "-i", "sine=frequency=330:duration=6",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "10",
                    "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart", str(clip)],
                   check=True, timeout=60)
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "mandelbrot=size=640x360",
                    "-frames:v", "1", str(pic)], check=True, timeout=60)
    notes = tmp / "release-notes.txt"
    notes.write_text("What is new\n" * 4000)
    return {"clip": clip, "pic": pic, "notes": notes}


def test_pages_at_desktop_and_phone_width_by_keyboard_and_without_javascript(tmp_path: Path) -> None:
    files = media(tmp_path)
    cfg = web_config(tmp_path / "data", transcoding={
        "enabled": True, "min_file_size": 0, "preset": "ultrafast", "concurrent_jobs": 1,
        "hls_segment_duration": "1s", "work_dir": str(tmp_path / "data" / "work"),
        "profiles": [{"name": "540p", "height": 540, "video_bitrate": "800k", "audio_bitrate": "64k"},
                     {"name": "360p", "height": 360, "video_bitrate": "400k", "audio_bitrate": "64k"}]},
        admin={"default_user_storage_limit": "50MB"})
    shots = tmp_path / "screenshots"
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, "", viewport=DESKTOP, accept_downloads=True)
        install_nip07(page, KEY)
        page.goto(gw.url("/"))

        # keyboard: skip link first, the dialog opens with Enter and closes with Escape
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.activeElement.id === 'main'")
        signin = page.locator("#account").get_by_role("button", name="Sign in")
        signin.focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog", name="Sign in with Nostr")
        expect(dialog).to_be_visible()
        assert page.evaluate("() => !!document.activeElement.closest('dialog')")
        check_page(page, "signin", "desktop", shots)
        page.keyboard.press("Escape")
        expect(dialog).to_be_hidden()
        page.wait_for_function("() => document.activeElement.id === 'signin-open'")
        signin.click()
        dialog.get_by_role("button", name="Sign in with extension").click()
        page.locator(".who").wait_for()

        page.get_by_text("Title, description and DHT").click()
        page.get_by_label("Title").fill("Sunset over the harbour")
        page.get_by_label("Description").fill("Six seconds of test pattern, transcoded to HLS in two qualities.")
        page.set_input_files("#upload-files", [str(files["clip"])])
        page.wait_for_selector(".card")
        page.get_by_label("Title").fill("")
        page.get_by_label("Description").fill("")
        page.set_input_files("#upload-files", [str(files["pic"]), str(files["notes"])])
        page.wait_for_function("() => document.querySelectorAll('.card').length === 3")
        clip_sha = page.locator(".card", has_text="Sunset over the harbour").get_attribute("data-sha256")
        pic_sha = page.locator(".card", has_text="harbour.png").get_attribute("data-sha256")
        # the drop zone, the uploads and the first card in view
        page.get_by_text("Title, description and DHT").click()
        page.evaluate("() => document.getElementById('upload-form').scrollIntoView({ block: 'start' })")
        check_page(page, "upload", "desktop", shots)

        page.goto(gw.url(f"/f/{clip_sha}"))
        page.wait_for_function("() => document.querySelector('#media video')?.dataset.source === 'hls'",
                               timeout=60_000)
        page.evaluate("""() => new Promise((done) => {
            const v = document.querySelector('#media video'); v.muted = true
            v.addEventListener('timeupdate', function f () {
              if (v.currentTime > 2) { v.pause(); v.removeEventListener('timeupdate', f); done() } })
            v.play() })""")
        page.locator('[data-stat="seeders"]').wait_for()
        owner = page.locator("#owner-transcode")
        expect(owner).to_have_text("Streams ready: 540p, 360p")
        check_page(page, "file", "desktop", shots)

        page.goto(gw.url("/me"))
        page.wait_for_function("() => document.querySelectorAll('.file-row').length === 3")
        page.wait_for_function("""() => [...document.querySelectorAll('.badge')]
            .every((b) => !b.textContent.includes('…'))""")
        check_page(page, "myfiles", "desktop", shots)

        page.set_viewport_size(PHONE)
        for name, path in (("upload", "/"), ("file", f"/f/{clip_sha}"), ("myfiles", "/me"),
                           ("image", f"/f/{pic_sha}")):
            page.goto(gw.url(path))
            if name == "file":
                page.wait_for_function("() => document.querySelector('#media video')?.dataset.source === 'hls'")
                page.evaluate("""() => new Promise((done) => {
                    const v = document.querySelector('#media video'); v.muted = true
                    v.addEventListener('seeked', () => done(), { once: true }); v.currentTime = 2.5 })""")
            if name == "myfiles":
                page.wait_for_function("() => document.querySelectorAll('.file-row').length === 3")
            if name == "upload":
                page.get_by_text("Title, description and DHT").click()
            check_page(page, name, "phone", shots)
        watched.check()

        # without JavaScript: the file page's facts and links are in the HTML
        plain = browser.new_context(java_script_enabled=False, accept_downloads=True)
        bare = plain.new_page()
        bare.goto(gw.url(f"/f/{pic_sha}"))
        assert bare.get_by_role("heading", level=1).inner_text() == "harbour.png"
        with bare.expect_download() as download:
            bare.get_by_role("link", name="Download", exact=True).click()
        assert Path(download.value.path()).read_bytes() == files["pic"].read_bytes()
        assert bare.locator('li[data-face="magnet"] a').get_attribute("href").startswith("magnet:?xt=urn:btih:")
        plain.close()
