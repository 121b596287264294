"""The BitTorrent daemons qBittorrent, Transmission and Deluge, driven through their own interfaces."""


from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.ports import free_tcp_port, free_tcp_udp_port, wait_for_tcp
from harness.procs import ClientProcess, run
from harness.tools import ClientFailed, private_home_env, which

#
# Each runs in the foreground as a ClientProcess with every file of its own (config, state, HOME,
# XDG folders) under the test's folder, DHT, LSD, PEX, UPnP and NAT-PMP off, and is driven the way
# its users drive it: qBittorrent through its Web API, Transmission through its RPC, Deluge with
# deluge-console. They share one interface (``TorrentDaemon``) so a test can run the same scenario
# on each. Start them inside a ``NetworkNamespace`` (Transmission refuses loopback peers).


def qbittorrent_nox() -> str:
    return which("qbittorrent-nox", "qbittorrent-nox")


def transmission_daemon() -> str:
    return which("transmission-daemon", "transmission-daemon")


def deluged() -> str:
    return which("deluged", "deluged")


def deluge_console() -> str:
    return which("deluge-console", "deluge-console")


@dataclass(frozen=True)
class TorrentState:
    """One look at a torrent in a daemon: ``done`` once every piece is verified."""

    done: bool
    progress: float
    state: str
    error: str = ""


