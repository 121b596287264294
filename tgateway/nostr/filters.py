"""NIP-01 subscription filters: validation of the filters we send, matching of events we get.

A filter is a JSON object: ``ids``, ``authors`` (64-hex lists), ``kinds`` (integers), ``#<letter>``
(tag values), ``since``/``until`` (timestamps, inclusive) and ``limit``. An event matches a filter
when it satisfies every condition present; it matches a list of filters when it matches any.
Relays are not trusted to honour our filters: the pool drops events that do not match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tgateway.nostr.event import Event

__all__ = ["FilterError", "check_filter", "matches", "matches_any"]

Filter = Mapping[str, Any]

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_TAG_KEY = re.compile(r"#[a-zA-Z]\Z")


class FilterError(ValueError):
    """A filter we were asked to send is malformed."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_filter(flt: Filter) -> dict[str, Any]:
    """Validate a filter and return a plain JSON-ready copy. Raises :class:`FilterError`."""
    if not isinstance(flt, Mapping):
        raise FilterError("a filter must be an object")
    out: dict[str, Any] = {}
    for key, value in flt.items():
        if key in ("ids", "authors"):
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, str) and _HEX64.match(v) for v in value
            ):
                raise FilterError(f"{key} must be a list of 64 lowercase hex strings")
            out[key] = list(value)
        elif key == "kinds":
            if not isinstance(value, (list, tuple)) or not all(
                _is_int(v) and 0 <= v <= 65535 for v in value
            ):
                raise FilterError("kinds must be a list of integers from 0 to 65535")
            out[key] = list(value)
        elif _TAG_KEY.match(key):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise FilterError(f"{key} must be a list of strings")
            out[key] = list(value)
        elif key in ("since", "until", "limit"):
            if not _is_int(value) or value < 0:
                raise FilterError(f"{key} must be a non-negative integer")
            out[key] = value
        else:
            raise FilterError(f"unknown filter key {key!r}")
    return out


def matches(flt: Filter, event: Event) -> bool:
    """True when ``event`` satisfies every condition of ``flt`` (``limit`` is not a condition)."""
    if "ids" in flt and event.id not in flt["ids"]:
        return False
    if "authors" in flt and event.pubkey not in flt["authors"]:
        return False
    if "kinds" in flt and event.kind not in flt["kinds"]:
        return False
    if "since" in flt and event.created_at < flt["since"]:
        return False
    if "until" in flt and event.created_at > flt["until"]:
        return False
    for key, wanted in flt.items():
        if _TAG_KEY.match(key):
            name = key[1:]
            values = {tag[1] for tag in event.tags if len(tag) >= 2 and tag[0] == name}
            if not values.intersection(wanted):
                return False
    return True


def matches_any(filters: Iterable[Filter], event: Event) -> bool:
    """True when ``event`` matches at least one of ``filters``."""
    return any(matches(flt, event) for flt in filters)
