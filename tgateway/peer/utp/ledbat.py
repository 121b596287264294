"""uTP congestion control, sans I/O: LEDBAT (RFC 6817, as BEP 29 and libutp/libtorrent apply it),
and the round-trip estimator behind the retransmission timeout.

LEDBAT aims at a fixed queuing delay (``TARGET``, 100 ms) on the path instead of filling every
buffer: every ack carries the receiver's measure of our packets' one-way delay
(``timestamp_difference_microseconds``: its clock minus our timestamp, so with an unknown clock
offset). :class:`DelayHistory` keeps the lowest of those per minute over the last minutes (the
*base delay*: propagation plus clock offset); a sample minus the base is the queuing delay. The
congestion window then grows by up to ``GAIN`` bytes per round trip while the delay is under the
target, shrinks in proportion when it is over, is halved on loss (at most once per window) and
falls to one packet on a timeout. Like libtorrent, it starts in slow start (the window grows by the
bytes acked) until the delay nears the target, a loss, or ``ssthresh``; and it grows only while the
sender is actually limited by it (a connection that has little to send does not inflate its
window).

All sizes in bytes, delays in microseconds (the wire unit), times in seconds.
"""

from __future__ import annotations

from collections import deque

__all__ = ["DelayHistory", "Ledbat", "RttEstimator", "TARGET", "GAIN"]

MASK32 = 0xFFFFFFFF
TARGET = 100_000  # queuing delay LEDBAT aims at (µs)
GAIN = 3000  # at most this many bytes of window growth per round trip (libutp's value)
BASE_HISTORY = 13  # minutes of per-minute minima kept for the base delay (libutp: 13)
RECENT = 3  # the current delay is the lowest of the last few samples (noise)


def _less32(a: int, b: int) -> bool:
    """a < b for 32-bit wrapping values (the nearer way round decides)."""
    return ((b - a) & MASK32) < ((a - b) & MASK32)


class DelayHistory:
    """Base delay and current queuing delay from raw one-way delay samples (32-bit, wrapping)."""

    def __init__(self) -> None:
        self.base: int | None = None
        self._minima: deque[int] = deque(maxlen=BASE_HISTORY)
        self._step_at = 0.0
        self._recent: deque[int] = deque(maxlen=RECENT)

    def add(self, sample: int, now: float) -> int:
        """Record ``sample`` (µs, modulo 2**32) seen at ``now``; returns its queuing delay."""
        sample &= MASK32
        minima = self._minima
        if self.base is None:
            self.base = sample
            minima.append(sample)
            self._step_at = now + 60.0
        elif now >= self._step_at:  # a new minute: a new slot; the oldest slot falls out
            self._step_at = now + 60.0
            minima.append(sample)
            base = minima[0]
            for m in minima:
                if _less32(m, base):
                    base = m
            self.base = base
        elif _less32(sample, minima[-1]):
            minima[-1] = sample
        if _less32(sample, self.base):
            self.base = sample
        delay = (sample - self.base) & MASK32
        if delay >= 0x80000000:  # below the base (cannot happen after the update above)
            delay = 0
        self._recent.append(delay)
        return delay

    @property
    def current(self) -> int:
        """The lowest of the recent queuing delays (0 before any sample)."""
        return min(self._recent) if self._recent else 0

    def shift(self, amount: int) -> None:
        """Raise the base by ``amount`` µs (the delay cannot exceed the round trip time)."""
        if self.base is not None:
            self.base = (self.base + amount) & MASK32
            self._minima = deque(((m + amount) & MASK32 for m in self._minima),
                                 maxlen=BASE_HISTORY)
            self._recent = deque((max(0, d - amount) for d in self._recent), maxlen=RECENT)


class Ledbat:
    """The congestion window of one connection (see the module docstring)."""

    def __init__(self, mss: int, *, initial: int, maximum: int, target: int = TARGET,
                 gain: int = GAIN) -> None:
        self.mss = mss
        self.minimum = mss
        self.maximum = maximum
        self.target = target
        self.gain = gain
        self.cwnd = float(max(mss, min(initial, maximum)))
        self.slow_start = True
        self.ssthresh = 0.0  # 0: none yet
        self.losses = 0
        self.timeouts = 0

    def on_ack(self, acked: int, delay: int, in_flight: int, saturated: bool) -> None:
        """``acked`` bytes were acknowledged while ``in_flight`` bytes were outstanding; ``delay``:
        the current queuing delay (µs); ``saturated``: the sender was held back by the window
        since the last ack (else the window is not what limits it, and stays as it is)."""
        if acked <= 0:
            return
        target = self.target
        if delay >= target * 9 // 10 and self.slow_start:
            self.slow_start = False
            self.ssthresh = self.cwnd / 2
        if not saturated:
            return
        window_factor = min(acked, max(in_flight, 1)) / max(in_flight, acked, 1)
        delay_factor = (target - min(delay, 4 * target)) / target
        linear = self.gain * window_factor * delay_factor
        if self.slow_start:
            if self.ssthresh and self.cwnd + acked > self.ssthresh:
                self.slow_start = False
                gain = linear
            else:
                gain = max(float(acked), linear)
        else:
            gain = linear
        self.cwnd = min(float(self.maximum), max(float(self.minimum), self.cwnd + gain))

    def on_loss(self) -> None:
        """A packet was lost (fast retransmit): halve the window, leave slow start."""
        self.losses += 1
        self.cwnd = max(float(self.minimum), self.cwnd / 2)
        self.ssthresh = self.cwnd
        self.slow_start = False

    def on_timeout(self, in_flight: int) -> None:
        """The retransmission timer fired. With bytes in flight: back to one packet and slow
        start (towards ``ssthresh``); idle: only decay the window by a third."""
        self.timeouts += 1
        if in_flight == 0 and self.cwnd > self.mss:
            self.cwnd = max(float(self.mss), self.cwnd * 2 / 3)
            return
        if self.cwnd > self.mss:
            self.ssthresh = max(self.cwnd / 2, float(2 * self.mss))
        self.cwnd = float(self.mss)
        self.slow_start = True


class RttEstimator:
    """Smoothed round trip time and the retransmission timeout (RFC 6298's rules, libutp's
    floor), in seconds."""

    def __init__(self, *, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt = 0.0
        self.rttvar = 0.0
        self.min_rtt = float("inf")
        self.min_rto = min_rto
        self.max_rto = max_rto
        self.rto = initial_rto
        self.samples = 0

    def sample(self, rtt: float) -> None:
        """A packet sent once was acked ``rtt`` seconds later."""
        rtt = max(0.0, rtt)
        if self.samples == 0:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) / 4
            self.srtt += (rtt - self.srtt) / 8
        self.samples += 1
        self.min_rtt = min(self.min_rtt, rtt)
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + 4 * self.rttvar))
