"""The DHT's announce schedule as a pure object: phases across the interval (wrapping), the
callable source re-read once a minute, the queue (once per info-hash, refused ones never, at most
``MAX_CONCURRENT_ANNOUNCES`` running)."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from tgateway.dht.announces import (
    KNOWN_REFRESH,
    MAX_CONCURRENT_ANNOUNCES,
    AnnounceSchedule,
    to_info_hash,
)


def _ih(phase_byte: int, tail: int = 0) -> bytes:
    """An info-hash whose phase is ``phase_byte / 256`` of the interval."""
    return bytes((phase_byte, 0, 0, 0)) + bytes((tail,)) * 16


class AnnounceScheduleTests(SynchronousTestCase):
    def test_each_known_info_hash_is_due_once_per_interval_at_its_phase(self) -> None:
        s = AnnounceSchedule(256.0, lambda ih: False)
        s.start(1000.0)
        early, late = _ih(10), _ih(200)
        s.set_known([early, late])
        self.assertEqual(s.due(1000.0 + 5), [])
        self.assertEqual(s.due(1000.0 + 11), [early])
        self.assertEqual(s.due(1000.0 + 150), [])
        self.assertEqual(s.due(1000.0 + 201), [late])
        # past the end of the interval: the window wraps round to the next one
        self.assertEqual(s.due(1000.0 + 256 + 20), [early])
        self.assertEqual(s.due(1000.0 + 256 + 150), [])
        self.assertEqual(s.due(1000.0 + 512 + 20), [late, early])

    def test_added_and_forgotten_info_hashes(self) -> None:
        s = AnnounceSchedule(256.0, lambda ih: False)
        s.start(0.0)
        a, b = _ih(10, 1), _ih(20, 2)
        s.add(a)
        s.add(b)
        self.assertTrue(s.queue(b))
        s.forget(b)
        self.assertEqual(s.queued, 0)
        self.assertEqual(s.due(30.0), [a])
        self.assertEqual(set(s.known_info_hashes()), {a})

    def test_a_callable_source_is_read_at_refresh_then_once_a_minute(self) -> None:
        s = AnnounceSchedule(60.0, lambda ih: False)
        listing = [["ab" * 20, "not hex", b"\x01" * 20]]
        s.set_known(lambda: listing[0])
        self.assertEqual(s.known, set())  # not read until refreshed
        s.refresh(100.0)
        self.assertEqual(s.known, {b"\xab" * 20, b"\x01" * 20})
        listing[0] = [b"\x02" * 20]
        s.refresh(100.0 + KNOWN_REFRESH - 1)
        self.assertEqual(s.known, {b"\xab" * 20, b"\x01" * 20})
        s.refresh(100.0 + KNOWN_REFRESH)
        self.assertEqual(s.known, {b"\x02" * 20})

    def test_the_queue_holds_each_info_hash_once_never_refused_ones_and_limits_running(
        self,
    ) -> None:
        refused = _ih(1, 9)
        s = AnnounceSchedule(60.0, lambda ih: ih == refused)
        hashes = [_ih(i, i) for i in range(2, 2 + MAX_CONCURRENT_ANNOUNCES + 2)]
        self.assertFalse(s.queue(refused))
        self.assertFalse(s.queue(b"short"))
        for ih in hashes:
            self.assertTrue(s.queue(ih))
        self.assertFalse(s.queue(hashes[0]))
        taken = []
        while (ih := s.take()) is not None:
            taken.append(ih)
            s.started()
        self.assertEqual(taken, hashes[:MAX_CONCURRENT_ANNOUNCES])
        self.assertTrue(s.queue(hashes[0]))  # out of the queue: may be queued again
        s.finished()
        self.assertEqual((s.running, s.done), (MAX_CONCURRENT_ANNOUNCES - 1, 1))
        self.assertEqual(s.take(), hashes[MAX_CONCURRENT_ANNOUNCES])

    def test_to_info_hash(self) -> None:
        self.assertEqual(to_info_hash("ab" * 20), b"\xab" * 20)
        self.assertEqual(to_info_hash(b"\x01" * 20), b"\x01" * 20)
        self.assertIsNone(to_info_hash("ab" * 19))
        self.assertIsNone(to_info_hash(b"\x01" * 19))
        self.assertIsNone(to_info_hash("zz" * 20))
