"""Health scores, the overall state and alerts, from every component's ``status()``: pure.

:class:`HealthCore` gets the components' statuses (``{name: status}``, as
:meth:`tgateway.component.Component.status` returns them; a status that failed is
``{"status": "error"}``) with ``now`` and returns an :class:`Assessment`:

- a **score** 0-100 per component from its signals (100: nothing wrong). Counters in a status
  are totals since start; the rates (HTTP 5xx, announce errors, DHT answers, relay rejections,
  transcode failures) are the differences against a sample at least ``window`` seconds old, so
  a burst counts for a window and then ages out. Each lost point has a reason, in words.
- the **overall state**: ``down`` when a required component (storage, the gateway) is down or
  missing (load balancers take a 503), ``degraded`` when an alert is on, else ``ok``.
- **alerts**: conditions with a threshold from the configuration (``health.alerts``): free
  disk space below ``disk_free_min``, a score below ``score_min``, the Nostr outbox's backlog
  above ``outbox_backlog_max``, failed transcode jobs above ``failed_jobs_max``. The core says
  which alerts came on and went off at this look (``entered``/``left``), so the service logs
  each change once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Alert", "Assessment", "HealthCore", "REQUIRED", "Thresholds", "score"]

Status = Mapping[str, Any]

#: components without which the gateway does not serve: /api/health is 503 when one is down
REQUIRED = ("storage", "gateway")


@dataclass(frozen=True)
class Thresholds:
    disk_free_min: int = 1000**3
    score_min: int = 50
    outbox_backlog_max: int = 1000
    failed_jobs_max: int = 10


@dataclass(frozen=True)
class Alert:
    name: str  # disk_free, score:<component>, outbox_backlog, failed_jobs
    message: str
    since: float

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "message": self.message, "since": self.since}


@dataclass(frozen=True)
class Assessment:
    status: str  # ok, degraded, down
    time: float
    scores: dict[str, int]
    reasons: dict[str, list[str]]
    alerts: list[Alert]
    entered: list[Alert] = field(default_factory=list)
    left: list[Alert] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "time": int(self.time), "scores": self.scores,
                "alerts": [a.to_json() for a in self.alerts]}


def _n(status: Status | None, key: str) -> float:
    if status is None:
        return 0.0
    value = status.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _delta(cur: Status, base: Status | None, key: str) -> float:
    """How much a counter grew since the base sample (a restart resets it: counted from 0)."""
    now, then = _n(cur, key), _n(base, key)
    return now - then if now >= then else now


def _down(status: Status | None) -> bool:
    return status is None or status.get("status") in ("down", "error", "stopped")


class _Card:
    """A score being worked out: 100 less what each reason costs."""

    def __init__(self) -> None:
        self.score = 100.0
        self.reasons: list[str] = []

    def lose(self, points: float, reason: str) -> None:
        if points > 0:
            self.score -= points
            self.reasons.append(reason)


Scorer = Callable[[Status, Status | None, Thresholds, _Card], None]


def _http(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    http = cur.get("http") or {}
    then = (base or {}).get("http") or {}
    requests = _delta(http, then, "requests")
    if requests <= 0:
        return
    errors = _delta(http, then, "errors_5xx") / requests
    latency = _delta(http, then, "latency_seconds_sum") / requests
    card.lose(min(70.0, errors * 700), f"{errors:.1%} of answers were 5xx")
    if latency > 0.25:
        card.lose(min(40.0, (latency - 0.25) * 40), f"answers took {latency:.2f} s on average")


def _tracker(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    announces = _delta(cur, base, "announces")
    if announces <= 0:
        return
    errors = _delta(cur, base, "announce_errors") / announces
    card.lose(min(60.0, errors * 120), f"{errors:.1%} of announces were refused")


def _dht(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    good = _n(cur, "good_nodes")
    if good == 0:
        card.lose(80, "no good nodes in the routing table")
    elif good < 8:
        card.lose(50, f"only {good:.0f} good nodes")
    elif good < 32:
        card.lose(20, f"only {good:.0f} good nodes")
    sent = _delta(cur, base, "queries_out")
    if sent >= 10:
        answered = _delta(cur, base, "responses_in") / sent
        if answered < 0.5:
            card.lose((0.5 - answered) * 80, f"{answered:.0%} of our queries were answered")


def _peer(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    refused = _delta(cur, base, "refused")
    taken = _delta(cur, base, "established")
    if refused > 0:
        share = refused / (refused + taken)
        card.lose(min(50.0, share * 50), f"{refused:.0f} connections refused (limits reached)")


def _nostr(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    configured = _n(cur, "relays_configured")
    if configured > 0:
        down = configured - _n(cur, "relays_connected")
        card.lose(80 * down / configured, f"{down:.0f} of {configured:.0f} relays not connected")
    backlog = _n(cur, "outbox_backlog")
    if backlog > t.outbox_backlog_max:
        card.lose(20, f"{backlog:.0f} deliveries waiting")
    age = _n(cur, "outbox_oldest_age")
    if age > 3600:
        card.lose(min(20.0, age / 3600 * 5), f"the oldest delivery has waited {age:.0f} s")
    deliveries = cur.get("deliveries") or {}
    before = (base or {}).get("deliveries") or {}
    rejected = _delta(deliveries, before, "rejected") + _delta(deliveries, before, "failed")
    done = rejected + _delta(deliveries, before, "accepted")
    if rejected > 0:
        card.lose(min(30.0, 30 * rejected / done), f"{rejected:.0f} deliveries rejected or given up")


def _transcode(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    if cur.get("status") == "disabled":
        return
    if not cur.get("ffmpeg"):
        card.lose(70, "FFmpeg not found")
    age = _n(cur, "queue_age")
    if age > 3600:
        card.lose(min(30.0, age / 3600 * 10), f"the oldest queued job has waited {age:.0f} s")
    finished = cur.get("finished") or {}
    before = (base or {}).get("finished") or {}
    failed = _delta(finished, before, "failed")
    ran = failed + _delta(finished, before, "done")
    if failed > 0:
        card.lose(min(40.0, 40 * failed / ran), f"{failed:.0f} jobs failed lately")


def _storage(cur: Status, base: Status | None, t: Thresholds, card: _Card) -> None:
    free = cur.get("free_bytes")
    if isinstance(free, int) and free < t.disk_free_min:
        card.lose(60, f"{free} bytes free, below {t.disk_free_min}")
    elif isinstance(free, int) and free < 2 * t.disk_free_min:
        card.lose(20, f"{free} bytes free")
    db = _n(cur, "db_seconds")
    if db > 0.1:
        card.lose(min(40.0, db * 40), f"the database took {db:.3f} s to answer")


SCORERS: dict[str, Scorer] = {
    "gateway": _http, "blossom": _http, "tracker": _tracker, "dht": _dht, "peer": _peer,
    "nostr": _nostr, "transcode": _transcode, "storage": _storage,
}


def score(name: str, cur: Status | None, base: Status | None,
          thresholds: Thresholds) -> tuple[int, list[str]]:
    """A component's score 0-100 and the reasons for the points it lost."""
    if _down(cur):
        why = (cur or {}).get("error") or "down"
        return 0, [str(why)]
    assert cur is not None
    card = _Card()
    scorer = SCORERS.get(name)
    if scorer is not None:
        scorer(cur, base, thresholds, card)
    return max(0, min(100, round(card.score))), card.reasons


