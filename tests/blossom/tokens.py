"""Kind 24242 tokens for tests: good ones and each kind of bad one, made with the project's signer."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from tgateway.nostr.event import EventTemplate, sign

SECRET = bytes.fromhex("11" * 32)
OTHER_SECRET = bytes.fromhex("22" * 32)


def make_event(
    verb: str,
    *,
    hashes: tuple[str, ...] = (),
    servers: tuple[str, ...] = (),
    expiration: int | None = None,
    created_at: int | None = None,
    kind: int = 24242,
    secret: bytes = SECRET,
    extra: tuple[tuple[str, ...], ...] = (),
) -> dict[str, Any]:
    now = int(time.time())
    tags: list[tuple[str, ...]] = [("t", verb)]
    tags.append(("expiration", str(expiration if expiration is not None else now + 600)))
    tags += [("x", h) for h in hashes]
    tags += [("server", s) for s in servers]
    tags += list(extra)
    ev = sign(EventTemplate(kind=kind, created_at=created_at if created_at is not None else now - 1,
                            tags=tuple(tags), content=f"{verb} blob"), secret)
    return ev.to_json()


def encode(event: dict[str, Any], *, urlsafe: bool = False, pad: bool = True) -> str:
    raw = json.dumps(event, separators=(",", ":")).encode()
    token = (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()
    if not pad:
        token = token.rstrip("=")
    return "Nostr " + token


def header(verb: str, **kw: Any) -> str:
    return encode(make_event(verb, **kw))


def bad_signature(event: dict[str, Any]) -> dict[str, Any]:
    sig = event["sig"]
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    return {**event, "sig": flipped}
