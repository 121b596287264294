"""The API page (``/docs/api``) in Chromium: reached from the web interface's footer, it renders
the gateway port's OpenAPI document (every operation listed, under its tag, with its auth) with
no console error, uncaught error or CSP violation (issue 22: "the docs page shows it")."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from harness.tools import chromium_browser
from harness.twistd import GatewayProcess
from tests.webui import expect, open_page, web_config
from tgateway.nostr.event import public_key_hex

pytestmark = pytest.mark.integration

ADMIN = public_key_hex(b"\x6b" * 32)


def test_the_api_page_lists_every_operation_of_the_document(tmp_path: Path) -> None:
    cfg = web_config(tmp_path / "data", admin={"pubkeys": [ADMIN]})
    with GatewayProcess(cfg, tmp_path / "gw") as gw, chromium_browser() as browser:
        doc = requests.get(gw.url("/api/openapi.json"), timeout=30).json()
        ops = [(method.upper(), path, op) for path, item in doc["paths"].items()
               for method, op in item.items()]
        assert len(ops) > 60

        context, page, watched = open_page(browser, gw.url("/"))
        page.get_by_role("contentinfo").get_by_role("link", name="API").click()
        page.wait_for_url(gw.url("/docs/api"))
        entries = page.locator("#api details")
        expect(entries).to_have_count(len(ops))
        assert page.locator("#status").inner_text().startswith("tgateway ")

        listed = entries.locator("summary").evaluate_all(
            "(nodes) => nodes.map((s) => [s.querySelector('.method').textContent,"
            " s.querySelector('code').textContent, s.querySelector('.auth').textContent])")
        assert sorted((m, p) for m, p, _ in listed) == sorted((m, p) for m, p, _ in ops)
        auth = {(m, p): a for m, p, a in listed}
        assert auth[("GET", "/api/admin/stats")] == "needs: session bearer or NIP-98"
        assert auth[("GET", "/api/health")] == "no sign-in"
        tags = page.locator("#api h2").all_inner_texts()
        assert {"files", "admin", "web", "video", "meta"} <= set(tags)

        # an entry opens on its parameters and responses
        stats = entries.filter(has_text="/api/admin/users/{pubkey}").first
        stats.locator("summary").click()
        expect(stats.get_by_role("cell", name="pubkey", exact=True)).to_be_visible()
        expect(stats.get_by_role("cell", name="403", exact=True)).to_be_visible()

        watched.check()
        errors = [line for line in watched.console if line.startswith("error")]
        assert errors == [], errors
        context.close()