class TorrentDaemon:
    """A running BitTorrent daemon (see ``start_qbittorrent``, ``start_transmission``,
    ``start_deluge``). ``host``/``port``: where it accepts BitTorrent connections."""

    name = "torrent daemon"

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.directory = directory
        self.version = ""

    def add_torrent(self, data: bytes, save_dir: Path) -> None:
        raise NotImplementedError

    def add_magnet(self, uri: str, save_dir: Path) -> None:
        raise NotImplementedError

    def state(self, info_hash: str) -> TorrentState | None:
        """The torrent's state, or None while the daemon does not list it."""
        raise NotImplementedError

    def remove(self, info_hash: str) -> None:
        """Remove the torrent and its data; returns once the daemon no longer lists it."""
        raise NotImplementedError

    def wait_done(self, info_hash: str, timeout: float = 60.0, interval: float = 0.25) -> TorrentState:
        """Block until the torrent is complete; ClientFailed on a client error or if the daemon
        exits, TimeoutError after ``timeout`` seconds (with the states seen and the output)."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            if self.process.poll() is not None:
                raise ClientFailed(f"{self.name} exited\n{self.process.describe()}")
            state = self.state(info_hash)
            if state is not None:
                note = f"{state.state} {state.progress:.3f}"
                if not seen or seen[-1] != note:
                    seen.append(note)
                if state.error:
                    raise ClientFailed(f"{self.name}: {state.error}\n{self.process.describe()}")
                if state.done:
                    return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: {info_hash} not complete within {timeout}s; "
                                   f"states: {seen}\n{self.process.describe()}")
            time.sleep(interval)

    def _wait_gone(self, info_hash: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.state(info_hash) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} still lists {info_hash} after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> TorrentDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http(url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None,
          timeout: float = 20.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with urllib; ``(status, headers, body)`` also for 4xx/5xx answers."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=data, headers=dict(headers or {}),
                                     method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def _multipart(fields: Mapping[str, str], files: Mapping[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "tgateway" + os.urandom(12).hex()
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, content) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: application/x-bittorrent\r\n\r\n'
                     .encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class QBittorrent(TorrentDaemon):
    """``qbittorrent-nox`` driven through its Web API (v2) on 127.0.0.1, where the profile lets
    local clients in without a password."""

    name = "qbittorrent-nox"

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path,
                 webui_port: int) -> None:
        super().__init__(process, host, port, directory)
        self.api = f"http://127.0.0.1:{webui_port}/api/v2/"

    def call(self, method: str, fields: Mapping[str, str] | None = None,
             files: Mapping[str, tuple[str, bytes]] | None = None) -> bytes:
        """GET ``method`` (no fields), or POST it as a form (multipart when ``files`` is given)."""
        from urllib.parse import urlencode

        if files is not None:
            body, kind = _multipart(fields or {}, files)
            status, _, answer = _http(self.api + method, body, {"Content-Type": kind})
        elif fields is not None:
            status, _, answer = _http(self.api + method, urlencode(fields).encode(),
                                      {"Content-Type": "application/x-www-form-urlencoded"})
        else:
            status, _, answer = _http(self.api + method)
        if status != 200:
            raise ClientFailed(f"{self.name}: {method} answered {status}: {answer[:300]!r}")
        return answer

    def add_torrent(self, data: bytes, save_dir: Path) -> None:
        answer = self.call("torrents/add", {"savepath": str(save_dir)},
                           {"torrents": ("file.torrent", data)})
        if answer.strip() != b"Ok.":
            raise ClientFailed(f"{self.name} refused the torrent: {answer!r}")

    def add_magnet(self, uri: str, save_dir: Path) -> None:
        answer = self.call("torrents/add", {"urls": uri, "savepath": str(save_dir)}, {})
        if answer.strip() != b"Ok.":
            raise ClientFailed(f"{self.name} refused the magnet link: {answer!r}")

    def state(self, info_hash: str) -> TorrentState | None:
        found = json.loads(self.call(f"torrents/info?hashes={info_hash}"))
        if not found:
            return None
        t = found[0]
        error = t["state"] if t["state"] in ("error", "missingFiles") else ""
        done = t["progress"] == 1 and t["amount_left"] == 0 and t["state"] in (
            "uploading", "stalledUP", "pausedUP", "queuedUP", "forcedUP")
        return TorrentState(done, float(t["progress"]), t["state"], error)

    def remove(self, info_hash: str) -> None:
        self.call("torrents/delete", {"hashes": info_hash, "deleteFiles": "true"})
        self._wait_gone(info_hash)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("app/shutdown", {})
                self.process.proc.wait(10)
            except (OSError, ClientFailed, subprocess.TimeoutExpired):
                pass
        self.process.stop()


def start_qbittorrent(directory: str | os.PathLike[str], *, host: str = "127.0.0.1",
                      timeout: float = 30.0) -> QBittorrent:
    """Start ``qbittorrent-nox`` with a profile in ``directory``, BitTorrent on ``host``.

    The profile accepts the legal notice, turns DHT, PEX, LSD and UPnP/NAT-PMP off and lets
    Web API clients on 127.0.0.1 in without a password. Returns once the Web API answers.
    """
    exe = qbittorrent_nox()
    directory = Path(directory)
    config_dir = directory / "profile" / "qBittorrent" / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    webui_port = free_tcp_port("127.0.0.1")
    port = free_tcp_udp_port(host)
    (config_dir / "qBittorrent.conf").write_text("\n".join([
        "[LegalNotice]", "Accepted=true", "",
        "[BitTorrent]",
        f"Session\\Port={port}", "Session\\Interface=lo", "Session\\InterfaceName=lo",
        f"Session\\InterfaceAddress={host}",
        "Session\\DHTEnabled=false", "Session\\PeXEnabled=false", "Session\\LSDEnabled=false",
        f"Session\\DefaultSavePath={directory / 'downloads'}", "Session\\TempPathEnabled=false",
        "Session\\QueueingSystemEnabled=false", "",
        "[Preferences]",
        "WebUI\\Address=127.0.0.1", f"WebUI\\Port={webui_port}", "WebUI\\LocalHostAuth=false",
        "Connection\\UPnP=false",
        "Connection\\ResolvePeerCountries=false", "General\\Locale=en", "",
    ]))
    process = ClientProcess([exe, f"--profile={directory / 'profile'}"],
                            env=private_home_env(directory), cwd=directory, name="qbittorrent-nox")
    daemon = QBittorrent(process, host, port, directory, webui_port)
    try:
        wait_for_tcp("127.0.0.1", webui_port, timeout=timeout, process=process)
        daemon.version = daemon.call("app/version").decode().strip()
    except BaseException:
        process.stop()
        raise
    return daemon


class Transmission(TorrentDaemon):
    """``transmission-daemon`` driven through its JSON RPC on 127.0.0.1."""

    name = "transmission-daemon"

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path,
                 rpc_port: int) -> None:
        super().__init__(process, host, port, directory)
        self.rpc_url = f"http://127.0.0.1:{rpc_port}/transmission/rpc"
        self._session_id = ""

    def rpc(self, method: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Call ``method``; its ``arguments``. ClientFailed unless the result is "success"."""
        body = json.dumps({"method": method, "arguments": dict(arguments or {})}).encode()
        for _ in range(3):
            status, headers, answer = _http(self.rpc_url, body, {
                "Content-Type": "application/json", "X-Transmission-Session-Id": self._session_id})
            if status == 409:  # the CSRF handshake: retry with the id it gives
                self._session_id = {k.lower(): v for k, v in headers.items()}[
                    "x-transmission-session-id"]
                continue
            break
        if status != 200:
            raise ClientFailed(f"{self.name}: {method} answered {status}: {answer[:300]!r}")
        reply = json.loads(answer)
        if reply.get("result") != "success":
            raise ClientFailed(f"{self.name}: {method}: {reply.get('result')}")
        result: dict[str, Any] = reply.get("arguments", {})
        return result

    def _add(self, arguments: dict[str, Any], save_dir: Path) -> None:
        added = self.rpc("torrent-add", {**arguments, "download-dir": str(save_dir), "paused": False})
        if "torrent-added" not in added:
            raise ClientFailed(f"{self.name} did not add the torrent: {added}")

    def add_torrent(self, data: bytes, save_dir: Path) -> None:
        self._add({"metainfo": base64.b64encode(data).decode()}, save_dir)

    def add_magnet(self, uri: str, save_dir: Path) -> None:
        self._add({"filename": uri}, save_dir)

    def state(self, info_hash: str) -> TorrentState | None:
        fields = ["hashString", "status", "percentDone", "leftUntilDone", "metadataPercentComplete",
                  "error", "errorString"]
        found = self.rpc("torrent-get", {"ids": [info_hash], "fields": fields})["torrents"]
        if not found:
            return None
        t = found[0]
        # status: 0 stopped, 1/2 (waiting to) check, 3/4 (waiting to) download, 5/6 (waiting to) seed.
        # error 3 is a local error; 1 and 2 are tracker warnings and errors, which a torrent
        # with several trackers or a web seed can live with.
        done = t["metadataPercentComplete"] == 1 and t["leftUntilDone"] == 0 and t["status"] in (5, 6)
        error = t["errorString"] if t["error"] == 3 else ""
        return TorrentState(done, float(t["percentDone"]), str(t["status"]), error)

    def remove(self, info_hash: str) -> None:
        self.rpc("torrent-remove", {"ids": [info_hash], "delete-local-data": True})
        self._wait_gone(info_hash)


