"""``trusted_proxies``: one setting for every HTTP port behind a reverse proxy.

Through the real plugin on loopback (the test's connections come from 127.0.0.1, the "proxy"):
the gateway API's upload limiter, the sign-in challenge limiter, Blossom's limiter and the tracker
mounted on the gateway port all take the client from ``X-Forwarded-For`` when 127.0.0.1 is
trusted, and ignore the header when it is not (a client cannot pick its own address).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote_from_bytes

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, case_data_dir, serving_config, start_gateway
from tgateway import bencode
from tgateway.config import ConfigError, parse_config
from tgateway.proxies import ProxyPolicy

http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

LIMITED = {
    "rate_limiting": {
        "upload": {"requests_per_second": 0.001, "burst_size": 1},
        "auth": {"login_attempts_per_minute": 0.06, "burst_size": 1},
    },
    "blossom_server": {"rate_limit": {"requests_per_minute": 0.06, "burst_size": 1}},
    "tracker": {"enabled": True, "udp_port": 0},
}


async def codes_from(send: Callable[[str], Awaitable[Any]], clients: list[str]) -> list[int]:
    """The status of one request per entry, each claiming that client in X-Forwarded-For."""
    return [(await send(c)).code for c in clients]


def senders(g: RunningGateway) -> dict[str, Callable[[str], Awaitable[Any]]]:
    def h(client: str) -> dict[str, list[str]]:
        return {"X-Forwarded-For": [f"198.51.100.99, {client}"]}

    assert g.blossom_base is not None
    blossom_base = g.blossom_base
    return {
        "upload": lambda c: http.put(g.url("/api/upload"), data=c.encode(), headers=h(c)),
        "challenge": lambda c: http.get(g.url("/api/auth/challenge"), headers=h(c)),
        # /list is in Blossom's costly class (blossom_server.rate_limit); reads are in the download class
        "blossom": lambda c: http.get(blossom_base + "/list/" + "ab" * 32, headers=h(c)),
    }


async def announce(g: RunningGateway, peer_id: bytes, port: int, forwarded_for: str) -> dict[bytes, Any]:
    qs = (f"info_hash={quote_from_bytes(b'i' * 20)}&peer_id={quote_from_bytes(peer_id)}"
          f"&port={port}&uploaded=0&downloaded=0&left=10&compact=0")
    r = await http.get(g.url("/announce?" + qs), headers={"X-Forwarded-For": [forwarded_for]})
    body: dict[bytes, Any] = bencode.decode(await r.content())
    return body


class ForwardedClientTests(TestCase):
    """Each limiter (``upload``, ``challenge``, ``blossom``: see :func:`senders`) and the tracker,
    with 127.0.0.1 trusted and not."""

    def start(self, trusted: list[str]) -> RunningGateway:
        config = serving_config(case_data_dir(self), trusted_proxies=trusted, **LIMITED)
        return start_gateway(self, config)

    async def _limiters_key_on_the_client_a_trusted_proxy_names(self, route: str) -> None:
        g = self.start(["127.0.0.0/8"])
        codes = await codes_from(senders(g)[route], ["203.0.113.1", "203.0.113.1", "203.0.113.2"])
        assert codes[1] == 429, codes
        assert 429 not in (codes[0], codes[2]), codes  # another client has its own bucket

    async def test_limiters_key_on_the_client_a_trusted_proxy_names_upload(self) -> None:
        await self._limiters_key_on_the_client_a_trusted_proxy_names("upload")

    async def test_limiters_key_on_the_client_a_trusted_proxy_names_challenge(self) -> None:
        await self._limiters_key_on_the_client_a_trusted_proxy_names("challenge")

    async def test_limiters_key_on_the_client_a_trusted_proxy_names_blossom(self) -> None:
        await self._limiters_key_on_the_client_a_trusted_proxy_names("blossom")

    async def _forwarded_for_from_an_untrusted_peer_is_ignored(self, route: str) -> None:
        g = self.start([])
        codes = await codes_from(senders(g)[route], ["203.0.113.1", "203.0.113.2"])
        assert codes[0] != 429 and codes[1] == 429, codes  # one bucket: the connection's address

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored_upload(self) -> None:
        await self._forwarded_for_from_an_untrusted_peer_is_ignored("upload")

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored_challenge(self) -> None:
        await self._forwarded_for_from_an_untrusted_peer_is_ignored("challenge")

    async def test_forwarded_for_from_an_untrusted_peer_is_ignored_blossom(self) -> None:
        await self._forwarded_for_from_an_untrusted_peer_is_ignored("blossom")

    async def _tracker_on_the_gateway_port_lists_the_forwarded_client(
            self, trusted: list[str], listed: bytes) -> None:
        g = self.start(trusted)
        await announce(g, b"a" * 20, 6001, "203.0.113.5")
        reply = await announce(g, b"b" * 20, 6002, "203.0.113.6")
        assert [(p[b"ip"], p[b"port"]) for p in reply[b"peers"]] == [(listed, 6001)]

    async def test_tracker_on_the_gateway_port_lists_the_forwarded_client_when_trusted(self) -> None:
        await self._tracker_on_the_gateway_port_lists_the_forwarded_client(["127.0.0.1"], b"203.0.113.5")

    async def test_tracker_on_the_gateway_port_lists_the_connection_when_untrusted(self) -> None:
        await self._tracker_on_the_gateway_port_lists_the_forwarded_client([], b"127.0.0.1")


class ConfigTests(SynchronousTestCase):
    def test_trusted_proxies_is_one_top_level_key(self) -> None:
        assert parse_config({"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}).trusted_proxies == (
            "127.0.0.1", "10.0.0.0/8", "::1")
        with self.assertRaisesRegex(ConfigError, r"^trusted_proxies: got \['nginx'\], expected a list"):
            parse_config({"trusted_proxies": ["nginx"]})
        with self.assertRaisesRegex(ConfigError, r"^tracker.trusted_proxies: this key moved to trusted_proxies$"):
            parse_config({"tracker": {"trusted_proxies": ["127.0.0.1"]}})

    def test_policy_reads_hops_from_the_right_past_trusted_ones(self) -> None:
        p = ProxyPolicy(["10.0.0.0/8"])
        assert p.client("10.0.0.1", b"1.1.1.1, 2.2.2.2, 10.0.0.9") == "2.2.2.2"
        assert p.client("10.0.0.1", None) == "10.0.0.1"
        assert p.client("192.0.2.1", b"1.1.1.1") == "192.0.2.1"
        assert p.client("::ffff:10.0.0.1", b"2.2.2.2") == "2.2.2.2"
