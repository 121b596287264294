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

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import RunningGateway, serving_config, temp_data_dir
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


def start(trusted: list[str]) -> RunningGateway:
    return RunningGateway(serving_config(temp_data_dir(), trusted_proxies=trusted, **LIMITED))


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


@pytest.mark.parametrize("route", ["upload", "challenge", "blossom"])
@pytest_twisted.ensureDeferred
async def test_limiters_key_on_the_client_a_trusted_proxy_names(route: str) -> None:
    g = start(["127.0.0.0/8"])
    try:
        codes = await codes_from(senders(g)[route], ["203.0.113.1", "203.0.113.1", "203.0.113.2"])
        assert codes[1] == 429, codes
        assert 429 not in (codes[0], codes[2]), codes  # another client has its own bucket
    finally:
        await g.stop()


@pytest.mark.parametrize("route", ["upload", "challenge", "blossom"])
@pytest_twisted.ensureDeferred
async def test_forwarded_for_from_an_untrusted_peer_is_ignored(route: str) -> None:
    g = start([])
    try:
        codes = await codes_from(senders(g)[route], ["203.0.113.1", "203.0.113.2"])
        assert codes[0] != 429 and codes[1] == 429, codes  # one bucket: the connection's address
    finally:
        await g.stop()


async def announce(g: RunningGateway, peer_id: bytes, port: int, forwarded_for: str) -> dict[bytes, Any]:
    qs = (f"info_hash={quote_from_bytes(b'i' * 20)}&peer_id={quote_from_bytes(peer_id)}"
          f"&port={port}&uploaded=0&downloaded=0&left=10&compact=0")
    r = await http.get(g.url("/announce?" + qs), headers={"X-Forwarded-For": [forwarded_for]})
    body: dict[bytes, Any] = bencode.decode(await r.content())
    return body


@pytest.mark.parametrize("trusted, listed", [(["127.0.0.1"], b"203.0.113.5"), ([], b"127.0.0.1")])
@pytest_twisted.ensureDeferred
async def test_tracker_on_the_gateway_port_lists_the_forwarded_client(
        trusted: list[str], listed: bytes) -> None:
    g = start(trusted)
    try:
        await announce(g, b"a" * 20, 6001, "203.0.113.5")
        reply = await announce(g, b"b" * 20, 6002, "203.0.113.6")
        assert [(p[b"ip"], p[b"port"]) for p in reply[b"peers"]] == [(listed, 6001)]
    finally:
        await g.stop()


def test_trusted_proxies_is_one_top_level_key() -> None:
    assert parse_config({"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}).trusted_proxies == (
        "127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match=r"^trusted_proxies: got \['nginx'\], expected a list"):
        parse_config({"trusted_proxies": ["nginx"]})
    with pytest.raises(ConfigError, match=r"^tracker.trusted_proxies: this key moved to trusted_proxies$"):
        parse_config({"tracker": {"trusted_proxies": ["127.0.0.1"]}})


def test_policy_reads_hops_from_the_right_past_trusted_ones() -> None:
    p = ProxyPolicy(["10.0.0.0/8"])
    assert p.client("10.0.0.1", b"1.1.1.1, 2.2.2.2, 10.0.0.9") == "2.2.2.2"
    assert p.client("10.0.0.1", None) == "10.0.0.1"
    assert p.client("192.0.2.1", b"1.1.1.1") == "192.0.2.1"
    assert p.client("::ffff:10.0.0.1", b"2.2.2.2") == "2.2.2.2"
