"""NIP-46 sign-in through the web page in Chromium, with a real relay (nostr-relay 1.14) and a
signer run by the test (``tests/clients/js/nostr_bunker_signer.mjs``, nostr-tools primitives);
and the file page's Nostr events (issue 19, points 2 and 4).

- ``bunker://``: the person pastes the URL in the sign-in dialog; the gateway talks to the
  signer. A signer that first wants approval makes the page show its approval link, then the
  sign-in completes.
- ``nostrconnect://``: the page shows a code (QR and text) naming the gateway's relay; the signer
  "scans" it (the test hands it the text) and the page signs in through it. The login event
  names this gateway.
- The gateway announces an upload on that relay (NIP-35); the file page lists the event with the
  relay's answer and links out, and its owner announces it again from the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.procs import ClientProcess
from harness.servers import NostrRelay, start_nostr_relay
from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import open_page, web_config
from tgateway.nostr.event import public_key_hex
from tgateway.nostr.keys import npub_encode

pytestmark = pytest.mark.integration

SIGNER = "6a" * 32
USER = "7b" * 32


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[NostrRelay]:
    r = start_nostr_relay(tmp_path / "relay")
    yield r
    r.stop()


def signer(relay: NostrRelay, mode: str, secret: str) -> ClientProcess:
    process = ClientProcess.node("nostr_bunker_signer.mjs", relay.url, SIGNER, USER, mode, secret)
    process.wait_for_json(timeout=30, key="ready")
    return process


def gateway(tmp_path: Path, relay: NostrRelay) -> GatewayProcess:
    cfg = web_config(tmp_path / "data", nostr={
        "relays": [relay.url], "allow_private_bunker_relays": True, "nip46_timeout": "20s"})
    return GatewayProcess(cfg, tmp_path / "gw")


def test_bunker_url_sign_in_with_an_approval_step(tmp_path: Path, relay: NostrRelay) -> None:
    with gateway(tmp_path, relay) as gw, chromium_browser() as browser, \
            signer(relay, "auth_url", "") as bunker:
        context, page, watched = open_page(browser, gw.url("/"))
        page.get_by_role("button", name="Sign in").click()
        url = f"bunker://{public_key_hex(bytes.fromhex(SIGNER))}?relay={relay.url}"
        page.get_by_label("bunker:// URL").fill(url)
        page.get_by_role("button", name="Connect", exact=True).click()
        approve = page.get_by_role("link", name="open the approval page")
        approve.wait_for()
        assert approve.get_attribute("href") == "https://signer.test/approve"
        page.locator(".who").wait_for(timeout=30_000)  # the signer answers 1 s after asking
        assert page.locator(".who").get_attribute("title") == npub_encode(public_key_hex(bytes.fromhex(USER)))
        signed = bunker.wait_for_json(key="tags")
        assert ["relay", gw.base] in signed["tags"]
        watched.check()


def test_nostrconnect_code_sign_in_then_the_file_page_shows_the_events(tmp_path: Path, relay: NostrRelay) -> None:
    (tmp_path / "clip.bin").write_bytes(b"announce me" * 1000)
    with gateway(tmp_path, relay) as gw, chromium_browser() as browser:
        context, page, watched = open_page(browser, gw.url("/"))
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Show a nostrconnect code").click()
        code = page.get_by_label("nostrconnect:// code")
        page.wait_for_function("() => document.getElementById('connect-uri').value.startsWith('nostrconnect://')")
        uri = code.input_value()
        assert f"relay={relay.url.replace(':', '%3A').replace('/', '%2F')}" in uri, uri
        page.get_by_role("img", name="nostrconnect code for your phone signer").wait_for()
        with signer(relay, "connect", uri) as phone:
            page.locator(".who").wait_for(timeout=30_000)
            signed = phone.wait_for_json(key="tags")
        assert ["relay", gw.base] in signed["tags"]
        user_npub = npub_encode(public_key_hex(bytes.fromhex(USER)))
        assert page.locator(".who").get_attribute("title") == user_npub
        assert page.evaluate("() => JSON.parse(localStorage.getItem('tgateway.session')).method") == "nip46"

        # an upload is announced on the relay; its page shows the event, relay by relay
        page.set_input_files("#upload-files", [str(tmp_path / "clip.bin")])
        page.get_by_role("link", name="Open file page").click()
        events = page.locator("#nostr-events .event")
        relay_row = events.first.locator(f'.relay[data-relay="{relay.url}"]')
        page.wait_for_function(
            "(url) => [...document.querySelectorAll('.relay')].some((r) => r.dataset.relay === url && r.dataset.status === 'accepted')",
            arg=relay.url)
        assert relay_row.get_attribute("data-status") == "accepted"
        assert events.first.locator("strong").inner_text() == "NIP-35 torrent"
        link = events.first.get_by_role("link", name="Open in a Nostr app").get_attribute("href")
        assert link.startswith("nostr:nevent1"), link
        assert events.first.get_by_role("link", name="njump").get_attribute("href").startswith("https://njump.me/nevent1")

        # a new event, not the same one again: NIP-35 events of one second are identical
        page.wait_for_timeout(1100)
        page.get_by_role("button", name="Announce again").click()
        page.wait_for_function("() => document.querySelectorAll('#nostr-events .event').length === 2")
        page.wait_for_function("() => [...document.querySelectorAll('.relay')].every((r) => r.dataset.status === 'accepted')")
        watched.check()
