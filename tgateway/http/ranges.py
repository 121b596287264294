"""HTTP Range requests (RFC 9110 section 14): one byte range, or the whole representation."""

from __future__ import annotations

import re

from tgateway.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str | bytes | None, size: int) -> tuple[int, int] | None:
    """Return (start, end_exclusive) for a single satisfiable range, None for the whole file.

    A malformed header, or one with several ranges, is ignored (the whole file is sent), as
    RFC 9110 allows. A well-formed range that starts past the end raises RangeNotSatisfiable.
    """
    if header is None:
        return None
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            return None
    m = _RANGE.match(header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if len(first) > 19 or len(last) > 19:
        return None
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(f"range {header!r} is empty", headers=_cr(size))
        if size == 0:
            raise RangeNotSatisfiable("the file is empty", headers=_cr(size))
        return max(0, size - suffix), size
    start = int(first)
    end = size - 1 if last == "" else int(last)
    if last != "" and end < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(
            f"range starts at {start}, the file has {size} bytes", headers=_cr(size)
        )
    return start, min(end, size - 1) + 1


def _cr(size: int) -> dict[str, str]:
    return {"Content-Range": f"bytes */{size}"}
