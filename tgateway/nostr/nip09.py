"""NIP-09 deletion requests for the gateway's own events about a file that is gone.

A deletion (its last owner, an admin, retention) is the content store's "deleted" event;
:class:`Retractor` is subscribed to it. The NIP-35 (ref ``<sha256>``) and NIP-71 (ref
``nip71:<sha256>``, and ``nip71:<sha256>:original`` for an addressable event's first version) events the outbox published about the file, and not retracted yet, are named
in one kind 5 event (an ``e`` tag per event id, a ``k`` tag per kind), signed with the gateway key
and handed to the outbox (ref ``nip09:<sha256>``) for the relays that got them or may still get
them (deliveries ``accepted`` or ``pending``). A file stored again later is announced afresh:
:func:`live_events` is what "announced before" means to the announcers.

:func:`deletion_template` is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.nostr.event import Event, EventTemplate
from tgateway.nostr.publisher import Publisher
from tgateway.storage.model import StoredFile
from tgateway.storage.nostr_outbox import ACCEPTED, PENDING

__all__ = ["KIND", "REF_PREFIX", "Retractor", "deletion_template", "live_events"]

KIND = 5
REF_PREFIX = "nip09:"
#: the refs of the events published about a file, as (prefix, suffix) around its sha256: NIP-35,
#: NIP-71, and an addressable NIP-71 event's first version (before its renditions)
ANNOUNCEMENT_REFS = (("", ""), ("nip71:", ""), ("nip71:", ":original"))
REASON = "removed from this gateway"


@dataclass(frozen=True)
class LiveEvent:
    """An event about a file that is not retracted: its kind and the relays that have it or
    may still get it."""

    id: str
    kind: int
    relays: tuple[str, ...]


def deletion_template(events: Sequence[tuple[str, int]], created_at: int,
                      reason: str = REASON) -> EventTemplate:
    """A kind 5 event deleting ``events`` ((id, kind) pairs). ValueError when there is none."""
    if not events:
        raise ValueError("a deletion names at least one event")
    tags: list[tuple[str, ...]] = [("e", event_id) for event_id, _ in dict.fromkeys(events)]
    tags += [("k", str(kind)) for kind in sorted({kind for _, kind in events})]
    return EventTemplate(kind=KIND, created_at=created_at, tags=tuple(tags), content=reason)


async def live_events(outbox: Publisher, sha256: str, prefix: str = "",
                      suffix: str = "") -> list[LiveEvent]:
    """The events published about ``sha256`` under the ref ``prefix + sha256 + suffix``
    (:data:`ANNOUNCEMENT_REFS`) that no deletion of ours names yet."""
    retracted: set[str] = set()
    for deletion in await outbox.events_for_ref(REF_PREFIX + sha256):
        retracted.update(deletion.tag_values("e"))
    relays: dict[str, dict[str, None]] = {}
    kinds: dict[str, int] = {}
    for d in await outbox.deliveries_for_ref(prefix + sha256 + suffix):
        if d.event_id in retracted:
            continue
        kinds[d.event_id] = d.kind
        per = relays.setdefault(d.event_id, {})
        if d.status in (ACCEPTED, PENDING):
            per[d.relay_url] = None
    return [LiveEvent(id=i, kind=kinds[i], relays=tuple(relays[i])) for i in kinds]


class Retractor:
    """Publishes a NIP-09 deletion of the gateway's events about each deleted file."""

    log = Logger()

    def __init__(self, *, sign: Callable[[EventTemplate], Event], outbox: Publisher,
                 clock: IReactorTime) -> None:
        self.sign = sign
        self.outbox = outbox
        self.clock = clock

    async def on_deleted(self, f: StoredFile) -> Event | None:
        """The content store's "deleted" subscriber; the deletion event, or None when the file
        had no event to retract."""
        live = [e for prefix, suffix in ANNOUNCEMENT_REFS
                for e in await live_events(self.outbox, f.sha256, prefix, suffix)]
        relays = list(dict.fromkeys(r for e in live for r in e.relays))
        if not live or not relays:
            return None
        event = self.sign(deletion_template([(e.id, e.kind) for e in live],
                                            int(self.clock.seconds())))
        await self.outbox.publish(event, relays, ref=REF_PREFIX + f.sha256)
        self.log.info("retracting {n} events about {sha256} (deletion {id}) on {relays} relays",
                      n=len(live), sha256=f.sha256, id=event.id, relays=len(relays))
        return event
