"""A login event signed by a NIP-46 signer that the web page reached itself (nostrconnect://)
signs in like a NIP-07 one, and the session says nip46."""

from __future__ import annotations

import json

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, small_config, start_gateway
from tgateway.nostr.event import EventTemplate, public_key_hex, sign

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
USER = bytes.fromhex("c3" * 32)


async def login_event(gw: RunningGateway, relay: str | None = None) -> dict:
    r = await http.get(gw.url("/api/auth/challenge"))
    challenge = await treq.json_content(r)
    return sign(EventTemplate(kind=22242, created_at=int(reactor.seconds()),
                              tags=(("relay", relay or challenge["relay"]),
                                    ("challenge", challenge["challenge"]))), USER).to_json()


class Nip46LoginEventTests(TestCase):
    def setUp(self) -> None:
        self.gw = start_gateway(self, small_config(case_data_dir(self)))

    async def test_a_signed_event_with_auth_type_nip46_signs_in(self) -> None:
        event = await login_event(self.gw)
        r = await http.post(self.gw.url("/api/auth/login"), json={"auth_type": "nip46", "event": event})
        answer = await treq.json_content(r)
        assert r.code == 200, answer
        assert answer["auth_type"] == "nip46" and answer["pubkey"] == public_key_hex(USER)
        r = await http.get(self.gw.url("/api/auth/session"), headers={"Authorization": f"Bearer {answer['token']}"})
        assert (await treq.json_content(r))["pubkey"] == public_key_hex(USER)
        # checked like any login event: its challenge is used up, another server's event is refused
        r = await http.post(self.gw.url("/api/auth/login"), json={"auth_type": "nip46", "event": event})
        assert r.code == 401
        other = await login_event(self.gw, relay="wss://relay.example")
        r = await http.post(self.gw.url("/api/auth/login"), json={"auth_type": "nip46", "event": other})
        assert r.code == 401 and json.loads(await treq.content(r))["error"] == "wrong_server"
        # a bunker_url still starts the gateway's own NIP-46 conversation
        r = await http.post(self.gw.url("/api/auth/login"), json={"auth_type": "nip46", "bunker_url": "x"})
        assert json.loads(await treq.content(r))["error"] in ("invalid_bunker_url", "nip46_unavailable")
