"""What the admin routes share besides their handlers: the one Klein app of ``/api/admin/``
(each resource's module declares its routes on it; :class:`~tgateway.admin.routes.AdminApi`
serves them all), reading a request's query arguments and JSON body (bad input is a 400 naming
the field, and changes nothing), and the pages lists answer in: ``limit`` (1-500, default 50)
and ``offset`` in, ``total`` and ``next_offset`` (null on the last page) out."""

from __future__ import annotations

import json
from typing import Any

from tgateway.errors import BadRequest
from tgateway.http.app import new_app
from tgateway.http.openapi import Param, Schema
from tgateway.http.query import query_int, query_text

__all__ = ["APP", "BAD_PAGE", "COUNTS", "DEFAULT_PAGE", "FLAG", "INT", "MAX_PAGE", "NUM_OR_NULL",
           "PAGE_PARAMS", "STR_OR_NULL", "TAGS", "bool_field", "choice", "flag",
           "json_object", "only", "page", "paged", "paged_schema"]

#: the Klein app of ``/api/admin/``: every admin route is declared on it
APP = new_app()
TAGS = ("admin",)

MAX_PAGE = 500
DEFAULT_PAGE = 50

# the OpenAPI descriptions the routes share (tgateway.http.openapi) ----------------------------

INT: Schema = {"type": "integer", "minimum": 0}
NUM_OR_NULL: Schema = {"type": ["number", "null"]}
STR_OR_NULL: Schema = {"type": ["string", "null"]}
FLAG: Schema = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
PAGE_PARAMS = (
    Param("limit", schema={"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                           "default": DEFAULT_PAGE}, description="items per page"),
    Param("offset", schema={"type": "integer", "minimum": 0, "maximum": 2**31, "default": 0},
          description="items to skip"),
)
BAD_PAGE = "a parameter out of range or not what it should be (the message names it)"
COUNTS: Schema = {"type": "object", "additionalProperties": {"type": "integer"}}


def paged_schema(key: str, item: Schema, **extra: Schema) -> Schema:
    """A page of a list: ``key`` holds the items, then the paging fields."""
    return {"type": "object", "required": [key, "total", "limit", "offset", "next_offset",
                                           *extra],
            "properties": {key: {"type": "array", "items": item}, "total": INT,
                           "limit": {"type": "integer", "minimum": 1},
                           "offset": INT,
                           "next_offset": {"type": ["integer", "null"],
                                           "description": "null on the last page"},
                           **extra}}


# reading a request ----------------------------------------------------------------------------


def flag(request: Any, name: str) -> bool:
    raw = (query_text(request, name) or "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise BadRequest(f"{name} must be true or false", code="invalid_field")


def choice(request: Any, name: str, choices: tuple[str, ...], default: str | None) -> str | None:
    raw = query_text(request, name)
    if raw is None or raw == "":
        return default
    if raw not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", code="invalid_field")
    return raw


def page(request: Any) -> tuple[int, int]:
    return (query_int(request, "limit", 1, MAX_PAGE, DEFAULT_PAGE),
            query_int(request, "offset", 0, 2**31, 0))


def paged(items: list[Any], total: int, limit: int, offset: int, key: str) -> dict[str, Any]:
    end = offset + len(items)
    return {key: items, "total": total, "limit": limit, "offset": offset,
            "next_offset": end if items and end < total else None}


def json_object(request: Any, *, required: bool) -> dict[str, Any]:
    """The request body as a JSON object ({} when empty and not ``required``)."""
    content = getattr(request, "content", None)
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read()
    if not raw.strip():
        if required:
            raise BadRequest("the request body must be a JSON object", code="invalid_json")
        return {}
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


def only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}; expected {', '.join(allowed)}",
                         code="invalid_field")


def bool_field(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise BadRequest(f"{name} must be true or false", code="invalid_field")
    return value
