"""BUD-09 blob reports: the checks of a report event, a pure function of the request body.

Anyone may report, so a report is bounded before anything is stored: the event is at most
:data:`MAX_REPORT_BYTES` of JSON (checked by the route before parsing) with
:data:`MAX_REPORT_CONTENT` bytes of content (413 ``report_too_large``), it is a valid, signed
kind 1984 event (400 ``invalid_event``) and names 1 to :data:`MAX_REPORT_BLOBS` blobs by ``x``
tags (400).
"""

from __future__ import annotations

import json

from tgateway.errors import BadRequest, PayloadTooLarge
from tgateway.http.converters import parse_hex
from tgateway.nostr.event import Event, EventError, parse_event

MAX_REPORT_BYTES = 16 * 1024
MAX_REPORT_CONTENT = 4096
MAX_REPORT_BLOBS = 16
KIND = 1984


def parse_report(raw: bytes) -> tuple[Event, dict[str, str]]:
    """The verified report event and the blobs it names (sha256 -> report type, at most 64
    characters). Raises BadRequest or PayloadTooLarge."""
    try:
        obj = json.loads(raw or b"null")
    except ValueError:
        raise BadRequest("report body must be a JSON event", code="invalid_json") from None
    try:
        event = parse_event(obj)
    except EventError as e:
        raise BadRequest(f"report event {e.message}", code="invalid_event") from None
    if event.kind != KIND:
        raise BadRequest("a report must be a kind 1984 event", code="invalid_event")
    if len(event.content.encode("utf-8")) > MAX_REPORT_CONTENT:
        raise PayloadTooLarge(f"a report's content is at most {MAX_REPORT_CONTENT} bytes",
                              code="report_too_large")
    blobs: dict[str, str] = {}
    for tag in event.tags:
        if len(tag) >= 2 and tag[0] == "x":
            sha = parse_hex(tag[1], 64, "x tag")
            blobs.setdefault(sha, tag[2][:64] if len(tag) > 2 else "")
    if not blobs:
        raise BadRequest("a report needs at least one x tag", code="invalid_event")
    if len(blobs) > MAX_REPORT_BLOBS:
        raise BadRequest(f"a report names at most {MAX_REPORT_BLOBS} blobs", code="invalid_event")
    return event, blobs


__all__ = ["MAX_REPORT_BLOBS", "MAX_REPORT_BYTES", "MAX_REPORT_CONTENT", "parse_report"]