def start_transmission(directory: str | os.PathLike[str], *, host: str = "127.0.0.1",
                       timeout: float = 30.0) -> Transmission:
    """Start ``transmission-daemon -f`` with its config folder in ``directory``, peers on
    ``host`` (not a loopback address: Transmission drops 127.x peers as "martian"; use a
    NetworkNamespace), RPC on 127.0.0.1 without authentication. Returns once the RPC answers."""
    exe = transmission_daemon()
    directory = Path(directory)
    config_dir = directory / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    rpc_port = free_tcp_port("127.0.0.1")
    port = free_tcp_udp_port(host)
    settings = {
        "rpc-enabled": True, "rpc-bind-address": "127.0.0.1", "rpc-port": rpc_port,
        "rpc-authentication-required": False, "rpc-whitelist-enabled": True,
        "rpc-whitelist": "127.0.0.1", "rpc-host-whitelist-enabled": False,
        "bind-address-ipv4": host, "peer-port": port, "peer-port-random-on-start": False,
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "port-forwarding-enabled": False, "blocklist-enabled": False,
        "download-dir": str(directory / "downloads"), "incomplete-dir-enabled": False,
        "watch-dir-enabled": False, "start-added-torrents": True, "message-level": 2,
        "ratio-limit-enabled": False, "idle-seeding-limit-enabled": False,
    }
    (config_dir / "settings.json").write_text(json.dumps(settings, indent=1))
    env = private_home_env(directory)
    env["TRANSMISSION_HOME"] = str(config_dir)
    process = ClientProcess([exe, "-f", "-g", str(config_dir)], env=env, cwd=directory,
                            name="transmission-daemon")
    daemon = Transmission(process, host, port, directory, rpc_port)
    try:
        wait_for_tcp("127.0.0.1", rpc_port, timeout=timeout, process=process)
        daemon.version = str(daemon.rpc("session-get", {"fields": ["version"]})["version"])
    except BaseException:
        process.stop()
        raise
    return daemon


