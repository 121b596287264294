"""NIP-01 events: canonical serialization, id, BIP-340 Schnorr signing and verification.

This is the one Nostr event verifier of the project: Blossom auth, NIP-98, login and relay
messages all go through :func:`parse_event` (untrusted JSON objects) or :func:`verify`.

Canonical serialization (NIP-01): the UTF-8 JSON array
``[0, <pubkey>, <created_at>, <kind>, <tags>, <content>]`` with no whitespace. Strings are
escaped as JavaScript's ``JSON.stringify`` does (which is what nostr-tools hashes): ``\\"``,
``\\\\``, the short forms ``\\b \\f \\n \\r \\t``, every other U+0000..U+001F as lowercase
``\\u00xx``, everything else verbatim. Python's ``json.dumps(ensure_ascii=False)`` produces
exactly that. Strings with lone surrogates have no UTF-8 form and are refused.

The id is the lowercase hex SHA-256 of that serialization; ``sig`` is a BIP-340 signature of
the 32-byte id by the x-only ``pubkey``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

__all__ = [
    "Event",
    "EventError",
    "EventTemplate",
    "MAX_CREATED_AT",
    "compute_id",
    "parse_event",
    "parse_event_json",
    "public_key_hex",
    "schnorr_sign",
    "schnorr_verify",
    "serialize",
    "sign",
    "verify",
]

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_HEX128 = re.compile(r"[0-9a-f]{128}\Z")

#: The largest ``created_at`` accepted: JavaScript's ``Number.MAX_SAFE_INTEGER``. Beyond it
#: JavaScript clients cannot represent the value exactly, so no honest event has it.
MAX_CREATED_AT = 2**53 - 1
MAX_KIND = 65535

_EXTRAPARAMS_MAGIC = b"\xda\x6f\xb3\x8c"


class EventError(ValueError):
    """An event is malformed or its id or signature is wrong. ``message`` says which field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Tags = tuple[tuple[str, ...], ...]


def _freeze_tags(tags: Iterable[Iterable[str]]) -> Tags:
    if isinstance(tags, (str, bytes)):
        raise EventError("invalid: tags must be a list")
    frozen = []
    for tag in tags:
        # a bare string would silently become a tag of its characters
        if isinstance(tag, (str, bytes)) or not isinstance(tag, Iterable):
            raise EventError("invalid: every tag must be a list")
        frozen.append(tuple(tag))
    return tuple(frozen)


@dataclass(frozen=True)
class EventTemplate:
    """What a signer needs besides the key: kind, created_at, tags, content."""

    kind: int
    created_at: int
    tags: Tags = ()
    content: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _freeze_tags(self.tags))


