"""The whole plugin (makeService) with a real nostr-relay 1.14 on loopback.

- a file uploaded over HTTP is announced (NIP-35, kind 2003); nostr-tools reads the event back
  from the relay and ``verifyEvent`` accepts it; ``GET /api/files/<sha256>/announcements`` shows
  the relay's OK, ``POST .../announce`` (owner only) publishes a fresh one;
- the relay down during the upload, then up at the same address: the event arrives, no restart;
- the gateway restarted in between (relay still down during the first run): it arrives, once;
- NIP-46 login over HTTP with the nostr-tools signer (``nostr_bunker_signer.mjs``): a session,
  for an event that names the gateway; a signer that asks for approval: 202 with ``auth_url``,
  then the poll gets the session; a silent signer: a clean 401 after ``nostr.nip46_timeout``; a
  signature bound to another server: 401;
- bunker relays named by numeric spellings of 127.0.0.1 (``2130706433``, ``0x7f000001``, ...):
  400 before any connection (a listening socket sees none); with
  ``nostr.allow_private_bunker_relays`` the same form connects, and a "relay" that answers plain
  HTTP ends the login at once with a clear 401 and no critical log event.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

import pytest
import treq
from twisted.application.internet import backoffPolicy
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from harness.gateway import small_config
from harness.ports import free_tcp_port
from harness.procs import ClientProcess, run_node_json_deferred
from harness.servers import start_nostr_relay
from tgateway.config import Config
from tgateway.nostr.event import public_key_hex
from tgateway.tap import makeService

pytestmark = pytest.mark.integration

ALICE = "a1" * 32
SIGNER = "66" * 32
USER = "77" * 32


class Gateway:
    """makeService on loopback with the outbox and the relay pool on short timers."""

    def __init__(self, config: Config) -> None:
        self.service = makeService({"config": config}, reactor)
        self.gateway = self.service.gateway  # type: ignore[attr-defined]
        self.nostr = self.gateway.components.nostr
        outbox = self.nostr.outbox
        outbox.publish_timeout, outbox.retry_initial, outbox.retry_max = 2.0, 0.5, 2.0
        self.nostr.pool._retry_policy = backoffPolicy(
            initialDelay=0.25, maxDelay=1.0, factor=2.0, jitter=lambda: 0.0
        )
        self.service.privilegedStartService()
        self.service.startService()
        port = self.service.getServiceNamed("gateway-http")._waitingForPort.result
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.stopped = False

    def url(self, path: str) -> str:
        return self.base + path

    async def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            await self.service.stopService()


POOL = HTTPConnectionPool(reactor, persistent=False)  # trial: no connection left open


class _CountingSite(Site):
    """A plain web site (no WebSocket) that counts the connections it gets."""

    connections = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.connections += 1
        return super().buildProtocol(addr)


async def call(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    r = await treq.request(method, url, pool=POOL, **kw)
    text = await r.text()
    return r.code, (json.loads(text) if text else None)


class NostrGatewayTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="tg-nostr-gw-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def config(self, **nostr: Any) -> Config:
        return small_config(
            os.path.join(self.dir, "gw"),
            nostr=nostr,
            rate_limiting={"auth": {"login_attempts_per_minute": 6000, "burst_size": 1000}},
        )

    def start(self, config: Config) -> Gateway:
        gw = Gateway(config)
        self.addCleanup(gw.stop)
        return gw

    def relay(self, name: str, port: int | None = None) -> Any:
        relay = start_nostr_relay(os.path.join(self.dir, name), port=port)
        self.addCleanup(relay.stop)
        return relay

    async def session(self, gw: Gateway, secret: str = ALICE) -> str:
        code, c = await call("GET", gw.url("/api/auth/challenge"))
        template = {"kind": 22242, "created_at": int(time.time()),
                    "tags": [["relay", c["relay"]], ["challenge", c["challenge"]]], "content": ""}
        signed = await run_node_json_deferred(
            reactor, "nostr_events.mjs",
            input=json.dumps({"secret": secret, "sign": [template]}).encode(), timeout=60,
        )
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip07", "event": signed["signed"][0]})
        self.assertEqual(code, 200, body)
        return str(body["token"])

    async def upload(self, gw: Gateway, data: bytes, token: str, **headers: str) -> dict[str, Any]:
        code, body = await call(
            "PUT", gw.url("/api/upload"), data=data,
            headers={"Authorization": f"Bearer {token}", "X-Filename": "clip.bin",
                     "Content-Type": "application/octet-stream", **headers},
        )
        self.assertIn(code, (200, 201), body)
        return body

    async def statuses(self, gw: Gateway, sha: str) -> list[tuple[str, str]]:
        code, body = await call("GET", gw.url(f"/api/files/{sha}/announcements"))
        self.assertEqual(code, 200, body)
        return [(r["relay"], r["status"]) for r in body["announcements"]]

    async def wait_accepted(self, gw: Gateway, sha: str, url: str, count: int = 1,
                            timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = await self.statuses(gw, sha)
            if got == [(url, "accepted")] * count:
                return
            if time.monotonic() > deadline:
                self.fail(f"announcements of {sha}: {got}")
            await deferLater(reactor, 0.2, lambda: None)

    async def read_back(self, relay_url: str, pubkey: str) -> dict[str, Any]:
        answer: dict[str, Any] = await run_node_json_deferred(
            reactor, "nostr_relay_read.mjs", relay_url,
            json.dumps({"kinds": [2003], "authors": [pubkey]}), timeout=60,
        )
        return answer

    # --- NIP-35 -------------------------------------------------------------------------------

    async def test_upload_announced_and_verified_by_nostr_tools(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(relays=[relay.url]))
        code, ident = await call("GET", gw.url("/api/nostr/identity"))
        self.assertEqual((code, ident["relays"]), (200, [relay.url]))
        self.assertTrue(ident["npub"].startswith("npub1"))
        token = await self.session(gw)
        f = await self.upload(gw, os.urandom(40_000), token, **{"X-Title": "Loopback clip",
                                                                 "X-Description": "over HTTP"})
        await self.wait_accepted(gw, f["sha256"], relay.url)

        answer = await self.read_back(relay.url, ident["pubkey"])
        self.assertEqual(answer["verified"], [True])
        [event] = answer["events"]
        tags: dict[str, list[str]] = {}
        for t in event["tags"]:
            tags.setdefault(t[0], []).append(t[1])
        self.assertEqual(event["kind"], 2003)
        self.assertEqual(tags["x"], [f["info_hash"]])
        self.assertEqual(tags["title"], ["Loopback clip"])
        self.assertEqual(event["content"], "over HTTP")
        self.assertIn("clip.bin", tags["file"])

        # the owner announces again on demand (a second later: a new created_at, a new id);
        # somebody else may not
        await deferLater(reactor, 1.1, lambda: None)
        code, body = await call("POST", gw.url(f"/api/files/{f['sha256']}/announce"),
                                headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(code, 202, body)
        self.assertNotEqual(body["event_id"], event["id"])
        other = await self.session(gw, "b2" * 32)
        code, body = await call("POST", gw.url(f"/api/files/{f['sha256']}/announce"),
                                headers={"Authorization": f"Bearer {other}"})
        self.assertEqual((code, body["error"]), (403, "not_owner"))
        await self.wait_accepted(gw, f["sha256"], relay.url, count=2)
        answer = await self.read_back(relay.url, ident["pubkey"])
        self.assertEqual(answer["verified"], [True, True])

    async def test_auto_publish_off(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(relays=[relay.url], auto_publish=False))
        token = await self.session(gw)
        f = await self.upload(gw, b"not announced by itself", token)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(await self.statuses(gw, f["sha256"]), [])
        code, _ = await call("POST", gw.url(f"/api/files/{f['sha256']}/announce"),
                             headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(code, 202)
        await self.wait_accepted(gw, f["sha256"], relay.url)

    async def test_relay_down_during_upload_then_up(self) -> None:
        port = free_tcp_port()
        url = f"ws://127.0.0.1:{port}"
        gw = self.start(self.config(relays=[url]))
        token = await self.session(gw)
        f = await self.upload(gw, os.urandom(20_000), token)
        await deferLater(reactor, 3.0, lambda: None)  # an attempt or two fail meanwhile
        self.assertEqual(await self.statuses(gw, f["sha256"]), [(url, "pending")])

        relay = self.relay("relay", port=port)
        await self.wait_accepted(gw, f["sha256"], url)
        answer = await self.read_back(relay.url, gw.nostr.pubkey)
        self.assertEqual(answer["verified"], [True])
        self.assertEqual(len(answer["events"]), 1)

    async def test_gateway_restarted_while_relay_down(self) -> None:
        port = free_tcp_port()
        url = f"ws://127.0.0.1:{port}"
        config = self.config(relays=[url])
        first = self.start(config)
        token = await self.session(first)
        f = await self.upload(first, os.urandom(20_000), token)
        await deferLater(reactor, 1.0, lambda: None)
        self.assertEqual(await self.statuses(first, f["sha256"]), [(url, "pending")])
        pubkey = first.nostr.pubkey
        await first.stop()

        relay = self.relay("relay", port=port)
        second = self.start(config)
        self.assertEqual(second.nostr.pubkey, pubkey)  # the key was kept in the data folder
        await self.wait_accepted(second, f["sha256"], url)
        await deferLater(reactor, 1.0, lambda: None)
        answer = await self.read_back(relay.url, pubkey)
        self.assertEqual(answer["verified"], [True])
        self.assertEqual(len(answer["events"]), 1)  # it arrived once
        self.assertEqual(await self.statuses(second, f["sha256"]), [(url, "accepted")])

    # --- NIP-46 ---------------------------------------------------------------------------------

    async def signer(self, relay_url: str, mode: str = "normal", secret: str = "") -> ClientProcess:
        proc = ClientProcess.node("nostr_bunker_signer.mjs", relay_url, SIGNER, USER, mode, secret)
        self.addCleanup(proc.stop)
        await proc.json_deferred(reactor, timeout=30, key="ready")
        return proc

    def bunker(self, relay_url: str, secret: str = "") -> str:
        url = f"bunker://{public_key_hex(bytes.fromhex(SIGNER))}?relay={relay_url}"
        return url + (f"&secret={secret}" if secret else "")

    async def test_nip46_login(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(allow_private_bunker_relays=True, nip46_timeout=20))
        signer = await self.signer(relay.url, secret="s3cret")
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip46", "bunker_url": self.bunker(relay.url, "s3cret")})
        self.assertEqual(code, 200, body)
        # what the signer was asked to sign names this gateway
        asked = await signer.json_deferred(reactor, timeout=5, key="tags")
        self.assertIn(["relay", gw.base], asked["tags"])
        user = public_key_hex(bytes.fromhex(USER))
        self.assertEqual((body["pubkey"], body["auth_type"]), (user, "nip46"))
        code, me = await call("GET", gw.url("/api/auth/session"),
                              headers={"Authorization": f"Bearer {body['token']}"})
        self.assertEqual((code, me["pubkey"]), (200, user))
        self.assertNotIn(relay.url, gw.nostr.pool.urls)  # the bunker relay was dropped after

    async def test_nip46_auth_url_then_poll(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(allow_private_bunker_relays=True, nip46_timeout=20))
        await self.signer(relay.url, mode="auth_url")
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip46", "bunker_url": self.bunker(relay.url)})
        self.assertEqual(code, 202, body)
        self.assertEqual(body["auth_url"], "https://signer.test/approve")
        poll = {"auth_type": "nip46", "login_id": body["login_id"]}
        code, done = await call("POST", gw.url("/api/auth/login"), json=poll)
        self.assertEqual(code, 200, done)
        self.assertEqual(done["pubkey"], public_key_hex(bytes.fromhex(USER)))
        code, again = await call("POST", gw.url("/api/auth/login"), json=poll)
        self.assertEqual((code, again["error"]), (401, "invalid_login"))

    async def test_nip46_silent_signer_times_out(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(allow_private_bunker_relays=True, nip46_timeout=2))
        await self.signer(relay.url, mode="silent")
        started = time.monotonic()
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip46", "bunker_url": self.bunker(relay.url)})
        self.assertEqual((code, body["error"]), (401, "nip46_failed"), body)
        self.assertIn("did not answer connect within 2 s", body["message"])
        self.assertLess(time.monotonic() - started, 10)

    async def test_nip46_signature_for_another_server_refused(self) -> None:
        relay = self.relay("relay")
        gw = self.start(self.config(allow_private_bunker_relays=True, nip46_timeout=20))
        await self.signer(relay.url, mode="rebind")
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip46", "bunker_url": self.bunker(relay.url)})
        self.assertEqual((code, body["error"]), (401, "nip46_failed"), body)
        self.assertIn("signed a different event", body["message"])

    def listen(self, site: Any) -> int:
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    async def test_nip46_numeric_loopback_forms_refused_before_any_connection(self) -> None:
        target = _CountingSite(Resource())
        port = self.listen(target)
        gw = self.start(self.config())
        for form in ("2130706433", "0x7f000001", "127.1", "017700000001", "0177.0.0.1",
                     "[::ffff:127.0.0.1]", "localhost"):
            code, body = await call("POST", gw.url("/api/auth/login"), json={
                "auth_type": "nip46", "bunker_url": self.bunker(f"ws://{form}:{port}/")})
            self.assertEqual((code, body["error"]), (400, "invalid_bunker_url"), form)
            self.assertIn("local or private address", body["message"])
        await deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(target.connections, 0)
        self.assertEqual(gw.nostr.pool.urls, [])

    async def test_nip46_relay_answering_plain_http_is_a_clean_login_error(self) -> None:
        from twisted.logger import LogLevel, globalLogPublisher

        critical: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.critical:
                critical.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        web = _CountingSite(Resource())  # answers every request with a plain 404 page
        port = self.listen(web)
        gw = self.start(self.config(allow_private_bunker_relays=True, nip46_timeout=20))
        started = time.monotonic()
        code, body = await call("POST", gw.url("/api/auth/login"), json={
            "auth_type": "nip46", "bunker_url": self.bunker(f"ws://2130706433:{port}/")})
        self.assertEqual((code, body["error"]), (401, "nip46_failed"), body)
        self.assertIn("cannot reach the remote signer's relays", body["message"])
        self.assertIn("no WebSocket", body["message"])
        self.assertLess(time.monotonic() - started, 10)  # not the signer's 20 s timeout
        self.assertGreaterEqual(web.connections, 1)  # the allowed form did connect
        await deferLater(reactor, 1.0, lambda: None)  # retries of the relay, had it stayed
        self.assertEqual(gw.nostr.pool.urls, [])
        self.assertEqual(critical, [], [e.get("log_format") for e in critical])

    async def test_nip46_private_relay_refused_unless_allowed(self) -> None:
        gw = self.start(self.config())
        code, body = await call("POST", gw.url("/api/auth/login"),
                                json={"auth_type": "nip46", "bunker_url": self.bunker("ws://127.0.0.1:1")})
        self.assertEqual((code, body["error"]), (400, "invalid_bunker_url"))
        self.assertIn("local or private address", body["message"])
