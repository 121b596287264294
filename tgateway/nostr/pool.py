"""The relay pool: one reconnecting WebSocket connection per relay URL.

Each relay gets a :class:`~tgateway.nostr.relay_session.RelaySession` (pending work that survives
reconnects) and a ``ClientService`` (``retryPolicy=backoffPolicy(...)``: capped exponential
backoff with jitter, ``clock`` injected). The backoff counts attempts that did not end with an
open WebSocket (the session's ``failed_attempts``), so a relay that accepts TCP and then fails the
upgrade backs off like one that refuses connections. (``ClientService(prepareConnection=...)``
cannot express that: a connection lost while its preparation is pending, or after it failed,
reaches ClientService's state machine in a state with no transition for it, and Automat raises
``NoTransition``, logged as a critical error on every attempt.)

Connections are made through an *endpoint factory* ``(host, port, tls) -> IStreamClientEndpoint``:
the default dials directly (TLS for ``wss://``); the Tor issue passes one that returns txtorcon's
``TorClientEndpoint(host, port, socks_endpoint=..., tls=tls)`` to publish through a SOCKS proxy.
A relay that a request names (a NIP-46 bunker relay) is added with its own factory, the
outgoing-connection guard's (:mod:`tgateway.netguard`). A failed attempt (refused, not allowed by
the guard, no WebSocket) is recorded on the session; :meth:`RelayPool.wait_open` reports it.

Every wait has a timeout: :meth:`RelayPool.publish` raises :class:`RelayTimeout` when no ``OK``
arrives in time (the relay's answer, when there is one, is a :class:`PublishResult`);
:meth:`RelayPool.query` raises :class:`RelayTimeout` (with the events received so far) when no
``EOSE`` arrives, and :class:`SubscriptionClosed` when the relay refuses the REQ.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from coincurve import PrivateKey
from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IReactorTCP, IReactorTime, IStreamClientEndpoint
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tgateway.netguard import NetGuardError
from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.relay import RelayClientFactory
from tgateway.nostr.relay_session import RelaySession

__all__ = [
    "EndpointFactory",
    "PublishResult",
    "RelayPool",
    "RelayTimeout",
    "RelayUnreachable",
    "Subscription",
    "SubscriptionClosed",
    "default_endpoint_factory",
    "parse_relay_url",
]

EndpointFactory = Callable[[str, int, bool], IStreamClientEndpoint]

#: OK prefixes (NIP-01) that refuse this event for good. Anything else (``rate-limited``,
#: ``error``, ``auth-required``, an unknown or missing prefix) may succeed on a later try.
PERMANENT_PREFIXES = frozenset({"invalid", "pow", "blocked", "restricted", "mute", "unsupported"})


class RelayTimeout(Exception):
    """A relay did not answer in time. ``events`` holds what a query received before that."""

    def __init__(self, message: str, events: Sequence[Event] = ()) -> None:
        super().__init__(message)
        self.events = list(events)


class RelayUnreachable(Exception):
    """A connection attempt to a relay failed; the message says why."""


class SubscriptionClosed(Exception):
    """The relay closed our subscription (``CLOSED``); the message is the relay's."""


class PublishResult(NamedTuple):
    """A relay's ``OK`` answer to one event."""

    accepted: bool
    message: str

    @property
    def prefix(self) -> str:
        """The machine-readable prefix of the message (``duplicate``, ``blocked``...) or ''."""
        head, sep, _ = self.message.partition(":")
        return head.strip() if sep and " " not in head.strip() else ""

    @property
    def delivered(self) -> bool:
        """The relay has the event: accepted, or refused as a duplicate."""
        return self.accepted or self.prefix == "duplicate"

    @property
    def transient(self) -> bool:
        """A refusal worth retrying later (rate limits, relay errors, auth, unknown reasons)."""
        return not self.delivered and self.prefix not in PERMANENT_PREFIXES


def parse_relay_url(url: str) -> tuple[str, int, bool]:
    """``(host, port, tls)`` of a ``ws://`` or ``wss://`` URL. Raises ``ValueError``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"relay URL must start with ws:// or wss://: {url!r}")
    if not parts.hostname:
        raise ValueError(f"relay URL has no host: {url!r}")
    tls = parts.scheme == "wss"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ValueError(f"relay URL has a bad port: {url!r}") from None
    return parts.hostname, port, tls


def default_endpoint_factory(reactor: IReactorTCP) -> EndpointFactory:
    """Direct connections: ``HostnameEndpoint``, wrapped in TLS for ``wss://``."""

    def make(host: str, port: int, tls: bool) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, host, port, timeout=15)
        if tls:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    return make


