"""Query-string arguments, read once for every app (gateway API, users, admin, Blossom): text
that must be UTF-8 and whole numbers within bounds, or a :class:`~tgateway.http.errors.BadRequest`
(``invalid_field``) that names the argument."""

from __future__ import annotations

from typing import Any, overload

from tgateway.errors import BadRequest

__all__ = ["query_int", "query_text"]


def query_text(request: Any, name: str) -> str | None:
    """The first ``name`` argument as text, or None when absent."""
    raw = request.args.get(name.encode(), [None])[0]
    if raw is None:
        return None
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest(f"{name} must be UTF-8 text", code="invalid_field") from None


@overload
def query_int(request: Any, name: str, low: int, high: int, default: int) -> int: ...
@overload
def query_int(request: Any, name: str, low: int, high: int, default: None = None) -> int | None: ...
def query_int(request: Any, name: str, low: int, high: int, default: int | None = None) -> int | None:
    """The first ``name`` argument as a whole number from ``low`` to ``high``; ``default`` when
    absent or empty."""
    raw = request.args.get(name.encode(), [None])[0]
    if raw is None or raw == b"":
        return default
    try:
        value = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(f"{name} must be a whole number", code="invalid_field") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}", code="invalid_field")
    return value
