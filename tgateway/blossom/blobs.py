"""The Blossom routes that read and give up stored blobs: ``GET``/``HEAD /<sha256>[.ext]``
(BUD-01), ``GET /list/<pubkey>`` (BUD-12) and ``DELETE /<sha256>`` (the caller's ownership; the
bytes go with the last owner). Routes of :class:`~tgateway.blossom.server.BlossomServer`, on the
port's one Klein app (:data:`~tgateway.blossom.routing.APP`)."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from tgateway.config import Config
from tgateway.errors import BadRequest, Forbidden, NotFound
from tgateway.http.auth import Need, Principal, authorized
from tgateway.http.converters import parse_hex
from tgateway.http.jsonio import json_response
from tgateway.http.openapi import Op, Param, Reply
from tgateway.http.query import query_int
from tgateway.http.send import send_file
from tgateway.links import Links
from tgateway.storage.api import ContentStore
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.storage.model import StoredFile

from .auth import BlossomAuthenticator, require_hash_match
from .descriptor import descriptor
from .routing import APP, BLOB, BYTES, HEX64, gate, gate_read, policy

__all__ = ["LIST_MAX", "BlobRoutes", "sunset"]

LIST_MAX = 1000


def sunset(f: StoredFile, config: Config) -> float | None:
    """When retention will remove ``f`` (RFC 8594 ``Sunset``): ``admin.max_file_age`` after it
    was stored, when ``admin.auto_cleanup`` is on; None otherwise. The date comes from the
    configuration alone: every file is removed at that age at the latest, whatever else the
    cleanup does earlier."""
    admin = config.admin
    if not admin.auto_cleanup:
        return None
    return float(f.created_at) + float(admin.max_file_age)


class BlobRoutes:
    """The blob routes of :class:`~tgateway.blossom.server.BlossomServer`."""

    auth: BlossomAuthenticator
    config: Config
    store: ContentStore
    bstore: BlossomStore
    links: Links
    base_url: str

    @authorized(APP, "/<blob:sha>", methods=["GET", "HEAD"], need=policy("get"), scope="get",
                before=gate_read, op=Op(
                    "A blob (BUD-01)", tags=("blossom",), limited=True,
                    params=[Param("Range", "header", description="one byte range")],
                    replies={200: Reply("the bytes", content={"*/*": BYTES}),
                             206: Reply("the byte range asked for", content={"*/*": BYTES},
                                        headers={"Content-Range": {"type": "string",
                                                                   "required": True}}),
                             304: Reply("If-None-Match names the blob's ETag")},
                    errors={404: "no such blob", 416: "the Range is outside the blob"}))
    async def get_blob(self, request: Any, principal: Principal | None, sha: str) -> None:
        if principal is not None:
            require_hash_match(principal, sha)
        f = await self.store.get(sha)
        if f is None:
            raise NotFound(f"blob {sha} not found", code="blob_not_found")
        end = sunset(f, self.config)
        extra = {b"sunset": formatdate(end, usegmt=True).encode()} if end is not None else None
        await send_file(request, self.store.reader, f, extra_headers=extra)

    @authorized(APP, "/list/<pubkey:owner>", methods=["GET", "HEAD"], need=policy("list"),
                scope="list", before=gate, op=Op(
                    "A key's blobs, newest first (BUD-12)", tags=("blossom",), limited=True,
                    params=[Param("since", schema={"type": "integer", "minimum": 0,
                                                   "maximum": 2**53}),
                            Param("until", schema={"type": "integer", "minimum": 0,
                                                   "maximum": 2**53}),
                            Param("limit", schema={"type": "integer", "minimum": 1,
                                                   "maximum": LIST_MAX}),
                            Param("cursor", schema=HEX64,
                                  description="the last blob of the previous page")],
                    replies={200: Reply("the blobs", json={"type": "array", "items": BLOB})},
                    errors={400: "a bad argument, or a cursor that is not the key's blob",
                            403: "a token of another key"}))
    async def list_blobs(self, request: Any, principal: Principal | None, owner: str) -> bytes:
        if principal is not None and principal.pubkey != owner:
            raise Forbidden("you can only list your own blobs", code="forbidden")
        since = query_int(request, "since", 0, 2**53)
        until = query_int(request, "until", 0, 2**53)
        limit = query_int(request, "limit", 1, LIST_MAX, LIST_MAX)
        raw_cursor = request.args.get(b"cursor", [None])[0]
        cursor = parse_hex(raw_cursor.decode("latin-1"), 64, "cursor") if raw_cursor else None
        if cursor is not None and await self.bstore.uploaded_at(cursor, owner) is None:
            # BUD-12: the cursor is the last blob of the previous page; a page after a blob
            # this key does not have would silently start over
            raise BadRequest(f"cursor {cursor} is not a blob of {owner}", code="invalid_cursor")
        rows = await self.bstore.list_blobs(
            owner, since=since, until=until, cursor=cursor, limit=limit
        )
        out = [
            descriptor(r.file, base_url=self.base_url, links=self.links, uploaded=r.uploaded,
                       authors=[owner])
            for r in rows
        ]
        return json_response(request, out)

    @authorized(APP, "/<blob:sha>", methods=["DELETE"], need=Need.USER, scope="delete",
                before=gate, op=Op(
                    "Give up the caller's ownership of a blob", tags=("blossom",), limited=True,
                    description="The bytes are deleted with the last owner.",
                    replies={200: Reply("ownership removed", json={
                        "type": "object", "required": ["sha256", "deleted", "bytes_removed"],
                        "properties": {"sha256": HEX64, "deleted": {"const": True},
                                       "bytes_removed": {"type": "boolean"}}})},
                    errors={404: "the caller has no such blob"}))
    async def delete_blob(self, request: Any, principal: Principal, sha: str) -> bytes:
        require_hash_match(principal, sha)
        try:
            gone = await self.store.remove_owner(sha, principal.pubkey)
        except KeyError:
            raise NotFound(f"you have no blob {sha}", code="blob_not_found") from None
        return json_response(request, {"sha256": sha, "deleted": True,
                                       "bytes_removed": gone is not None})
