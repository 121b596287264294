"""The admin pages of the web interface in Chromium (issue 19, point 6), over the admin API.

A non-admin signed in with NIP-07 does not see the "Admin" entry, and the admin page they open
anyway shows the API's own 403 message. An admin (``admin.pubkeys``) signs in the same way and,
through the pages: reads the dashboard (numbers, health), bans a user by keyboard (their upload
is then refused: 403 ``banned``), deletes a file with a reason (the file is 404 and its bytes are
refused on upload: 403 ``file_blocked``), dismisses a report, sees the block list and lifts the
ban there (the user uploads again), sees the transcode queue, runs retention's dry run and then
a run (the listed file is gone), and finds every action in the audit log. Every admin page fits
desktop and phone width with every control named; the dashboard's screenshots at both widths go
to ``docs/screenshots`` with ``scripts/screenshots``.

The dashboard's charts (``GET /api/admin/history``, sampled every second here) follow an upload,
a download and an announce made while the page is open, without a reload.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import DESKTOP, PHONE, check_page, expect, install_nip07, open_page, web_config
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

pytestmark = pytest.mark.integration

ADMIN = bytes.fromhex("ad" * 32)
ALICE = bytes.fromhex("a1" * 32)
BOB = bytes.fromhex("b2" * 32)
REPORTER = bytes.fromhex("c3" * 32)
VIEWS = ("dashboard", "users", "files", "reports", "blocked", "transcode", "retention", "audit")


def call(method: str, url: str, token: str | None = None, body: Any = None,
         data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            raw = r.read()
            return int(r.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return int(e.code), json.loads(raw) if raw else None


def session(gw: GatewayProcess, secret: bytes) -> str:
    _, c = call("GET", gw.url("/api/auth/challenge"))
    event = sign(EventTemplate(kind=22242, created_at=int(time.time()),
                               tags=(("relay", gw.base), ("challenge", c["challenge"]))), secret)
    code, body = call("POST", gw.url("/api/auth/login"),
                      body={"auth_type": "nip07", "auth_event": event.to_json()})
    assert code == 200, body
    return str(body["token"])


def upload(gw: GatewayProcess, data: bytes, token: str, name: str) -> tuple[int, Any]:
    return call("PUT", gw.url("/api/upload"), token, data=data, headers={"X-Filename": name})


def next_point(gw: GatewayProcess, token: str) -> None:
    """Wait for the history's next point (``health.history.interval``)."""
    before = len(call("GET", gw.url("/api/admin/history"), token)[1]["times"])
    deadline = time.monotonic() + 20
    while len(call("GET", gw.url("/api/admin/history"), token)[1]["times"]) <= before:
        assert time.monotonic() < deadline, "no point of the history in 20 s"
        time.sleep(0.2)


def sign_in(page: Any) -> None:
    page.locator("#account").get_by_role("button", name="Sign in").click()
    page.get_by_role("dialog", name="Sign in with Nostr").get_by_role(
        "button", name="Sign in with extension").click()
    page.locator(".who").wait_for()


