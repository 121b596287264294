"""One relay: the NIP-01/NIP-42 message codec, a sans-IO session core, and the autobahn adapter.

Client messages (NIP-01): ``["EVENT", <event>]``, ``["REQ", <sub_id>, <filter>...]``,
``["CLOSE", <sub_id>]``, and NIP-42's ``["AUTH", <kind 22242 event>]``.
Relay messages: ``["OK", <event_id>, <bool>, <message>]``, ``["EVENT", <sub_id>, <event>]``,
``["EOSE", <sub_id>]``, ``["CLOSED", <sub_id>, <message>]``, ``["NOTICE", <message>]`` and
``["AUTH", <challenge>]``. Machine-readable prefixes in OK/CLOSED messages (``duplicate:``,
``auth-required:``, ``rate-limited:``, ...) tell why.

:class:`RelaySession` is the per-relay state that outlives connections: pending publishes (until
their ``OK``) and live subscriptions are re-sent on every new connection. It imports no reactor:
the adapter feeds it frames (``receive(text, now)``) and gives it a ``send`` callable when a
connection opens. Every incoming ``EVENT`` is verified with :func:`tgateway.nostr.event.parse_event`
and checked against the subscription's filters; anything malformed is logged and dropped.

NIP-42: when the relay sends ``["AUTH", challenge]`` the session answers with a kind 22242 event
(tags ``relay`` = the relay URL, ``challenge``) signed by the gateway key. A publish or REQ refused
with ``auth-required:`` is sent again once, after the relay accepts our AUTH.

A relay that does not read what it is sent: the adapter bounds its transport
(:class:`~tgateway.backpressure.SendBound`). While more than ``SEND_HIGH`` bytes wait, the session
is told to hold its messages (:meth:`RelaySession.pause_writing`): pending publishes and
subscriptions stay in the session unsent, as they do between connections, and go out when the
transport has drained (:meth:`RelaySession.resume_writing`). A connection that does not drain
within ``SEND_STALL`` seconds is dropped; the pool's retry policy reconnects and the session sends
its pending work again, and the outbox retries what timed out meanwhile.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.backpressure import SendBound
from tgateway.nostr.event import Event, EventError, EventTemplate, parse_event
from tgateway.nostr.filters import check_filter, matches_any

__all__ = [
    "AUTH_KIND",
    "AuthMessage",
    "ClosedMessage",
    "EoseMessage",
    "EventMessage",
    "NoticeMessage",
    "OkMessage",
    "RelayClientFactory",
    "RelayClientProtocol",
    "RelayMessageError",
    "RelaySession",
    "decode_relay_message",
    "encode_auth",
    "encode_close",
    "encode_event",
    "encode_req",
    "make_auth_template",
]

AUTH_KIND = 22242
MAX_SUB_ID = 64
AUTH_REQUIRED = "auth-required:"
#: Queued bytes above which a relay connection holds further messages in the session.
SEND_HIGH = 64 * 1024
#: Bytes more that may be written while the transport is paused before the connection is
#: dropped: a backstop (the session writes nothing while paused; autobahn's pings do not count).
SEND_LIMIT = 256 * 1024
#: Seconds a relay connection may take to drain before it is dropped (and retried).
SEND_STALL = 30.0


class RelayMessageError(ValueError):
    """A relay sent something that is not a valid relay message (the codec's only error)."""


@dataclass(frozen=True)
class OkMessage:
    event_id: str
    accepted: bool
    message: str


@dataclass(frozen=True)
class EventMessage:
    sub_id: str
    event: Event


@dataclass(frozen=True)
class EoseMessage:
    sub_id: str


@dataclass(frozen=True)
class ClosedMessage:
    sub_id: str
    message: str


@dataclass(frozen=True)
class NoticeMessage:
    message: str


@dataclass(frozen=True)
class AuthMessage:
    challenge: str


RelayMessage = OkMessage | EventMessage | EoseMessage | ClosedMessage | NoticeMessage | AuthMessage


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_event(event: Event) -> str:
    return _dumps(["EVENT", event.to_json()])


def encode_req(sub_id: str, filters: Sequence[Mapping[str, Any]]) -> str:
    return _dumps(["REQ", sub_id, *filters])


def encode_close(sub_id: str) -> str:
    return _dumps(["CLOSE", sub_id])


def encode_auth(event: Event) -> str:
    return _dumps(["AUTH", event.to_json()])


def _string(value: object, what: str, limit: int = 65536) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise RelayMessageError(f"{what} must be a string")
    return value


def decode_relay_message(text: str | bytes) -> RelayMessage:
    """Parse one relay frame. Raises only :class:`RelayMessageError` (bad events included)."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise RelayMessageError("not JSON") from None
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], str):
        raise RelayMessageError("not a JSON array starting with a message type")
    kind, args = msg[0], msg[1:]
    if kind == "OK":
        # the message is required by NIP-01; old relays leave it out
        if len(args) not in (2, 3):
            raise RelayMessageError("OK needs an event id, a boolean and a message")
        event_id = _string(args[0], "OK event id", 64)
        if not isinstance(args[1], bool):
            raise RelayMessageError("OK status must be a boolean")
        message = _string(args[2], "OK message") if len(args) == 3 else ""
        return OkMessage(event_id, args[1], message)
    if kind == "EVENT":
        if len(args) != 2:
            raise RelayMessageError("EVENT needs a subscription id and an event")
        sub_id = _string(args[0], "subscription id", MAX_SUB_ID)
        try:
            event = parse_event(args[1])
        except EventError as e:
            raise RelayMessageError(f"EVENT for {sub_id!r}: {e.message}") from None
        return EventMessage(sub_id, event)
    if kind == "EOSE":
        if len(args) != 1:
            raise RelayMessageError("EOSE needs a subscription id")
        return EoseMessage(_string(args[0], "subscription id", MAX_SUB_ID))
    if kind == "CLOSED":
        if len(args) not in (1, 2):
            raise RelayMessageError("CLOSED needs a subscription id and a message")
        message = _string(args[1], "CLOSED message") if len(args) == 2 else ""
        return ClosedMessage(_string(args[0], "subscription id", MAX_SUB_ID), message)
    if kind == "NOTICE":
        if len(args) != 1:
            raise RelayMessageError("NOTICE needs a message")
        return NoticeMessage(_string(args[0], "NOTICE message"))
    if kind == "AUTH":
        if len(args) != 1:
            raise RelayMessageError("AUTH needs a challenge")
        return AuthMessage(_string(args[0], "AUTH challenge", 1024))
    raise RelayMessageError(f"unknown relay message type {kind[:20]!r}")


def make_auth_template(relay_url: str, challenge: str, now: float) -> EventTemplate:
    """The NIP-42 kind 22242 event answering ``challenge`` from ``relay_url``."""
    return EventTemplate(
        kind=AUTH_KIND,
        created_at=int(now),
        tags=(("relay", relay_url), ("challenge", challenge)),
        content="",
    )


PublishCallback = Callable[[bool, str], None]


@dataclass
class _Publish:
    event: Event
    callbacks: list[PublishCallback]
    auth_retried: bool = False
    waiting_auth: bool = False
    sent: bool = False  # written on the current connection


@dataclass
class _Subscription:
    sub_id: str
    filters: tuple[dict[str, Any], ...]
    on_event: Callable[[Event], None]
    on_eose: Callable[[], None] | None
    on_closed: Callable[[str], None] | None
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    eose: bool = False
    auth_retried: bool = False
    waiting_auth: bool = False
    sent: bool = False  # REQ written on the current connection


class RelaySession:
    """The state of our side of one relay, across reconnections (sans-IO).

    ``auth_signer`` signs NIP-42 answers (``None``: never authenticate). Callbacks given to
    :meth:`publish` and :meth:`subscribe` are called from :meth:`receive`.
    """

    log = Logger()
    MAX_SEEN = 10000

    def __init__(
        self,
        url: str,
        *,
        auth_signer: Callable[[EventTemplate], Event] | None = None,
        sub_id_prefix: str = "tg",
    ) -> None:
        self.url = url
        self._auth_signer = auth_signer
        self._send: Callable[[str], None] | None = None
        self._writable = True  # False while the connection's transport holds too much
        self._unsent_auth: str | None = None  # our AUTH answer, held while not writable
        self._unsent_closes: list[str] = []  # CLOSEs of subscriptions the relay has, held
        self._publishes: dict[str, _Publish] = {}
        self._subs: dict[str, _Subscription] = {}
        self._ids = itertools.count(1)
        self._sub_id_prefix = sub_id_prefix
        self._challenge: str | None = None
        self._auth_event_id: str | None = None
        self.authenticated = False
        self.dropped = 0  # malformed or unwanted relay messages, for diagnostics
        self.last_notice: str | None = None
        # connection attempts in a row that ended before a WebSocket was open, and why the last did
        self.failed_attempts = 0
        self.last_error: str | None = None
        self._watchers: list[Callable[[str | None], None]] = []

    # -- connection ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._send is not None

    def connection_made(self, send: Callable[[str], None]) -> None:
        """A connection is open: send every pending EVENT and live REQ through ``send``."""
        self._send = send
        self._writable = True
        self._unsent_closes = []
        self.failed_attempts = 0
        self.last_error = None
        self._reset_auth()
        self._notify(None)
        for pub in self._publishes.values():
            pub.auth_retried = pub.waiting_auth = pub.sent = False
        for sub in self._subs.values():
            sub.auth_retried = sub.waiting_auth = sub.sent = False
        self._flush()

    def connection_lost(self, send: Callable[[str], None] | None = None) -> None:
        """The connection (the one using ``send``, when given) is gone; keep pending work."""
        if send is not None and self._send != send:
            return
        self._send = None
        self._writable = True
        self._unsent_closes = []
        self._reset_auth()

    def pause_writing(self) -> None:
        """The connection holds too much unsent: keep further messages here."""
        self._writable = False

    def resume_writing(self) -> None:
        """The connection has drained: send what was held (until it fills up again)."""
        self._writable = True
        self._flush()

    def connection_failed(self, reason: str) -> None:
        """A connection attempt ended before the WebSocket was open (refused, not allowed, the
        upgrade answered with something else, no handshake in time)."""
        self.failed_attempts += 1
        self.last_error = reason
        self._notify(reason)

    def watch(self, callback: Callable[[str | None], None]) -> Callable[[], None]:
        """Call ``callback(None)`` when a connection opens and ``callback(reason)`` when an
        attempt fails, until the returned function is called."""
        self._watchers.append(callback)

        def unwatch() -> None:
            if callback in self._watchers:
                self._watchers.remove(callback)

        return unwatch

    def _notify(self, reason: str | None) -> None:
        for callback in list(self._watchers):
            callback(reason)

    def _reset_auth(self) -> None:
        self._challenge = None
        self._auth_event_id = None
        self._unsent_auth = None
        self.authenticated = False

    def _write(self, text: str) -> bool:
        """Send ``text`` now if the connection takes it; False if it was not sent."""
        if self._send is None or not self._writable:
            return False
        self._send(text)
        return True

    def _flush(self) -> None:
        """Send what is due on this connection and not sent yet, oldest first, while the
        connection takes it."""
        if self._unsent_auth is not None:
            if not self._write(self._unsent_auth):
                return
            self._unsent_auth = None
        while self._unsent_closes:
            if not self._write(encode_close(self._unsent_closes[0])):
                return
            del self._unsent_closes[0]
        for pub in list(self._publishes.values()):
            if not pub.sent and not pub.waiting_auth:
                if not self._write(encode_event(pub.event)):
                    return
                pub.sent = True
        for sub in list(self._subs.values()):
            if not sub.sent and not sub.waiting_auth:
                if not self._write(encode_req(sub.sub_id, sub.filters)):
                    return
                sub.sent = True

    # -- operations ----------------------------------------------------------------------------

    @property
    def pending_publishes(self) -> int:
        return len(self._publishes)

    @property
    def subscriptions(self) -> int:
        return len(self._subs)

    def publish(self, event: Event, on_result: PublishCallback) -> None:
        """Send ``event``; ``on_result(accepted, message)`` is called when its OK arrives."""
        pub = self._publishes.get(event.id)
        if pub is not None:
            pub.callbacks.append(on_result)
            return
        pub = self._publishes[event.id] = _Publish(event, [on_result])
        pub.sent = self._write(encode_event(event))

    def cancel_publish(self, event_id: str, on_result: PublishCallback) -> None:
        """Forget ``on_result``; the publish itself is dropped when nobody waits for it."""
        pub = self._publishes.get(event_id)
        if pub is None:
            return
        if on_result in pub.callbacks:
            pub.callbacks.remove(on_result)
        if not pub.callbacks:
            del self._publishes[event_id]

    def subscribe(
        self,
        filters: Sequence[Mapping[str, Any]],
        on_event: Callable[[Event], None],
        on_eose: Callable[[], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> str:
        """Open a subscription; returns its id. Raises ``FilterError`` for a bad filter."""
        checked = tuple(check_filter(f) for f in filters)
        if not checked:
            raise ValueError("a subscription needs at least one filter")
        sub_id = f"{self._sub_id_prefix}{next(self._ids)}"
        sub = self._subs[sub_id] = _Subscription(sub_id, checked, on_event, on_eose, on_closed)
        sub.sent = self._write(encode_req(sub_id, checked))
        return sub_id

    def unsubscribe(self, sub_id: str) -> None:
        """Close a subscription (sends CLOSE when connected); unknown ids are ignored."""
        sub = self._subs.pop(sub_id, None)
        if sub is not None and sub.sent and not self._write(encode_close(sub_id)):
            if self._send is not None:
                self._unsent_closes.append(sub_id)

    # -- input ---------------------------------------------------------------------------------

    def receive(self, text: str | bytes, now: float) -> None:
        """Handle one text frame from the relay."""
        try:
            msg = decode_relay_message(text)
        except RelayMessageError as e:
            self._drop("dropped a message from {relay}: {reason}", reason=str(e))
            return
        if isinstance(msg, OkMessage):
            self._on_ok(msg, now)
        elif isinstance(msg, EventMessage):
            self._on_event(msg)
        elif isinstance(msg, EoseMessage):
            sub = self._subs.get(msg.sub_id)
            if sub is not None and not sub.eose:
                sub.eose = True
                if sub.on_eose is not None:
                    sub.on_eose()
        elif isinstance(msg, ClosedMessage):
            self._on_closed(msg, now)
        elif isinstance(msg, NoticeMessage):
            self.last_notice = msg.message
            self.log.info("NOTICE from {relay}: {notice}", relay=self.url, notice=msg.message)
        else:
            self._on_auth(msg.challenge, now)

    def _drop(self, fmt: str, **fields: object) -> None:
        """Count a dropped message; log the first few, then one in a thousand (a hostile relay
        must not flood the log)."""
        self.dropped += 1
        if self.dropped <= 10 or self.dropped % 1000 == 0:
            self.log.warn(
                fmt + " ({dropped} dropped so far)", relay=self.url, dropped=self.dropped, **fields
            )

    def _on_event(self, msg: EventMessage) -> None:
        sub = self._subs.get(msg.sub_id)
        if sub is None:
            return  # late event for a closed subscription
        event = msg.event
        if not matches_any(sub.filters, event):
            self._drop(
                "dropped event {id} from {relay}: it does not match subscription {sub}",
                id=event.id,
                sub=sub.sub_id,
            )
            return
        if event.id in sub.seen:
            return
        sub.seen[event.id] = None
        if len(sub.seen) > self.MAX_SEEN:
            sub.seen.popitem(last=False)
        sub.on_event(event)

    def _on_ok(self, msg: OkMessage, now: float) -> None:
        if self._auth_event_id is not None and msg.event_id == self._auth_event_id:
            self._on_auth_result(msg.accepted, msg.message)
            return
        pub = self._publishes.get(msg.event_id)
        if pub is None:
            return
        if (
            not msg.accepted
            and msg.message.startswith(AUTH_REQUIRED)
            and not pub.auth_retried
            and self._auth_signer is not None
        ):
            pub.auth_retried = True
            if self.authenticated:
                pub.sent = self._write(encode_event(pub.event))
            else:
                pub.waiting_auth = True  # sent again when our AUTH is accepted
            return
        del self._publishes[msg.event_id]
        for callback in pub.callbacks:
            callback(msg.accepted, msg.message)

    def _on_closed(self, msg: ClosedMessage, now: float) -> None:
        sub = self._subs.get(msg.sub_id)
        if sub is None:
            return
        if (
            msg.message.startswith(AUTH_REQUIRED)
            and not sub.auth_retried
            and self._auth_signer is not None
        ):
            sub.auth_retried = True
            if self.authenticated:
                sub.sent = self._write(encode_req(sub.sub_id, sub.filters))
            else:
                sub.waiting_auth = True
            return
        del self._subs[msg.sub_id]
        if sub.on_closed is not None:
            sub.on_closed(msg.message)

    def _on_auth(self, challenge: str, now: float) -> None:
        if self._auth_signer is None:
            self.log.info("{relay} asks for AUTH; no key to answer with", relay=self.url)
            return
        self._challenge = challenge
        self.authenticated = False
        event = self._auth_signer(make_auth_template(self.url, challenge, now))
        self._auth_event_id = event.id
        text = encode_auth(event)
        self._unsent_auth = None if self._write(text) else text

    def _on_auth_result(self, accepted: bool, message: str) -> None:
        self.authenticated = accepted
        if accepted:
            self.log.info("authenticated to {relay}", relay=self.url)
        else:
            self.log.warn("{relay} refused our AUTH: {message}", relay=self.url, message=message)
        for event_id, pub in list(self._publishes.items()):
            if not pub.waiting_auth:
                continue
            pub.waiting_auth = False
            if accepted:
                pub.sent = self._write(encode_event(pub.event))
            else:
                del self._publishes[event_id]
                for callback in pub.callbacks:
                    callback(False, f"{AUTH_REQUIRED} the relay refused our AUTH: {message}")
        for sub_id, sub in list(self._subs.items()):
            if not sub.waiting_auth:
                continue
            sub.waiting_auth = False
            if accepted:
                sub.sent = self._write(encode_req(sub.sub_id, sub.filters))
            else:
                del self._subs[sub_id]
                if sub.on_closed is not None:
                    sub.on_closed(f"{AUTH_REQUIRED} the relay refused our AUTH: {message}")


# -- the autobahn adapter ----------------------------------------------------------------------


class RelayClientProtocol(WebSocketClientProtocol):
    """One WebSocket connection to a relay; feeds text frames to the factory's session.

    A connection that closes before the handshake completes (the server answered plain HTTP,
    or nothing) is reported to the session as a failed attempt, so the pool's backoff grows
    for a relay that accepts TCP and then fails the upgrade.
    """

    log = Logger()
    factory: RelayClientFactory

    def __init__(self) -> None:
        super().__init__()
        self._is_open = False
        self._is_closed = False
        self.bound: SendBound | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        f = self.factory
        self.bound = SendBound(self, f.clock, high=f.send_high, limit=f.send_limit,
                               stall=f.send_stall)
        self.bound.attach(self.transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.bound is not None:
            self.bound.detach()
        super().connectionLost(reason)

    # SendOwner: the transport's buffer
    def sending_paused(self) -> None:
        if self._is_open:
            self.factory.session.pause_writing()

    def sending_resumed(self) -> None:
        if self._is_open and not self._is_closed:
            self.factory.session.resume_writing()

    def send_bound_exceeded(self, reason: str) -> None:
        self.log.warn("dropping the connection to {relay}: it does not read what we send "
                      "({reason})", relay=self.factory.session.url, reason=reason)
        self.dropConnection(abort=True)

    def onOpen(self) -> None:
        self._is_open = True
        self.factory.session.connection_made(self._send_text)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            self.factory.session.dropped += 1
            return
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self.factory.session.dropped += 1
            return
        self.factory.session.receive(text, self.factory.clock.seconds())

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._is_closed = True
        if self._is_open:
            self.factory.session.connection_lost(self._send_text)
            return
        why = getattr(self, "wasNotCleanReason", None) or reason or "closed during the handshake"
        self.factory.session.connection_failed(f"no WebSocket: {why}")

    def _send_text(self, text: str) -> None:
        payload = text.encode("utf-8")
        bound = self.bound
        if bound is not None and bound.paused and not bound.wrote(len(payload)):
            return
        self.sendMessage(payload, isBinary=False)  # type: ignore[no-untyped-call]


class RelayClientFactory(WebSocketClientFactory):
    """Builds :class:`RelayClientProtocol` for one relay URL and its session."""

    protocol = RelayClientProtocol  # type: ignore[assignment]

    def __init__(
        self,
        session: RelaySession,
        clock: IReactorTime,
        *,
        max_message_size: int = 4 * 1024 * 1024,
        handshake_timeout: float = 15.0,
        ping_interval: float = 30.0,
        ping_timeout: float = 15.0,
        useragent: str = "tgateway",
        send_high: int = SEND_HIGH,
        send_limit: int = SEND_LIMIT,
        send_stall: float = SEND_STALL,
    ) -> None:
        super().__init__(url=session.url, reactor=clock, useragent=useragent)  # type: ignore[no-untyped-call]
        self.session = session
        self.clock = clock
        self.send_high = send_high
        self.send_limit = send_limit
        self.send_stall = send_stall
        self.setProtocolOptions(  # type: ignore[no-untyped-call]
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            openHandshakeTimeout=handshake_timeout,
            closeHandshakeTimeout=5,
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
        )
