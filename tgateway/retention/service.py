"""The retention component: a run every ``admin.cleanup_interval`` when ``admin.auto_cleanup``
is on, the chunk cache swept every 10 minutes, and ``/api/admin/cleanup`` on the gateway port.

Built after the gateway (it uses the gateway's authenticator for the admin routes); its service
stops before the storage's, a run in progress stopping after its current step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tgateway.component import Component, Deps, Mount, Status
from tgateway.config import AdminConfig
from tgateway.storage.api import ContentStore

from .core import Rules
from .routes import CleanupRoutes
from .runner import Retention

__all__ = ["CACHE_SWEEP_INTERVAL", "RetentionService", "build"]

CACHE_SWEEP_INTERVAL = 600.0  # seconds: blocks unread for 10 to 20 minutes leave the cache

log = Logger()


class RetentionService(Service):
    name = "retention"

    def __init__(self, retention: Retention, store: ContentStore, clock: IReactorTime, *,
                 auto: bool, interval: float) -> None:
        self.retention = retention
        self.store = store
        self.auto = auto
        self.interval = interval
        self._runs = LoopingCall(self._timed_run)
        self._runs.clock = clock
        self._sweeps = LoopingCall(self._sweep)
        self._sweeps.clock = clock
        self._loops: list[Deferred[Any]] = []

    def startService(self) -> None:
        super().startService()
        self._loops = [self._sweeps.start(CACHE_SWEEP_INTERVAL, now=False)]
        if self.auto:
            self._loops.append(self._runs.start(self.interval, now=False))

    def _timed_run(self) -> Deferred[Any]:
        d = Deferred.fromCoroutine(self.retention.run(dry_run=False))
        d.addErrback(lambda f: log.failure("the retention run failed", f))
        return d

    def _sweep(self) -> None:
        swept = self.store.reader.cache.sweep()
        if swept:
            log.debug("chunk cache: {n} idle blocks dropped", n=swept)

    async def _stop(self) -> None:
        self.retention.stop()
        for loop in (self._runs, self._sweeps):
            if loop.running:
                loop.stop()
        for d in self._loops:
            await d
        self._loops = []

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())


class RetentionMetrics:
    """Retention's counters for ``/metrics`` (a custom collector: read at scrape time)."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention

    def collect(self) -> Iterable[Metric]:
        r = self.retention
        removed = CounterMetricFamily("tgateway_retention_removed_files",
                                      "Files removed by retention, by rule", labels=["reason"])
        for reason, n in r.removed_files.items():
            removed.add_metric([reason], n)
        yield removed
        yield CounterMetricFamily("tgateway_retention_removed_bytes",
                                  "Bytes of the files removed by retention",
                                  value=r.removed_bytes)
        yield CounterMetricFamily("tgateway_retention_repaired_files",
                                  "Rows whose bytes were missing, removed by retention",
                                  value=r.repaired_files)
        yield CounterMetricFamily("tgateway_retention_runs", "Retention runs finished",
                                  value=r.runs)
        yield GaugeMetricFamily("tgateway_retention_running", "1 while a run goes on",
                                value=1 if r.running else 0)


def build(section: AdminConfig, deps: Deps) -> Component[Retention]:
    if deps.store is None or deps.db is None:
        raise RuntimeError("retention needs the storage component")
    rules = Rules(cleanup_age=float(section.cleanup_age), max_file_age=float(section.max_file_age),
                  inactive_user_age=float(section.inactive_user_age))
    retention = Retention(store=deps.store, db=deps.db, clock=deps.reactor, rules=rules)
    mounts: list[Mount] = []
    if deps.authenticator is not None and section.enabled:
        routes = CleanupRoutes(retention=retention, auth=deps.authenticator)
        mounts.append(Mount("gateway", "/api/admin/cleanup", routes.app.resource(),
                            whole_path=True))

    def status() -> Status:
        last = retention.last
        return {"auto_cleanup": section.auto_cleanup, "running": retention.running,
                "last_run": None if last is None else {
                    "at": last.now, "files": last.files.count, "bytes": last.files.bytes,
                    "repaired": last.repaired.count, "complete": last.complete}}

    return Component(
        name="retention", part=retention,
        services=[RetentionService(retention, deps.store, deps.reactor,
                                   auto=section.auto_cleanup,
                                   interval=float(section.cleanup_interval))],
        mounts=mounts, report=status, metrics=[RetentionMetrics(retention)],
    )
