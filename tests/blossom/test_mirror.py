"""The mirror's use of the outgoing-connection guard (tests/test_netguard.py tests the guard)."""

from __future__ import annotations

import pytest
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.web.client import URI

from tgateway.blossom.mirror import GuardedEndpointFactory, parse_mirror_url
from tgateway.errors import BadRequest, Forbidden


@pytest.mark.parametrize("url", ["", "ftp://x/y", "file:///etc/passwd", "http://", "http://u:p@h/x",
                                 "gopher://h/", 42, None, "http://h:0/"])
def test_bad_urls(url: object) -> None:
    with pytest.raises(BadRequest):
        parse_mirror_url(url)


def _connect(factory: GuardedEndpointFactory, url: bytes) -> object:
    ep = factory.endpointForURI(URI.fromBytes(url))
    return ep.connect(object())


def test_name_resolving_to_private_is_refused() -> None:
    reactor = MemoryReactorClock()
    f = GuardedEndpointFactory(reactor, allow_private=False,
                               resolver=lambda host, port: succeed(["93.184.215.14", "10.0.0.5"]))
    d = _connect(f, b"http://rebind.example/blob")
    failure = []
    d.addErrback(failure.append)  # type: ignore[attr-defined]
    assert failure and failure[0].check(Forbidden)
    assert reactor.tcpClients == []


def test_public_name_connects_to_the_checked_address() -> None:
    reactor = MemoryReactorClock()
    f = GuardedEndpointFactory(reactor, allow_private=False,
                               resolver=lambda host, port: succeed(["93.184.215.14"]))
    _connect(f, b"http://cdn.example/blob")
    assert [(c[0], c[1]) for c in reactor.tcpClients] == [("93.184.215.14", 80)]


def test_literal_private_address_refused_allowed_when_configured() -> None:
    reactor = MemoryReactorClock()
    refused = []
    _connect(GuardedEndpointFactory(reactor, allow_private=False),
             b"http://127.0.0.1:8080/x").addErrback(refused.append)  # type: ignore[attr-defined]
    assert refused and refused[0].check(Forbidden)
    _connect(GuardedEndpointFactory(reactor, allow_private=True), b"http://127.0.0.1:8080/x")
    assert [(c[0], c[1]) for c in reactor.tcpClients] == [("127.0.0.1", 8080)]


def test_ipv6_literal_urls_connect_to_the_address() -> None:
    reactor = MemoryReactorClock()
    _connect(GuardedEndpointFactory(reactor, allow_private=True), b"http://[::1]:8080/x")
    _connect(GuardedEndpointFactory(reactor, allow_private=False),
             b"http://[2606:4700:4700::1111]/x")
    assert [(c[0], c[1]) for c in reactor.tcpClients] == [("::1", 8080),
                                                           ("2606:4700:4700::1111", 80)]


def test_body_sink_idle_timeout_ignores_our_own_pauses() -> None:
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure
    from twisted.web.client import ResponseDone

    from tgateway.blossom.mirror import MirrorError, _BodySink

    clock = Clock()
    got: list[bytes] = []
    sink = _BodySink(got.append, clock, idle_timeout=30)
    transport = StringTransport()
    sink.makeConnection(transport)
    clock.advance(20)
    sink.dataReceived(b"a")
    clock.advance(20)  # 20 s since the last byte: fine
    sink.pause()
    clock.advance(100)  # paused by our backpressure: not a stall
    sink.resume()
    sink.dataReceived(b"b")
    sink.connectionLost(Failure(ResponseDone()))
    assert got == [b"a", b"b"] and sink.done.called

    stalled = _BodySink(got.append, clock, idle_timeout=30)
    stalled.makeConnection(StringTransport())
    clock.advance(31)
    assert stalled.transport.producerState == "stopped"  # type: ignore[union-attr]
    stalled.connectionLost(Failure(Exception("aborted")))
    errors: list[Failure] = []
    stalled.done.addErrback(errors.append)
    assert errors and errors[0].check(MirrorError)
    assert clock.getDelayedCalls() == []
