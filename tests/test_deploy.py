"""``tgateway.deploy``: what scripts/install reads from and writes into a configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tgateway import deploy
from tgateway.config import load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (ROOT / "configs" / "config.yaml").read_text()
PROXY = {
    "gateway.public_url": "https://gw.example",
    "blossom_server.public_url": "https://blossom.gw.example",
    "gateway.host": "127.0.0.1",
    "blossom_server.host": "127.0.0.1",
    "trusted_proxies": ["127.0.0.1", "::1"],
}


def test_seed_keeps_every_line_but_the_ones_it_sets() -> None:
    text = deploy.seed_config(TEMPLATE, data_dir="/var/lib/tgateway", settings=PROXY)
    old, new = TEMPLATE.splitlines(), text.splitlines()
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    # 5 settings + data_dir + 3 storage paths + the transcoding folder
    assert len(changed) == 10, changed
    for a, b in changed:
        if "#" in a:  # the comment stays on its line
            assert a[a.index(" #"):] == b[b.index(" #"):]
    config = parse_config(yaml.safe_load(text))
    assert config.gateway.public_url == "https://gw.example"
    assert config.trusted_proxies == ("127.0.0.1", "::1")
    assert config.storage.chunk_storage == "/var/lib/tgateway/chunks"
    assert config.transcoding.work_dir == "/var/lib/tgateway/transcoded"
    # everything it did not set is the shipped default
    defaults = parse_config(yaml.safe_load(TEMPLATE))
    assert config.peer == defaults.peer and config.rate_limiting == defaults.rate_limiting


def test_seed_refuses_keys_the_template_has_no_line_for() -> None:
    with pytest.raises(ValueError, match="gateway.nonsense"):
        deploy.seed_config(TEMPLATE, data_dir="/d", settings={"gateway.nonsense": 1})
    with pytest.raises(ValueError, match="dht.bootstrap_nodes"):  # a block, not an inline value
        deploy.seed_config(TEMPLATE, data_dir="/d", settings={"dht.bootstrap_nodes": []})
    with pytest.raises(ValueError, match="does not parse"):
        deploy.seed_config(TEMPLATE, data_dir="/d", settings={"gateway.public_url": "ftp://x"})


def test_differences_name_what_the_operator_should_change() -> None:
    current = {"gateway": {"public_url": "https://old.example"}, "trusted_proxies": ["127.0.0.1", "::1"]}
    assert deploy.differences(current, {"gateway.public_url": "https://new.example",
                                        "trusted_proxies": ["127.0.0.1", "::1"],
                                        "gateway.host": "127.0.0.1"}) == [
        ("gateway.public_url", "https://old.example", "https://new.example"),
        ("gateway.host", "0.0.0.0", "127.0.0.1"),
    ]


def test_descriptor_budget_follows_the_configuration() -> None:
    default = deploy.nofile_budget(parse_config({}))
    assert default == {"base": 1024, "peer": 250, "tracker WebSocket": 16384, "tracker HTTP": 4096,
                       "HTTP": 16384, "transcoding": 32}
    bigger = deploy.nofile_budget(parse_config({"peer": {"max_connections": 4000}}))
    assert bigger["peer"] == 5000
    no_tracker = deploy.nofile_budget(parse_config({"tracker": {"enabled": False}}))
    assert "tracker WebSocket" not in no_tracker
    assert deploy.facts(parse_config({}))["NOFILE"] == "38912"  # 38170 rounded up to 1024s
    no_tracker_port = deploy.nofile_budget(parse_config({"tracker": {"http_port": 0}}))
    assert "tracker HTTP" not in no_tracker_port and no_tracker_port["HTTP"] == 16384
    assert "peer" not in deploy.nofile_budget(parse_config({"mode": "blossom-only"}))


def test_ports_below_1024_are_named() -> None:
    assert deploy.facts(parse_config({}))["LOW_PORTS"] == ""
    facts = deploy.facts(parse_config({"peer": {"port": 881}, "tracker": {"udp_port": 69},
                                       "blossom_server": {"enabled": False, "port": 80}}))
    # Blossom is off: its port does not count; the peer binds its number on TCP and UDP (uTP)
    assert facts["LOW_PORTS"] == "udp/69 tcp/881 udp/881"


def test_facts_for_nginx_and_the_unit(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(deploy.seed_config(TEMPLATE, data_dir="/srv/tg", settings=PROXY)
                    .replace('chunk_storage: "/srv/tg/chunks"', 'chunk_storage: "/big/chunks"'))
    facts = deploy.facts(load_config(path))
    assert facts["GATEWAY_UPSTREAM"] == "127.0.0.1:9877"
    assert facts["BLOSSOM_UPSTREAM"] == "127.0.0.1:8082"
    assert facts["WRITABLE_PATHS"] == "/srv/tg /big/chunks"
    lines = facts["PORTS"].splitlines()
    assert "tcp/9877\tHTTP API (gateway)\t(loopback only)" in lines
    assert "udp/6969\tUDP tracker" in lines and "tcp/6881\tBitTorrent peer" in lines
    assert "udp/6881\tBitTorrent peer (uTP)" in lines  # peer.utp, on by default
    # the dedicated HTTP tracker port: open to the world, not behind nginx
    assert "tcp/6969\tHTTP tracker (the torrents' first announce URL; WebSocket too)" in lines
    assert deploy._upstream("::", 1) == "[::1]:1"
