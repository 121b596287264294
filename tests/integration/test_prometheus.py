"""A real Prometheus server (Debian's ``prometheus`` 2.42) scrapes the gateway's /metrics.

The gateway runs in the test's reactor with /metrics on its own port for admins only; Prometheus
is started with a scrape config that points at it and sends an admin's session token (the way an
operator scrapes through the admin key), every second. The test then asks Prometheus's HTTP
query API for gateway series and gets them back.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor, threads
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.gateway import case_data_dir, small_config, start_gateway
from harness.ports import free_tcp_port, wait_for_tcp
from harness.procs import ClientProcess
from harness.tools import prometheus

ADMIN = "ad" * 32
http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


def start_prometheus(directory: Path, target: str, token: str) -> tuple[ClientProcess, int]:
    port = free_tcp_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "tgateway",
            "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials": token},
            "static_configs": [{"targets": [target]}],
        }],
    }
    (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    process = ClientProcess(
        [prometheus(), f"--config.file={directory / 'prometheus.yml'}",
         f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--web.enable-lifecycle"],
        cwd=directory, name="prometheus")
    try:
        wait_for_tcp("127.0.0.1", port, timeout=60, process=process)
    except BaseException:
        process.stop()
        raise
    return process, port


async def query(port: int, promql: str) -> list[dict[str, Any]]:
    r = await http.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": promql})
    if r.code == 503:  # still opening its database
        await r.content()
        return []
    body = await treq.json_content(r)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def wait_for(port: int, promql: str, process: ClientProcess,
                   timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = await query(port, promql)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus never returned {promql}\n{process.describe()}")
        await deferLater(reactor, 0.5, lambda: None)


class PrometheusTests(TestCase):
    timeout = 240

    async def test_prometheus_scrapes_the_gateway_and_answers_a_query(self) -> None:
        directory = Path(case_data_dir(self))
        g = start_gateway(self, small_config(case_data_dir(self), admin={"pubkeys": [ADMIN]}))
        sessions = g.gateway.components.gateway.users.sessions
        token, _ = await sessions.create(ADMIN, "prometheus", time.time())
        r = await http.put(g.url("/api/upload"), data=b"scraped " * 100)
        self.assertIn(r.code, (200, 201), await r.text())
        # (on a thread: the gateway answers Prometheus's first scrapes while it starts)
        process, port = await threads.deferToThread(
            start_prometheus, directory, f"127.0.0.1:{g.port}", token)
        self.addCleanup(process.stop)
        up = await wait_for(port, 'up{job="tgateway"} == 1', process)
        self.assertEqual(up[0]["metric"]["instance"], f"127.0.0.1:{g.port}")
        uploads = await wait_for(port, 'tgateway_uploads_total{result="stored"}', process)
        self.assertEqual(uploads[0]["value"][1], "1")
        scores = await wait_for(port, "tgateway_health_score", process)
        self.assertLessEqual({"storage", "gateway"}, {s["metric"]["component"] for s in scores})
        # its own scrapes show in the HTTP series of the route they hit
        scrapes = await wait_for(
            port, 'tgateway_http_requests_total{route="/metrics",status="200"} > 0', process)
        self.assertEqual(scrapes[0]["metric"]["site"], "gateway")
