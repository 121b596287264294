"""Uploaded HTML never runs as the gateway's page, checked in Chromium (issue 14, defect 4).

The whole plugin runs in twistd (gateway port and Blossom port); Debian's Chromium, driven by
Playwright, first visits the gateway's own page and leaves a secret in its localStorage and a
cookie, as the web interface's sign-in does. Then it opens anonymous uploads of HTML, XHTML and
SVG whose scripts would record that they ran (localStorage of the origin they run in) and send
the gateway's secret to ``/api/beacon-<name>`` (an image request, then a ``fetch`` POST), from
``/api/stream/<sha256>``, ``/api/download/<sha256>``, ``/api/webseed/...`` and Blossom
``/<sha256>``: as a page, and in an iframe of the gateway's own page. No beacon is ever requested
and the gateway origin's storage holds no marker.

A browser that ignored ``Content-Disposition`` would render such a file; the test strips that
header on the way in (Playwright's request routing) and shows the second layer: the document is
rendered in a sandbox with an opaque origin (``self.origin == "null"``), and its script does not
run.

Media stays as it was: an uploaded MP4 plays in Chromium's own player when opened from
``/api/stream`` and in a ``<video>`` on another page from Blossom, and a PNG shows.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.ports import free_tcp_port, wait_for_tcp
from harness.tools import chromium_browser, ffmpeg
from harness.twistd import GatewayProcess, gateway_config

pytestmark = pytest.mark.integration

SECRET = "gateway-session-secret"


def evil_script(name: str) -> str:
    return f"""
      try {{ localStorage.setItem("xss-ran-{name}", self.origin); }} catch (e) {{}}
      var secret = "";
      try {{ secret = localStorage.getItem("secret") + "|" + document.cookie; }} catch (e) {{}}
      new Image().src = "/api/beacon-{name}?img=" + encodeURIComponent(secret);
      fetch("/api/beacon-{name}", {{method: "POST", body: secret}});
    """


def evil_files() -> dict[str, tuple[str, bytes]]:
    return {
        "page.html": ("text/html", (
            "<!doctype html><title>upload</title><p id=p>hello</p><script>"
            + evil_script("html") + "</script>").encode()),
        "page.xhtml": ("application/xhtml+xml", (
            '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>hi</p><script>//<![CDATA[\n'
            + evil_script("xhtml") + "\n//]]></script></body></html>").encode()),
        "pic.svg": ("image/svg+xml", (
            '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>//<![CDATA[\n'
            + evil_script("svg") + "\n//]]></script></svg>").encode()),
    }


def upload(gw: GatewayProcess, name: str, ctype: str, data: bytes) -> dict[str, Any]:
    req = urllib.request.Request(gw.url("/api/upload"), data=data, method="PUT",
                                 headers={"X-Filename": name, "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return dict(json.loads(r.read()))


def make_media(tmp: Path) -> tuple[bytes, bytes]:
    mp4, png = tmp / "clip.mp4", tmp / "pic.png"
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=duration=1:size=160x120:rate=10", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(mp4)], check=True)
    subprocess.run([ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=size=32x24", "-frames:v", "1", str(png)], check=True)
    return mp4.read_bytes(), png.read_bytes()


def test_uploaded_html_never_runs_as_the_gateway(tmp_path: Path) -> None:
    blossom_port = free_tcp_port()
    cfg = gateway_config(tmp_path / "data", mode="unified",
                         blossom_server={"port": blossom_port, "host": "127.0.0.1"})
    mp4, png = make_media(tmp_path)
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        wait_for_tcp("127.0.0.1", blossom_port)
        blossom = f"http://127.0.0.1:{blossom_port}"
        evil = {name: upload(gw, name, ctype, data)
                for name, (ctype, data) in evil_files().items()}
        context = browser.new_context(accept_downloads=True)
        requested: list[str] = []
        context.on("request", lambda r: requested.append(r.url))
        page = context.new_page()
        page.goto(gw.url("/"))
        page.evaluate(f"""() => {{ localStorage.setItem("secret", "{SECRET}");
                                  document.cookie = "session={SECRET}; path=/"; }}""")

        def beacons() -> list[str]:
            return [u for u in requested if "beacon" in u]

        for name, f in evil.items():
            urls = [gw.url(f"/api/stream/{f['sha256']}"), gw.url(f"/api/download/{f['sha256']}"),
                    gw.url(f"/api/webseed/{f['info_hash']}/{f['name']}"),
                    f"{blossom}/{f['sha256']}"]
            for url in urls:
                visit = context.new_page()
                try:
                    visit.goto(url, wait_until="load", timeout=10_000)
                except Exception as e:  # an attachment: "Download is starting"
                    assert "Download is starting" in str(e) or "ERR_ABORTED" in str(e), (url, e)
                visit.wait_for_timeout(300)
                visit.close()
                assert beacons() == [], (name, url, beacons())
                # the same URL in an iframe of the gateway's own page
                page.evaluate("""(url) => new Promise(done => {
                    const f = document.createElement("iframe");
                    f.src = url; f.onload = () => done(); document.body.appendChild(f);
                    setTimeout(done, 800); })""", url)
                page.wait_for_timeout(300)
                assert beacons() == [], (name, url, beacons())
        page.reload()
        stored = page.evaluate("() => Object.keys(localStorage)")
        assert stored == ["secret"], stored  # no xss-ran-* marker in the gateway's origin
        assert "xss" not in page.evaluate("() => document.cookie")

        # Second layer: a browser that renders the file anyway gets an opaque-origin sandbox.
        def without_disposition(route: Any) -> None:
            response = route.fetch()
            headers = {k: v for k, v in response.headers.items()
                       if k.lower() != "content-disposition"}
            route.fulfill(response=response, headers=headers)

        sandboxed = context.new_page()
        sandboxed.route("**/api/stream/**", without_disposition)
        sandboxed.route(f"{blossom}/**", without_disposition)
        for url in (gw.url(f"/api/stream/{evil['page.html']['sha256']}"),
                    f"{blossom}/{evil['page.html']['sha256']}"):
            sandboxed.goto(url, wait_until="load")
            sandboxed.wait_for_timeout(300)
            assert sandboxed.locator("#p").inner_text() == "hello"  # it was rendered
            assert sandboxed.evaluate("() => self.origin") == "null", url
            assert beacons() == [], (url, beacons())

        # Media stays inline and playable.
        clip, pic = upload(gw, "clip.mp4", "video/mp4", mp4), upload(gw, "pic.png", "image/png", png)
        player = context.new_page()
        player.goto(gw.url(f"/api/stream/{clip['sha256']}"))
        player.wait_for_function("""() => { const v = document.querySelector("video");
                                            return v && v.readyState >= 1 && v.duration > 0.5; }""",
                                 timeout=10_000)
        player.goto(gw.url(f"/api/stream/{pic['sha256']}"))
        assert player.evaluate("() => document.images.length && document.images[0].naturalWidth") == 32
        other = context.new_page()  # another page (the gateway's own CSP allows only 'self')
        other.set_content("<body></body>")
        duration = other.evaluate("""(src) => new Promise((done, fail) => {
            const v = document.createElement("video");
            v.onloadedmetadata = () => done(v.duration); v.onerror = () => fail(v.error);
            v.src = src; document.body.appendChild(v); })""", f"{blossom}/{clip['sha256']}")
        assert duration > 0.5
        context.close()
