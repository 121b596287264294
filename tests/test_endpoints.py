"""Listening endpoint strings (:mod:`tgateway.endpoints`) and what Twisted makes of them."""

from __future__ import annotations

import pytest
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, serverFromString
from twisted.internet.testing import MemoryReactor

from tgateway.endpoints import tcp_server


@pytest.mark.parametrize(
    "host, expected, kind, interface",
    [
        ("", "tcp:9877", TCP4ServerEndpoint, ""),
        ("0.0.0.0", "tcp:9877", TCP4ServerEndpoint, ""),
        ("127.0.0.1", "tcp:9877:interface=127.0.0.1", TCP4ServerEndpoint, "127.0.0.1"),
        ("::", "tcp6:9877:interface=\\:\\:", TCP6ServerEndpoint, "::"),
        ("::1", "tcp6:9877:interface=\\:\\:1", TCP6ServerEndpoint, "::1"),
    ],
)
def test_tcp_server(host: str, expected: str, kind: type, interface: str) -> None:
    desc = tcp_server(9877, host)
    assert desc == expected
    endpoint = serverFromString(MemoryReactor(), desc)
    assert isinstance(endpoint, kind)
    assert (endpoint._port, endpoint._interface) == (9877, interface)  # type: ignore[attr-defined]
