"""What ``scripts/install`` needs to know about a configuration, from the code that reads it.

The installer runs this module with the virtualenv it has just installed, so the configuration is
read exactly as the gateway will read it (defaults, checks, modes):

``python -m tgateway.deploy seed TEMPLATE OUT --data-dir DIR [--set KEY=JSON ...]``
    writes the first ``/etc/tgateway/config.yaml``: the shipped ``configs/config.yaml`` with its
    comments, every path under ``./data`` moved under ``DIR``, and each ``KEY`` (``a`` or ``a.b``)
    given its value. The result is parsed back, and every setting must have landed.
``python -m tgateway.deploy facts CONFIG``
    prints shell assignments: the data folder and every other folder the gateway writes, the
    upstream addresses for nginx, the file-descriptor budget, the ports below 1024 and the ports
    to open.
``python -m tgateway.deploy check CONFIG --set KEY=JSON ...``
    prints one line for each key whose value differs from what this install wants (the file is
    never rewritten once it exists: the operator changes it).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import yaml

from tgateway.config import Config, ConfigError, load_config, parse_config

# File-descriptor budget (LimitNOFILE) beyond the peer's connection slots, which come from the
# configuration. Nothing else in the gateway caps these connection counts, so the limit is
# their bound: WebSocket tracker connections (a WebTorrent client keeps one open per tracker),
# HTTP connections per port (one socket plus one open file per download), HTTP connections to the
# tracker's dedicated port (a socket each, no file), and a base for the database, logs, UDP
# sockets, relay connections, chunk files and FFmpeg pipes.
NOFILE_BASE = 1024
NOFILE_TRACKER_WS = 16384
NOFILE_TRACKER_HTTP = 4096
NOFILE_HTTP_PER_PORT = 2 * 4096
NOFILE_PER_TRANSCODE = 16


@dataclass(frozen=True)
class Port:
    proto: str  # "tcp" or "udp"
    port: int
    host: str
    what: str

    @property
    def loopback(self) -> bool:
        return self.host.startswith("127.") or self.host in ("::1", "localhost")


def set_value(text: str, key: str, value: object) -> str:
    """Give ``key`` (``name`` or ``section.name``) a new value on its line of a YAML text,
    keeping the line's comment and every other line. Raises KeyError if the key has no line of
    its own with an inline value."""
    rendered = json.dumps(value)  # a JSON string or list of strings is YAML flow syntax
    parts = key.split(".")
    if len(parts) > 2:
        raise KeyError(key)
    lines = text.splitlines(keepends=True)
    start, end, indent = 0, len(lines), ""
    if len(parts) == 2:
        head = re.compile(rf"^{re.escape(parts[0])}:\s*(#.*)?$")
        for i, line in enumerate(lines):
            if head.match(line.rstrip("\n")):
                start = i + 1
                break
        else:
            raise KeyError(key)
        for j in range(start, len(lines)):
            if lines[j][:1] not in (" ", "\t", "#", "\n", ""):
                end = j
                break
        indent = "  "
    pattern = re.compile(rf"^({indent}{re.escape(parts[-1])}:[ \t]*)([^#\n]*?)([ \t]+#.*)?(\n?)$")
    for i in range(start, end):
        m = pattern.match(lines[i])
        if m and m.group(2).strip():
            lines[i] = m.group(1) + rendered + (m.group(3) or "") + m.group(4)
            return "".join(lines)
    raise KeyError(key)


def _move_data_paths(text: str, data_dir: str) -> str:
    """Every value ``./data`` or ``./data/...`` (quoted or not) moves under ``data_dir``."""
    return re.sub(r'^([^#\n]*?:[ \t]*"?)\./data(?=[/"\s#]|$)', lambda m: m.group(1) + data_dir,
                  text, flags=re.M)


def _lookup(data: Any, key: str) -> Any:
    for part in key.split("."):
        data = data[part]
    return data


def seed_config(template: str, *, data_dir: str, settings: Mapping[str, object]) -> str:
    """The first configuration of an install (see the module docstring). Raises ValueError when
    the template lacks a key or the result does not parse."""
    text = _move_data_paths(template, data_dir)
    for key, value in settings.items():
        try:
            text = set_value(text, key, value)
        except KeyError:
            raise ValueError(f"{key}: the template has no line for this key") from None
    data = yaml.safe_load(text)
    try:
        config = parse_config(data)
    except ConfigError as e:
        raise ValueError(f"the seeded configuration does not parse: {e}") from None
    for key, value in settings.items():
        got = _lookup(data, key)
        if got != value:
            raise ValueError(f"{key}: wrote {value!r} but it reads back as {got!r}")
    if config.data_dir != data_dir:
        raise ValueError(f"data_dir: wrote {data_dir!r} but it reads back as {config.data_dir!r}")
    return text


def differences(config_data: Any, settings: Mapping[str, object]) -> list[tuple[str, object, object]]:
    """(key, current, wanted) for each key whose value differs (defaults count as current)."""
    config = parse_config(config_data)
    out = []
    for key, wanted in settings.items():
        current: Any = config
        for part in key.split("."):
            current = getattr(current, part)
        if isinstance(current, tuple):
            current = list(current)
        if current != wanted:
            out.append((key, current, wanted))
    return out


def components(config: Config) -> frozenset[str]:
    from tgateway.tap import components_for

    return components_for(config)


def ports(config: Config) -> list[Port]:
    """Every port the gateway listens on with this configuration."""
    c = components(config)
    out: list[Port] = []
    if "gateway" in c:
        out.append(Port("tcp", config.gateway.port, config.gateway.host, "HTTP API (gateway)"))
    if "blossom" in c:
        out.append(Port("tcp", config.blossom_server.port, config.blossom_server.host, "Blossom"))
    if "tracker" in c:
        if config.tracker.udp_port:
            out.append(Port("udp", config.tracker.udp_port, config.tracker.host, "UDP tracker"))
        if config.tracker.http_port:
            out.append(Port("tcp", config.tracker.http_port, config.tracker.host,
                            "HTTP tracker (the torrents' first announce URL; WebSocket too)"))
    if "dht" in c:
        out.append(Port("udp", config.dht.port, config.dht.host, "DHT"))
        if config.dht.host6:
            out.append(Port("udp", config.dht.port, config.dht.host6, "DHT (IPv6)"))
    if "peer" in c:
        out.append(Port("tcp", config.peer.port, config.peer.host, "BitTorrent peer"))
        if config.peer.utp:
            out.append(Port("udp", config.peer.port, config.peer.host, "BitTorrent peer (uTP)"))
    return [p for p in out if p.port]


HTTP_PORTS = ("HTTP API (gateway)", "Blossom")


def nofile_budget(config: Config) -> dict[str, int]:
    """LimitNOFILE, part by part (see the constants above)."""
    c = components(config)
    parts = {"base": NOFILE_BASE}
    if "peer" in c:
        n = config.peer.max_connections
        parts["peer"] = n + max(8, n // 4)  # handshaken + handshaking slots (tgateway.peer.protocol)
    if "tracker" in c:
        parts["tracker WebSocket"] = NOFILE_TRACKER_WS
        if config.tracker.http_port:
            parts["tracker HTTP"] = NOFILE_TRACKER_HTTP
    http_ports = sum(1 for p in ports(config) if p.proto == "tcp" and p.what in HTTP_PORTS)
    if http_ports:
        parts["HTTP"] = NOFILE_HTTP_PER_PORT * http_ports
    if "transcode" in c and config.transcoding.enabled:
        parts["transcoding"] = NOFILE_PER_TRANSCODE * config.transcoding.concurrent_jobs
    return parts


def writable_paths(config: Config) -> list[str]:
    """The folders the gateway writes: the data folder, and the folder of every path key that
    lies outside it."""
    data = PurePosixPath(config.data_dir)
    out = [str(data)]
    st = config.storage
    for p in (str(PurePosixPath(st.metadata_db).parent), st.blob_storage, st.chunk_storage,
              config.transcoding.work_dir):
        path = PurePosixPath(p)
        if path != data and data not in path.parents and str(path) not in out:
            out.append(str(path))
    return out


def _upstream(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def facts(config: Config) -> dict[str, str]:
    c = components(config)
    budget = nofile_budget(config)
    low = [p for p in ports(config) if p.port < 1024]
    total = sum(budget.values())
    return {
        "DATA_DIR": config.data_dir,
        "WRITABLE_PATHS": " ".join(writable_paths(config)),
        "GATEWAY_ENABLED": "1" if "gateway" in c else "0",
        "GATEWAY_UPSTREAM": _upstream(config.gateway.host, config.gateway.port),
        "BLOSSOM_ENABLED": "1" if "blossom" in c else "0",
        "BLOSSOM_UPSTREAM": _upstream(config.blossom_server.host, config.blossom_server.port),
        "NOFILE": str(-(-total // 1024) * 1024),
        "NOFILE_PARTS": " + ".join(f"{k} {v}" for k, v in budget.items()),
        "LOW_PORTS": " ".join(f"{p.proto}/{p.port}" for p in low),
        "PORTS": "\n".join(f"{p.proto}/{p.port}\t{p.what}" + ("\t(loopback only)" if p.loopback else "")
                           for p in ports(config)),
    }


def _settings(pairs: Sequence[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: expected KEY=JSON")
        out[key] = json.loads(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tgateway.deploy")
    sub = parser.add_subparsers(dest="command", required=True)
    seed = sub.add_parser("seed")
    seed.add_argument("template")
    seed.add_argument("out")
    seed.add_argument("--data-dir", required=True)
    seed.add_argument("--set", action="append", default=[])
    fact = sub.add_parser("facts")
    fact.add_argument("config")
    check = sub.add_parser("check")
    check.add_argument("config")
    check.add_argument("--set", action="append", default=[])
    args = parser.parse_args(argv)
    try:
        if args.command == "seed":
            with open(args.template, encoding="utf-8") as f:
                text = seed_config(f.read(), data_dir=args.data_dir, settings=_settings(args.set))
            with open(args.out, "x", encoding="utf-8") as f:
                f.write(text)
        elif args.command == "facts":
            for k, v in facts(load_config(args.config)).items():
                print(f"{k}={shlex.quote(v)}")
        else:
            with open(args.config, encoding="utf-8") as f:
                data = yaml.safe_load(f)
            for key, current, wanted in differences(data, _settings(args.set)):
                print(f"{key}: is {json.dumps(current)}, this install wants {json.dumps(wanted)}")
    except (ConfigError, ValueError, OSError) as e:
        print(f"tgateway.deploy: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