def test_admin_pages_ban_and_delete_take_effect(tmp_path: Path) -> None:
    admin_pub, alice_pub = public_key_hex(ADMIN), public_key_hex(ALICE)
    # every file is unused after a second: retention's dry run lists what is left, a run removes it
    cfg = web_config(tmp_path / "data", admin={"pubkeys": [admin_pub], "cleanup_age": "1s"},
                     health={"history": {"interval": "1s", "span": "10m"}})
    shots = tmp_path / "screenshots"
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        alice, bob, admin = session(gw, ALICE), session(gw, BOB), session(gw, ADMIN)
        evidence, kept = os.urandom(300_000), os.urandom(200_000)
        code, bad = upload(gw, evidence, alice, "evidence.bin")
        assert code == 201, bad
        next_point(gw, admin)  # the charts show the uploads and the download apart
        code, keep = upload(gw, kept, alice, "holiday.bin")
        assert code == 201, keep
        next_point(gw, admin)
        report = sign(EventTemplate(kind=1984, created_at=int(time.time()),
                                    tags=(("x", keep["sha256"], "spam"),), content="looks like spam"),
                      REPORTER)
        code, reported = call("PUT", f"http://127.0.0.1:{cfg['blossom_server']['port']}/report", data=report.dumps().encode())
        assert code == 200, reported
        with urllib.request.urlopen(gw.url(f"/api/download/{keep['sha256']}"), timeout=30) as r:
            assert r.read() == kept

        # a non-admin: no "Admin" entry; the page shows the API's 403 message
        context, page, watched = open_page(browser, "")
        install_nip07(page, ALICE)
        page.goto(gw.url("/"))
        sign_in(page)
        admin_entry = page.locator('.nav [data-needs="admin"]')
        expect(admin_entry).to_be_hidden()
        code, refused = call("GET", gw.url("/api/admin/stats"), alice)
        assert (code, refused["error"]) == (403, "not_admin")
        for view in ("", "/files"):
            page.goto(gw.url(f"/admin{view}"))
            expect(page.locator("#admin-refused-message")).to_have_text(refused["message"])
            expect(page.locator("#admin .admin-row")).to_have_count(0)
            expect(admin_entry).to_be_hidden()
        watched.check()
        context.close()

        # the admin
        context, page, watched = open_page(browser, "", viewport=DESKTOP)
        install_nip07(page, ADMIN)
        page.goto(gw.url("/"))
        sign_in(page)
        admin_entry = page.locator('.nav [data-needs="admin"]')
        expect(admin_entry).to_be_visible()  # from the sign-in on, no reload needed
        page.get_by_role("link", name="Admin", exact=True).click()
        page.wait_for_url(gw.url("/admin"))
        expect(page.locator('[data-tile="Files"] dd')).to_have_text("2")
        expect(page.locator('[data-tile="Open reports"] dd')).to_have_text("1")
        code, health = call("GET", gw.url("/api/admin/diagnostics"), session(gw, ADMIN))
        if code == 200:  # the health component: scores with their meters, the overall state
            expect(page.locator('#health [data-component="storage"] meter')).to_have_attribute(
                "value", str(health["scores"]["storage"]))
            expect(page.locator("#health .overall .badge")).to_have_text(health["status"])
        else:  # none: each component's own status
            assert code == 404, health
            expect(page.locator("#health .score").first).to_be_visible()
        # the charts: both uploads and the download, once sampled (the page redraws them)
        expect(page.locator('#activity [data-series="uploads"]')).to_have_attribute("data-total", "2")
        expect(page.locator('#activity [data-series="served_bytes"]')).to_have_attribute(
            "data-total", str(len(kept)))
        check_page(page, "admin", "desktop", shots)

        # users: ban Alice, by keyboard
        subnav = page.get_by_role("navigation", name="Admin")
        subnav.get_by_role("link", name="Users").click()
        row = page.locator(f'.admin-row[data-pubkey="{alice_pub}"]')
        expect(row).to_contain_text("2 files")
        row.get_by_role("button", name="Ban").focus()
        page.keyboard.press("Enter")
        ask = page.get_by_role("dialog", name="Ban")
        expect(ask).to_be_visible()
        assert page.evaluate("() => document.activeElement.id") == "ask-confirm"
        page.keyboard.press("Enter")
        expect(ask).to_be_hidden()
        expect(row.locator(".badge-bad")).to_have_text("banned")
        expect(row.get_by_role("button", name="Unban")).to_be_focused()
        code, answer = upload(gw, os.urandom(1000), alice, "more.bin")
        assert (code, answer["error"]) == (403, "banned"), answer
        check_page(page, "admin-users", "desktop", shots, shot=False)

        # files: delete one with a reason (Escape first: nothing happens)
        subnav.get_by_role("link", name="Files").click()
        page.get_by_label("Search files").fill("evidence")
        page.keyboard.press("Enter")
        rows = page.locator(".admin-row")
        expect(rows).to_have_count(1)
        delete = rows.get_by_role("button", name="Delete evidence.bin")
        delete.click()
        ask = page.get_by_role("dialog", name="Delete evidence.bin?")
        expect(page.get_by_label("Reason (kept in the audit log)")).to_be_focused()
        page.keyboard.press("Escape")
        expect(ask).to_be_hidden()
        assert call("GET", gw.url(f"/api/files/{bad['sha256']}"))[0] == 200
        delete.click()
        page.get_by_label("Reason (kept in the audit log)").fill("copyright notice 42")
        ask.get_by_role("button", name="Delete").click()
        expect(rows).to_have_count(0)
        assert call("GET", gw.url(f"/api/files/{bad['sha256']}"))[0] == 404
        assert call("GET", gw.url(f"/api/download/{bad['sha256']}"))[0] == 404
        code, answer = upload(gw, evidence, bob, "again.bin")
        assert (code, answer["error"]) == (403, "file_blocked"), answer
        check_page(page, "admin-files", "desktop", shots, shot=False)

        # reports: dismiss the one about the file that stays
        subnav.get_by_role("link", name="Reports").click()
        report_row = page.locator(f'[data-report="{reported["id"]}"]')
        expect(report_row).to_contain_text("looks like spam")
        report_row.get_by_role("button", name="Dismiss").click()
        expect(page.locator(".admin-paged > p.muted").first).to_have_text("No reports.")
        code, listed = call("GET", gw.url("/api/admin/reports?status=dismissed"), session(gw, ADMIN))
        assert [r["id"] for r in listed["reports"]] == [reported["id"]]

        # the block list: the tombstone with its reason, Alice's ban, lifted here
        subnav.get_by_role("link", name="Block list").click()
        tomb = page.locator(f'.admin-row[data-sha256="{bad["sha256"]}"]')
        expect(tomb.locator(".reason")).to_have_text("copyright notice 42")
        banned = page.locator(f'.admin-row[data-pubkey="{alice_pub}"]')
        banned.get_by_role("button", name="Unban").click()
        expect(banned.get_by_role("button", name="Ban")).to_be_visible()
        code, again = upload(gw, os.urandom(1000), alice, "back.bin")
        assert code == 201, again
        check_page(page, "admin-blocked", "desktop", shots, shot=False)

        subnav.get_by_role("link", name="Transcoding").click()
        expect(page.locator("#transcode-summary")).to_contain_text("Transcoding is off here")

        # retention: the dry run lists the file left (unused for more than a second); run now
        subnav.get_by_role("link", name="Retention").click()
        listed_file = page.locator(f'.admin-row[data-sha256="{keep["sha256"]}"]')
        expect(listed_file).to_contain_text("cleanup_age")
        expect(page.locator('[data-dry-run="true"]')).to_be_visible()
        assert call("GET", gw.url(f"/api/files/{keep['sha256']}"))[0] == 200  # dry: still there
        page.get_by_role("button", name="Run now").click()
        page.get_by_role("dialog", name="Run retention now?").get_by_role("button", name="Run now").click()
        expect(page.locator('[data-dry-run="false"]')).to_be_visible()
        expect(listed_file).to_be_visible()
        assert call("GET", gw.url(f"/api/files/{keep['sha256']}"))[0] == 404

        # the audit log has each action
        subnav.get_by_role("link", name="Audit log").click()
        expect(page.locator(f'[data-action="file.delete"][data-target="{bad["sha256"]}"]')).to_be_visible()
        expect(page.locator(f'[data-action="user.update"][data-target="{alice_pub}"]')).to_have_count(2)
        expect(page.locator('[data-action="report.dismiss"]')).to_have_count(1)

        # phone width: every page fits, every control named
        page.set_viewport_size(PHONE)
        for view in VIEWS:
            page.goto(gw.url("/admin" if view == "dashboard" else f"/admin/{view}"))
            page.wait_for_function("() => document.getElementById('admin').childElementCount > 0 &&"
                                   " !document.getElementById('admin').hasAttribute('aria-busy')")
            if view == "dashboard":  # the phone's screenshot shows the charts
                page.locator("#activity").evaluate("(e) => e.scrollIntoView()")
            check_page(page, "admin" if view == "dashboard" else f"admin-{view}", "phone", shots,
                       shot=view == "dashboard")  # the README shows the dashboard
        watched.check()