def _attempt_error(failure: Failure) -> str:
    """Why a connection attempt failed, in a few words for a log line or an API message."""
    error = failure.value
    if isinstance(error, NetGuardError):
        return error.message
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        return "no answer to the connection attempt"
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@implementer(IStreamClientEndpoint)
class _ReportingEndpoint:
    """Records a failed connection attempt on the relay's session before ClientService sees it."""

    def __init__(self, inner: IStreamClientEndpoint, session: RelaySession) -> None:
        self._inner = inner
        self._session = session

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):  # type: ignore[no-untyped-call]
                self._session.connection_failed(_attempt_error(failure))
            return failure

        d: Deferred[Any] = self._inner.connect(protocol_factory)
        return d.addErrback(failed)


class Subscription:
    """A live subscription on one relay; :meth:`close` sends ``CLOSE``."""

    def __init__(self, session: RelaySession, sub_id: str) -> None:
        self.session = session
        self.sub_id = sub_id

    def close(self) -> None:
        self.session.unsubscribe(self.sub_id)


class _Relay(NamedTuple):
    session: RelaySession
    service: ClientService


class IRelayReactor(IReactorTime, IReactorTCP):
    """What the pool needs of the reactor: a clock, and TCP for the default endpoints."""


class RelayPool(MultiService):
    """Relay connections by URL, created on first use, started and stopped with the pool.

    ``reactor`` provides the clock (and TCP for the default endpoint factory); ``private_key``
    answers NIP-42 ``AUTH`` challenges (``None``: never authenticate). ``protocol_options`` are
    extra autobahn ``setProtocolOptions`` for every connection (tests switch timers off).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IRelayReactor,
        *,
        private_key: PrivateKey | None = None,
        endpoint_factory: EndpointFactory | None = None,
        retry_policy: Callable[[int], float] | None = None,
        initial_delay: float = 1.0,
        max_delay: float = 300.0,
        jitter: Callable[[], float] = random.random,
        protocol_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._clock: IReactorTime = reactor
        self._private_key = private_key
        self._endpoint_factory = endpoint_factory or default_endpoint_factory(reactor)
        # backoffPolicy waits initialDelay * factor ** n after n failures in a row: halve the
        # initial delay so the first retry comes after initial_delay (then 2x, 4x... max_delay),
        # plus up to one second of jitter.
        self._retry_policy = retry_policy or backoffPolicy(
            initialDelay=initial_delay / 2, maxDelay=max_delay, factor=2.0, jitter=jitter
        )
        self._protocol_options = dict(protocol_options or {})
        self._relays: dict[str, _Relay] = {}
        self._waiting: set[Deferred[Any]] = set()

    # -- relays --------------------------------------------------------------------------------

    def _sign_auth(self, template: EventTemplate) -> Event:
        assert self._private_key is not None
        return sign(template, self._private_key)

    def relay(self, url: str, endpoint_factory: EndpointFactory | None = None) -> RelaySession:
        """The session for ``url``, connecting (when the pool runs) on first use.

        ``endpoint_factory`` replaces the pool's for this relay when it is created here (a relay
        named by a request connects through the outgoing-connection guard); an existing relay
        keeps the endpoint it was created with.
        """
        existing = self._relays.get(url)
        if existing is not None:
            return existing.session
        host, port, tls = parse_relay_url(url)
        session = RelaySession(
            url, auth_signer=self._sign_auth if self._private_key is not None else None
        )
        factory = RelayClientFactory(session, self._clock)
        if self._protocol_options:
            factory.setProtocolOptions(**self._protocol_options)  # type: ignore[no-untyped-call]
        make_endpoint = endpoint_factory or self._endpoint_factory
        retry = self._retry_policy
        service = ClientService(
            _ReportingEndpoint(make_endpoint(host, port, tls), session),
            factory,
            # ClientService counts failed TCP connects only; the session also counts connections
            # that closed before the WebSocket opened
            retryPolicy=lambda attempts: retry(max(attempts, session.failed_attempts)),
            clock=self._clock,
        )
        service.setName(url)  # type: ignore[no-untyped-call]
        service.setServiceParent(self)  # type: ignore[no-untyped-call]
        self._relays[url] = _Relay(session, service)
        return session

    @property
    def urls(self) -> list[str]:
        return list(self._relays)

    def is_connected(self, url: str) -> bool:
        relay = self._relays.get(url)
        return relay is not None and relay.session.connected

    async def wait_open(self, url: str, timeout: float) -> None:
        """Return once ``url``'s WebSocket is open (at once if it is). Raises
        :class:`RelayUnreachable` (saying why) when the last connection attempt failed, or
        when the one under way fails; :class:`RelayTimeout` when neither happens within
        ``timeout`` seconds."""
        session = self.relay(url)
        if session.connected:
            return
        if session.failed_attempts:
            raise RelayUnreachable(f"cannot connect to {url}: {session.last_error}")

        def changed(reason: str | None) -> None:
            if d.called:
                return
            if reason is None:
                d.callback(None)
            else:
                d.errback(RelayUnreachable(f"cannot connect to {url}: {reason}"))

        def timed_out(result: object, seconds: float) -> None:
            why = f" (last attempt: {session.last_error})" if session.last_error else ""
            raise RelayTimeout(f"no connection to {url} within {seconds:g} s{why}")

        d: Deferred[None] = Deferred()
        unwatch = session.watch(changed)
        d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        try:
            await self._track(d)
        finally:
            unwatch()

    async def remove_relay(self, url: str) -> None:
        """Disconnect from ``url`` and forget it (pending work on it is dropped)."""
        relay = self._relays.pop(url, None)
        if relay is not None:
            stopped = relay.service.disownServiceParent()  # type: ignore[no-untyped-call]
            if stopped is not None:  # a Deferred when the pool is running
                await stopped

    def stopService(self) -> Deferred[Any]:
        """Cancel every pending wait, then stop all connections."""
        for d in list(self._waiting):
            d.cancel()
        return super().stopService()  # type: ignore[no-untyped-call,no-any-return]

    def _track(self, d: Deferred[Any]) -> Deferred[Any]:
        self._waiting.add(d)

        def done(result: object) -> object:
            self._waiting.discard(d)
            return result

        return d.addBoth(done)

    # -- operations ----------------------------------------------------------------------------

    async def publish(self, event: Event, relay_url: str, timeout: float = 15.0) -> PublishResult:
        """Send ``event`` to ``relay_url`` and wait for its ``OK``.

        Returns the relay's answer; raises :class:`RelayTimeout` when none comes within
        ``timeout`` seconds (including when the relay cannot be reached), ``ValueError`` for a
        bad URL, ``CancelledError`` when the pool stops.
        """
        session = self.relay(relay_url)

        def on_result(accepted: bool, message: str) -> None:
            if not d.called:
                d.callback(PublishResult(accepted, message))

        def cancel(_: Deferred[PublishResult]) -> None:
            session.cancel_publish(event.id, on_result)

        def timed_out(result: object, seconds: float) -> PublishResult:
            state = "connected" if session.connected else "not connected"
            raise RelayTimeout(f"no OK from {relay_url} within {seconds:g} s ({state})")

        d: Deferred[PublishResult] = Deferred(cancel)
        session.publish(event, on_result)
        d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        result: PublishResult = await self._track(d)
        return result

    async def query(
        self,
        relay_url: str,
        filters: Sequence[Mapping[str, Any]],
        timeout: float = 15.0,
        max_events: int = 5000,
    ) -> list[Event]:
        """The stored events matching ``filters``: REQ, collect until EOSE, then CLOSE.

        Every event is verified and checked against the filters. Raises :class:`RelayTimeout`
        (with the partial result) when EOSE does not come in time, :class:`SubscriptionClosed`
        when the relay refuses, ``FilterError`` for a bad filter.
        """
        session = self.relay(relay_url)
        events: list[Event] = []
        sub_id = ""

        def on_event(event: Event) -> None:
            if len(events) < max_events:
                events.append(event)

        def on_eose() -> None:
            session.unsubscribe(sub_id)
            if not d.called:
                d.callback(events)

        def on_closed(message: str) -> None:
            if not d.called:
                d.errback(SubscriptionClosed(f"{relay_url} closed the subscription: {message}"))

        def cancel(_: Deferred[list[Event]]) -> None:
            session.unsubscribe(sub_id)

        def timed_out(result: object, seconds: float) -> list[Event]:
            state = "connected" if session.connected else "not connected"
            raise RelayTimeout(f"no EOSE from {relay_url} within {seconds:g} s ({state})", events)

        d: Deferred[list[Event]] = Deferred(cancel)
        sub_id = session.subscribe(filters, on_event, on_eose, on_closed)
        d.addTimeout(timeout, self._clock, onTimeoutCancel=timed_out)
        result: list[Event] = await self._track(d)
        return result

    def subscribe(
        self,
        relay_url: str,
        filters: Sequence[Mapping[str, Any]],
        on_event: Callable[[Event], None],
        on_eose: Callable[[], None] | None = None,
        on_closed: Callable[[str], None] | None = None,
    ) -> Subscription:
        """A live subscription (kept across reconnects) until ``close()``; no timeout here."""
        session = self.relay(relay_url)
        return Subscription(session, session.subscribe(filters, on_event, on_eose, on_closed))

    async def publish_many(
        self, event: Event, relay_urls: Sequence[str], timeout: float = 15.0
    ) -> dict[str, PublishResult | Failure]:
        """:meth:`publish` to several relays at once; a failure per relay, never an exception."""
        ds = [Deferred.fromCoroutine(self.publish(event, url, timeout)) for url in relay_urls]
        results = await DeferredList(ds, consumeErrors=True)
        out: dict[str, PublishResult | Failure] = {}
        for url, (_, value) in zip(relay_urls, results, strict=True):
            out[url] = value
        return out
