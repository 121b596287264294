"""MSE responder: garbage raises only MseError (the adapter then closes that connection)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from tgateway.peer.mse import MseError, MseResponder


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=5))
def test_garbage_raises_only_mse_error(chunks: list[bytes]) -> None:
    r = MseResponder(lambda req2: b"\x01" * 20, os.urandom)
    try:
        for c in chunks:
            r.feed(c)
    except MseError:
        pass


def test_bad_key_rejected() -> None:
    r = MseResponder(lambda req2: None, os.urandom)
    try:
        r.feed(b"\x00" * 96)
    except MseError:
        return
    raise AssertionError("a zero DH key was accepted")
