"""The web interface's server side through the real plugin on loopback: pages, static files,
the JSON routes the pages use, and the headers that keep the page strict.

(The pages in a real browser: ``tests/integration/test_web_ui*.py``.)
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import (
    RunningGateway,
    case_data_dir,
    serving_config,
    small_config,
    start_gateway,
)
from tgateway.nostr.event import EventTemplate, public_key_hex, sign
from tgateway.web.pages import ADMIN_VIEWS, SECTIONS, Pages, Section

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
USER = bytes.fromhex("c3" * 32)


def header(r: Any, name: str) -> str | None:
    values = r.headers.getRawHeaders(name)
    return values[0] if values else None


async def get(url: str, **kw: Any) -> tuple[Any, bytes]:
    r = await http.get(url, **kw)
    return r, await treq.content(r)


async def put(g: RunningGateway, data: bytes, name: str, ctype: str = "application/octet-stream",
              **headers: str) -> dict[str, Any]:
    r = await http.put(g.url("/api/upload"), data=data,
                       headers={"X-Filename": name, "Content-Type": ctype, **headers})
    body = await treq.json_content(r)
    assert r.code in (200, 201), body
    return dict(body)


def data_block(page: bytes, block_id: str) -> Any:
    m = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>'.encode(), page, re.S)
    assert m, block_id
    return json.loads(m.group(1))


async def sign_in(g: RunningGateway, secret: bytes = USER) -> str:
    r, body = await get(g.url("/api/auth/challenge"))
    challenge = json.loads(body)
    event = sign(EventTemplate(kind=22242, created_at=int(reactor.seconds()),
                               tags=(("relay", challenge["relay"]), ("challenge", challenge["challenge"]))),
                 secret)
    r = await http.post(g.url("/api/auth/login"), json={"auth_type": "nip07", "event": event.to_json()})
    answer = await treq.json_content(r)
    assert r.code == 200, answer
    return str(answer["token"])


def _pct(b: bytes) -> str:
    return "".join(f"%{c:02x}" for c in b)


class ServingGatewayTests(TestCase):
    """A gateway serving files (Blossom on), with the tracker on the gateway port."""

    def setUp(self) -> None:
        config = serving_config(case_data_dir(self), tracker={"enabled": True, "udp_port": 0})
        self.gw = start_gateway(self, config)

    async def test_pages_are_strict_html_with_the_config(self) -> None:
        for path, page in (("/", "upload"), ("/me", "me"), ("/admin", "admin"),
                           ("/admin/users", "admin"), ("/admin/audit", "admin")):
            r, body = await get(self.gw.url(path))
            assert r.code == 200
            assert header(r, "content-type") == "text/html; charset=utf-8"
            assert f'data-page="{page}"'.encode() in body
            csp = header(r, "content-security-policy") or ""
            directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
            assert directives["script-src"] == "'self'"
            assert directives["style-src"] == "'self'"
            assert "unsafe" not in csp
            assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
            config = data_block(body, "tg-config")
            assert config["gateway"] == self.gw.base
            assert config["trackers"]["ws"] == self.gw.base.replace("http://", "ws://") + "/announce"
            assert config["trackers"]["ws"].rsplit("/", 1)[0] in directives["connect-src"]
            assert config["blossom"] == self.gw.blossom_base and self.gw.blossom_base in directives["media-src"]
            assert b"<script>" not in body and b"<script type=\"module\" src=" in body  # no inline script
        r, body = await get(self.gw.url("/api/config"))
        assert json.loads(body) == config
        assert header(r, "access-control-allow-origin") == "*"

    async def test_file_page_carries_every_link_without_javascript(self) -> None:
        data = b"no javascript needed\n" * 5000
        f = await put(self.gw, data, "notes.txt", "text/plain", **{"X-Title": "My%20notes"})
        r, body = await get(self.gw.url(f"/f/{f['sha256']}"))
        assert r.code == 200
        text = body.decode()
        assert "<h1>My notes</h1>" in text
        hrefs = set(html.unescape(h) for h in re.findall(r'href="([^"]+)"', text))
        for url in (f["urls"]["download"], f["urls"]["torrent"], f["magnet"], f["urls"]["webseed"],
                    f["urls"]["blossom"], f["blossom_uri"], f["urls"]["stream"]):
            assert url in hrefs, url
        assert f["blossom_uri"].startswith(f"blossom:{f['sha256']}.txt?xs=127.0.0.1:")
        r, got = await get(f["urls"]["download"])  # the link a person without JavaScript clicks
        assert got == data
        assert data_block(body, "tg-file")["sha256"] == f["sha256"]
        r, body = await get(self.gw.url("/f/" + "0" * 64))
        assert r.code == 404 and b"No such file" in body and header(r, "content-security-policy")
        r, body = await get(self.gw.url("/f/not-a-hash"))
        assert r.code == 404

    async def test_names_cannot_break_out_of_the_page(self) -> None:
        evil = '</script><script>alert(1)</script><img src=x onerror=alert(2)>.txt'
        f = await put(self.gw, b"x" * 100, evil.replace("/", "%2F"), "text/plain",
                      **{"X-Title": "%3C%2Fscript%3E%3Cb%3Ebold%3C%2Fb%3E"})
        r, body = await get(self.gw.url(f"/f/{f['sha256']}"))
        assert b"<script>alert" not in body and b"<img src=x" not in body and b"<b>bold" not in body
        assert body.count(b"</script>") == 3  # main.js, the config block, the file block
        assert data_block(body, "tg-file")["name"] == f["name"]

    async def test_static_files_are_typed_cached_and_confined(self) -> None:
        r, page = await get(self.gw.url("/"))
        config = data_block(page, "tg-config")
        app = config["app"]
        r, body = await get(self.gw.url(app + "/js/main.js"))
        assert r.code == 200 and header(r, "content-type") == "text/javascript; charset=utf-8"
        assert header(r, "cache-control") == "public, max-age=31536000, immutable"
        assert header(r, "x-content-type-options") == "nosniff"
        etag = header(r, "etag")
        r, body = await get(self.gw.url(app + "/js/main.js"), headers={"If-None-Match": etag})
        assert r.code == 304 and body == b""
        r, body = await get(self.gw.url(app + "/css/app.css"))
        assert header(r, "content-type") == "text/css; charset=utf-8"
        for role, url in config["vendor"].items():
            r, body = await get(self.gw.url(url))
            assert r.code == 200, role
            assert header(r, "cache-control") == "public, max-age=31536000, immutable"
            assert header(r, "content-type") == "text/javascript; charset=utf-8"
        r, _ = await get(self.gw.url("/static/app-000000000000/js/main.js"))  # another build
        assert r.code == 404
        for path in ("/static/vendor/../../api.py", "/static/vendor/%2e%2e/MANIFEST.json",
                     f"{app}/../../pages.py", "/static/vendor/.hidden", "/static/", "/static/vendor/",
                     f"{app}/js/nothing.js"):
            r, body = await get(self.gw.url(path))
            assert r.code == 404, path
            assert json.loads(body)["error"] == "not_found"

    async def test_swarm_numbers_come_from_the_tracker(self) -> None:
        f = await put(self.gw, b"s" * 50_000, "s.bin")
        r, body = await get(self.gw.url(f"/api/files/{f['sha256']}/swarm"))
        swarm = json.loads(body)
        assert r.code == 200
        assert swarm["info_hash"] == f["info_hash"] and swarm["webseed"] is True
        before = swarm["seeders"]
        # a leecher and a seeder announce over HTTP
        for peer_id, port, left in ((b"-TT0001-aaaaaaaaaaaa", 6881, 1), (b"-TT0001-bbbbbbbbbbbb", 6882, 0)):
            q = (f"/announce?info_hash={_pct(bytes.fromhex(f['info_hash']))}&peer_id={_pct(peer_id)}"
                 f"&port={port}&uploaded=0&downloaded=0&left={left}&compact=1"
                 + ("&event=completed" if left == 0 else ""))
            r, _ = await get(self.gw.url(q))
            assert r.code == 200
        r, body = await get(self.gw.url(f"/api/files/{f['sha256']}/swarm"))
        swarm = json.loads(body)
        assert (swarm["seeders"], swarm["leechers"], swarm["completed"]) == (before + 1, 1, 1)
        r, body = await get(self.gw.url("/api/files/" + "1" * 64 + "/swarm"))
        assert r.code == 404 and json.loads(body)["error"] == "file_not_found"
        r, body = await get(self.gw.url("/api/files/zz/swarm"))
        assert r.code == 400 and json.loads(body)["error"] == "invalid_hash"

    async def test_public_transcoding_status_keeps_the_owner_fields_private(self) -> None:
        f = await put(self.gw, b"not a video" * 10, "n.txt", "text/plain")
        r, body = await get(self.gw.url(f"/api/files/{f['sha256']}/transcoding"))
        status = json.loads(body)
        assert r.code == 200 and status["sha256"] == f["sha256"]
        assert status["state"] in ("not_video", "unknown")
        assert not {"error", "attempts", "priority"} & set(status)

    async def test_ownership_says_whether_the_caller_owns_the_file(self) -> None:
        token = await sign_in(self.gw)
        auth = {"Authorization": f"Bearer {token}"}
        mine = await put(self.gw, b"m" * 3000, "mine.bin", **auth, **{"X-Title": "Mine"})
        theirs = await put(self.gw, b"o" * 3000, "theirs.bin")
        r, body = await get(self.gw.url(f"/api/files/{mine['sha256']}/ownership"), headers=auth)
        answer = json.loads(body)
        assert r.code == 200 and answer["owner"] is True and answer["title"] == "Mine"
        r, body = await get(self.gw.url(f"/api/files/{theirs['sha256']}/ownership"), headers=auth)
        assert json.loads(body) == {"sha256": theirs["sha256"], "owner": False}
        r, body = await get(self.gw.url(f"/api/files/{mine['sha256']}/ownership"))
        assert r.code == 401 and json.loads(body)["error"] == "auth_required"
        # the routes the file API and the users' routes keep are still theirs
        r, body = await get(self.gw.url(f"/api/files/{mine['sha256']}"))
        assert json.loads(body)["sha256"] == mine["sha256"]
        r, body = await get(self.gw.url(f"/api/files/{mine['sha256']}/announcements"))
        assert r.code == 200 and json.loads(body)["announcements"] == []

    async def test_admin_pages_one_per_view_with_their_subnavigation(self) -> None:
        """The HTML is the same for everyone (what an admin sees comes from the admin API)."""
        for view, path, label in ADMIN_VIEWS:
            r, body = await get(self.gw.url(path))
            assert r.code == 200, path
            text = body.decode()
            assert f'data-view="{view}"' in text
            assert f'<a href="{path}" aria-current="page">{label}</a>' in text
            assert '<li hidden data-needs="admin"><a href="/admin" aria-current="page">Admin</a></li>' in text
        r, body = await get(self.gw.url("/admin/nothing"))
        assert r.code == 404 and b"No such page" in body


class SmallGatewayTests(TestCase):
    """A gateway-only configuration each test sets up (no tracker, no Blossom)."""

    async def test_swarm_without_a_tracker_says_so(self) -> None:
        g = start_gateway(self, small_config(case_data_dir(self)))
        f = await put(g, b"t" * 1000, "t.bin")
        r, body = await get(g.url(f"/api/files/{f['sha256']}/swarm"))
        assert r.code == 503 and json.loads(body)["error"] == "tracker_unavailable"
        r, body = await get(g.url("/"))
        assert data_block(body, "tg-config")["features"]["tracker"] is False

    async def test_the_session_says_whether_the_user_is_an_admin(self) -> None:
        """The navigation shows sections marked for admins (Section.needs) from this flag."""
        g = start_gateway(self, small_config(case_data_dir(self), admin={"pubkeys": [public_key_hex(USER)]}))
        for secret, admin in ((USER, True), (bytes.fromhex("d4" * 32), False)):
            token = await sign_in(g, secret)
            r, body = await get(g.url("/api/auth/session"), headers={"Authorization": f"Bearer {token}"})
            assert json.loads(body)["admin"] is admin


class NavigationTests(SynchronousTestCase):
    def test_admin_sections_are_rendered_hidden(self) -> None:
        pages = Pages(store=None, links=None, public={"app": "/static/app-x"}, csp=b"")
        assert Section("admin", "/admin", "Admin", needs="admin") in SECTIONS
        nav = pages._nav("me")
        assert '<li><a href="/me" aria-current="page">My files</a></li>' in nav
        assert '<li hidden data-needs="admin"><a href="/admin">Admin</a></li>' in nav