class Deluge(TorrentDaemon):
    """``deluged`` driven with ``deluge-console`` (one command line per call)."""

    name = "deluged"

    def __init__(self, process: ClientProcess, host: str, port: int, directory: Path,
                 daemon_port: int, password: str) -> None:
        super().__init__(process, host, port, directory)
        self.daemon_port = daemon_port
        self.password = password

    def console(self, command: str, timeout: float = 30.0) -> str:
        """Run ``deluge-console`` connected to the daemon; its output."""
        argv = [deluge_console(), "-c", str(self.directory / "console"), "-d", "127.0.0.1",
                "-p", str(self.daemon_port), "-U", "localclient", "-P", self.password, command]
        result = run(argv, timeout=timeout, env=private_home_env(self.directory))
        out = result.stdout + result.stderr
        if "Failed to connect" in out or "Connection refused" in out:
            raise ClientFailed(f"deluge-console could not connect: {out}")
        return result.stdout

    def _add(self, source: str, save_dir: Path) -> None:
        out = self.console(f'add -p "{save_dir}" "{source}"')
        if "Torrent added!" not in out:
            raise ClientFailed(f"{self.name} did not add {source[:80]}: {out}")

    def add_torrent(self, data: bytes, save_dir: Path) -> None:
        path = self.directory / f"add-{os.urandom(4).hex()}.torrent"
        path.write_bytes(data)
        self._add(str(path), save_dir)

    def add_magnet(self, uri: str, save_dir: Path) -> None:
        self._add(uri, save_dir)

    def state(self, info_hash: str) -> TorrentState | None:
        out = self.console(f"info -v {info_hash}")
        fields = dict(re.findall(r"^(State|Progress): (.*)$", out, re.M))
        if "State" not in fields:
            return None
        state = fields["State"].split()[0]
        # "Progress:" is printed until the torrent is finished.
        progress = 1.0
        if "Progress" in fields:
            progress = float(fields["Progress"].split("%")[0]) / 100
        done = state == "Seeding" and "Progress" not in fields
        error = fields["State"] if state == "Error" else ""
        return TorrentState(done, progress, state, error)

    def remove(self, info_hash: str) -> None:
        self.console(f"rm --confirm --remove_data {info_hash}")
        self._wait_gone(info_hash)


def start_deluge(directory: str | os.PathLike[str], *, host: str = "127.0.0.1",
                 timeout: float = 30.0) -> Deluge:
    """Start ``deluged -d`` with its config folder in ``directory``, BitTorrent on ``host``, the
    daemon's RPC on 127.0.0.1 for ``deluge-console``. Returns once the RPC port accepts."""
    exe = deluged()
    deluge_console()
    directory = Path(directory)
    config_dir = directory / "config"
    (directory / "console").mkdir(parents=True, exist_ok=True)
    config_dir.mkdir(parents=True, exist_ok=True)
    daemon_port = free_tcp_port("127.0.0.1")
    port = free_tcp_udp_port(host)
    password = os.urandom(8).hex()
    (config_dir / "auth").write_text(f"localclient:{password}:10\n")
    (config_dir / "auth").chmod(0o600)
    core = {
        "daemon_port": daemon_port, "allow_remote": False, "listen_ports": [port, port],
        "random_port": False, "listen_interface": host, "outgoing_interface": "",
        "dht": False, "upnp": False, "natpmp": False, "utpex": False, "lsd": False,
        "new_release_check": False, "send_info": False, "enabled_plugins": [],
        "download_location": str(directory / "downloads"), "move_completed": False,
        "torrentfiles_location": str(directory / "torrents"), "copy_torrent_file": False,
        "pre_allocate_storage": False, "geoip_db_location": str(directory / "no-geoip.dat"),
        "stop_seed_at_ratio": False, "queue_new_to_top": False,
        "plugins_location": str(config_dir / "plugins"),
    }
    # Deluge's config files are two JSON objects: the file format version, then the values.
    (config_dir / "core.conf").write_text(json.dumps({"file": 1, "format": 1})
                                          + json.dumps(core, indent=1))
    process = ClientProcess(
        [exe, "-d", "-c", str(config_dir), "-L", "warning", "-u", "127.0.0.1",
         "-p", str(daemon_port), "-i", host],
        env=private_home_env(directory), cwd=directory, name="deluged")
    daemon = Deluge(process, host, port, directory, daemon_port, password)
    try:
        wait_for_tcp("127.0.0.1", daemon_port, timeout=timeout, process=process)
        out = run([deluge_console(), "-c", str(directory / "console"), "--version"],
                  env=private_home_env(directory), check=False)
        match = re.search(r"deluge-console (\S+)", out.stdout + out.stderr)
        daemon.version = match.group(1) if match else ""
    except BaseException:
        process.stop()
        raise
    return daemon


