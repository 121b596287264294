"""Run ``tests/clients/js/nostr_events.mjs`` (nostr-tools) for interop checks.

Blocking (``harness.procs.run_node_json``): only for tests that do not run the reactor. A missing
node or nostr-tools fails the test (or skips it with TGATEWAY_ALLOW_MISSING_CLIENTS=1), as every
real-client test of the project does.
"""

from __future__ import annotations

import json
from typing import Any

from harness.procs import run_node_json


def nostr_tools(request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the helper script and return its JSON answer."""
    result: dict[str, Any] = run_node_json("nostr_events.mjs", input=json.dumps(request))
    return result
