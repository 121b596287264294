"""The one upload handler (tgateway.uploads) over a real content store, without HTTP: the rules
before the bytes, while they arrive and before the file becomes visible, and that a refused
upload leaves nothing and fires no "stored" event."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from tests.storage.test_store import make_store, result_of, tmp_entries
from tgateway.errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    PayloadTooLarge,
)
from tgateway.storage.ingest import IngestResult
from tgateway.storage.model import StoredEvent, UploadContext
from tgateway.storage.store import LocalContentStore
from tgateway.uploads import Facts, Intake, Limits, OpenSink, Uploads

OWNER = "ab" * 32
QUOTA = 50_000


class Pieces:
    """A source that writes its bytes on the reactor in pieces (as a download does), then
    learns ``facts``; ``fail`` raises after the first piece (a broken connection)."""

    def __init__(self, data: bytes, *, length: int | None = -1, facts: Facts = Facts(),
                 fail: BaseException | None = None, step: int = 7000) -> None:
        self.data = data
        self.length = len(data) if length == -1 else length
        self.facts = facts
        self.fail = fail
        self.step = step
        self.opened = 0

    async def pour(self, open_sink: OpenSink) -> Facts:
        sink = open_sink(self.length)
        self.opened += 1
        for i in range(0, len(self.data), self.step):
            sink.write(self.data[i:i + self.step])
            if self.fail is not None:
                raise self.fail
        return self.facts


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return make_store(tmp_path)


@pytest.fixture
def events(store: LocalContentStore) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    store.subscribe_stored(out.append)
    return out


def settle(store: LocalContentStore) -> None:
    store._reactor.advance(0)  # the store fires its events on the next reactor turn


def handler(store: LocalContentStore, *checks: Any) -> Uploads:
    return Uploads(store=store, quota=lambda owner: QUOTA, checks=checks)


def intake(owner: str | None = None, **kw: Any) -> Intake:
    limits = kw.pop("limits", Limits(100_000))
    return Intake(context=UploadContext(owner=owner, name="f.bin"), limits=limits, **kw)


def receive(uploads: Uploads, i: Intake, source: Pieces) -> StoredEvent:
    return result_of(uploads.receive(i, source))  # type: ignore[no-any-return]


def refused(uploads: Uploads, i: Intake, source: Pieces, error: type[ApiError]) -> ApiError:
    with pytest.raises(error) as e:
        receive(uploads, i, source)
    return e.value


def test_an_accepted_upload_is_stored_with_what_the_source_learnt(
        store: LocalContentStore, events: list[StoredEvent]) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(30_000)
    facts = Facts(name="pic", title="A title", announce_dht=False)
    event = receive(handler(store), intake(OWNER), Pieces(data, facts=facts))
    assert event.new and event.file.sha256 == hashlib.sha256(data).hexdigest()
    assert (event.context.name, event.context.title, event.context.announce_dht) == (
        "pic", "A title", False)
    assert event.file.mime == "image/png"  # sniffed from the head the ingest kept
    settle(store)
    assert events == [event]


@pytest.mark.parametrize("case", ["over the limit", "empty", "no disk space", "over quota",
                                  "quota used up, length unknown"])
def test_refused_before_any_byte_is_read(store: LocalContentStore, events: list[StoredEvent],
                                         case: str) -> None:
    uploads = handler(store)
    source = Pieces(os.urandom(1000))
    if case == "over the limit":
        i, source.length, error = intake(), 100_001, PayloadTooLarge
    elif case == "empty":
        i, source.length, error = intake(), 0, BadRequest
    elif case == "no disk space":
        store.free_space = lambda: 999  # type: ignore[method-assign]
        i, error = intake(), InsufficientStorage
    elif case == "over quota":
        i, source.length, error = intake(OWNER), QUOTA + 1, PayloadTooLarge
    else:
        receive(uploads, intake(OWNER), Pieces(os.urandom(QUOTA)))
        settle(store)
        events.clear()
        i, source.length, error = intake(OWNER), None, PayloadTooLarge
    e = refused(uploads, i, source, error)
    assert source.opened == 0, "the source was read"
    assert e.code in ("payload_too_large", "empty_upload", "insufficient_storage",
                      "quota_exceeded")
    settle(store)
    assert events == [] and tmp_entries(store) == []


def test_the_envelope_counts_towards_the_length_not_the_file(store: LocalContentStore) -> None:
    """A form may declare its file's limit plus the envelope; the quota counts the file."""
    uploads = handler(store)
    i = intake(OWNER, limits=Limits(QUOTA, envelope=10_000))
    result_of(uploads.admit(i, QUOTA + 10_000))
    with pytest.raises(PayloadTooLarge):
        result_of(uploads.admit(i, QUOTA + 10_001))


