"""Run the real gateway (makeService) on loopback ports inside the test's reactor."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from typing import Any

from twisted.internet import reactor as default_reactor

from harness.ports import free_tcp_port
from tgateway.config import Config, parse_config
from tgateway.tap import makeService


def small_config(data_dir: str, **sections: dict[str, Any]) -> Config:
    """Gateway-only config on an ephemeral loopback port, with tiny chunks for fast tests."""
    raw: dict[str, Any] = {
        "mode": "gateway-only",
        "data_dir": data_dir,
        "gateway": {"port": free_tcp_port(), "host": "127.0.0.1"},
        "storage": {
            "blob_threshold": 65536,
            "chunk_size": 16384,
            "metadata_db": f"{data_dir}/metadata.db",
            "blob_storage": f"{data_dir}/blobs",
            "chunk_storage": f"{data_dir}/chunks",
        },
        # a test that turns the tracker on gets its dedicated HTTP port (the first announce URL)
        "tracker": {"enabled": False, "http_port": free_tcp_port()},
        "peer": {"port": free_tcp_port(), "host": "127.0.0.1"},
        "dht": {"enabled": False, "bootstrap_nodes": []},
        "transcoding": {"enabled": False},
        "rate_limiting": {
            "upload": {"requests_per_second": 1000, "burst_size": 1000},
            "download": {"requests_per_second": 1000, "burst_size": 1000},
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(raw.get(name), dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return parse_config(raw)


def serving_config(data_dir: str, **sections: dict[str, Any]) -> Config:
    """Every HTTP face that serves stored files (gateway API, /api/stream, Blossom) on ephemeral
    loopback ports, DHT and tracker off, rate limits out of the way."""
    base: dict[str, Any] = {
        "mode": "unified",
        "blossom_server": {"port": free_tcp_port(), "host": "127.0.0.1",
                           "rate_limit": {"requests_per_minute": 600000, "burst_size": 100000}},
        "rate_limiting": {
            "upload": {"requests_per_second": 1000, "burst_size": 1000},
            "download": {"requests_per_second": 100000, "burst_size": 100000},
            "stream": {"requests_per_second": 100000, "burst_size": 100000,
                       "max_concurrent": 1000},
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(base.get(name), dict):
            base[name] = {**base[name], **values}
        else:
            base[name] = values
    return small_config(data_dir, **base)


class RunningGateway:
    """Started service tree plus the bound HTTP port; ``stop()`` returns a Deferred."""

    def __init__(self, config: Config, reactor: Any = default_reactor) -> None:
        self.config = config
        self.service = makeService({"config": config}, reactor)
        self.gateway = self.service.gateway  # type: ignore[attr-defined]
        self.service.privilegedStartService()
        self.service.startService()
        http = self.service.getServiceNamed("gateway-http")
        port = http._waitingForPort.result  # TCP listens synchronously
        self.port = port.getHost().port
        self.base = f"http://127.0.0.1:{self.port}"
        self.store = self.gateway.store
        self.blossom_base: str | None = None
        if "blossom" in self.gateway.sites:
            blossom = self.service.getServiceNamed("blossom-http")
            self.blossom_base = f"http://127.0.0.1:{blossom._waitingForPort.result.getHost().port}"

    def url(self, path: str) -> str:
        return self.base + path

    def stop(self) -> Any:
        return self.service.stopService()


def temp_data_dir() -> str:
    return tempfile.mkdtemp(prefix="tgw-")


def case_data_dir(case: Any) -> str:
    """A fresh folder for a trial test case, removed when the test ends (``case.addCleanup``).

    Not ``case.mktemp()``: that path is relative to the current folder, the repo root under pytest.
    """
    path = temp_data_dir()
    case.addCleanup(shutil.rmtree, path, True)
    return path


def start_gateway(case: Any, config: Config) -> RunningGateway:
    """A :class:`RunningGateway` that a trial test case stops when it ends (``case.addCleanup``),
    before the case's reactor check."""
    gateway = RunningGateway(config)
    case.addCleanup(gateway.stop)
    return gateway


def replace_section(config: Config, section: str, **values: Any) -> Config:
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **values)})