@dataclass(frozen=True)
class Event:
    """A signed NIP-01 event. Build one with :func:`sign` or :func:`parse_event`."""

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: Tags
    content: str
    sig: str = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", _freeze_tags(self.tags))

    def to_json(self) -> dict[str, Any]:
        """The wire form (a JSON object with lists for tags)."""
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": [list(tag) for tag in self.tags],
            "content": self.content,
            "sig": self.sig,
        }

    def dumps(self) -> str:
        """The wire form as compact JSON text."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

    def tag_values(self, name: str) -> list[str]:
        """The first value of every tag called ``name``, in order."""
        return [tag[1] for tag in self.tags if len(tag) >= 2 and tag[0] == name]

    def first_tag(self, name: str) -> str | None:
        """The first value of the first tag called ``name``, or ``None``."""
        values = self.tag_values(name)
        return values[0] if values else None


def serialize(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> bytes:
    """The canonical NIP-01 serialization (UTF-8 bytes) that the id hashes.

    Raises :class:`EventError` if a string has no UTF-8 form (lone surrogates).
    """
    text = json.dumps(
        [0, pubkey, created_at, kind, [list(tag) for tag in tags], content],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventError("invalid: content or tags contain a lone surrogate") from None


def compute_id(
    pubkey: str, created_at: int, kind: int, tags: Sequence[Sequence[str]], content: str
) -> str:
    """The event id: hex SHA-256 of :func:`serialize`."""
    return hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).hexdigest()


def _as_private_key(private_key: PrivateKey | bytes) -> PrivateKey:
    if isinstance(private_key, PrivateKey):
        return private_key
    return PrivateKey(private_key)


def public_key_hex(private_key: PrivateKey | bytes) -> str:
    """The x-only public key (64 lowercase hex) of a secret key."""
    return str(_as_private_key(private_key).public_key_xonly.format().hex())


def schnorr_sign(message: bytes, secret: bytes, aux_rand: bytes | None = None) -> bytes:
    """BIP-340 sign a message of any length; ``aux_rand`` is 32 bytes (fresh random when None).

    Raises ``ValueError`` for an invalid secret key or a wrong-sized ``aux_rand``.
    """
    if aux_rand is None:
        aux_rand = os.urandom(32)
    if len(aux_rand) != 32:
        raise ValueError("aux_rand must be 32 bytes")
    if len(secret) != 32:
        raise ValueError("secret key must be 32 bytes")
    ctx = GLOBAL_CONTEXT.ctx
    keypair = ffi.new("secp256k1_keypair *")
    if not lib.secp256k1_keypair_create(ctx, keypair, secret):
        raise ValueError("invalid secret key")
    aux = ffi.new("unsigned char[32]", aux_rand)
    params = ffi.new("secp256k1_schnorrsig_extraparams *")
    params.magic = list(_EXTRAPARAMS_MAGIC)
    params.noncefp = ffi.NULL
    params.ndata = aux
    sig = ffi.new("unsigned char[64]")
    msg = ffi.new("unsigned char[]", message) if message else ffi.NULL
    if not lib.secp256k1_schnorrsig_sign_custom(ctx, sig, msg, len(message), keypair, params):
        raise ValueError("signing failed")
    signature = bytes(ffi.buffer(sig))
    xonly = ffi.new("secp256k1_xonly_pubkey *")
    lib.secp256k1_keypair_xonly_pub(ctx, xonly, ffi.NULL, keypair)
    if not lib.secp256k1_schnorrsig_verify(ctx, signature, msg, len(message), xonly):
        raise ValueError("signature does not verify")
    return signature


def schnorr_verify(message: bytes, pubkey: bytes, signature: bytes) -> bool:
    """BIP-340 verify; any malformed input (bad key, wrong lengths) is simply ``False``."""
    if len(pubkey) != 32 or len(signature) != 64:
        return False
    try:
        key = PublicKeyXOnly(pubkey)
    except ValueError:
        return False
    return bool(key.verify(signature, message))


def sign(
    template: EventTemplate, private_key: PrivateKey | bytes, aux_rand: bytes | None = None
) -> Event:
    """Sign ``template`` with ``private_key`` (a coincurve key or 32 raw bytes).

    Raises :class:`EventError` if the template itself is not a valid event.
    """
    key = _as_private_key(private_key)
    pubkey = public_key_hex(key)
    _check_fields(pubkey, template.created_at, template.kind, template.tags, template.content)
    event_id = compute_id(
        pubkey, template.created_at, template.kind, template.tags, template.content
    )
    sig = schnorr_sign(bytes.fromhex(event_id), key.secret, aux_rand)
    return Event(
        id=event_id,
        pubkey=pubkey,
        created_at=template.created_at,
        kind=template.kind,
        tags=template.tags,
        content=template.content,
        sig=sig.hex(),
    )


def verify(event: Event) -> bool:
    """True when the id matches the fields and the signature is valid; never raises."""
    try:
        expected = compute_id(event.pubkey, event.created_at, event.kind, event.tags, event.content)
    except (EventError, TypeError, ValueError):
        return False
    if expected != event.id:
        return False
    try:
        return schnorr_verify(
            bytes.fromhex(event.id), bytes.fromhex(event.pubkey), bytes.fromhex(event.sig)
        )
    except ValueError:
        return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_fields(
    pubkey: object, created_at: object, kind: object, tags: object, content: object
) -> None:
    if not isinstance(pubkey, str) or not _HEX64.match(pubkey):
        raise EventError("invalid: pubkey must be 64 lowercase hex characters")
    if not _is_int(created_at) or not 0 <= created_at <= MAX_CREATED_AT:  # type: ignore[operator]
        raise EventError("invalid: created_at must be a non-negative integer")
    if not _is_int(kind) or not 0 <= kind <= MAX_KIND:  # type: ignore[operator]
        raise EventError("invalid: kind must be an integer from 0 to 65535")
    if not isinstance(tags, (list, tuple)):
        raise EventError("invalid: tags must be a list")
    for tag in tags:
        if not isinstance(tag, (list, tuple)):
            raise EventError("invalid: every tag must be a list")
        for item in tag:
            if not isinstance(item, str):
                raise EventError("invalid: every tag item must be a string")
    if not isinstance(content, str):
        raise EventError("invalid: content must be a string")


_FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


def parse_event(obj: object) -> Event:
    """Validate an untrusted, JSON-decoded event object and return it as an :class:`Event`.

    Checks every field (lowercase hex of the right length for id, pubkey and sig; integer kind
    in 0..65535 and created_at in 0..2**53-1; tags a list of lists of strings; content a
    string), recomputes the id and verifies the BIP-340 signature. Unknown extra keys are
    ignored (NIP-01 events have none, but relays are liberal). Raises :class:`EventError` with
    a one-line message naming the first problem found.
    """
    if not isinstance(obj, Mapping):
        raise EventError("invalid: event must be a JSON object")
    for name in _FIELDS:
        if name not in obj:
            raise EventError(f"invalid: event has no {name}")
    event_id, sig = obj["id"], obj["sig"]
    if not isinstance(event_id, str) or not _HEX64.match(event_id):
        raise EventError("invalid: id must be 64 lowercase hex characters")
    if not isinstance(sig, str) or not _HEX128.match(sig):
        raise EventError("invalid: sig must be 128 lowercase hex characters")
    pubkey, created_at, kind, tags, content = (
        obj[n] for n in ("pubkey", "created_at", "kind", "tags", "content")
    )
    _check_fields(pubkey, created_at, kind, tags, content)
    expected = compute_id(pubkey, created_at, kind, tags, content)
    if expected != event_id:
        raise EventError("invalid: id does not match the event's content")
    if not schnorr_verify(bytes.fromhex(event_id), bytes.fromhex(pubkey), bytes.fromhex(sig)):
        raise EventError("invalid: bad signature")
    return Event(
        id=event_id,
        pubkey=pubkey,
        created_at=created_at,
        kind=kind,
        tags=tags,
        content=content,
        sig=sig,
    )


def parse_event_json(text: str | bytes) -> Event:
    """:func:`parse_event` on JSON text. Raises :class:`EventError` for bad JSON too."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise EventError("invalid: event is not valid JSON") from None
    return parse_event(obj)
