"""Upload slots (:mod:`tgateway.peer.choker`) over real peer sessions."""

from __future__ import annotations

import random

from tests.peer.test_core import Recorder, connect, msg
from tgateway.peer import wire
from tgateway.peer.choker import Choker
from tgateway.peer.core import PeerSession


def sessions(n: int) -> list[tuple[PeerSession, Recorder]]:
    out = []
    for _ in range(n):
        s, rec, _t = connect()
        rec.messages()
        out.append((s, rec))
    return out


def test_choker_fills_slots_immediately_then_ranks_by_upload() -> None:
    choker = Choker(2, random.Random(1))
    peers = sessions(4)
    for s, _ in peers:
        choker.add(s)
    for s, _ in peers:
        s.message_received(msg(wire.INTERESTED), 0.0)
        choker.interest_changed(s, 0.0)
    assert [s.am_choking for s, _ in peers] == [False, False, True, True]
    # round 1: peer 3 got the most bytes as an allowed-fast peer... give rates by hand
    for (s, _), up in zip(peers, [10, 500, 0, 900], strict=True):
        s.round_uploaded = up
    choker.rechoke(10.0)
    unchoked = {i for i, (s, _) in enumerate(peers) if not s.am_choking}
    assert {1, 3} <= unchoked  # the two fastest are regular
    opt = choker.optimistic
    assert opt is not None and opt in (peers[0][0], peers[2][0])
    assert len(unchoked) == 3
    # the optimistic slot holds until 30 s have passed, then rotates
    for (s, _), up in zip(peers, [0, 500, 0, 900], strict=True):
        s.round_uploaded = up
    choker.rechoke(20.0)
    assert choker.optimistic is opt
    seen = {id(opt)}
    for k in range(1, 8):
        for (s, _), up in zip(peers, [0, 500, 0, 900], strict=True):
            s.round_uploaded = up
        choker.rechoke(20.0 + 30.0 * k)
        assert choker.optimistic is not None
        seen.add(id(choker.optimistic))
    assert seen == {id(peers[0][0]), id(peers[2][0])}


def test_choker_frees_slot_on_not_interested_and_on_close() -> None:
    choker = Choker(1, random.Random(2))
    (a, ra), (b, rb) = sessions(2)
    for s in (a, b):
        choker.add(s)
        s.message_received(msg(wire.INTERESTED), 0.0)
        choker.interest_changed(s, 0.0)
    assert not a.am_choking and b.am_choking
    a.message_received(msg(wire.NOT_INTERESTED), 1.0)
    choker.interest_changed(a, 1.0)
    assert a.am_choking and not b.am_choking
    assert ra.messages()[-1] == wire.Simple(wire.CHOKE)
    assert rb.messages()[-1] == wire.Simple(wire.UNCHOKE)
    a.message_received(msg(wire.INTERESTED), 2.0)
    choker.interest_changed(a, 2.0)
    assert a.am_choking
    b.close("gone")
    choker.remove(b, 3.0)
    assert not a.am_choking
