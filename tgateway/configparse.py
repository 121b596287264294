"""Typed configuration values from YAML: sizes, durations, and frozen dataclass sections.

:func:`parse_section` turns a mapping into a section (a frozen dataclass): it rejects unknown keys,
converts each value to its field's type (``bool``, ``int``, ``float``, ``str``, :class:`Size`,
:class:`Duration`, tuples of strings or of sections, nested sections) and runs the field's
``check`` (its ``metadata``), raising :class:`ConfigError` with one line naming the key, the value
and what was expected. The sections themselves, and the checks across them, are
:mod:`tgateway.config`'s.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "ConfigError",
    "Duration",
    "DURATION_EXPECTED",
    "Size",
    "SIZE_EXPECTED",
    "describe",
    "parse_duration",
    "parse_section",
    "parse_size",
    "short",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid. The message is one line."""


class Size(int):
    """A byte count parsed from ``10GB``/``2MiB``/``1048576``."""


class Duration(float):
    """Seconds parsed from ``900s``/``15m``/``90d``/``1800``."""


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")

SIZE_EXPECTED = "a size such as 10GB, 100MB, 2MiB or a number of bytes"
DURATION_EXPECTED = "a duration such as 900s, 15m, 90d or a number of seconds"


def parse_size(value: object) -> int:
    """Parse a size; raise ValueError on anything that is not one."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if not isinstance(value, str):
        raise ValueError(value)
    m = _SIZE_RE.match(value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(value)
    number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def parse_duration(value: object) -> float:
    """Parse a duration into seconds; raise ValueError on anything that is not one."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(value)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(value)
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(value)
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def describe(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if tp is Size:
        return SIZE_EXPECTED
    if tp is Duration:
        return DURATION_EXPECTED
    if typing.get_origin(tp) is tuple:
        return "a list of strings"
    if dataclasses.is_dataclass(tp):
        return "a mapping of keys"
    return str(tp)


def convert(tp: Any, value: Any) -> Any:
    """Convert a YAML value to the field type; raise ValueError if it is not one."""
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(value)
    if tp is Size:
        return Size(parse_size(value))
    if tp is Duration:
        return Duration(parse_duration(value))
    if typing.get_origin(tp) is tuple:
        if value is None:
            return ()
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(value)
    raise TypeError(f"unsupported config type {tp!r}")


def parse_section(cls: type, data: Any, path: str, moved: Mapping[str, str] | None = None) -> Any:
    """``data`` (a mapping) as a ``cls`` section at ``path`` (dotted, '' at the top). ``moved``:
    old key paths -> where they went (named in the error for a config still using one)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        where = path or "the top level"
        raise ConfigError(f"{where}: got {short(data)}, expected {describe(cls)}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            name = f"{path}.{key}" if path else str(key)
            if moved and name in moved:
                raise ConfigError(f"{name}: this key moved to {moved[name]}")
            raise ConfigError(
                f"{name}: unknown key (known keys here: {', '.join(sorted(known))})"
            )
    values: dict[str, Any] = {}
    for name, f in known.items():
        key_path = f"{path}.{name}" if path else name
        tp = hints[name]
        if name not in data:
            continue
        raw = data[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            values[name] = parse_section(tp, raw, key_path, moved)
            continue
        item_tp = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else None
        if isinstance(item_tp, type) and dataclasses.is_dataclass(item_tp):
            if not isinstance(raw, list) or not raw:
                raise ConfigError(f"{key_path}: got {short(raw)}, expected a non-empty list of mappings")
            values[name] = tuple(
                parse_section(item_tp, item, f"{key_path}[{i}]", moved)
                for i, item in enumerate(raw)
            )
            continue
        try:
            value = convert(tp, raw)
        except ValueError:
            raise ConfigError(
                f"{key_path}: got {short(raw)}, expected {describe(tp)}"
            ) from None
        check = f.metadata.get("check")
        if check is not None and not check(value):
            raise ConfigError(
                f"{key_path}: got {short(raw)}, expected {f.metadata['expected']}"
            )
        values[name] = value
    return cls(**values)


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- value checks
# (a field's ``metadata``: ``check`` a predicate, ``expected`` what the error message says)


def value_check(predicate: Callable[[Any], bool], expected: str) -> dict[str, Any]:
    return {"check": predicate, "expected": expected}


def port_check(allow_zero: bool = True) -> dict[str, Any]:
    low = 0 if allow_zero else 1
    return value_check(lambda v: low <= v <= 65535, f"a port number from {low} to 65535")


def positive_check() -> dict[str, Any]:
    return value_check(lambda v: v > 0, "a number greater than 0")


def non_negative_check() -> dict[str, Any]:
    return value_check(lambda v: v >= 0, "a number of 0 or more")


def is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def is_power_of_two_16k(v: int) -> bool:
    return v >= 16384 and (v & (v - 1)) == 0


def is_ip_or_empty(value: str, version: int) -> bool:
    if not value:
        return True
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False
