"""BEP 32 on the real reactor: IPv6 nodes on ::1 (V6ONLY sockets) exchange ``nodes6``, and a
dual-stack gateway (``host`` + ``host6``) runs one node per family on the same port."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tgateway.config import DhtConfig
from tgateway.dht.service import DhtService, build_dht

pytestmark = pytest.mark.integration


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[DhtService]]:
    started: list[DhtService] = []
    yield started
    for svc in started:
        pytest_twisted.blockon(svc.stopService())


def start(services: list[DhtService], tmp: Path, name: str, **kw: object) -> DhtService:
    kw.setdefault("port", 0)
    kw.setdefault("bootstrap_nodes", ())
    svc = build_dht(DhtConfig(**kw), str(tmp / name), reactor, random.Random(), 6881)  # type: ignore[arg-type]
    svc.startService()
    services.append(svc)
    return svc


async def until(pred: object, timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if pred():  # type: ignore[operator]
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("condition not met in time")


@pytest_twisted.ensureDeferred
async def test_ipv6_nodes_find_each_others_peers(
    services: list[DhtService], tmp_path: Path
) -> None:
    gateway = start(services, tmp_path, "gw", host="127.0.0.1", host6="::1")
    assert [f.node.ipv6 for f in gateway.families] == [False, True]
    _, port6 = gateway.ports
    boot6 = f"[::1]:{port6}"
    a = start(services, tmp_path, "a", host="::1", bootstrap_nodes=(boot6,))
    b = start(services, tmp_path, "b", host="::1", bootstrap_nodes=(boot6,))
    assert a.families[0].node.ipv6 and b.families[0].node.ipv6
    gw6 = gateway.families[1].node
    await until(lambda: len(gw6.table) >= 2 and len(a.families[0].node.table) >= 1)
    # The IPv4 node never sees IPv6 nodes: one table per family.
    assert len(gateway.families[0].node.table) == 0
    assert all(":" in e.ip for e in gw6.table.entries())
    info_hash = os.urandom(20)
    a.announce(info_hash)
    await until(lambda: info_hash in gw6.store)
    peers = await b.get_peers(info_hash)
    assert ("::1", 6881) in peers
    # The dual-stack gateway merges both families' lookups.
    assert ("::1", 6881) in await gateway.get_peers(info_hash)
    status = gateway.status()
    assert [f["family"] for f in status["families"]] == ["ipv4", "ipv6"]
    assert status["families"][1]["malformed"] == 0
