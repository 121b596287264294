"""Helpers for the web interface's browser tests (``tests/integration/test_web_ui_*.py``).

The gateway runs in its own process (``GatewayProcess``: Playwright's sync API blocks), with the
faces the page shows switched on: Blossom on its own port, the tracker on the gateway port
(WebSocket tracker at ``/announce``), no DHT. Chromium is Debian's, through
``harness.tools.chromium_browser``.

Every page a test opens is watched: uncaught errors and Content-Security-Policy violations are
collected in :class:`Watched` and a test asserts there were none (:meth:`Watched.check`).

``TGATEWAY_SCREENSHOTS=DIR`` makes :func:`screenshot` write there (``scripts/screenshots`` sets it
to ``docs/screenshots``); otherwise screenshots go to the test's temporary folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ports import free_tcp_port
from harness.twistd import gateway_config
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

DESKTOP = {"width": 1280, "height": 860}
# how long a step in a page may take (ms): well under a second on a quiet machine, but the tests
# share two cores with others
STEP_TIMEOUT = 20_000
PHONE = {"width": 390, "height": 844}
SCREENSHOTS_ENV = "TGATEWAY_SCREENSHOTS"

# Reported to the test through the console: CSP violations do not raise in the page.
_WATCH = """
document.addEventListener('securitypolicyviolation', (e) => {
  console.error('CSP violation: ' + e.violatedDirective + ' ' + e.blockedURI)
})
"""


def web_config(data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A unified gateway for the page: Blossom, the tracker on the gateway port, no DHT."""
    base: dict[str, Any] = {
        "mode": "unified",
        "blossom_server": {"port": free_tcp_port(), "host": "127.0.0.1",
                           "rate_limit": {"requests_per_minute": 600000, "burst_size": 100000}},
        "tracker": {"enabled": True, "udp_port": 0, "http_port": 0, "host": "127.0.0.1"},
        "rate_limiting": {
            "upload": {"requests_per_second": 1000, "burst_size": 1000, "max_file_size": "20GB"},
            "download": {"requests_per_second": 100000, "burst_size": 100000},
            "stream": {"requests_per_second": 100000, "burst_size": 100000, "max_concurrent": 1000},
            "auth": {"login_attempts_per_minute": 600, "burst_size": 100},
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(base.get(name), dict):
            base[name] = {**base[name], **values}
        else:
            base[name] = values
    return gateway_config(data_dir, **base)


@dataclass
class Watched:
    problems: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.problems, self.problems


def open_page(browser: Any, url: str, *, viewport: dict[str, int] | None = None,
              context: Any = None, **context_options: Any) -> tuple[Any, Any, Watched]:
    """A new page (in a new context unless one is given) at ``url``, watched."""
    if context is None:
        context = browser.new_context(viewport=viewport or DESKTOP, **context_options)
        context.set_default_timeout(STEP_TIMEOUT)
    page = context.new_page()
    watched = Watched()

    def on_console(message: Any) -> None:
        watched.console.append(f"{message.type}: {message.text}")
        if "CSP violation" in message.text:
            watched.problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    page.add_init_script(_WATCH)
    if url:
        page.goto(url)
    return context, page, watched


def expect(target: Any) -> Any:
    """Playwright's ``expect`` (its assertions retry until they hold, or fail) with the patience
    of a step, ``STEP_TIMEOUT``, instead of its 5 s."""
    from playwright.sync_api import Expect

    assertions = Expect()
    assertions.set_options(timeout=STEP_TIMEOUT)
    return assertions(target)


def install_nip07(page: Any, secret: bytes) -> str:
    """Give the page a NIP-07 ``window.nostr`` whose ``signEvent`` signs with ``secret`` (in
    Python, with ``tgateway.nostr.event.sign``); returns the hex pubkey. Call before ``goto``."""
    pubkey = public_key_hex(secret)
    signed: list[dict[str, Any]] = []

    def sign_event(template_json: str) -> str:
        t = json.loads(template_json)
        event = sign(EventTemplate(kind=t["kind"], created_at=t["created_at"],
                                   tags=tuple(tuple(tag) for tag in t["tags"]),
                                   content=t.get("content", "")), secret)
        signed.append(event.to_json())
        return event.dumps()

    page.expose_function("__tgatewayTestSign", sign_event)
    page.add_init_script(f"""
      window.nostr = {{
        async getPublicKey () {{ return {json.dumps(pubkey)} }},
        async signEvent (template) {{ return JSON.parse(await window.__tgatewayTestSign(JSON.stringify(template))) }}
      }}
    """)
    page.nip07_signed = signed  # the events it signed, for the test to look at
    return pubkey


def throttle_upload(context: Any, page: Any, bytes_per_second: int) -> None:
    """Chromium's network emulation: uploads from this page go at ``bytes_per_second``."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": bytes_per_second})


def screenshot(page: Any, name: str, fallback_dir: Path) -> Path:
    """The viewport as ``<name>.png`` (no passing toast, no focus ring)."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or fallback_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.evaluate("""() => { document.getElementById('toast')?.classList.remove('toast-on')
                             if (!document.activeElement.closest('dialog')) document.activeElement.blur() }""")
    page.screenshot(path=str(path), full_page=False)
    return path


def fits_width(page: Any) -> bool:
    """No horizontal scrolling: the page fits its viewport's width."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


# every visible control without an accessible name (label, aria-label(ledby) or text)
UNNAMED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter((el) => el.offsetParent !== null || el.closest('dialog[open]'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') &&
                  !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map((el) => el.outerHTML.slice(0, 120))"""
NO_ALT = "() => [...document.querySelectorAll('img')].filter((i) => !i.alt).map((i) => i.src)"


def check_page(page: Any, name: str, width: str, shots: Path, *, shot: bool = True) -> None:
    """Fits the width, every control named, every image described; then a screenshot (unless
    ``shot`` is false)."""
    assert fits_width(page), f"{name} is wider than the {width} viewport"
    assert page.evaluate(UNNAMED) == [], name
    assert page.evaluate(NO_ALT) == [], name
    if shot:
        screenshot(page, f"{name}-{width}", shots)
