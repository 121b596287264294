from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgateway.errors import RangeNotSatisfiable
from tgateway.http.ranges import parse_range


@pytest.mark.parametrize(
    "header, size, expected",
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 1)),
        ("bytes=0-9", 10, (0, 10)),
        ("bytes=0-99", 10, (0, 10)),
        ("bytes=5-", 10, (5, 10)),
        ("bytes=-3", 10, (7, 10)),
        ("bytes=-30", 10, (0, 10)),
        ("bytes = 2 - 4", 10, (2, 5)),
        (b"bytes=1-2", 10, (1, 3)),
        ("bytes=5-2", 10, None),  # invalid: ignored
        ("bytes=0-1,4-5", 10, None),  # several ranges: whole file
        ("items=0-1", 10, None),
        ("bytes=", 10, None),
        ("bytes=-", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=99999999999999999999-", 10, None),
    ],
)
def test_parse_range(header: object, size: int, expected: object) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-20", "bytes=-0"])
def test_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable) as e:
        parse_range(header, 10)
    assert e.value.headers["Content-Range"] == "bytes */10"


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40)), st.integers(0, 10**12))
def test_parse_range_never_raises_anything_else(header: object, size: int) -> None:
    try:
        r = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if r is not None:
        start, end = r
        assert 0 <= start < end <= size
