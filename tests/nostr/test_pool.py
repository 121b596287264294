"""The relay pool and the autobahn adapter, in memory: ClientService + iosim + a fake relay."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.pool import (
    PublishResult,
    RelayPool,
    RelayTimeout,
    RelayUnreachable,
    SubscriptionClosed,
    parse_relay_url,
)

from .fakerelay import NO_TIMERS, FakeRelay, MemoryRelayEndpoint, PlainHttpEndpoint

KEY = b"\x11" * 32
GATEWAY = b"\x22" * 32


def note(content: str = "hi", kind: int = 1, created_at: int = 1000) -> Event:
    return sign(EventTemplate(kind=kind, created_at=created_at, content=content), KEY)


class PoolTestMixin(SynchronousTestCase):
    def make_pool(self, *relays: FakeRelay, **kw: Any) -> RelayPool:
        from coincurve import PrivateKey

        self.clock = MemoryReactorClock()
        self.relays = {r.url: r for r in relays}
        self.endpoints = {r.url: MemoryRelayEndpoint(r) for r in relays}

        def endpoint_factory(host: str, port: int, tls: bool) -> MemoryRelayEndpoint:
            for url, endpoint in self.endpoints.items():
                if parse_relay_url(url) == (host, port, tls):
                    return endpoint
            raise AssertionError(f"no fake relay at {host}:{port}")

        kw.setdefault("private_key", PrivateKey(GATEWAY))
        pool = RelayPool(
            self.clock,
            endpoint_factory=endpoint_factory,
            jitter=lambda: 0.0,
            protocol_options=NO_TIMERS,
            **kw,
        )
        pool.startService()
        self.addCleanup(self.stop, pool)
        return pool

    def stop(self, pool: RelayPool) -> None:
        d = pool.stopService()
        self.flush()
        self.successResultOf(d)
        # no timer left behind: timeouts cancelled, no reconnect scheduled
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def flush(self) -> None:
        for relay in self.relays.values():
            relay.flush()

    def drive(self, coro: Any) -> Deferred[Any]:
        d = Deferred.fromCoroutine(coro)
        self.flush()
        return d


class PoolTests(PoolTestMixin):
    def test_publish_and_query(self) -> None:
        relay = FakeRelay("ws://relay.test")
        pool = self.make_pool(relay)
        event = note()
        result = self.successResultOf(self.drive(pool.publish(event, relay.url)))
        self.assertEqual(result, PublishResult(True, ""))
        self.assertTrue(result.delivered)
        self.assertEqual(relay.events, {event.id: event})
        again = self.successResultOf(self.drive(pool.publish(event, relay.url)))
        self.assertEqual(again.prefix, "duplicate")
        self.assertTrue(again.delivered)
        found = self.successResultOf(self.drive(pool.query(relay.url, [{"kinds": [1]}])))
        self.assertEqual(found, [event])
        # REQ then CLOSE after EOSE
        self.assertEqual([m[0] for m in relay.received], ["EVENT", "EVENT", "REQ", "CLOSE"])
        self.assertTrue(pool.is_connected(relay.url))
        self.assertEqual(pool.urls, [relay.url])

    def test_rejected(self) -> None:
        relay = FakeRelay(reject=lambda e: "blocked: not on the list")
        pool = self.make_pool(relay)
        result = self.successResultOf(self.drive(pool.publish(note(), relay.url)))
        self.assertEqual(result, (False, "blocked: not on the list"))
        self.assertFalse(result.delivered)
        self.assertFalse(result.transient)
        self.assertTrue(PublishResult(False, "rate-limited: slow").transient)
        self.assertEqual(PublishResult(False, "no prefix here: really").prefix, "")
        self.assertTrue(PublishResult(False, "something odd").transient)
        self.assertFalse(PublishResult(False, "invalid: bad sig").transient)
        self.assertFalse(PublishResult(True, "").transient)

    def test_publish_timeout(self) -> None:
        relay = FakeRelay(silent=True)
        pool = self.make_pool(relay)
        d = self.drive(pool.publish(note(), relay.url, timeout=5))
        self.assertNoResult(d)
        self.clock.advance(5)
        failure = self.failureResultOf(d, RelayTimeout)
        self.assertIn("no OK from ws://relay.test within 5 s (connected)", str(failure.value))
        self.assertEqual(pool.relay(relay.url).pending_publishes, 0)

    def test_query_timeout_and_closed(self) -> None:
        relay = FakeRelay(require_auth=True)
        pool = self.make_pool(relay, private_key=None)
        d = self.drive(pool.query(relay.url, [{}]))
        self.failureResultOf(d, SubscriptionClosed)
        relay.require_auth = False
        relay.silent = True
        relay.drop_connections()
        relay.down = True
        d = self.drive(pool.query(relay.url, [{}], timeout=3))
        self.clock.advance(3)
        failure = self.failureResultOf(d, RelayTimeout)
        self.assertEqual(failure.value.events, [])
        self.assertIn("not connected", str(failure.value))

    def test_relay_down_then_up_with_backoff(self) -> None:
        relay = FakeRelay()
        relay.down = True
        pool = self.make_pool(relay, initial_delay=1.0, max_delay=8.0)
        event = note()
        d = self.drive(pool.publish(event, relay.url, timeout=1000))
        endpoint = self.endpoints[relay.url]
        self.assertEqual(endpoint.attempts, 1)
        # capped exponential backoff: 1, 2, 4, 8, 8 seconds
        for delay, attempts in ((1, 2), (2, 3), (4, 4), (8, 5), (8, 6)):
            self.clock.advance(delay - 0.01)
            self.assertEqual(endpoint.attempts, attempts - 1)
            self.clock.advance(0.01)
            self.assertEqual(endpoint.attempts, attempts)
        self.assertNoResult(d)
        relay.down = False
        self.clock.advance(8)
        self.flush()
        self.assertEqual(self.successResultOf(d), (True, ""))
        self.assertIn(event.id, relay.events)

    def test_relay_answering_plain_http_fails_cleanly_and_backs_off(self) -> None:
        """A 'relay' that answers the upgrade with plain HTTP: each attempt is a failed attempt
        (not a ClientService state-machine error, which Automat raised as NoTransition and
        Twisted logged as critical), reported with the reason, and the backoff grows."""
        from twisted.logger import LogLevel, globalLogPublisher

        critical: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if event.get("log_level") == LogLevel.critical or event.get("isError"):
                critical.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        pool = self.make_pool(initial_delay=1.0, max_delay=8.0)
        web = PlainHttpEndpoint()
        url = "ws://web.test"
        session = pool.relay(url, lambda host, port, tls: web)
        d = self.drive(pool.wait_open(url, timeout=30))
        web.flush()
        failure = self.failureResultOf(d, RelayUnreachable)
        self.assertIn("cannot connect to ws://web.test: no WebSocket", str(failure.value))
        self.assertIn("404", str(failure.value))
        self.assertEqual((web.attempts, session.failed_attempts), (1, 1))
        for delay, attempts in ((1, 2), (2, 3), (4, 4), (8, 5)):
            self.clock.advance(delay - 0.01)
            web.flush()
            self.assertEqual(web.attempts, attempts - 1)
            self.clock.advance(0.01)
            web.flush()
            self.assertEqual(web.attempts, attempts)
        self.assertFalse(session.connected)
        self.assertEqual(critical, [])

    def test_reconnect_resends_pending(self) -> None:
        relay = FakeRelay(silent=True)
        pool = self.make_pool(relay, initial_delay=1.0)
        event = note()
        d = self.drive(pool.publish(event, relay.url, timeout=100))
        self.assertEqual(len(relay.messages("EVENT")), 1)
        relay.drop_connections()
        self.assertFalse(pool.is_connected(relay.url))
        relay.silent = False
        self.clock.advance(1)
        self.flush()
        self.assertEqual(self.successResultOf(d), (True, ""))
        self.assertEqual(len(relay.messages("EVENT")), 2)

    def test_nip42_auth(self) -> None:
        relay = FakeRelay("wss://auth.test", challenge="chal-1", require_auth=True)
        pool = self.make_pool(relay)
        self.clock.advance(1700000000)
        event = note()
        result = self.successResultOf(self.drive(pool.publish(event, relay.url)))
        self.assertEqual(result, (True, ""))
        [auth] = relay.messages("AUTH")
        self.assertEqual(auth[1]["kind"], 22242)
        self.assertEqual(auth[1]["created_at"], 1700000000)
        self.assertEqual(len(relay.authed), 1)
        self.assertEqual(relay.authed[0], sign(EventTemplate(kind=1, created_at=0), GATEWAY).pubkey)
        found = self.successResultOf(self.drive(pool.query(relay.url, [{"ids": [event.id]}])))
        self.assertEqual(found, [event])

    def test_subscribe_live(self) -> None:
        relay = FakeRelay()
        pool = self.make_pool(relay)
        got: list[Event] = []
        sub = pool.subscribe(relay.url, [{"kinds": [7]}], got.append)
        self.flush()
        event = note("live", kind=7)
        self.successResultOf(self.drive(pool.publish(event, relay.url)))
        self.assertEqual(got, [event])
        sub.close()
        self.flush()
        self.assertEqual(relay.messages("CLOSE")[-1], ["CLOSE", sub.sub_id])

    def test_malformed_relay_messages_dropped(self) -> None:
        relay = FakeRelay()
        pool = self.make_pool(relay)
        session = pool.relay(relay.url)
        self.flush()
        relay.inject("not json")
        relay.inject('["EVENT","x",{"id":"00"}]')
        relay.inject('["NOTICE","hi"]')
        self.assertEqual(session.dropped, 2)
        self.assertEqual(session.last_notice, "hi")
        self.assertTrue(pool.is_connected(relay.url))

    def test_stop_cancels_waits(self) -> None:
        relay = FakeRelay(silent=True)
        pool = self.make_pool(relay)
        d = self.drive(pool.publish(note(), relay.url, timeout=100))
        self.stop(pool)
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_publish_many(self) -> None:
        good, bad = FakeRelay("ws://good.test"), FakeRelay("ws://bad.test", silent=True)
        pool = self.make_pool(good, bad)
        d = self.drive(pool.publish_many(note(), [good.url, bad.url], timeout=2))
        self.clock.advance(2)
        results = self.successResultOf(d)
        self.assertEqual(results[good.url], (True, ""))
        self.assertIsInstance(results[bad.url].value, RelayTimeout)  # type: ignore[union-attr]

    def test_remove_relay(self) -> None:
        relay = FakeRelay()
        pool = self.make_pool(relay)
        pool.relay(relay.url)
        self.flush()
        self.assertEqual(len(relay.connections), 1)
        d = self.drive(pool.remove_relay(relay.url))
        self.flush()
        self.successResultOf(d)
        self.assertEqual(relay.connections, [])
        self.assertEqual(pool.urls, [])

    def test_parse_relay_url(self) -> None:
        self.assertEqual(parse_relay_url("wss://r.example"), ("r.example", 443, True))
        self.assertEqual(parse_relay_url("ws://127.0.0.1:7777/path"), ("127.0.0.1", 7777, False))
        for bad in ("http://x", "wss://", "ws://x:notaport", "x"):
            with self.assertRaises(ValueError):
                parse_relay_url(bad)
