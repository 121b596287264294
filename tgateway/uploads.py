"""The one upload handler: every way a file comes in goes through :class:`Uploads`.

The gateway's ``/api/upload`` (multipart and raw ``PUT``), Blossom's ``PUT /upload`` and its
mirror (a Blossom upload whose bytes come from a URL) hand it *what* to store (an
:class:`Intake`: owner, name and the other context, the size rules of that way in, a declared
type, an expected SHA-256, checks of their own) and *where the bytes come from* (a
:class:`Source`: a request body, a form, a download). It does the rest, the same way for each:

1. before any byte is read (:meth:`Uploads.admit`): the declared size against the limit, an
   empty upload, free disk space, the owner's quota, and the handler's checks on a declared
   SHA-256 (so a Blossom upload of tombstoned bytes is refused before its body is read);
2. while the bytes arrive (:class:`Sink`, fed by the source): the owner's remaining quota cuts off
   a body that goes beyond it (a body without a length is never stored past the quota), the
   ingest's ``max_size`` cuts off a file over the limit; the ingest hashes, writes and keeps the
   first bytes for the MIME type;
3. before the file becomes visible (inside ``ContentStore.commit``): the expected SHA-256, the
   intake's checks (a Blossom token's scope, a NIP-98 ``payload``), then every check given to the
   handler itself (later: the block list), then the quota, atomically with the owner's reference.
   Whatever refuses the file there, it never becomes visible and the store fires no "stored"
   event: no NIP-35 publication, no tracker or DHT announce, no seeding;
4. on any failure, and when the client goes away, the ingest is aborted (nothing is left).

A check is a function of the ingest's result that raises an ApiError to refuse the file. Adding
a check for every upload is one more entry in the handler's list, never an edit of a route.

The content store is reached through four methods only: ``begin_upload``, ``commit``, ``usage``
and ``free_space``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twisted.logger import Logger

from tgateway.errors import BadRequest, Conflict, InsufficientStorage, PayloadTooLarge
from tgateway.storage.api import ContentStore, Received, Upload
from tgateway.storage.model import StoredEvent, UploadContext

#: refuses a finished upload (by raising an ApiError) before it becomes visible
Check = Callable[[Received], None]


@dataclass(frozen=True)
class Content:
    """Content known by its hash before it is stored (what a :data:`Check` sees early)."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Limits:
    """The size rules of one way in.

    ``max_size``: the most bytes the file may have. ``envelope``: bytes a declared length may
    hold around the file (a form's other fields and part headers). ``noun``: how messages name
    what is uploaded ("upload", "blob").
    """

    max_size: int
    envelope: int = 0
    noun: str = "upload"


@dataclass(frozen=True)
class Intake:
    """What to store, as far as it is known before the bytes arrive."""

    context: UploadContext  # owner, name, title, description, announce flag, source
    limits: Limits
    declared_type: str | None = None
    expected_sha256: str | None = None  # lowercase hex; a different body is a 409 hash_mismatch
    checks: tuple[Check, ...] = ()


@dataclass(frozen=True)
class Facts:
    """What a source learns while the bytes arrive (a form's fields, an origin's type); each
    one that is not None replaces the intake's."""

    name: str | None = None
    title: str | None = None
    description: str | None = None
    announce_dht: bool | None = None
    declared_type: str | None = None

    def apply(self, context: UploadContext) -> UploadContext:
        changes: dict[str, Any] = {k: v for k, v in (
            ("name", self.name), ("title", self.title), ("description", self.description),
            ("announce_dht", self.announce_dht)) if v is not None}
        return replace(context, **changes) if changes else context


class Sink:
    """Where a source delivers the file's bytes: the upload's ingest, with the owner's remaining
    quota (``room``) enforced as they arrive.

    ``feed``/``reserve`` on the one thread that reads a request body (see
    ``BodyStream.consume(threaded=True)``); ``write``/``set_flow_control`` on the reactor (a
    download). One upload uses one of the two ways.
    """

    def __init__(self, ingest: Upload, room: int | None) -> None:
        self.ingest = ingest
        self.room = room
        self.received = 0

    def _count(self, size: int) -> None:
        self.received += size
        if self.room is not None and self.received > self.room:
            raise PayloadTooLarge("upload exceeds your storage quota", code="quota_exceeded")

    def feed(self, data: Any) -> None:
        """(the body's thread) Bytes of the file, in order."""
        self._count(len(data))
        self.ingest.feed(data)

    def reserve(self) -> memoryview:
        """(the body's thread) Where the next bytes may be received (see ``Upload.reserve``)."""
        return self.ingest.reserve()

    def write(self, data: bytes) -> None:
        """(reactor) Bytes of the file, in order; the source is paused while workers catch up."""
        self._count(len(data))
        self.ingest.write(data)

    def set_flow_control(self, pause: Callable[[], None], resume: Callable[[], None]) -> None:
        self.ingest.set_flow_control(pause, resume)


