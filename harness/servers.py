"""Servers the tests talk to: nostr-relay, opentracker, and static pages for the browser."""


from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.ports import free_tcp_port, free_tcp_udp_port, wait_for_tcp, wait_for_websocket
from harness.procs import ClientProcess
from harness.tools import CLIENTS_DIR, nostr_relay, opentracker


class NostrRelay:
    """A running ``nostr-relay`` 1.14 (see ``start_nostr_relay``)."""

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.directory = directory
        self.url = f"ws://{host}:{port}"

    def stop(self) -> None:
        """Stop the relay and its gunicorn worker (the whole process group)."""
        self.process.stop()


def start_nostr_relay(
    directory: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    timeout: float = 60.0,
    config: Mapping[str, Any] | None = None,
    port: int | None = None,
) -> NostrRelay:
    """Start ``nostr-relay -c CONFIG serve`` on a free port; return once it accepts WebSockets.

    Its config, SQLite file and HOME (gunicorn writes a control socket there) live in
    ``directory``. ``config`` entries override the defaults written here (top-level keys of
    nostr-relay's YAML config, see its ``nostr_relay/config.yaml``). Signatures are checked, the
    age of events is not (tests use fixed timestamps). Call ``stop()`` when done (in a trial
    test: ``self.addCleanup(relay.stop)``). ``port``: a fixed port (a relay that comes up later at
    an address the gateway already knows, or comes back after a stop with the same folder).
    """
    exe = nostr_relay()
    directory = Path(directory)
    home = directory / "home"
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_tcp_port(host)
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    settings: dict[str, Any] = {
        "DEBUG": False,
        "relay_name": "tgateway test relay",
        "relay_description": "throwaway relay started by tgateway's tests",
        "max_event_size": 65536,
        "storage": {
            "sqlalchemy.url": f"sqlite+aiosqlite:///{directory / 'nostr.sqlite3'}",
            "num_concurrent_reqs": 4,
            "num_concurrent_adds": 1,
            "validators": [
                "nostr_relay.validators.is_not_too_large",
                "nostr_relay.validators.is_signed",
            ],
        },
        "verification": {"nip05_verification": "disabled"},
        "gunicorn": {"bind": bind, "workers": 1, "loglevel": "warning", "reload": False},
        "authentication": {"enabled": False},
        "garbage_collector": {"collect_interval": 3600},
    }
    settings.update(config or {})
    config_file = directory / "nostr-relay.yaml"
    # JSON is valid YAML.
    config_file.write_text(json.dumps(settings, indent=2) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(home)
    process = ClientProcess(
        [exe, "-c", str(config_file), "serve"], env=env, cwd=directory, name="nostr-relay"
    )
    try:
        wait_for_websocket(host, port, timeout=timeout, process=process)
    except BaseException:
        process.stop()
        raise
    return NostrRelay(process, host, port, directory)




class OpenTracker:
    """A running opentracker (see ``start_opentracker``)."""

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.directory = directory
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.http_announce = f"http://{netloc}/announce"
        self.udp_announce = f"udp://{netloc}/announce"

    def stop(self) -> None:
        self.process.stop()


def start_opentracker(
    directory: str | os.PathLike[str],
    info_hashes: Sequence[str],
    *,
    host: str = "127.0.0.1",
    timeout: float = 20.0,
) -> OpenTracker:
    """Start Debian's opentracker on one free port (TCP and UDP) of ``host``.

    Debian's build only serves whitelisted torrents (``info_hashes``: 40-hex v1 info-hashes). It
    chroots into its directory and drops to ``nobody`` before reading the whitelist, so the
    whitelist sits in ``directory`` (made world-readable) under a relative name. Call ``stop()``.
    """
    exe = opentracker()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    whitelist = directory / "whitelist"
    whitelist.write_text("".join(f"{h.lower()}\n" for h in info_hashes))
    whitelist.chmod(0o644)
    port = free_tcp_udp_port(host)
    argv = [exe, "-i", host, "-p", str(port), "-P", str(port), "-d", str(directory)]
    process = ClientProcess([*argv, "-w", "whitelist"], cwd=directory, name="opentracker")
    try:
        wait_for_tcp(host, port, timeout=timeout, process=process)
    except BaseException:
        process.stop()
        raise
    return OpenTracker(process, host, port, directory)



BROWSER_DIR = CLIENTS_DIR / "browser"


class StaticFiles:
    """A loopback HTTP server (a thread) serving a fixed set of files: ``url(name)``."""

    TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
             ".map": "application/json"}

    def __init__(self, files: Mapping[str, str | os.PathLike[str]], host: str = "127.0.0.1") -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        table = {"/" + name.lstrip("/"): Path(path) for name, path in files.items()}
        types = self.TYPES

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = table.get(self.path.split("?", 1)[0])
                if path is None:
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", types.get(path.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/{name.lstrip('/')}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)

    def __enter__(self) -> StaticFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
