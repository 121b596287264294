"""NIP-46 login over a real relay: a signer written on nostr-tools primitives, nostr-relay 1.14.

The gateway side is BunkerClient on the relay pool; the signer is
``tests/clients/js/nostr_bunker_signer.mjs``. A signer that never answers times out cleanly.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from typing import Any

import pytest
from coincurve import PrivateKey
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from harness.procs import ClientProcess
from harness.servers import start_nostr_relay
from tgateway.nostr.event import EventTemplate, public_key_hex
from tgateway.nostr.nip46 import BunkerClient, Nip46Timeout, parse_bunker_url
from tgateway.nostr.pool import RelayPool

pytestmark = pytest.mark.integration

SIGNER = "66" * 32
USER = "77" * 32


class Nip46RelayTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="tg-nip46-relay-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.relay = start_nostr_relay(directory)
        self.addCleanup(self.relay.stop)
        self.pool = RelayPool(reactor, private_key=PrivateKey(), jitter=lambda: 0.0)
        self.pool.startService()
        self.addCleanup(self.pool.stopService)

    async def start_signer(self, mode: str = "normal", secret: str = "") -> ClientProcess:
        signer = ClientProcess.node(
            "nostr_bunker_signer.mjs", self.relay.url, SIGNER, USER, mode, secret
        )
        self.addCleanup(signer.stop)
        ready = await signer.json_deferred(reactor, timeout=30, key="ready")
        self.assertEqual(ready["signer"], public_key_hex(bytes.fromhex(SIGNER)))
        return signer

    def client(self, secret: str = "", **kw: Any) -> BunkerClient:
        url = f"bunker://{public_key_hex(bytes.fromhex(SIGNER))}?relay={self.relay.url}"  # loopback
        if secret:
            url += f"&secret={secret}"
        client = BunkerClient(self.pool, parse_bunker_url(url), reactor, **kw)
        client.start()
        self.addCleanup(client.close)
        return client

    async def test_login_with_nostr_tools_signer(self) -> None:
        await self.start_signer(secret="s3cret")
        client = self.client(secret="s3cret", timeout=20)
        await client.connect()
        user = await client.get_public_key()
        self.assertEqual(user, public_key_hex(bytes.fromhex(USER)))
        template = EventTemplate(
            kind=22242, created_at=int(time.time()), tags=(("challenge", "login-challenge-1"),)
        )
        event = await client.sign_event(template)
        self.assertEqual(event.pubkey, user)
        self.assertEqual(event.first_tag("challenge"), "login-challenge-1")

    async def test_auth_url_then_answer(self) -> None:
        await self.start_signer(mode="auth_url")
        urls: list[str] = []
        client = self.client(timeout=20, on_auth_url=urls.append)
        template = EventTemplate(
            kind=22242, created_at=int(time.time()), tags=(("challenge", "c"),)
        )
        event = await client.sign_event(template)
        self.assertEqual(urls, ["https://signer.test/approve"])
        self.assertEqual(event.first_tag("challenge"), "c")

    async def test_silent_signer_times_out(self) -> None:
        signer = await self.start_signer(mode="silent")
        client = self.client(timeout=2)
        started = time.monotonic()
        with self.assertRaises(Nip46Timeout):
            await client.connect()
        self.assertLess(time.monotonic() - started, 10)
        self.assertIsNotNone(
            signer.find_line(
                lambda line: '"request": "connect"' in line or '"request":"connect"' in line
            )
        )