def announce(gw: GatewayProcess, info_hash: str) -> bytes:
    """One HTTP announce to the tracker on the gateway's port."""
    query = urllib.parse.urlencode({
        "info_hash": bytes.fromhex(info_hash), "peer_id": b"-TT0001-" + os.urandom(6).hex()[:12].encode(),
        "port": 6881, "uploaded": 0, "downloaded": 0, "left": 0, "compact": 1})
    with urllib.request.urlopen(gw.url(f"/announce?{query}"), timeout=30) as r:
        return r.read()


def test_dashboard_charts_follow_uploads_downloads_and_announces(tmp_path: Path) -> None:
    cfg = web_config(tmp_path / "data", admin={"pubkeys": [public_key_hex(ADMIN)]},
                     health={"history": {"interval": "1s", "span": "10m"}})
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, "", viewport=PHONE)
        install_nip07(page, ADMIN)
        page.goto(gw.url("/admin"))
        sign_in(page)
        charts = page.locator("#activity .chart")
        expect(charts).to_have_count(4)
        uploads = page.locator('#activity [data-series="uploads"]')
        served = page.locator('#activity [data-series="served_bytes"]')
        announces = page.locator('#activity [data-series="announces"]')
        expect(uploads).to_have_attribute("data-total", "0")
        expect(served).to_have_attribute("data-total", "0")
        # each chart is an image named by its title and its summary in words
        expect(uploads.get_by_role("img")).to_have_accessible_name(
            re.compile(r"^Uploads per second 0 over the last .+; 0 in the last second$"))

        # while the page is open: an upload, a download, an announce
        data = os.urandom(150_000)
        code, stored = upload(gw, data, session(gw, ALICE), "chart.bin")
        assert code == 201, stored
        with urllib.request.urlopen(gw.url(f"/api/download/{stored['sha256']}"), timeout=30) as r:
            assert r.read() == data
        assert b"interval" in announce(gw, stored["info_hash"])

        # redrawn from the history without a reload
        expect(uploads).to_have_attribute("data-total", "1")
        expect(served).to_have_attribute("data-total", str(len(data)))
        expect(announces).to_have_attribute("data-total", re.compile(r"^[1-9]\d*$"))
        expect(served.locator(".chart-summary")).to_contain_text("150 kB over the last")
        expect(served.locator(".chart-parts")).to_contain_text("download 150 kB")
        expect(announces.locator(".chart-parts")).to_contain_text("http")
        for chart in (uploads, served, announces):  # the line leaves the axis somewhere
            assert chart.locator(".chart-line").evaluate("(e) => e.getBBox().height") > 0
            expect(chart.locator(".chart-x time")).to_have_count(2)
        check_page(page, "admin-charts", "phone", tmp_path, shot=False)
        watched.check()
        context.close()
