"""A small scriptable NIP-01/NIP-42 relay for tests, as an autobahn server.

Runs in memory (``MemoryRelayEndpoint`` + ``FakeRelay.flush()``, with ``twisted.test.iosim``) or
on loopback (``listen_fake_relay``). Behaviour switches: ``challenge`` (send AUTH on connect),
``require_auth`` (refuse EVENT/REQ with ``auth-required:`` until authenticated), ``reject``
(a function returning an OK-false message for an event), ``silent`` (never answer EVENT),
``down`` (memory endpoint refuses connections). ``inject(text)`` sends raw frames to clients;
``deliver(event)`` publishes an event from the relay side; ``on_store`` hooks see new events.
``PlainHttpEndpoint`` is a server that is no relay: it answers the upgrade with a plain 404.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.test import iosim
from zope.interface import implementer

from tgateway.nostr.event import Event, EventError, parse_event
from tgateway.nostr.filters import matches_any

# no timers in memory tests: autobahn's timers run on the global reactor, not the test's Clock
NO_TIMERS = dict(
    openHandshakeTimeout=0,
    closeHandshakeTimeout=0,
    autoPingInterval=0,
    autoPingTimeout=0,
)


class FakeRelay:
    def __init__(
        self,
        url: str = "ws://relay.test",
        *,
        challenge: str | None = None,
        require_auth: bool = False,
        reject: Callable[[Event], str | None] | None = None,
        silent: bool = False,
    ) -> None:
        self.url = url
        self.challenge = challenge
        self.require_auth = require_auth
        self.reject = reject
        self.silent = silent
        self.down = False
        self.events: dict[str, Event] = {}
        self.received: list[Any] = []  # every client message, decoded
        self.connections: list[FakeRelayProtocol] = []
        self.pumps: list[iosim.IOPump] = []
        self.authed: list[str] = []  # pubkeys that authenticated
        self.on_store: list[Callable[[Event], None]] = []  # called for each new event
        self.factory = WebSocketServerFactory(url)
        self.factory.protocol = FakeRelayProtocol
        self.factory.relay = self  # type: ignore[attr-defined]
        self.factory.setProtocolOptions(**NO_TIMERS)

    def messages(self, kind: str) -> list[Any]:
        return [m for m in self.received if isinstance(m, list) and m and m[0] == kind]

    def inject(self, text: str) -> None:
        for conn in self.connections:
            conn.sendMessage(text.encode(), isBinary=False)
        self.flush()

    def flush(self) -> None:
        for _ in range(5):
            for pump in list(self.pumps):
                pump.flush()

    def drop_connections(self) -> None:
        for conn in list(self.connections):
            conn.transport.loseConnection()
        self.flush()

    def store(self, event: Event) -> None:
        self.events[event.id] = event

    def deliver(self, event: Event) -> None:
        """Store ``event``, send it to every matching live subscription, run the hooks."""
        self.events[event.id] = event
        for conn in self.connections:
            for sub_id, filters in conn.subs.items():
                if matches_any(filters, event):
                    conn.send(["EVENT", sub_id, event.to_json()])
        for hook in list(self.on_store):
            hook(event)


class FakeRelayProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    def onConnect(self, request: Any) -> None:
        self.relay: FakeRelay = self.factory.relay
        self.subs: dict[str, list[dict[str, Any]]] = {}
        self.pubkey: str | None = None
        self.challenge = self.relay.challenge

    def onOpen(self) -> None:
        self.relay.connections.append(self)
        if self.challenge is not None:
            self.send(["AUTH", self.challenge])

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if self in self.relay.connections:
            self.relay.connections.remove(self)

    def send(self, msg: list[Any]) -> None:
        self.sendMessage(json.dumps(msg).encode(), isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        msg = json.loads(payload)
        self.relay.received.append(msg)
        kind = msg[0]
        if kind == "EVENT":
            self.on_event(msg[1])
        elif kind == "REQ":
            self.on_req(msg[1], msg[2:])
        elif kind == "CLOSE":
            self.subs.pop(msg[1], None)
        elif kind == "AUTH":
            self.on_auth(msg[1])

    def on_event(self, obj: Any) -> None:
        if self.relay.silent:
            return
        try:
            event = parse_event(obj)
        except EventError as e:
            self.send(["OK", obj.get("id", ""), False, e.message])
            return
        if self.relay.require_auth and self.pubkey is None:
            self.send(["OK", event.id, False, "auth-required: we only accept events from users"])
            return
        if self.relay.reject is not None:
            why = self.relay.reject(event)
            if why:
                self.send(["OK", event.id, False, why])
                return
        if event.id in self.relay.events:
            self.send(["OK", event.id, True, "duplicate: already have this event"])
            return
        self.send(["OK", event.id, True, ""])
        self.relay.deliver(event)

    def on_req(self, sub_id: str, filters: list[dict[str, Any]]) -> None:
        if self.relay.require_auth and self.pubkey is None:
            self.send(["CLOSED", sub_id, "auth-required: we only serve users"])
            return
        self.subs[sub_id] = filters
        for event in self.relay.events.values():
            if matches_any(filters, event):
                self.send(["EVENT", sub_id, event.to_json()])
        self.send(["EOSE", sub_id])

    def on_auth(self, obj: Any) -> None:
        try:
            event = parse_event(obj)
        except EventError as e:
            self.send(["OK", obj.get("id", ""), False, e.message])
            return
        ok = (
            event.kind == 22242
            and event.first_tag("challenge") == self.challenge
            and event.first_tag("relay") == self.relay.url
        )
        if ok:
            self.pubkey = event.pubkey
            self.relay.authed.append(event.pubkey)
            self.send(["OK", event.id, True, ""])
        else:
            self.send(["OK", event.id, False, "restricted: bad auth event"])


@implementer(IStreamClientEndpoint)
class MemoryRelayEndpoint:
    """Connects a client factory to a :class:`FakeRelay` through ``iosim`` (pump with flush)."""

    def __init__(self, relay: FakeRelay) -> None:
        self.relay = relay
        self.attempts = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.relay.down:
            return fail(ConnectionRefusedError("relay is down"))
        addr = IPv4Address("TCP", "127.0.0.1", 7447)
        client = factory.buildProtocol(addr)
        server = self.relay.factory.buildProtocol(addr)
        pump = iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), greet=False
        )
        self.relay.pumps.append(pump)
        return succeed(client)


class _PlainHttp(Protocol):
    def dataReceived(self, data: bytes) -> None:
        self.transport.write(  # type: ignore[union-attr]
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n"
            b"\r\nnot found")
        self.transport.loseConnection()  # type: ignore[union-attr]


class PlainHttpEndpoint:
    """Connects a client factory to an HTTP server that is not a WebSocket server."""

    def __init__(self) -> None:
        self.attempts = 0
        self.pumps: list[iosim.IOPump] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        addr = IPv4Address("TCP", "127.0.0.1", 8080)
        client = factory.buildProtocol(addr)
        server = _PlainHttp()
        self.pumps.append(iosim.connect(
            server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client), greet=False
        ))
        return succeed(client)

    def flush(self) -> None:
        for _ in range(5):
            for pump in list(self.pumps):
                pump.flush()
