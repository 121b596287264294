"""Our side of one relay, across reconnections: a sans-IO session core.

:class:`RelaySession` is the per-relay state that outlives connections: pending publishes (until
their ``OK``) and live subscriptions are re-sent on every new connection. It imports no reactor:
the adapter (:mod:`tgateway.nostr.relay`) feeds it frames (``receive(text, now)``) and gives it a
``send`` callable when a connection opens. Every incoming ``EVENT`` is verified with
:func:`tgateway.nostr.event.parse_event` and checked against the subscription's filters; anything
malformed is logged and dropped. Messages are :mod:`tgateway.nostr.relay_messages`'.

NIP-42: when the relay sends ``["AUTH", challenge]`` the session answers with a kind 22242 event
(tags ``relay`` = the relay URL, ``challenge``) signed by the gateway key. A publish or REQ refused
with ``auth-required:`` is sent again once, after the relay accepts our AUTH.

While the adapter's transport is congested the session holds its messages
(:meth:`RelaySession.pause_writing`): pending publishes and subscriptions stay unsent, as they do
between connections, and go out once it has drained (:meth:`RelaySession.resume_writing`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.logger import Logger

from tgateway.nostr.event import Event, EventTemplate
from tgateway.nostr.filters import check_filter, matches_any
from tgateway.nostr.relay_messages import (
    AUTH_REQUIRED,
    ClosedMessage,
    EoseMessage,
    EventMessage,
    NoticeMessage,
    OkMessage,
    RelayMessageError,
    decode_relay_message,
    encode_auth,
    encode_close,
    encode_event,
    encode_req,
    make_auth_template,
)

__all__ = ["PublishCallback", "RelaySession"]


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
            self.log.warn("{relay} refused our AUTH: {reason}", relay=self.url, reason=message)
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
