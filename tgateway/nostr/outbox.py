"""The persistent outbox: publish = store first, then deliver to every relay until settled.

``await outbox.publish(event, relays, ref=...)`` writes the signed event and one pending delivery
per relay to the database and returns; delivery is the outbox's business from then on:

- each due delivery is *leased* (moved out of the due set for the length of one attempt) and
  sent with the pool's ``publish``;
- ``OK`` true, or a refusal as a duplicate, is recorded as ``accepted``;
- ``OK`` false with a final reason (``invalid:``, ``blocked:``, ``pow:``, ``restricted:``,
  ``mute:``...) is recorded as ``rejected``, with the relay's message;
- anything else (timeouts, unreachable relays, ``rate-limited:``, ``error:``, ``auth-required:``)
  stays ``pending`` and is retried with capped exponential backoff (``retry_initial`` doubling up
  to ``retry_max``, with jitter) until ``give_up_after`` seconds after queueing: then ``failed``.

Restart safety: the event is committed before any send, so a gateway restarted at any point
resumes the unfinished deliveries on start (a lease left by a crash just ends). Sending twice is
harmless: relays answer a known id with ``duplicate:``, which counts as accepted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tgateway.nostr.event import Event, EventError, parse_event
from tgateway.nostr.pool import PublishResult
from tgateway.storage.nostr_outbox import (
    ACCEPTED,
    FAILED,
    PENDING,
    REJECTED,
    Delivery,
    DueDelivery,
    OutboxStore,
)

__all__ = ["Outbox", "RelaySender"]


class RelaySender(Protocol):
    """What the outbox needs from the relay pool: one event to one relay, and its answer."""

    async def publish(
        self, event: Event, relay_url: str, timeout: float = ...
    ) -> PublishResult: ...


class Outbox(Service):
    """Delivers stored events to relays; see the module docstring. Implements the publisher
    seam (:class:`~tgateway.nostr.publisher.Publisher`)."""

    log = Logger()

    def __init__(
        self,
        store: OutboxStore,
        pool: RelaySender,
        clock: IReactorTime,
        *,
        publish_timeout: float = 15.0,
        retry_initial: float = 10.0,
        retry_max: float = 3600.0,
        give_up_after: float = 7 * 86400.0,
        batch_size: int = 100,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._pool = pool
        self._clock = clock
        self.publish_timeout = publish_timeout
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self.batch_size = batch_size
        self._jitter = jitter
        self._timer: IDelayedCall | None = None
        self._pass: Deferred[None] | None = None
        self._again = False
        self._inflight: dict[tuple[str, str], Deferred[None]] = {}
        # deliveries by outcome since start: accepted, rejected, failed (final), retry
        self.results: dict[str, int] = {}

    # -- the publisher seam (tgateway.nostr.publisher) ----------------------------------------------------------------------

    async def publish(self, event: Event, relays: Sequence[str], ref: str | None = None) -> int:
        """Store ``event`` for delivery to ``relays`` and return the number of new deliveries.

        Returns once the event is committed; relays that already have a delivery of this event
        are left as they are.
        """
        if not relays:
            return 0
        added = await self._store.enqueue(
            event.id, event.kind, event.dumps(), relays, ref, self._clock.seconds()
        )
        if added:
            self.log.info(
                "queued event {id} (kind {kind}) for {n} relays",
                id=event.id,
                kind=event.kind,
                n=added,
            )
            self._wake(0)
        return added

    async def backlog(self) -> tuple[int, float | None]:
        """Deliveries waiting (pending) and when the oldest of them was queued."""
        return await self._store.backlog()

    async def deliveries_for_ref(self, ref: str) -> list[Delivery]:
        """Per-relay status of every event published about ``ref`` (e.g. a file's sha256)."""
        return await self._store.deliveries_for_ref(ref)

    async def deliveries_for_event(self, event_id: str) -> list[Delivery]:
        return await self._store.deliveries_for_event(event_id)

    async def events_for_ref(self, ref: str) -> list[Event]:
        """Every event published about ``ref``, oldest first (as signed)."""
        out = []
        for raw in await self._store.events_for_ref(ref):
            try:
                out.append(parse_event(json.loads(raw)))
            except (ValueError, EventError):
                self.log.warn("a stored event about {ref} is broken", ref=ref)
        return out

    # -- service ---------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._wake(0)  # resume what a previous run left unfinished

    def stopService(self) -> Deferred[Any]:
        """Stop scheduling, cancel attempts in flight (they stay pending), wait for the DB."""
        super().stopService()  # type: ignore[no-untyped-call]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        waits: list[Deferred[Any]] = []
        for d in list(self._inflight.values()):
            d.cancel()
            waits.append(d)
        if self._pass is not None:
            waits.append(self._pass)
        return DeferredList(waits, consumeErrors=True)

    # -- scheduling ------------------------------------------------------------------------------

    def _wake(self, delay: float) -> None:
        """Run a delivery pass in ``delay`` seconds (or sooner if one is already planned)."""
        if not self.running:
            return
        if self._pass is not None:
            self._again = True
            return
        delay = max(0.0, delay)
        at = self._clock.seconds() + delay
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= at:
                return
            self._timer.cancel()
        self._timer = self._clock.callLater(delay, self._start_pass)

    def _start_pass(self) -> None:
        self._timer = None
        d = Deferred.fromCoroutine(self._run_pass())
        self._pass = d
        d.addErrback(lambda f: self.log.failure("outbox delivery pass failed", f))

        def done(_: object) -> None:
            self._pass = None
            if self._again:
                self._again = False
                self._wake(0)

        d.addBoth(done)

    async def _run_pass(self) -> None:
        while self.running:
            self._again = False
            now = self._clock.seconds()
            lease = self.publish_timeout + 5.0
            due = await self._store.claim_due(now, self.batch_size, now + lease)
            for delivery in due:
                self._spawn(delivery)
            if len(due) < self.batch_size:
                break
        if not self.running:
            return
        next_due = await self._store.next_due()
        if next_due is not None and not self._again:
            self._pass = None
            self._wake(next_due - self._clock.seconds())

    def _spawn(self, delivery: DueDelivery) -> None:
        key = (delivery.event_id, delivery.relay_url)
        if key in self._inflight:
            return
        d = Deferred.fromCoroutine(self._deliver(delivery))
        self._inflight[key] = d

        def done(result: object) -> object:
            self._inflight.pop(key, None)
            return result

        def failed(failure: Failure) -> None:
            if not isinstance(failure.value, CancelledError):
                self.log.failure("delivery to {relay} failed", failure, relay=delivery.relay_url)

        d.addBoth(done)
        d.addErrback(failed)

    # -- one attempt -----------------------------------------------------------------------------

    def _retry_delay(self, attempts: int) -> float:
        base: float = min(self.retry_initial * 2 ** max(0, attempts - 1), self.retry_max)
        return base * (1.0 + 0.1 * self._jitter())

    async def _deliver(self, delivery: DueDelivery) -> None:
        try:
            event = parse_event(json.loads(delivery.event_json))
        except (ValueError, EventError) as e:
            await self._record(delivery, REJECTED, f"invalid: stored event is broken ({e})")
            return
        attempts = delivery.attempts + 1
        try:
            result = await self._pool.publish(event, delivery.relay_url, self.publish_timeout)
        except CancelledError:
            # stopping: leave it pending and due now, for the next start
            await self._store.release(delivery.event_id, delivery.relay_url, self._clock.seconds())
            raise
        except ValueError as e:  # a relay URL the pool cannot use
            await self._record(delivery, REJECTED, f"invalid relay URL: {e}")
            return
        except Exception as e:
            await self._retry_or_fail(delivery, f"{type(e).__name__}: {e}", attempts)
            return
        if result.delivered:
            self.log.info(
                "relay {relay} accepted {id}", relay=delivery.relay_url, id=delivery.event_id
            )
            await self._record(delivery, ACCEPTED, result.message)
        elif result.transient:
            await self._retry_or_fail(delivery, result.message, attempts)
        else:
            self.log.warn(
                "relay {relay} rejected {id}: {message}",
                relay=delivery.relay_url,
                id=delivery.event_id,
                message=result.message,
            )
            await self._record(delivery, REJECTED, result.message)

    async def _retry_or_fail(self, delivery: DueDelivery, message: str, attempts: int) -> None:
        now = self._clock.seconds()
        if now - delivery.queued_at >= self.give_up_after:
            self.log.warn(
                "giving up on {id} for {relay}: {message}",
                id=delivery.event_id,
                relay=delivery.relay_url,
                message=message,
            )
            await self._record(delivery, FAILED, message)
            return
        self.results["retry"] = self.results.get("retry", 0) + 1
        delay = self._retry_delay(attempts)
        self.log.info(
            "will retry {id} on {relay} in {delay:.0f} s: {message}",
            id=delivery.event_id,
            relay=delivery.relay_url,
            delay=delay,
            message=message,
        )
        await self._store.record(
            delivery.event_id, delivery.relay_url, PENDING, message, now + delay, now
        )
        self._wake(delay)

    async def _record(self, delivery: DueDelivery, status: str, message: str) -> None:
        """A final outcome (``attempts`` grows by one in the store)."""
        self.results[status] = self.results.get(status, 0) + 1
        now = self._clock.seconds()
        await self._store.record(delivery.event_id, delivery.relay_url, status, message, now, now)
