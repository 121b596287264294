"""Shared pytest fixtures. Real-client helpers live in harness/."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make `tests.*` importable however pytest is started (`pytest`, `python -m pytest`, any cwd).
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from harness.servers import start_nostr_relay  # noqa: E402
from tests import trial_compat  # noqa: E402

trial_compat.install()


def _no_persistent_treq_connections() -> None:
    """treq's default pool keeps idle keep-alive sockets (and their 240 s timers) alive after a
    test; a later trial TestCase would then fail its dirty-reactor check. Tests that use plain
    ``treq.get`` etc. get a pool that closes connections after each response instead."""
    from treq.api import set_global_pool
    from twisted.internet import reactor
    from twisted.web.client import HTTPConnectionPool

    set_global_pool(HTTPConnectionPool(reactor, persistent=False))


_no_persistent_treq_connections()


@pytest.fixture
def nostr_relay(tmp_path: Path) -> Iterator[str]:
    """A real nostr-relay 1.14 on a free loopback port; yields its ``ws://127.0.0.1:PORT`` URL.

    Its SQLite file and HOME are in the test's tmp folder; it is stopped (process group killed)
    at teardown. Fails, naming the install command, when nostr-relay is not installed.
    Trial tests: ``relay = start_nostr_relay(self.mktemp()); self.addCleanup(relay.stop)``.
    """
    relay = start_nostr_relay(tmp_path / "nostr-relay")
    try:
        yield relay.url
    finally:
        relay.stop()
