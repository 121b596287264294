"""makeService builds what ``tap.COMPONENTS`` lists, each through the same Component face.

A component is one package (its ``build``) and one line of ``COMPONENTS``: the probe component of
this module, added as one line, is built after the gateway with what the others provide, its
service runs in the tree in build order, it is subscribed to the store, its resource is mounted on
the gateway's port, its metrics are registered and ``/api/health`` reads its ``status()``; nothing
else is edited.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Counter, generate_latest
from treq.testing import StubTreq
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource

from tgateway import tap
from tgateway.component import Component, Deps, Mount, Provided
from tgateway.config import AdminConfig, parse_config
from tgateway.health.core import HealthCore, Thresholds
from tgateway.health.history import History
from tgateway.health.service import Health
from tgateway.http.auth import AnonymousOnly
from tgateway.metrics import Registry
from tgateway.storage.model import StoredEvent


class _Hello(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"hello from " + b"/".join(request.prepath + request.postpath)


@dataclass
class Probe:
    deps: Deps
    stored: list[StoredEvent] = field(default_factory=list)
    probes: Counter = field(default_factory=lambda: Counter("probe_calls", "probes", registry=None))


def build(section: AdminConfig, deps: Deps) -> Component[Probe]:
    """The probe component (what issue 17's admin will look like, in a line of COMPONENTS)."""
    probe = Probe(deps)
    service = Service()
    service.setName("probe")
    return Component(name="probe", part=probe, services=[service],
                     mounts=[Mount("gateway", "/api/probe", _Hello())],
                     report=lambda: {"status": "ok", "seen": len(probe.stored)},
                     metrics=[probe.probes], on_stored=probe.stored.append,
                     provides=Provided())


def test_a_component_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tap.Spec("probe", __name__, "admin", tap.SERVING)
    gateway_at = [s.name for s in tap.COMPONENTS].index("gateway")
    monkeypatch.setattr(tap, "COMPONENTS", (*tap.COMPONENTS[:gateway_at + 1], spec,
                                            *tap.COMPONENTS[gateway_at + 1:]))
    d = tmp_path
    config = parse_config({
        "mode": "gateway-only", "data_dir": str(d), "gateway": {"port": 0, "host": "127.0.0.1"},
        "storage": {"metadata_db": f"{d}/m.db", "blob_storage": f"{d}/b", "chunk_storage": f"{d}/c"},
    })
    top = tap.makeService({"config": config}, reactor=MemoryReactorClock())
    gw = top.gateway
    assert [c.name for c in gw.components] == ["storage", "tracker", "peer", "nostr", "transcode",
                                               "gateway", "probe", "health", "admin",
                                               "retention"]
    probe = gw.components.named("probe")
    # built after the gateway, with what the components before it provide
    assert probe.part.deps.authenticator is gw.components.gateway.users.auth
    assert probe.part.deps.store is gw.store and probe.part.deps.local_peers is gw.components.tracker
    # its service runs in build order (so it stops before the gateway's port and the storage)
    names = [s.name for s in top]
    assert names.index("probe") == names.index("gateway-http") + 1
    # subscribed to the store's "stored" event, by tap
    assert probe.part.stored.append in gw.store._on_stored
    # mounted on the gateway's port, beside the file API
    client = StubTreq(gw.sites["gateway"].resource)
    r = _result(client.get("http://gw.test/api/probe/x"))
    assert (r.code, _result(r.content())) == (200, b"hello from api/probe/x")
    # /api/health reads it through the Component face
    assert probe in list(gw.components.named("health").part.components)
    assert _result(Deferred.fromCoroutine(probe.status())) == {"status": "ok", "seen": 0}
    # its metrics are in the gateway's registry
    probe.part.probes.inc(2)
    assert b"probe_calls_total 2.0" in generate_latest(gw.metrics)


def _result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(lambda result: (out.append(result), result)[1])
    assert out, "not fired"
    return out[0]


def _component(name: str, report: Any) -> Component[None]:
    return Component(name=name, part=None, report=report)


def test_health_is_every_components_status() -> None:
    async def later() -> dict[str, Any]:
        return {"status": "ok", "files": 3, "free_bytes": 10**12}

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    components = [_component("storage", later), _component("quiet", None),
                  _component("tracker", lambda: {"status": "ok", "swarms": 2}),
                  _component("broken", broken)]
    health = Health(components=components, clock=Clock(), auth=AnonymousOnly(),
                    core=HealthCore(Thresholds(), window=15.0), registry=Registry(),
                    history=History(interval=60, span=3600))
    r = _result(StubTreq(health.app.resource()).get("http://gw.test/api/health"))
    body = json.loads(_result(r.content()))
    assert r.code == 200
    assert body["time"] == 0  # the clock's
    assert body["status"] == "degraded"  # "broken" is not required: the gateway serves
    assert body["scores"] == {"storage": 100, "tracker": 100, "broken": 0}
    assert [a["name"] for a in body["alerts"]] == ["score:broken"]
    assert body["tracker"] == {"status": "ok", "swarms": 2}  # each status under its name
    assert health.statuses == {"storage": {"status": "ok", "files": 3, "free_bytes": 10**12},
                               "tracker": {"status": "ok", "swarms": 2},
                               "broken": {"status": "error", "error": "RuntimeError: boom"}}
