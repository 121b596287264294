"""Path converters for the routes' URL maps (werkzeug, under Klein): a route names what a path
segment is (``/api/download/<sha256:sha256>``) and its handler gets the checked value.

Each converter matches any one path segment and checks it in ``to_python``, while the route is
matched: a segment of the wrong shape is answered with the error the handlers gave when they
parsed it themselves (400 ``invalid_hash`` naming the field; for a Blossom blob address, 404
``not_found``), never with "no such route". Hex values come out lowercased.

- ``sha256``: 64 hex digits (a file's SHA-256);
- ``info_hash``: 40 hex digits (a BitTorrent v1 info-hash);
- ``pubkey``: 64 hex digits (a Nostr public key);
- ``blob``: a Blossom blob address, ``<sha256>[.ext]`` (BUD-01); the value is the SHA-256.

Register them with :func:`tgateway.http.app.new_app` (before any route is declared).
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.routing import BaseConverter

from tgateway.errors import BadRequest, NotFound

_HEX = frozenset("0123456789abcdef")
_BLOB = re.compile(r"([0-9a-fA-F]{64})(\.[A-Za-z0-9._-]{1,32})?\Z")


def parse_hex(value: str, length: int, what: str) -> str:
    """Lowercase hex of the given length, or a 400 ``invalid_hash``."""
    v = value.lower()
    if len(v) != length or not set(v) <= _HEX:
        raise BadRequest(f"{what} must be {length} hexadecimal characters", code="invalid_hash")
    return v


def parse_blob_address(value: str) -> str:
    """The SHA-256 (lowercase) of a Blossom blob address ``<sha256>[.ext]``, or a 404."""
    m = _BLOB.match(value)
    if not m:
        raise NotFound("not a blob address (/<sha256>[.ext])", code="not_found")
    return m.group(1).lower()


class _HexConverter(BaseConverter):
    length = 64
    what = "sha256"

    def to_python(self, value: str) -> str:
        return parse_hex(value, self.length, self.what)

    def to_url(self, value: Any) -> str:
        return str(value)


class Sha256Converter(_HexConverter):
    length, what = 64, "sha256"


class InfoHashConverter(_HexConverter):
    length, what = 40, "info_hash"


class PubkeyConverter(_HexConverter):
    length, what = 64, "pubkey"


class BlobConverter(BaseConverter):
    def to_python(self, value: str) -> str:
        return parse_blob_address(value)

    def to_url(self, value: Any) -> str:
        return str(value)


CONVERTERS: dict[str, type[BaseConverter]] = {
    "sha256": Sha256Converter,
    "info_hash": InfoHashConverter,
    "pubkey": PubkeyConverter,
    "blob": BlobConverter,
}

__all__ = ["CONVERTERS", "parse_blob_address", "parse_hex"]
