"""The outgoing-connection guard: resolve first, check every address, connect to that address.

The numeric forms of 127.0.0.1 are tried against a real listening socket on loopback, with the
system resolver: with ``allow_private`` off not one connection reaches it, with it on each form
connects (so the guard reads the forms as the connection does, not as something else).
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tgateway.netguard import AddressRefused, OutgoingGuard, ResolveError, is_public_address

NUMERIC_FORMS = ("2130706433", "0x7f000001", "127.1", "017700000001", "0177.0.0.1", "127.0.0.1")
LOOPBACK = (*NUMERIC_FORMS, "localhost", "LocalHost.", "[::ffff:127.0.0.1]", "::ffff:7f00:1")


@pytest.mark.parametrize("addr", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "192.0.2.1", "198.18.0.1",
    "240.0.0.1", "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1", "fec0::1",
    "ff02::1", "ff0e::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::7f00:1", "::127.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "2002:7f00:1::1",
    "2002:a00:1::1", "2001::1", "2001:db8::1", "100::1",
])
def test_non_public(addr: str) -> None:
    assert not is_public_address(addr)


@pytest.mark.parametrize("addr", [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2001:4860:4860::8888",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
])
def test_public(addr: str) -> None:
    assert is_public_address(addr)


class _Counting(Protocol):
    def connectionMade(self) -> None:
        self.factory.connections += 1  # type: ignore[attr-defined]
        self.transport.loseConnection()  # type: ignore[union-attr]


class _Listener(Factory):
    protocol = _Counting

    def __init__(self) -> None:
        self.connections = 0


class _Client(Protocol):
    def connectionMade(self) -> None:
        self.transport.loseConnection()  # type: ignore[union-attr]


class NumericFormsOnLoopback(TestCase):
    """Every numeric spelling of 127.0.0.1 through the system resolver and a real socket."""

    def setUp(self) -> Deferred[None]:
        self.listener = _Listener()

        async def listen() -> None:
            self.port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
                self.listener)
            self.addCleanup(self.port.stopListening)

        return Deferred.fromCoroutine(listen())

    async def test_refused_before_any_connection(self) -> None:
        guard = OutgoingGuard(reactor, allow_private=False)
        port = self.port.getHost().port
        for host in LOOPBACK:
            with self.assertRaises(AddressRefused, msg=host) as cm:
                await guard.endpoint(host, port).connect(Factory.forProtocol(_Client))
            self.assertIn("local or private", cm.exception.message)
        await _settle()
        self.assertEqual(self.listener.connections, 0)

    async def test_allowed_forms_connect_with_the_switch_on(self) -> None:
        guard = OutgoingGuard(reactor, allow_private=True)
        port = self.port.getHost().port
        forms = NUMERIC_FORMS
        for host in forms:
            self.assertEqual(await guard.resolve(host, port), ["127.0.0.1"], host)
            await guard.endpoint(host, port).connect(Factory.forProtocol(_Client))
        await _settle(lambda: self.listener.connections == len(forms))
        self.assertEqual(self.listener.connections, len(forms))


async def _settle(done: Any = None, rounds: int = 40) -> None:
    from twisted.internet.task import deferLater

    for _ in range(rounds):
        if done is not None and done():
            return
        await deferLater(reactor, 0.01, lambda: None)


class GuardInMemory(SynchronousTestCase):
    def test_every_resolved_address_is_checked(self) -> None:
        clock = MemoryReactorClock()
        guard = OutgoingGuard(clock, allow_private=False,
                              resolver=lambda host, port: succeed(["93.184.215.14", "10.0.0.5"]))
        failure = self.failureResultOf(guard.endpoint("rebind.example", 80).connect(Factory()),
                                       AddressRefused)
        self.assertIn("rebind.example resolves to a local or private address (10.0.0.5)",
                      failure.value.message)
        self.assertEqual(clock.tcpClients, [])

    def test_connects_to_the_checked_address_not_the_name(self) -> None:
        clock = MemoryReactorClock()
        answers = iter([["93.184.215.14"], ["127.0.0.1"]])  # a second answer would rebind
        guard = OutgoingGuard(clock, allow_private=False,
                              resolver=lambda host, port: succeed(next(answers)))
        guard.endpoint("cdn.example", 443).connect(Factory())
        self.assertEqual([(c[0], c[1]) for c in clock.tcpClients], [("93.184.215.14", 443)])
        self.failureResultOf(guard.endpoint("cdn.example", 443).connect(Factory()), AddressRefused)
        self.assertEqual(len(clock.tcpClients), 1)

    def test_ipv6_literal_and_unresolvable_name(self) -> None:
        clock = MemoryReactorClock()
        guard = OutgoingGuard(clock, allow_private=True,
                              resolver=lambda host, port: succeed([]))
        guard.endpoint("[::1]", 8080).connect(Factory())
        self.assertEqual([(c[0], c[1]) for c in clock.tcpClients], [("::1", 8080)])
        self.failureResultOf(guard.endpoint("nowhere.example", 80).connect(Factory()),
                             ResolveError)
        refused = OutgoingGuard(clock, allow_private=False)
        self.failureResultOf(refused.endpoint("relay.localhost", 80).connect(Factory()),
                             AddressRefused)
        self.assertEqual(len(clock.tcpClients), 1)