@pytest.mark.parametrize("length", [None, 100], ids=["unknown length", "understated length"])
def test_a_body_is_cut_off_at_the_quota(store: LocalContentStore, events: list[StoredEvent],
                                        length: int | None) -> None:
    e = refused(handler(store), intake(OWNER), Pieces(os.urandom(QUOTA + 5000), length=length),
                PayloadTooLarge)
    assert e.code == "quota_exceeded"
    settle(store)
    assert events == [] and tmp_entries(store) == []


def test_a_file_over_the_limit_is_cut_off_while_it_arrives(store: LocalContentStore,
                                                           events: list[StoredEvent]) -> None:
    refused(handler(store), intake(limits=Limits(10_000)), Pieces(os.urandom(20_000), length=None),
            PayloadTooLarge)
    settle(store)
    assert events == [] and tmp_entries(store) == []


def test_a_source_that_fails_leaves_nothing(store: LocalContentStore, events: list[StoredEvent]) -> None:
    source = Pieces(os.urandom(30_000), fail=ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        receive(handler(store), intake(), source)
    settle(store)
    assert events == [] and tmp_entries(store) == [] and result_of(store.stats())["files"] == 0


def test_checks_run_before_the_file_is_visible_in_order(store: LocalContentStore,
                                                        events: list[StoredEvent]) -> None:
    """The expected SHA-256, then the intake's checks, then the handler's: the first that
    raises refuses the file, which is never visible and fires no event. The handler's checks
    also see a declared SHA-256 first, before any byte is read."""
    data = os.urandom(30_000)
    digest = hashlib.sha256(data).hexdigest()
    seen: list[str] = []

    def intake_check(result: IngestResult) -> None:
        seen.append("intake")
        assert result.sha256 == digest and result.head == data[:4096]

    def blocked(result: Any) -> None:
        seen.append("handler " + result.sha256[:2])
        if result.sha256 == digest:
            raise Forbidden("blocked", code="blocked")

    uploads = handler(store, blocked)
    e = refused(uploads, intake(expected_sha256="00" * 32, checks=(intake_check,)), Pieces(data),
                Conflict)
    assert e.code == "hash_mismatch" and seen == ["handler 00"]
    # declared: refused before the body is read (no intake check ran)
    refused(uploads, intake(expected_sha256=digest, checks=(intake_check,)), Pieces(data),
            Forbidden)
    assert seen == ["handler 00", "handler " + digest[:2]]
    # not declared: the intake's checks, then the handler's, once the bytes are in
    refused(uploads, intake(checks=(intake_check,)), Pieces(data), Forbidden)
    assert seen[2:] == ["intake", "handler " + digest[:2]]
    settle(store)
    assert events == [] and tmp_entries(store) == []
    assert result_of(store.get(digest)) is None

    uploads.checks.clear()
    event = receive(uploads, intake(expected_sha256=digest), Pieces(data))
    settle(store)
    assert events == [event]


def test_a_check_added_to_the_handler_applies_to_every_intake(store: LocalContentStore) -> None:
    uploads = handler(store)
    refuse_all: list[Any] = []

    def no(result: IngestResult) -> None:
        refuse_all.append(result.sha256)
        raise Forbidden("no", code="blocked")

    uploads.checks.append(no)
    for source in ("api", "blossom", "mirror"):
        i = Intake(context=UploadContext(source=source), limits=Limits(100_000, noun="blob"))
        refused(uploads, i, Pieces(os.urandom(1000)), Forbidden)
    assert len(refuse_all) == 3


def test_a_source_that_opens_nothing_is_an_empty_upload(store: LocalContentStore) -> None:
    class Nothing:
        length = None

        async def pour(self, open_sink: OpenSink) -> Facts:
            return Facts()

    with pytest.raises(BadRequest):
        result_of(handler(store).receive(intake(), Nothing()))
