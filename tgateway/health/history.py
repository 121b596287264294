"""A bounded history of a few counters, for the admin dashboard's charts: pure.

The components already count what the charts show, in plain numbers their ``metrics`` collectors
read (:mod:`tgateway.metrics`): uploads (``tgateway_uploads_total``), upload bytes received
(``tgateway_ingested_bytes_total``), content bytes served over HTTP, webseed, Blossom and the peer
wire (``tgateway_served_bytes_total``) and tracker announces over HTTP, UDP and WebSocket
(``tgateway_tracker_announces_total``). Every ``interval`` the health service reads the process's
metrics registry once and hands the samples to :meth:`History.add` with ``now``.

Each point is what a counter **grew by** since the point before (normally one interval; the time
of each point is kept, so a late tick shows as a longer interval, not a spike out of nowhere), per
part (the sample's label: ``path``, ``protocol``, ``result``). A counter that went down was reset
(its component counted from 0 again) and grew by its new value. The first point counts from 0:
every counter counts since the process started, and so does the history.

Memory is bounded: at most ``points`` values per part, a few parts per series (label values fixed
by the code: five paths, three protocols), and one last value per counted sample. Nothing is kept
across a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["History", "SERIES", "Series"]


@dataclass(frozen=True)
class Series:
    """One chart: the samples named ``sample``, but those with a ``(label, value)`` of
    ``leave_out``, summed per value of their label ``part``."""

    name: str
    title: str
    unit: str  # "count" or "bytes"
    sample: str  # the Prometheus sample's name
    part: str  # the label whose values are the parts ("" for a sample without labels)
    description: str
    leave_out: frozenset[tuple[str, str]] = frozenset()


SERIES = (
    Series("uploads", "Uploads", "count", "tgateway_uploads_total", "result",
           "uploads accepted (stored, or duplicate: the bytes were already stored), by result",
           leave_out=frozenset({("result", "refused")})),
    Series("upload_bytes", "Bytes received", "bytes", "tgateway_ingested_bytes_total", "",
           "upload bytes received, refused uploads included"),
    Series("served_bytes", "Bytes served", "bytes", "tgateway_served_bytes_total", "path",
           "content bytes served, by path: download, webseed, stream, blossom (2xx bodies), "
           "peer (the peer wire)"),
    Series("announces", "Announces", "count", "tgateway_tracker_announces_total", "protocol",
           "tracker announces answered (ok or error), by protocol: http, udp, ws",
           leave_out=frozenset({("result", "dropped")})),
)

Sample = tuple[str, Mapping[str, str], float]  # name, labels, value
_Key = tuple[str, tuple[tuple[str, str], ...]]


class History:
    """The last ``points`` growths of each series (see the module docstring)."""

    def __init__(self, *, interval: float, span: float,
                 series: Iterable[Series] = SERIES) -> None:
        """Points every ``interval`` seconds over ``span``: ``span / interval`` of them (at
        least 1)."""
        self.interval = interval
        self.points = points = max(1, round(span / interval))
        self.series = tuple(series)
        self.times: deque[float] = deque(maxlen=points)  # the end of each point's interval
        # series name -> part -> growths, aligned with ``times``
        self.parts: dict[str, dict[str, deque[float]]] = {s.name: {} for s in self.series}
        self._last: dict[_Key, float] = {}  # the value of each counted sample at the last point
        self._by_sample = {s.sample: s for s in self.series}

    def add(self, now: float, samples: Iterable[Sample]) -> None:
        """One point at ``now`` from the current value of every sample (others are skipped)."""
        grew: dict[str, dict[str, float]] = {s.name: {} for s in self.series}
        last: dict[_Key, float] = {}
        for name, labels, value in samples:
            s = self._by_sample.get(name)
            if s is None:
                continue
            if any(labels.get(label) == value for label, value in s.leave_out):
                continue
            part = labels.get(s.part, "") if s.part else ""
            key = (name, tuple(sorted(labels.items())))
            before = self._last.get(key, 0.0)
            last[key] = value
            by_part = grew[s.name]
            by_part[part] = by_part.get(part, 0.0) + (value - before if value >= before else value)
        self._last = last  # samples gone since are forgotten; back, they count from 0
        self.times.append(now)
        for s in self.series:
            parts = self.parts[s.name]
            for part in grew[s.name].keys() - parts.keys():
                # a part seen for the first time grew by nothing before
                parts[part] = deque([0.0] * (len(self.times) - 1), maxlen=self.points)
            for part, values in parts.items():
                values.append(grew[s.name].get(part, 0.0))

    def to_json(self) -> dict[str, Any]:
        """``times`` (the end of each point's interval) and, per series, ``values`` (the growth
        over each interval, all parts together), ``total`` over the points kept and the total of
        each part."""
        out = []
        n = len(self.times)
        for s in self.series:
            parts = self.parts[s.name]
            values = [0.0] * n
            for growths in parts.values():
                for i, v in enumerate(growths):
                    values[i] += v
            out.append({
                "name": s.name, "title": s.title, "unit": s.unit, "description": s.description,
                "by": s.part or None,
                "values": [_number(v) for v in values],
                "total": _number(sum(values)),
                "parts": {p: _number(sum(g)) for p, g in sorted(parts.items())},
            })
        return {"interval": self.interval, "points": self.points,
                "times": [round(t, 3) for t in self.times], "series": out}


def _number(v: float) -> float | int:
    """Counters count whole things: ints in the JSON when they are."""
    return int(v) if float(v).is_integer() else v
