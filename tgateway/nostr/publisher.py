"""The publisher seam: where a component hands a signed event to be published on Nostr.

``await publisher.publish(event, relays, ref=...)`` stores the event for delivery to ``relays`` and
returns once it is stored; delivery, retries and per-relay status are the publisher's business
(:class:`~tgateway.nostr.outbox.Outbox`, over the relay pool). ``ref`` groups the events published
about one thing (a file's SHA-256, ``nip71:<sha256>``) so their status can be read back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from tgateway.nostr.event import Event
from tgateway.storage.nostr_outbox import Delivery

__all__ = ["Publisher"]


class Publisher(Protocol):
    def publish(self, event: Event, relays: Sequence[str], ref: str | None = None) -> Awaitable[int]:
        """Store ``event`` for delivery to ``relays``; returns how many deliveries are new."""

    def deliveries_for_ref(self, ref: str) -> Awaitable[list[Delivery]]:
        """Per-relay status of every event published about ``ref``."""

    def events_for_ref(self, ref: str) -> Awaitable[list[Event]]:
        """Every event published about ``ref``, oldest first."""
