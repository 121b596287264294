"""Configuration: every seed key, one-line errors naming the key, data folder and modes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tgateway.config import (
    MODES,
    ConfigError,
    load_config,
    parse_config,
)
from tgateway.options import Options, build_config
from tgateway.tap import COMPONENTS, components_for, makeService

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seed" / "README.md"
SEED_COPY = ROOT / "tests" / "data" / "seed_config.yaml"


def _seed_yaml() -> dict:
    if SEED.exists():
        block = SEED.read_text().split("```yaml", 1)[1].split("```", 1)[0]
        return yaml.safe_load(block)
    return yaml.safe_load(SEED_COPY.read_text())


def test_seed_copy_is_current() -> None:
    if SEED.exists():
        assert yaml.safe_load(SEED_COPY.read_text()) == _seed_yaml()


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        path = f"{prefix}.{k}" if prefix else k
        out.add(path)
        if isinstance(v, dict):
            out |= _keys(v, path)
    return out


def test_config_yaml_carries_every_seed_key() -> None:
    ours = yaml.safe_load((ROOT / "configs" / "config.yaml").read_text())
    missing = _keys(_seed_yaml()) - _keys(ours)
    assert not missing


def test_seed_example_itself_parses() -> None:
    config = parse_config(_seed_yaml())
    assert config.storage.chunk_size == 2 * 1024 * 1024
    assert config.dht.announce_interval == 900
    assert config.admin.cleanup_age == 90 * 86400
    assert config.rate_limiting.upload.max_file_size == 3 * 1000**3


def test_shipped_config_equals_embedded_defaults() -> None:
    assert load_config(ROOT / "configs" / "config.yaml") == parse_config({})


@pytest.mark.parametrize(
    "data, key",
    [
        ({"gateway": {"port": "x"}}, "gateway.port"),
        ({"gateway": {"port": 70000}}, "gateway.port"),
        ({"gateway": {"max_upload_size": "10XB"}}, "gateway.max_upload_size"),
        ({"storage": {"chunk_size": 1000}}, "storage.chunk_size"),
        ({"storage": {"chunk_size": 3 * 16384}}, "storage.chunk_size"),
        ({"storage": {"chunk_size": 8192}}, "storage.chunk_size"),
        ({"storage": {"blob_threshold": 1000}}, "storage.blob_threshold"),
        ({"dht": {"announce_interval": "5y"}}, "dht.announce_interval"),
        ({"dht": {"bootstrap_nodes": "router:1"}}, "dht.bootstrap_nodes"),
        ({"mode": "everything"}, "mode"),
        ({"nope": 1}, "nope"),
        ({"gateway": {"prot": 1}}, "gateway.prot"),
        ({"gateway": []}, "gateway"),
        ({"tracker": {"min_interval": 4000}}, "tracker.min_interval"),
        ({"admin": {"default_user_storage_limit": "lots"}}, "admin.default_user_storage_limit"),
        ({"rate_limiting": {"upload": {"burst_size": 0}}}, "rate_limiting.upload.burst_size"),
        ({"transcoding": {"enabled": "yes"}}, "transcoding.enabled"),
        ({"gateway": {"public_url": "ftp://x"}}, "gateway.public_url"),
        ({"health": {"history": {"interval": "0.5s"}}}, "health.history.interval"),
        ({"health": {"history": {"span": "30s"}}}, "health.history.span"),  # < interval
        ({"health": {"history": {"interval": "1s", "span": "1d"}}}, "health.history.span"),
    ],
)
def test_bad_values_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    message = str(e.value)
    assert message.startswith(key + ":"), message
    assert "\n" not in message


def test_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("gateway: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_data_dir_moves_every_path_under_it() -> None:
    config = build_config(str(ROOT / "configs" / "config.yaml"), "/srv/gw", None)
    assert config.data_dir == "/srv/gw"
    assert config.storage.metadata_db == "/srv/gw/metadata.db"
    assert config.storage.blob_storage == "/srv/gw/blobs"
    assert config.storage.chunk_storage == "/srv/gw/chunks"
    assert config.transcoding.work_dir == "/srv/gw/transcoded"


def test_paths_outside_the_data_dir_stay(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("storage:\n  blob_storage: /mnt/blobs\n")
    config = build_config(str(cfg), "/srv/gw", None)
    assert config.storage.blob_storage == "/mnt/blobs"
    assert config.storage.chunk_storage == "/srv/gw/chunks"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_mode_override(mode: str) -> None:
    config = build_config(None, None, mode)
    assert config.mode == mode
    assert components_for(config) <= {spec.name for spec in COMPONENTS if mode in spec.modes}


def test_disabled_components_are_not_started() -> None:
    config = parse_config({"dht": {"enabled": False}, "blossom_server": {"enabled": False}})
    assert "dht" not in components_for(config)
    assert "blossom" not in components_for(config)


def test_options_bad_mode_is_one_line() -> None:
    with pytest.raises(SystemExit) as e:
        Options().parseOptions(["--mode", "bogus"])
    assert str(e.value.code).startswith("tgateway: configuration error: --mode")


def test_options_and_services(tmp_path: Path) -> None:
    opts = Options()
    opts.parseOptions(["--data-dir", str(tmp_path / "d"), "--mode", "gateway-only"])
    svc = makeService(opts)
    names = {s.name for s in svc}
    assert "storage" in names and "gateway-http" in names
    assert "blossom-http" not in names


def test_services_stop_one_after_the_other_storage_last(tmp_path: Path) -> None:
    """A component still using the store (a transcode storing its outputs) finishes before the
    storage closes: the top service stops its children in reverse order, each awaited."""
    from twisted.application.service import Service
    from twisted.internet.defer import Deferred

    from tgateway.component import GatewayService

    events: list[str] = []
    pending: dict[str, Deferred[None]] = {}

    class Child(Service):
        def __init__(self, name: str) -> None:
            self.name = name

        def stopService(self) -> Deferred[None]:
            super().stopService()
            events.append("stop " + self.name)
            pending[self.name] = Deferred()
            return pending[self.name]

    top = GatewayService()
    for name in ("storage", "nostr", "transcode"):
        Child(name).setServiceParent(top)
    top.startService()
    done = top.stopService()
    again = top.stopService()  # a second stop waits for the first, stops nothing twice
    assert events == ["stop transcode"]
    pending["transcode"].callback(None)
    assert events == ["stop transcode", "stop nostr"]
    pending["nostr"].errback(RuntimeError("boom"))  # logged; the rest still stop
    assert events[-1] == "stop storage" and not done.called
    pending["storage"].callback(None)
    assert done.called and again.called and not top.running
    assert events == ["stop transcode", "stop nostr", "stop storage"]


def test_database_refuses_queries_once_closed(tmp_path: Path) -> None:
    from twisted.internet import reactor

    from tgateway.storage.db import Database, DatabaseClosed

    db = Database(reactor, str(tmp_path / "m.db"))
    db.open()
    db.close()
    failures: list[object] = []
    db.run(lambda conn: 1).addErrback(failures.append)
    assert failures and failures[0].check(DatabaseClosed)  # type: ignore[attr-defined]


def test_dht_only_has_no_storage_and_no_http(tmp_path: Path) -> None:
    opts = Options()
    opts.parseOptions(["--data-dir", str(tmp_path / "d"), "--mode", "dht-only"])
    svc = makeService(opts)
    names = {s.name for s in svc}
    assert "storage" not in names and "gateway-http" not in names


def test_twistd_reports_bad_config_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("gateway:\n  max_upload_size: 10XB\n")
    twistd = Path(sys.executable).parent / "twistd"
    proc = subprocess.run(
        [str(twistd), "-n", "--pidfile=", "tgateway", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        "tgateway: configuration error: gateway.max_upload_size: got '10XB', expected a size "
        "such as 10GB, 100MB, 2MiB or a number of bytes"
    ], proc.stderr + proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not re.search(r"Usage:", proc.stdout)


@pytest.mark.parametrize("section", ["gateway", "blossom_server"])
def test_base_url_is_the_public_url_else_the_listening_address(section: str) -> None:
    """What sign-in and Blossom scopes compare with: never a client's Host header."""
    def base(**values: object) -> str:
        return str(getattr(parse_config({section: {"port": 8000, **values}}), section).base_url())

    assert base() == "http://127.0.0.1:8000"
    assert base(host="::") == "http://127.0.0.1:8000"
    assert base(host="192.0.2.7") == "http://192.0.2.7:8000"
    assert base(host="::1") == "http://[::1]:8000"
    assert base(public_url="https://files.example.org/gw/") == "https://files.example.org/gw"
