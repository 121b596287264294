"""Signing in through the web page in Chromium, and "My files" (issue 19, points 4 and 5).

NIP-07: the test gives the page a ``window.nostr`` that signs with a test key (in Python, with
``tgateway.nostr.event.sign``). The person clicks "Sign in", then "Sign in with extension"; the
signed event names this gateway in its relay tag. Signed in, two uploads are theirs and a third
goes over the quota and shows the API's message. The session survives a reload. "My files"
shows usage against the quota, finds a file by search, sorts, and deletes one (the file is gone
from the gateway). The file page shows the owner's actions. Signing out ends the session at the
gateway too.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import expect, install_nip07, open_page, web_config
from tgateway.nostr.keys import npub_encode

pytestmark = pytest.mark.integration

KEY = bytes.fromhex("5e" * 32)


def status_of(url: str, token: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_nip07_sign_in_my_files_and_delete(tmp_path: Path) -> None:
    uploads = {"holiday.bin": os.urandom(1_000_000), "notes.bin": os.urandom(500_000),
               "too-big.bin": os.urandom(2_000_000)}
    for name, data in uploads.items():
        (tmp_path / name).write_bytes(data)
    cfg = web_config(tmp_path / "data", admin={"default_user_storage_limit": "3MB"})
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, "")
        pubkey = install_nip07(page, KEY)
        npub = npub_encode(pubkey)
        page.goto(gw.url("/"))

        page.get_by_role("button", name="Sign in").click()
        dialog = page.get_by_role("dialog", name="Sign in with Nostr")
        dialog.get_by_role("button", name="Sign in with extension").click()
        page.locator(".who").wait_for()
        assert page.locator(".who").get_attribute("title") == npub
        expect(dialog).to_be_hidden()
        event = page.nip07_signed[-1]
        assert event["kind"] == 22242 and ["relay", gw.base] in event["tags"]
        token = page.evaluate("() => JSON.parse(localStorage.getItem('tgateway.session')).token")
        assert status_of(gw.url("/api/auth/session"), token) == 200

        page.get_by_text("Title, description and DHT").click()
        page.get_by_label("Title").fill("Holiday clip")
        page.set_input_files("#upload-files", [str(tmp_path / "holiday.bin")])
        page.wait_for_selector(".card")
        page.get_by_label("Title").fill("")
        page.set_input_files("#upload-files", [str(tmp_path / "notes.bin")])
        page.wait_for_function("() => document.querySelectorAll('.card').length === 2")
        page.set_input_files("#upload-files", [str(tmp_path / "too-big.bin")])
        failed = page.locator(".task-failed .task-meta")
        failed.wait_for()
        assert failed.inner_text() == (
            "upload would exceed your storage quota (1500000 of 3000000 bytes used)")

        page.reload()  # the session is kept across reloads
        assert page.locator(".who").get_attribute("title") == npub

        page.get_by_role("link", name="My files").click()
        page.wait_for_url(gw.url("/me"))
        rows = page.locator(".file-row")
        expect(rows).to_have_count(2)
        # the usage comes from its own request, beside the list's
        expect(page.locator("#quota-text")).to_have_text(re.compile(r"^1\.5 MB of 3\.0 MB used · 2 files"))
        expect(page.locator("#quota-bar")).to_have_attribute("aria-valuenow", "50")
        expect(rows.first.locator(".file-row-name")).to_have_text("notes.bin")  # newest first
        page.select_option("#me-sort", "big")
        expect(rows.first.locator(".file-row-name")).to_have_text("Holiday clip")
        page.fill("#me-search", "holiday")
        expect(rows).to_have_count(1)
        expect(page.locator("#me-count")).to_have_text("1 of 2 files match")
        page.fill("#me-search", "")
        # the file's Nostr and transcode badges are filled in (Nostr is off here: no relays)
        page.wait_for_function("""() => [...document.querySelectorAll('[data-status=nostr]')]
            .every((b) => !b.textContent.includes('…'))""")

        holiday = rows.filter(has_text="Holiday clip")
        sha = holiday.get_attribute("data-sha256")
        holiday.get_by_role("link", name="Holiday clip", exact=True).click()  # the file page, as its owner
        page.get_by_role("heading", name="Your upload").wait_for()
        expect(page.get_by_role("button", name="Delete")).to_be_visible()
        page.go_back()

        page.once("dialog", lambda d: d.accept())
        rows.filter(has_text="Holiday clip").get_by_role("button", name="Delete Holiday clip").click()
        expect(rows).to_have_count(1)
        expect(page.locator("#quota-text")).to_have_text(re.compile(r"^500 kB"))
        assert status_of(gw.url(f"/api/files/{sha}")) == 404

        page.get_by_role("button", name="Sign out").click()
        page.locator("#account").get_by_role("button", name="Sign in").wait_for()
        expect(page.locator("#me-signed-out")).to_be_visible()
        assert status_of(gw.url("/api/auth/session"), token) == 401
        watched.check()


def test_sign_in_without_an_extension_says_how(tmp_path: Path) -> None:
    cfg = web_config(tmp_path / "data")
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, gw.url("/me"))
        page.get_by_role("button", name="Sign in").first.click()
        page.get_by_role("button", name="Sign in with extension").click()
        alert = page.get_by_role("alert")
        expect(alert).to_contain_text("No Nostr extension (NIP-07)")
        # a bunker URL that is not one: the gateway's message, shown as it is
        page.fill("#bunker-url", "bunker://nothing")
        page.get_by_role("button", name="Connect", exact=True).click()
        page.wait_for_function("() => !document.getElementById('signin-error').textContent.includes('NIP-07')")
        message = alert.inner_text()
        status, body = _login(gw.url("/api/auth/login"), {"auth_type": "nip46", "bunker_url": "bunker://nothing"})
        assert message == body["message"], (message, body)
        page.keyboard.press("Escape")
        expect(page.get_by_role("dialog")).to_be_hidden()
        watched.check()


def _login(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
