"""Run the real ``twistd tgateway`` in a child process (for real clients, kills and restarts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness.ports import free_tcp_port, wait_for_tcp

REPO_ROOT = Path(__file__).resolve().parent.parent
TWISTD = str(Path(sys.executable).parent / "twistd")


def gateway_config(data_dir: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A gateway-only config on free loopback ports, DHT off, generous rate limits."""
    cfg: dict[str, Any] = {
        "mode": "gateway-only",
        "data_dir": str(data_dir),
        "gateway": {"port": free_tcp_port(), "host": "127.0.0.1"},
        "storage": {
            "metadata_db": str(data_dir / "metadata.db"),
            "blob_storage": str(data_dir / "blobs"),
            "chunk_storage": str(data_dir / "chunks"),
        },
        # a test that turns the tracker on gets its dedicated HTTP port (the first announce URL)
        "tracker": {"enabled": False, "http_port": free_tcp_port()},
        "peer": {"port": free_tcp_port(), "host": "127.0.0.1"},
        "dht": {"enabled": False, "bootstrap_nodes": []},
        "transcoding": {"enabled": False},
        "rate_limiting": {
            "upload": {"requests_per_second": 1000, "burst_size": 1000, "max_file_size": "20GB"},
            "download": {"requests_per_second": 100000, "burst_size": 100000},
        },
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **values}
        else:
            cfg[name] = values
    return cfg


class GatewayProcess:
    def __init__(self, config: dict[str, Any], workdir: Path, *, extra_args: tuple[str, ...] = (),
                 env: Mapping[str, str | None] | None = None) -> None:
        """``env``: the child's environment beyond ours (a None value removes that variable:
        ``{"TGATEWAY_TEST_CRASH_AT": "place:all"}`` arms a crash point, ``None`` disarms it)."""
        self.config = config
        self.env = dict(env or {})
        self.workdir = workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = int(config["gateway"]["port"])
        # The address the gateway listens on (a specific one, e.g. in a NetworkNamespace).
        host = str(config["gateway"].get("host") or "127.0.0.1")
        self.host = "127.0.0.1" if host == "0.0.0.0" else host
        self.base = f"http://{self.host}:{self.port}"
        self.log_path = workdir / "twistd.log"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    def _environment(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "tgateway", "--config", str(self.config_path), *self.extra_args],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=self._environment(),
        )
        log.close()
        try:
            wait_for_tcp(self.host, self.port, timeout=timeout)
        except Exception:
            self.kill()
            raise AssertionError("gateway did not start:\n" + self.log()) from None
        return self

    def url(self, path: str) -> str:
        return self.base + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: a crash, no clean shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def random_file(path: Path, size: int, block: int = 8 << 20) -> Path:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(block, left)
            f.write(os.urandom(n))
            left -= n
    return path


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
