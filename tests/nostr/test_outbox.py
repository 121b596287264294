"""The persistent outbox: storage functions and the delivery service (fake pool, Clock, :memory:)."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tgateway.nostr.event import Event, EventTemplate, sign
from tgateway.nostr.outbox import Outbox
from tgateway.nostr.pool import PublishResult, RelayTimeout
from tgateway.storage import nostr_outbox as store_mod
from tgateway.storage.db import SyncDatabase
from tgateway.storage.nostr_outbox import OutboxStore

KEY = b"\x11" * 32
A, B, C = "ws://a.test", "ws://b.test", "ws://c.test"
REF = "ab" * 32


def note(content: str = "announce", created_at: int = 1000) -> Event:
    return sign(EventTemplate(kind=2003, created_at=created_at, content=content), KEY)


class FakePool:
    """Records publish calls; the test answers each with ``answer``."""

    def __init__(self) -> None:
        self.calls: list[tuple[Event, str, Deferred[PublishResult]]] = []

    async def publish(self, event: Event, relay_url: str, timeout: float = 15.0) -> PublishResult:
        d: Deferred[PublishResult] = Deferred()
        self.calls.append((event, relay_url, d))
        return await d

    def pending(self) -> list[str]:
        return [url for _, url, d in self.calls if not d.called]

    def answer(self, url: str, result: PublishResult | Exception) -> None:
        for _, u, d in self.calls:
            if u == url and not d.called:
                if isinstance(result, Exception):
                    d.errback(result)
                else:
                    d.callback(result)
                return
        raise AssertionError(f"no pending publish to {url}")


class StoreTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)

    def test_enqueue_is_idempotent_and_adds_new_relays(self) -> None:
        event = note()
        run = self.db.run_sync
        self.assertEqual(
            run(store_mod.enqueue_txn, event.id, 2003, event.dumps(), [A, B, A], REF, 5.0), 2
        )
        self.assertEqual(
            run(store_mod.enqueue_txn, event.id, 2003, event.dumps(), [A, B], REF, 6.0), 0
        )
        self.assertEqual(
            run(store_mod.enqueue_txn, event.id, 2003, event.dumps(), [C], REF, 7.0), 1
        )
        self.assertEqual(run(store_mod.event_json_txn, event.id), event.dumps())
        self.assertEqual(run(store_mod.count_pending_txn), 3)
        self.assertEqual(run(store_mod.next_due_txn), 5.0)

    def test_claim_lease_record(self) -> None:
        event = note()
        run = self.db.run_sync
        run(store_mod.enqueue_txn, event.id, 2003, event.dumps(), [A, B], REF, 5.0)
        claimed = run(store_mod.claim_due_txn, 10.0, 1, 40.0)
        self.assertEqual([d.relay_url for d in claimed], [A])
        self.assertEqual([d.relay_url for d in run(store_mod.due_txn, 10.0, 10)], [B])
        self.assertEqual(
            [d.relay_url for d in run(store_mod.due_txn, 40.0, 10)], [B, A]
        )  # lease ended
        run(store_mod.record_txn, event.id, A, "accepted", "duplicate: ok", 0.0, 11.0)
        run(store_mod.record_txn, event.id, A, "rejected", "late", 0.0, 12.0)  # final: ignored
        run(store_mod.release_txn, event.id, B, 9.0)
        [a, b] = run(store_mod.deliveries_for_ref_txn, REF)
        self.assertEqual(
            (a.status, a.attempts, a.message, a.next_attempt_at),
            ("accepted", 1, "duplicate: ok", None),
        )
        self.assertEqual((b.status, b.attempts, b.next_attempt_at), ("pending", 0, 9.0))
        self.assertEqual(run(store_mod.deliveries_for_event_txn, event.id), [a, b])
        self.assertEqual(a.to_json()["relay"], A)
        with self.assertRaises(ValueError):
            run(store_mod.record_txn, event.id, B, "bogus", "", 0.0, 1.0)


class OutboxTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.db = SyncDatabase()
        self.db.open()
        self.addCleanup(self.db.close)
        self.clock = Clock()
        self.clock.advance(1000)
        self.pool = FakePool()
        self.store = OutboxStore(self.db)

    def make_outbox(self, **kw: Any) -> Outbox:
        kw.setdefault("jitter", lambda: 0.0)
        outbox = Outbox(self.store, self.pool, self.clock, **kw)
        outbox.startService()
        self.addCleanup(self.stop, outbox)
        return outbox

    def stop(self, outbox: Outbox) -> None:
        if outbox.running:
            self.successResultOf(outbox.stopService())

    def statuses(self, ref: str = REF) -> dict[str, tuple[str, int, str]]:
        rows = self.successResultOf(Deferred.fromCoroutine(self.store.deliveries_for_ref(ref)))
        return {r.relay_url: (r.status, r.attempts, r.message) for r in rows}

    def publish(self, outbox: Outbox, event: Event, relays: list[str]) -> int:
        added: int = self.successResultOf(
            Deferred.fromCoroutine(outbox.publish(event, relays, REF))
        )
        return added

    def test_stored_first_then_sent_and_settled(self) -> None:
        outbox = self.make_outbox()
        event = note()
        self.assertEqual(self.publish(outbox, event, [A, B, C]), 3)
        # committed before anything is sent
        self.assertEqual(self.pool.calls, [])
        self.assertEqual(
            {u: s[0] for u, s in self.statuses().items()},
            {A: "pending", B: "pending", C: "pending"},
        )
        self.clock.advance(0)
        self.assertEqual(sorted(self.pool.pending()), [A, B, C])
        self.pool.answer(A, PublishResult(True, ""))
        self.pool.answer(B, PublishResult(False, "duplicate: already have it"))
        self.pool.answer(C, PublishResult(False, "blocked: not welcome"))
        self.assertEqual(
            self.statuses(),
            {
                A: ("accepted", 1, ""),
                B: ("accepted", 1, "duplicate: already have it"),
                C: ("rejected", 1, "blocked: not welcome"),
            },
        )
        self.clock.advance(100000)
        self.assertEqual(len(self.pool.calls), 3)  # nothing sent again
        self.assertEqual(self.publish(outbox, event, [A, B, C]), 0)
        self.clock.advance(0)
        self.assertEqual(len(self.pool.calls), 3)

    def test_transient_failures_retried_with_capped_backoff(self) -> None:
        outbox = self.make_outbox(retry_initial=10, retry_max=40)
        self.publish(outbox, note(), [A])
        self.clock.advance(0)
        self.pool.answer(A, PublishResult(False, "rate-limited: slow down"))
        self.assertEqual(self.statuses()[A], ("pending", 1, "rate-limited: slow down"))
        for delay, answer in (
            (10, RelayTimeout("no OK")),
            (20, ConnectionError("refused")),
            (40, PublishResult(False, "error: db locked")),
            (40, PublishResult(False, "auth-required: who")),
        ):
            self.clock.advance(delay - 0.5)
            self.assertEqual(self.pool.pending(), [])
            self.clock.advance(0.5)
            self.assertEqual(self.pool.pending(), [A])
            self.pool.answer(A, answer)
        self.clock.advance(40)
        self.pool.answer(A, PublishResult(True, ""))
        self.assertEqual(self.statuses()[A], ("accepted", 6, ""))

    def test_gives_up_after_a_while(self) -> None:
        outbox = self.make_outbox(retry_initial=10, retry_max=10, give_up_after=25)
        self.publish(outbox, note(), [A])
        for _ in range(3):
            self.clock.advance(10)
            self.pool.answer(A, RelayTimeout("no OK"))
        self.assertEqual(self.statuses()[A][0], "failed")
        self.clock.advance(1000)
        self.assertEqual(self.pool.pending(), [])

    def test_bad_relay_url_rejected(self) -> None:
        outbox = self.make_outbox()
        self.publish(outbox, note(), [A])
        self.clock.advance(0)
        self.pool.answer(A, ValueError("relay URL must start with ws://"))
        self.assertEqual(self.statuses()[A][0], "rejected")

    def test_no_double_send_while_in_flight(self) -> None:
        outbox = self.make_outbox(publish_timeout=15)
        self.publish(outbox, note("one"), [A])
        self.clock.advance(0)
        self.publish(outbox, note("two"), [B])
        self.clock.advance(0)
        self.clock.advance(14)
        self.assertEqual(sorted(self.pool.pending()), [A, B])
        self.assertEqual(len(self.pool.calls), 2)

    def test_resumes_after_restart(self) -> None:
        # first run: queued, sent, never answered; stopped (the attempt is cancelled)
        first = self.make_outbox()
        event = note()
        self.publish(first, event, [A, B])
        self.clock.advance(0)
        self.pool.answer(A, PublishResult(True, ""))
        self.assertEqual(self.pool.pending(), [B])
        self.successResultOf(first.stopService())
        self.assertEqual(self.statuses()[B][0], "pending")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # second run on the same database: B is resumed at once, A is not sent again
        self.pool = FakePool()
        self.make_outbox()
        self.clock.advance(0)
        self.assertEqual(self.pool.pending(), [B])
        self.pool.answer(B, PublishResult(False, "duplicate: have it"))
        self.assertEqual(self.statuses()[B][0], "accepted")

    def test_queued_while_stopped_is_sent_on_start(self) -> None:
        outbox = Outbox(self.store, self.pool, self.clock, jitter=lambda: 0.0)
        self.publish(outbox, note(), [A])
        self.clock.advance(10)
        self.assertEqual(self.pool.calls, [])
        outbox.startService()
        self.addCleanup(self.stop, outbox)
        self.clock.advance(0)
        self.assertEqual(self.pool.pending(), [A])

    def test_many_due_in_batches(self) -> None:
        outbox = self.make_outbox(batch_size=3)
        for i in range(7):
            self.publish(outbox, note(f"n{i}"), [A])
        self.clock.advance(0)
        self.assertEqual(len(self.pool.pending()), 7)

    def test_deliveries_for_event(self) -> None:
        outbox = self.make_outbox()
        event = note()
        self.publish(outbox, event, [A])
        rows = self.successResultOf(Deferred.fromCoroutine(outbox.deliveries_for_event(event.id)))
        self.assertEqual([(r.relay_url, r.kind, r.ref) for r in rows], [(A, 2003, REF)])
        self.assertEqual(self.publish(outbox, event, []), 0)
