"""JSON in and out of a route: answers (plain, or uncached and readable cross-origin) and a
small request body read as a JSON object."""

from __future__ import annotations

import json
from typing import Any

from tgateway.errors import BadRequest

from .headers import CORS_HEADERS, set_headers


def json_response(request: Any, body: Any, status: int = 200) -> bytes:
    """``body`` as JSON with ``status``."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(body).encode("utf-8")


def json_body(request: Any, body: Any, status: int = 200) -> bytes:
    """A JSON answer that is not cached and is readable cross-origin."""
    request.setHeader(b"cache-control", b"no-store")
    set_headers(request, CORS_HEADERS)
    return json_response(request, body, status)


def read_json(request: Any) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 ``invalid_json``."""
    content = getattr(request, "content", None)
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read()
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


__all__ = ["json_body", "json_response", "read_json"]
