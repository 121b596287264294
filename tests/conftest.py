"""Suite-wide pytest set-up. Real-client helpers live in harness/."""

from __future__ import annotations

import sys
from pathlib import Path

# Make `tests.*` importable however pytest is started (`pytest`, `python -m pytest`, any cwd).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)


def _no_persistent_treq_connections() -> None:
    """treq's default pool keeps idle keep-alive sockets (and their 240 s timers) alive after a
    test; a later trial TestCase would then fail its dirty-reactor check. Tests that use plain
    ``treq.get`` etc. get a pool that closes connections after each response instead."""
    from treq.api import set_global_pool
    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    set_global_pool(HTTPConnectionPool(reactor, persistent=False))


_no_persistent_treq_connections()
