"""Run ``tests/clients/js/nostr_events.mjs`` (nostr-tools) for interop checks.

Synchronous (``subprocess.run``): only used from tests that do not run the reactor.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from .vectors import REPO_ROOT

CLIENTS = REPO_ROOT / "tests" / "clients"
SCRIPT = CLIENTS / "js" / "nostr_events.mjs"


def node_available() -> str | None:
    """Why nostr-tools cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (CLIENTS / "node_modules" / "nostr-tools").is_dir():
        return "nostr-tools is not installed in tests/clients/node_modules"
    return None


def nostr_tools(request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the helper script and return its JSON answer."""
    proc = subprocess.run(
        ["node", str(SCRIPT)],
        input=json.dumps(request).encode(),
        capture_output=True,
        cwd=CLIENTS,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"nostr_events.mjs failed: {proc.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result
