"""tap.makeService builds the Nostr service and the sign-in routes and wires them."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tgateway.config import parse_config
from tgateway.nostr.service import NostrService
from tgateway.tap import makeService
from tgateway.web.auth import RequestAuthenticator


class NostrWiringTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="nostr-wiring-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def build(self, **nostr: Any) -> Any:
        d = self.dir
        config = parse_config({
            "mode": "gateway-only",
            "data_dir": d,
            "gateway": {"port": 0, "host": "127.0.0.1"},
            "tracker": {"enabled": False},
            "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b",
                        "chunk_storage": f"{d}/c"},
            "nostr": {"relays": ["wss://relay.example"], **nostr},
        })
        return makeService({"config": config}, reactor=MemoryReactorClock())

    def test_nostr_service_and_authenticator(self) -> None:
        top = self.build()
        gw = top.gateway
        (nostr,) = [s for s in top if isinstance(s, NostrService)]
        self.assertIs(gw.components.nostr, nostr)
        self.assertIs(gw.db, nostr.outbox._store._db)
        self.assertIs(gw.db, gw.components.gateway.users.sessions.db)
        self.assertIn(nostr.announcer.on_stored, gw.store._on_stored)
        self.assertEqual(nostr.announcer.relays, ("wss://relay.example",))
        self.assertTrue(nostr.announcer.auto_publish)
        api = gw.components.gateway.api
        self.assertIsInstance(api.auth, RequestAuthenticator)
        self.assertIs(api.auth, gw.components.gateway.users.auth)
        self.assertIsNotNone(gw.components.gateway.users.nip46)
        component = gw.components.named("nostr")  # /api/health reads it
        assert component is not None
        self.assertEqual(component.report, nostr.health)
        self.assertEqual(nostr.status(),
                         {"status": "ok", "npub": nostr.npub, "relays": {"wss://relay.example": False}})
        names = [s.name for s in top]
        # storage first; the sign-in service stops before the Nostr one (NIP-46 logins first)
        self.assertLess(names.index("storage"), names.index("nostr"))
        self.assertLess(names.index("nostr"), names.index("auth"))

    def test_switches_honoured(self) -> None:
        gw = self.build(auto_publish=False).gateway
        self.assertFalse(gw.components.nostr.announcer.auto_publish)
        gw = self.build(publish_nip35=False).gateway
        self.assertEqual(gw.components.nostr.announcer.relays, ())

    def test_npub_logged_at_start(self) -> None:
        nostr = self.build().gateway.components.nostr
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for child in (nostr.pool, nostr.outbox):  # only the log line is under test here
            child.startService = lambda: None
        nostr.startService()
        self.assertIn(
            nostr.npub,
            [e.get("npub") for e in events if e.get("log_format") == "Nostr identity {npub}"],
        )
