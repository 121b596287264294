"""Checks that a class implements a ``typing.Protocol`` seam: the same members, and methods with
the same parameters. mypy checks this where a component takes the seam; these tests catch a
member added to a seam (or renamed in an implementation) without a type checker."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["assert_implements", "members"]


def members(protocol: type) -> dict[str, Any]:
    out = {name: value for name, value in vars(protocol).items()
           if not name.startswith("_") and (callable(value) or isinstance(value, property))}
    out.update({name: None for name in getattr(protocol, "__annotations__", {})})
    return out


def parameters(fn: Any) -> list[tuple[str, Any, bool]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default is not inspect.Parameter.empty)
            for p in list(sig.parameters.values())[1:]]  # without self


def assert_implements(impl: Any, protocol: type) -> None:
    """``impl`` (an instance, or a class when the seam has only methods) has every member of
    ``protocol``; methods take the same parameters."""
    cls = impl if isinstance(impl, type) else type(impl)
    for name, member in members(protocol).items():
        assert hasattr(impl, name), f"{cls.__name__} has no {name} of {protocol.__name__}"
        if callable(member) and not isinstance(member, property):
            got = inspect.getattr_static(cls, name)
            assert parameters(got) == parameters(member), (
                f"{cls.__name__}.{name} differs from {protocol.__name__}.{name}")
