"""Configuration values (:mod:`tgateway.configparse`): sizes and durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgateway.configparse import parse_duration, parse_size


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10GB", 10 * 1000**3),
        ("100MB", 100 * 1000**2),
        ("2MiB", 2 * 1024**2),
        ("16KiB", 16384),
        ("1048576", 1048576),
        (1048576, 1048576),
        ("1.5GB", 1_500_000_000),
        (" 3 gb ", 3 * 1000**3),
    ],
)
def test_parse_size(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "GB", "10XB", "-1", -5, "1.5B", True, None, [1], "10 G B"])
def test_parse_size_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize(
    "text, expected",
    [("900s", 900), ("15m", 900), ("2h", 7200), ("90d", 90 * 86400), ("1800", 1800), (60, 60), ("1w", 604800)],
)
def test_parse_duration(text: object, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "5y", "m", "-3s", True, None, "1.2.3s"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@given(st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=True), st.none(), st.booleans()))
def test_size_and_duration_only_raise_value_error(value: object) -> None:
    for fn in (parse_size, parse_duration):
        try:
            fn(value)
        except ValueError:
            pass