class HealthCore:
    """Scores, overall state and alert changes (see the module docstring)."""

    def __init__(self, thresholds: Thresholds, *, window: float,
                 required: tuple[str, ...] = REQUIRED) -> None:
        self.thresholds = thresholds
        self.window = window
        self.required = required
        self.alerts: dict[str, Alert] = {}  # on now, by name
        self._samples: deque[tuple[float, dict[str, Status | None]]] = deque()

    def _base(self, now: float, statuses: dict[str, Status | None]) -> dict[str, Status | None]:
        samples = self._samples
        samples.append((now, statuses))
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        return samples[0][1]

    def assess(self, statuses: Mapping[str, Status | None], now: float) -> Assessment:
        current = dict(statuses)
        base = self._base(now, current)
        t = self.thresholds
        scores: dict[str, int] = {}
        reasons: dict[str, list[str]] = {}
        for name, status in current.items():
            scores[name], reasons[name] = score(name, status, base.get(name), t)
        conditions = self._conditions(current, scores, reasons)
        entered = [Alert(n, m, now) for n, m in conditions.items() if n not in self.alerts]
        left = [a for n, a in self.alerts.items() if n not in conditions]
        for a in left:
            del self.alerts[a.name]
        for a in entered:
            self.alerts[a.name] = a
        down = [n for n in self.required if n in current and _down(current[n])]
        overall = "down" if down else "degraded" if self.alerts else "ok"
        return Assessment(overall, now, scores, reasons, sorted(self.alerts.values(),
                                                                key=lambda a: a.name),
                          entered, left)

    def _conditions(self, statuses: dict[str, Status | None], scores: dict[str, int],
                    reasons: dict[str, list[str]]) -> dict[str, str]:
        t = self.thresholds
        out: dict[str, str] = {}
        storage = statuses.get("storage") or {}
        free = storage.get("free_bytes")
        if isinstance(free, int) and free < t.disk_free_min:
            out["disk_free"] = f"{free} bytes free on the storage's disk, below {t.disk_free_min}"
        for name, s in scores.items():
            if s < t.score_min:
                why = "; ".join(reasons[name]) or "low"
                out[f"score:{name}"] = f"{name} scores {s}, below {t.score_min}: {why}"
        backlog = _n(statuses.get("nostr"), "outbox_backlog")
        if backlog > t.outbox_backlog_max:
            out["outbox_backlog"] = (f"{backlog:.0f} Nostr deliveries waiting, above "
                                     f"{t.outbox_backlog_max}")
        jobs = (statuses.get("transcode") or {}).get("jobs") or {}
        failed = _n(jobs, "failed")
        if failed > t.failed_jobs_max:
            out["failed_jobs"] = f"{failed:.0f} failed transcode jobs, above {t.failed_jobs_max}"
        return out
