"""Prometheus metrics without a cost on the hot paths.

The work that happens per packet or per request (a UDP announce, a webseed piece) counts in plain
ints and dicts of the component that does it; nothing of prometheus_client runs there. Each
component's ``metrics`` (:class:`tgateway.component.Component`) are :class:`Collect` collectors
that turn those counts into metric families when Prometheus scrapes, with the helpers below.

:class:`Registry` is the process's one registry (``Gateway.metrics``): families of the same name
from several components (``tgateway_served_bytes_total`` from the gateway's site, Blossom's site
and the peer wire; rate-limit refusals from every limiter) are merged into one family, as the
text format wants each name once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["Collect", "Histogram", "Registry", "counter", "gauge", "histogram",
           "LATENCY_BUCKETS", "DURATION_BUCKETS"]


#: seconds, for HTTP answers (a webseed piece, an upload, a JSON route)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
#: seconds, for long jobs (a transcode)
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


class Collect:
    """A collector whose families come from ``produce()`` at scrape time."""

    def __init__(self, produce: Callable[[], Iterable[Metric]]) -> None:
        self._produce = produce

    def collect(self) -> Iterator[Metric]:
        yield from self._produce()

    def describe(self) -> list[Metric]:
        # Nothing is collected when registered (components may not have started yet).
        return []


def counter(name: str, doc: str, labels: Sequence[str],
            values: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> CounterMetricFamily:
    """A counter family (``name`` without ``_total``) from ``{label values: count}``."""
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for key, value in (values.items() if isinstance(values, Mapping) else values):
        family.add_metric(list(key), value)
    return family


def gauge(name: str, doc: str, labels: Sequence[str],
          values: Mapping[Any, float] | Iterable[tuple[Any, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for key, value in (values.items() if isinstance(values, Mapping) else values):
        family.add_metric(list(key), value)
    return family


class Histogram:
    """Plain counts per bucket, observed with one bisect and two additions; read by
    :func:`histogram` at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


def histogram(name: str, doc: str, labels: Sequence[str],
              values: Mapping[Any, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, h in values.items():
        family.add_metric(list(key), h.cumulative(), h.sum)
    return family


class Registry(CollectorRegistry):
    """A CollectorRegistry that merges families of the same name (see the module docstring);
    the first family's type and help win."""

    def __init__(self) -> None:
        super().__init__(auto_describe=True)

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for family in super().collect():
            first = merged.get(family.name)
            if first is None:
                merged[family.name] = family
            else:
                first.samples.extend(family.samples)
        yield from merged.values()


class Refusing(Protocol):
    refused: int


def refusals(limiters: Mapping[str, Refusing | None]) -> CounterMetricFamily:
    """``tgateway_ratelimit_refusals_total`` by class from rate limiters (``KeyedLimiter``)."""
    return counter("tgateway_ratelimit_refusals", "Requests refused by a rate limit, by class",
                   ("class",), {(name, ): lim.refused for name, lim in limiters.items()
                                if lim is not None})