#: called by a source once it knows the file's length (or that it will not know it): the sink
OpenSink = Callable[[int | None], Sink]


class Source(Protocol):
    """Where an upload's bytes come from."""

    #: the length declared before anything is read (a request's Content-Length), if any
    length: int | None

    async def pour(self, open_sink: OpenSink) -> Facts:
        """Open the sink (once) and deliver the file's bytes into it; return what was learnt on
        the way. Raises an ApiError for a bad body; a client that went away is a
        CancelledError."""


class Uploads:
    """The upload handler (one per process, shared by every way in)."""

    log = Logger()

    def __init__(
        self,
        *,
        store: ContentStore,
        quota: Callable[[str], int],
        checks: Iterable[Check] = (),
    ) -> None:
        self.store = store
        self.quota = quota
        self.checks: list[Check] = list(checks)
        # since start: uploads by result (stored, duplicate, refused), bytes received
        self.results: dict[str, int] = {}
        self.ingested = 0

    # before the bytes ------------------------------------------------------------------

    def check_size(self, limits: Limits, length: int) -> None:
        """Refuse a declared ``length`` over the limit, an empty upload, one the disk cannot
        take."""
        if length > limits.max_size + limits.envelope:
            raise PayloadTooLarge(f"{limits.noun} of {length} bytes is larger than the limit "
                                  f"of {limits.max_size} bytes")
        if length == 0:
            raise BadRequest(f"the {limits.noun} is empty", code="empty_upload")
        if length > self.store.free_space():
            raise InsufficientStorage(f"not enough disk space for this {limits.noun}")

    async def admit(self, intake: Intake, length: int | None) -> int | None:
        """The checks that need no bytes, from the declared ``length`` (None: unknown). Returns
        the bytes the owner's quota still has room for (None for an anonymous upload)."""
        if length is not None:
            self.check_size(intake.limits, length)
        if intake.expected_sha256 is not None:
            self.check_content(intake.expected_sha256, length or 0)
        owner = intake.context.owner
        if not owner:
            return None
        limit = self.quota(owner)
        _, used = await self.store.usage(owner)
        size = max(1, length - intake.limits.envelope) if length is not None else 1
        if used + size > limit:
            raise PayloadTooLarge(
                f"upload would exceed your storage quota ({used} of {limit} bytes used)",
                code="quota_exceeded",
            )
        return max(0, limit - used)

    def check_content(self, sha256: str, size: int) -> None:
        """Run the handler's own checks (the block list) on content known by its SHA-256 before
        it is stored: a declared ``X-SHA-256``, or the original of a BUD-05 ``/media`` upload,
        whose optimised output (other bytes) is what gets stored. Raises what a check raises."""
        content = Content(sha256=sha256, size=size)
        for check in self.checks:
            check(content)

    # the upload ---------------------------------------------------------------------------

    async def receive(self, intake: Intake, source: Source) -> StoredEvent:
        """Store what ``source`` delivers as ``intake`` says; the file is visible (and the
        "stored" event fired) only if every rule and check passed. Raises the ApiError that
        refused it; nothing is left behind then."""
        sinks: list[Sink] = []
        try:
            event = await self._receive(intake, source, sinks)
        except Exception:
            self._count("refused", sinks)
            raise
        self._count("stored" if event.new else "duplicate", sinks)
        return event

    def _count(self, result: str, sinks: list[Sink]) -> None:
        self.results[result] = self.results.get(result, 0) + 1
        if sinks:
            self.ingested += sinks[0].received

    async def _receive(self, intake: Intake, source: Source, sinks: list[Sink]) -> StoredEvent:
        room = await self.admit(intake, source.length)

        def open_sink(length: int | None) -> Sink:
            if sinks:
                raise RuntimeError("an upload source opens one sink")
            if length is not None:
                self.check_size(intake.limits, length)
            ingest = self.store.begin_upload(size_hint=length, max_size=intake.limits.max_size)
            sinks.append(Sink(ingest, room))
            return sinks[0]

        try:
            facts = await source.pour(open_sink)
            if not sinks:
                raise BadRequest(f"the {intake.limits.noun} is empty", code="empty_upload")
        except BaseException:
            if sinks:
                await sinks[0].ingest.abort()
            raise
        owner = intake.context.owner
        return await self.store.commit(
            sinks[0].ingest,
            facts.apply(intake.context),
            declared_type=facts.declared_type or intake.declared_type,
            check=lambda result: self._run_checks(intake, result),
            quota=self.quota(owner) if owner else None,
        )

    def _run_checks(self, intake: Intake, result: Received) -> None:
        expected = intake.expected_sha256
        if expected is not None and result.sha256 != expected:
            raise Conflict(f"the body's sha256 is {result.sha256}, X-SHA-256 said {expected}",
                           code="hash_mismatch")
        for check in (*intake.checks, *self.checks):
            check(result)


__all__ = ["Check", "Content", "Facts", "Intake", "Limits", "OpenSink", "Sink", "Source", "Uploads"]
