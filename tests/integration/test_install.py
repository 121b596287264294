"""``scripts/install`` into a temporary root, then the installed gateway behind a real nginx.

One install per module (a real virtualenv: about a minute), with ``--domain gw.test`` and a
self-signed certificate made here (``--tls-cert``/``--tls-key``: no certbot):

* the layout: code, configuration (created from ``configs/config.yaml``, comments kept, with the
  https URLs and the proxy trusted), data folder, unit, nginx site, and the installed ``twistd``
  runs the plugin;
* ``systemd-analyze verify --root`` accepts the unit without a word (and the offline security
  review rates it); ``nginx -t`` accepts the site with the certificate;
* re-runs keep the configuration byte for byte and the data, follow the configuration's ports,
  and a second identical re-run changes nothing; ``--uninstall`` removes what the install put in
  place and keeps configuration and data, ``--purge`` removes those too;
* end to end: the installed ``twistd`` with the installed configuration (its ports moved to free
  loopback ports, as an operator edits it) behind nginx running the installed site (its
  ``listen`` lines moved to loopback ports): a 1 GiB upload streams through (the gateway holds
  the bytes while the client is still sending; its RSS stays flat), the tracker lists the
  client's own address (127.0.0.2) from ``X-Forwarded-For``, the WebSocket tracker works with the
  bittorrent-tracker client over ``wss://``, Blossom answers on its own name, and every link the
  gateway gives out uses the https public URLs.

Names: clients connect to 127.0.0.1 and send ``gw.test`` / ``blossom.gw.test`` as SNI and Host
(Python: a connection subclass; node: a ``dns.lookup`` preload), so nothing needs /etc/hosts.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_from_bytes, urlsplit

import pytest
import yaml

from harness import procs, tools
from harness.ports import free_tcp_port, wait_for_tcp
from tgateway import bencode
from tgateway.config import load_config
from tgateway.nostr.event import EventTemplate, sign

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"
DOMAIN = "gw.test"
BLOSSOM = "blossom.gw.test"
GIB = 1 << 30


@dataclass
class Install:
    root: Path
    work: Path
    cert: Path
    key: Path
    output: str
    rerun: dict[str, Any] = field(default_factory=dict)

    def path(self, final: str) -> Path:
        return self.root / final.lstrip("/")


def install(*args: str | Path) -> str:
    result = procs.run([INSTALL, *map(str, args)], timeout=900)
    return result.stdout + result.stderr


def snapshot(root: Path) -> dict[str, str]:
    """Every file and link outside the virtualenv: relative path -> content hash or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.startswith(("opt/tgateway/venv", "usr/lib/systemd/system")) or rel == "opt/tgateway/INSTALLED":
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def make_certificate(work: Path) -> tuple[Path, Path]:
    cert, key = work / "tls" / "cert.pem", work / "tls" / "key.pem"
    cert.parent.mkdir()
    procs.run([tools.which("openssl"), "req", "-x509", "-newkey", "ec",
                     "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                     "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN},DNS:{BLOSSOM}",
                     "-keyout", key, "-out", cert])
    return cert, key


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Install:
    tools.which("nginx", "nginx-light")
    tools.which("systemd-analyze", "systemd")
    work = tmp_path_factory.mktemp("install")
    cert, key = make_certificate(work)
    root = work / "root"
    output = install("--root", root, "--domain", DOMAIN, "--email", "ops@gw.test",
                     "--tls-cert", cert, "--tls-key", key)
    return Install(root, work, cert, key, output)


@pytest.fixture(scope="module")
def rerun(installed: Install) -> Install:
    """The operator moves every port to a free loopback one (a dump of the YAML: the file is
    theirs), leaves a file in the data folder, and re-runs the installer twice."""
    config_path = installed.path("/etc/tgateway/config.yaml")
    data = yaml.safe_load(config_path.read_text())
    data["gateway"]["port"] = free_tcp_port()
    data["blossom_server"]["port"] = free_tcp_port()
    data["tracker"].update(udp_port=0, http_port=free_tcp_port(), host="127.0.0.1")
    data["peer"].update(port=free_tcp_port(), host="127.0.0.1")
    data["dht"]["enabled"] = False
    data["transcoding"]["enabled"] = False
    config_path.write_text("# edited by the operator\n" + yaml.safe_dump(data, sort_keys=False))
    keep = installed.path("/var/lib/tgateway/keep-me")
    keep.write_text("data")
    before = snapshot(installed.root)
    config_bytes = config_path.read_bytes()
    second = install("--root", installed.root)
    middle = snapshot(installed.root)
    third = install("--root", installed.root)
    after = snapshot(installed.root)
    # An upgrade: a newer checkout (a copy of this one with one module changed) re-runs.
    newer = installed.work / "newer"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            (newer / src.relative_to(REPO)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, newer / src.relative_to(REPO))
    with open(newer / "tgateway" / "deploy.py", "a") as f:
        f.write("\nUPGRADE_MARKER = 1\n")
    upgrade = procs.run([newer / "scripts" / "install", "--root", installed.root], timeout=900)
    installed.rerun = {"before": before, "middle": middle, "after": after, "config": config_bytes,
                       "second": second, "third": third, "data": data,
                       "upgrade": upgrade.stdout + upgrade.stderr,
                       "upgraded": snapshot(installed.root)}
    return installed


# --------------------------------------------------------------------------- layout


def test_install_lays_out_code_configuration_data_unit_and_site(installed: Install) -> None:
    p = installed.path
    for final in ("/opt/tgateway/venv/bin/twistd", "/etc/tgateway/config.yaml",
                  "/etc/systemd/system/tgateway.service", "/etc/nginx/sites-available/tgateway",
                  "/usr/lib/sysusers.d/tgateway.conf", "/usr/lib/tmpfiles.d/tgateway.conf"):
        assert p(final).is_file(), final
    assert p("/var/lib/tgateway").is_dir()
    assert os.readlink(p("/etc/nginx/sites-enabled/tgateway")) == "../sites-available/tgateway"
    assert "u tgateway - " in p("/usr/lib/sysusers.d/tgateway.conf").read_text()

    # The configuration: the shipped file with its comments, the data folder and the https URLs.
    text = p("/etc/tgateway/config.yaml").read_text()
    assert "# Embedded Blossom server" in text
    config = load_config(p("/etc/tgateway/config.yaml"))
    assert config.gateway.public_url == f"https://{DOMAIN}"
    assert config.blossom_server.public_url == f"https://{BLOSSOM}"
    assert (config.gateway.host, config.blossom_server.host) == ("127.0.0.1", "127.0.0.1")
    assert set(config.trusted_proxies) == {"127.0.0.1", "::1"}
    assert config.data_dir == "/var/lib/tgateway"
    for path in (config.storage.metadata_db, config.storage.blob_storage,
                 config.storage.chunk_storage, config.transcoding.work_dir):
        assert path.startswith("/var/lib/tgateway/"), path

    # The installed code runs the plugin on its own (no checkout on the path).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = procs.run([p("/opt/tgateway/venv/bin/twistd"), "tgateway", "--help"], env=env,
                          cwd=installed.work)
    assert "--config" in out.stdout

    unit = p("/etc/systemd/system/tgateway.service").read_text()
    for line in ("ExecStart=/opt/tgateway/venv/bin/twistd --nodaemon --pidfile= tgateway "
                 "--config /etc/tgateway/config.yaml",
                 "User=tgateway", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "ReadWritePaths=/var/lib/tgateway", "PrivateTmp=yes",
                 "CapabilityBoundingSet=", "AmbientCapabilities=",
                 # base 1024 + peer 200+50 + tracker WebSocket 16384 + tracker HTTP 4096
                 # + 2 HTTP ports 2*8192 + transcoding 2*16 = 38170, rounded up to 1024s
                 "LimitNOFILE=38912"):
        assert line in unit.splitlines(), line

    site = p("/etc/nginx/sites-available/tgateway").read_text()
    for directive in ("proxy_request_buffering off;", "client_max_body_size 0;",
                      "proxy_set_header X-Forwarded-For $remote_addr;",
                      "proxy_set_header X-Forwarded-Proto $scheme;",
                      "proxy_set_header Upgrade $http_upgrade;", f"server_name {BLOSSOM};",
                      f"ssl_certificate {installed.cert};"):
        assert directive in site, directive
    assert "proxy_pass http://127.0.0.1:9877;" in site and "proxy_pass http://127.0.0.1:8082;" in site

    summary = installed.output.split("Ports to open", 1)[1]
    for port in ("tcp/80", "tcp/443", "udp/6969", "tcp/6969", "udp/6883", "tcp/6881"):
        assert port in summary, port
    assert "tcp/9877" not in summary  # the gateway listens on loopback behind nginx


# --------------------------------------------------------------------------- verify and nginx -t


def test_systemd_analyze_verify_accepts_the_unit(installed: Install) -> None:
    analyze = tools.which("systemd-analyze", "systemd")
    units = installed.path("/usr/lib/systemd/system")
    if not units.exists():  # verify --root wants the system's own units (sysinit.target...) there
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    verify = procs.run([analyze, "verify", f"--root={installed.root}", "tgateway.service"],
                             check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    # ... and it does complain about what is wrong (unknown keys are only warnings: rc 0).
    broken = installed.path("/etc/systemd/system/tgateway-broken.service")
    broken.write_text(installed.path("/etc/systemd/system/tgateway.service").read_text()
                      .replace("ProtectSystem=strict", "ProtectSystm=strict"))
    try:
        bad = procs.run([analyze, "verify", f"--root={installed.root}",
                               "tgateway-broken.service"], check=False)
        assert "Unknown key" in bad.stdout + bad.stderr
    finally:
        broken.unlink()
    # The offline security review: exposure at most 4.0 of 10 (the threshold is in tenths).
    security = procs.run([analyze, "security", "--offline=yes", f"--root={installed.root}",
                                "--threshold=40", "tgateway.service"], check=False)
    assert security.returncode == 0, security.stdout[-2000:]


def nginx_conf(work: Path, site_include: Path) -> Path:
    d = work / "nginx"
    d.mkdir(exist_ok=True)
    conf = d / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
    include {site_include};
}}
""")
    return conf


def test_nginx_accepts_the_site(installed: Install) -> None:
    check = installed.work / "check"
    check.mkdir(exist_ok=True)
    conf = nginx_conf(check, installed.path("/etc/nginx/sites-enabled/*"))
    result = procs.run([tools.nginx(), "-t", "-c", conf, "-p", conf.parent], check=False)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


# --------------------------------------------------------------------------- re-runs, uninstall


def test_rerun_keeps_configuration_and_data_and_follows_the_configuration(rerun: Install) -> None:
    r = rerun.rerun
    config_path = rerun.path("/etc/tgateway/config.yaml")
    assert config_path.read_bytes() == r["config"]
    assert rerun.path("/var/lib/tgateway/keep-me").read_text() == "data"
    assert "kept /etc/tgateway/config.yaml" in r["second"]
    # The site follows the configuration's ports, the unit its descriptor budget (DHT and
    # transcoding off); nothing else changed.
    changed = {k for k in r["before"].keys() | r["middle"].keys()
               if r["before"].get(k) != r["middle"].get(k)}
    assert changed == {"etc/nginx/sites-available/tgateway", "etc/systemd/system/tgateway.service"}
    site = rerun.path("/etc/nginx/sites-available/tgateway").read_text()
    assert f"proxy_pass http://127.0.0.1:{r['data']['gateway']['port']};" in site
    assert f"proxy_pass http://127.0.0.1:{r['data']['blossom_server']['port']};" in site
    # A re-run with nothing new changes nothing at all, and keeps the code.
    assert r["after"] == r["middle"]
    assert "wrote" not in r["third"], r["third"]
    assert "code unchanged" in r["third"]
    # A newer checkout installs its code into the same virtualenv; configuration and data stay.
    assert "installing tgateway" in r["upgrade"]
    deploy_py = next(rerun.path("/opt/tgateway/venv/lib").glob("python3*/site-packages/tgateway/deploy.py"))
    assert "UPGRADE_MARKER = 1" in deploy_py.read_text()
    assert r["upgraded"] == r["after"]
    assert config_path.read_bytes() == r["config"]


def test_uninstall_removes_what_it_installed_and_keeps_configuration_and_data(
        rerun: Install, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(rerun.root, root, symlinks=True,  # without the system's units copied in
                    ignore=lambda d, names: ["system"] if d.endswith("usr/lib/systemd") else [])
    config = (root / "etc/tgateway/config.yaml").read_bytes()
    out = install("--root", root, "--uninstall")
    for final in ("opt/tgateway", "etc/systemd/system/tgateway.service",
                  "etc/nginx/sites-available/tgateway", "etc/nginx/sites-enabled/tgateway",
                  "usr/lib/sysusers.d/tgateway.conf", "usr/lib/tmpfiles.d/tgateway.conf",
                  "etc/tgateway/install.env", "var/www/tgateway-acme"):
        assert not os.path.lexists(root / final), final
    assert (root / "etc/tgateway/config.yaml").read_bytes() == config
    assert (root / "var/lib/tgateway/keep-me").read_text() == "data"
    assert "kept /etc/tgateway/config.yaml" in out
    install("--root", root, "--uninstall", "--purge")
    assert not (root / "etc/tgateway").exists() and not (root / "var/lib/tgateway").exists()


# --------------------------------------------------------------------------- behind nginx


class _Connection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 from ``source``, with the connection's host name as SNI and Host."""

    def __init__(self, name: str, port: int, source: str, context: ssl.SSLContext) -> None:
        super().__init__(name, port, context=context, timeout=120)
        self._source = source

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout, (self._source, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


@dataclass
class Proxied:
    https_port: int
    gateway_pid: int
    data_dir: Path
    context: ssl.SSLContext
    cert: Path
    work: Path
    tracker_port: int  # the dedicated HTTP tracker port (tracker.http_port), not behind nginx

    def connect(self, name: str = DOMAIN, source: str = "127.0.0.2") -> _Connection:
        return _Connection(name, self.https_port, source, self.context)

    def get(self, path: str, name: str = DOMAIN, source: str = "127.0.0.2") -> tuple[int, bytes]:
        c = self.connect(name, source)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def proxied(rerun: Install) -> Iterator[Proxied]:
    work = rerun.work / "e2e"
    data_dir = work / "data"
    data_dir.mkdir(parents=True)
    ports = rerun.rerun["data"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(work / "twistd.log", "wb") as log:
        gateway = subprocess.Popen(
            [rerun.path("/opt/tgateway/venv/bin/twistd"), "--nodaemon", "--pidfile=", "tgateway",
             "--config", rerun.path("/etc/tgateway/config.yaml"), "--data-dir", data_dir],
            cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    https_port, http_port = free_tcp_port(), free_tcp_port()
    site = rerun.path("/etc/nginx/sites-available/tgateway").read_text()
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = re.sub(r"^\s*listen \[::\]:.*\n", "", site, flags=re.M)
    (work / "site.conf").write_text(site)
    conf = nginx_conf(work, work / "site.conf")
    nginx = procs.ClientProcess([tools.nginx(), "-c", conf, "-p", conf.parent,
                                       "-g", "daemon off;"], name="nginx")
    try:
        wait_for_tcp("127.0.0.1", int(ports["gateway"]["port"]), timeout=30)
        wait_for_tcp("127.0.0.1", int(ports["blossom_server"]["port"]), timeout=30)
        wait_for_tcp("127.0.0.1", https_port, timeout=10)
        context = ssl.create_default_context(cafile=str(rerun.cert))
        yield Proxied(https_port, gateway.pid, data_dir, context, rerun.cert, work,
                      int(ports["tracker"]["http_port"]))
    finally:
        nginx.stop()
        _stop(gateway)
        print((work / "twistd.log").read_text()[-3000:])
        shutil.rmtree(data_dir, ignore_errors=True)  # the 1 GiB upload


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def bytes_under(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def test_a_1gib_upload_streams_through_nginx_and_memory_stays_flat(proxied: Proxied) -> None:
    status, _ = proxied.get("/api/health")  # warm up
    assert status == 200
    baseline = rss(proxied.gateway_pid)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(rss(proxied.gateway_pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    held_at_pause = 0
    c = proxied.connect()
    try:
        c.putrequest("PUT", "/api/upload")
        c.putheader("Content-Length", str(GIB))
        c.putheader("X-Filename", "big.bin")
        c.endheaders()
        block = bytearray(os.urandom(1 << 20))
        digest = hashlib.sha256()
        before = bytes_under(proxied.data_dir)
        sent = 0
        while sent < GIB:
            if sent == 256 << 20:
                # Half-way through sending, the gateway already holds most of what was sent:
                # nginx passes the body on as it arrives (with request buffering it would hold
                # all of it until the end, and the gateway would have 0 bytes here).
                deadline = time.monotonic() + 20
                while bytes_under(proxied.data_dir) - before < 128 << 20 and time.monotonic() < deadline:
                    time.sleep(0.05)
                held_at_pause = bytes_under(proxied.data_dir) - before
            block[:8] = sent.to_bytes(8, "big")  # every MiB different
            digest.update(block)
            c.send(bytes(block))
            sent += len(block)
        response = c.getresponse()
        body = json.loads(response.read())
    finally:
        c.close()
        done.set()
        sampler.join()
    assert response.status == 201, body
    assert body["sha256"] == digest.hexdigest() and body["size"] == GIB
    assert held_at_pause >= 128 << 20, held_at_pause
    grown = max(samples) - baseline
    assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB during a 1 GiB upload"

    # Links use the https public URLs, and so do the torrent and the magnet.
    for name, url in body["urls"].items():
        expected = f"https://{BLOSSOM}/" if name == "blossom" else f"https://{DOMAIN}/"
        assert url.startswith(expected), (name, url)
    # the dedicated tracker port first (plain HTTP on its own port, as opentracker), then the
    # gateway's HTTPS and WSS /announce behind nginx
    assert body["trackers"] == [f"http://{DOMAIN}:{proxied.tracker_port}/announce",
                                f"https://{DOMAIN}/announce", f"wss://{DOMAIN}/announce"]
    magnet = parse_qs(urlsplit(body["magnet"]).query)
    assert magnet["ws"] == [f"https://{DOMAIN}/api/webseed/{body['info_hash']}/big.bin"]
    assert magnet["tr"] == body["trackers"]
    status, torrent = proxied.get(urlsplit(body["urls"]["torrent"]).path)
    assert status == 200
    meta = bencode.decode(torrent)
    assert meta[b"url-list"] == [f"https://{DOMAIN}/api/webseed/{body['info_hash']}/".encode()]
    assert meta[b"announce"] == f"http://{DOMAIN}:{proxied.tracker_port}/announce".encode()

    # Blossom, on its own name through the same nginx, serves the same bytes.
    c = proxied.connect(BLOSSOM)
    try:
        c.request("HEAD", "/" + body["sha256"])
        r = c.getresponse()
        r.read()
        assert (r.status, r.getheader("content-length")) == (200, str(GIB))
    finally:
        c.close()


def announce(proxied: Proxied, peer_id: bytes, port: int, source: str,
             info_hash: bytes = b"x" * 20) -> dict[bytes, Any]:
    qs = (f"info_hash={quote_from_bytes(info_hash)}&peer_id={quote_from_bytes(peer_id)}"
          f"&port={port}&uploaded=0&downloaded=0&left=100&compact=0")
    status, body = proxied.get("/announce?" + qs, source=source)
    assert status == 200
    reply: dict[bytes, Any] = bencode.decode(body)
    return reply


def test_the_tracker_sees_the_client_address_through_nginx(proxied: Proxied) -> None:
    # nginx reaches the gateway from 127.0.0.1; the tracker must list 127.0.0.2, the client.
    announce(proxied, b"A" * 20, 6001, "127.0.0.2")
    reply = announce(proxied, b"B" * 20, 6002, "127.0.0.3")
    assert [(p[b"ip"], p[b"port"]) for p in reply[b"peers"]] == [(b"127.0.0.2", 6001)]


def test_the_first_announce_url_answers_on_the_dedicated_port(proxied: Proxied) -> None:
    # The first announce URL is plain HTTP on its own port, not behind nginx: the peer's address
    # is the one the connection comes from, and an X-Forwarded-For is not trusted there.
    ih = b"y" * 20
    announce(proxied, b"C" * 20, 6003, "127.0.0.2", info_hash=ih)
    qs = (f"info_hash={quote_from_bytes(ih)}&peer_id={quote_from_bytes(b'D' * 20)}"
          f"&port=6004&uploaded=0&downloaded=0&left=100&compact=0")
    c = http.client.HTTPConnection("127.0.0.1", proxied.tracker_port, timeout=10,
                                   source_address=("127.0.0.4", 0))
    try:
        c.request("GET", "/announce?" + qs, headers={"X-Forwarded-For": "198.51.100.1"})
        r = c.getresponse()
        reply = bencode.decode(r.read())
    finally:
        c.close()
    assert r.status == 200, reply
    assert [(p[b"ip"], p[b"port"]) for p in reply[b"peers"]] == [(b"127.0.0.2", 6003)]
    later = announce(proxied, b"E" * 20, 6005, "127.0.0.3", info_hash=ih)
    assert sorted((p[b"ip"], p[b"port"]) for p in later[b"peers"]) == [
        (b"127.0.0.2", 6003), (b"127.0.0.4", 6004)]


def test_websocket_tracker_announce_through_nginx(proxied: Proxied) -> None:
    resolve = proxied.work / "resolve.cjs"
    resolve.write_text(
        "const dns = require('dns')\nconst lookup = dns.lookup\n"
        "dns.lookup = function (host, options, callback) {\n"
        f"  if (host === '{DOMAIN}' || String(host).endsWith('.{DOMAIN}')) host = '127.0.0.1'\n"
        "  return lookup.call(this, host, options, callback)\n}\n")
    env = tools.node_env({"NODE_OPTIONS": f"--require {resolve}",
                                "NODE_EXTRA_CA_CERTS": str(proxied.cert)})
    result = procs.run(
        tools.node_command("tracker_client.mjs", f"wss://{DOMAIN}:{proxied.https_port}/announce",
                                 os.urandom(20).hex()),
        env=env, cwd=tools.CLIENTS_DIR, timeout=60).json()
    assert result["ok"], result
    assert result["b_completed"] == {"complete": 2, "incomplete": 0}
    # offers went A <- B through the tracker and the answer came back over the same sockets
    assert set(result["a_peers"]) == {"webrtc:" + "62" * 20}
    assert set(result["b_peers"]) == {"webrtc:" + "61" * 20}


def test_a_port_below_1024_gets_the_one_capability(rerun: Install, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(rerun.root, root, symlinks=True)
    config = root / "etc/tgateway/config.yaml"
    data = yaml.safe_load(config.read_text())
    data["peer"]["port"] = 881
    config.write_text(yaml.safe_dump(data))
    # (with the checkout whose code is installed now: the upgrade in the ``rerun`` fixture)
    result = procs.run([rerun.work / "newer" / "scripts" / "install", "--root", root], timeout=900)
    assert "code unchanged" in result.stdout
    unit = (root / "etc/systemd/system/tgateway.service").read_text().splitlines()
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in unit
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit
    assert "NoNewPrivileges=yes" in unit
    analyze = tools.which("systemd-analyze", "systemd")
    if not (root / "usr/lib/systemd/system").exists():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    verify = procs.run([analyze, "verify", f"--root={root}", "tgateway.service"], check=False)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")


def test_signed_requests_name_the_https_url_through_nginx(proxied: Proxied) -> None:
    # The sign-in challenge names the public URL; a NIP-98 request signed for
    # https://gw.test/... is accepted through nginx (the gateway never rebuilds the URL from
    # the Host header or the scheme it was reached with).
    status, body = proxied.get("/api/auth/challenge")
    assert status == 200
    challenge = json.loads(body)
    assert challenge["url"] == f"https://{DOMAIN}/api/auth/login"
    assert challenge["relay"] == f"https://{DOMAIN}"
    key = b"\x42" * 32

    def nip98(url: str) -> str:
        event = sign(EventTemplate(kind=27235, created_at=int(time.time()),
                                   tags=(("u", url), ("method", "GET"))), key)
        return "Nostr " + base64.b64encode(json.dumps(event.to_json()).encode()).decode()

    for url, expected in ((f"https://{DOMAIN}/api/users/me/stats", 200),
                          ("http://127.0.0.1/api/users/me/stats", 401)):
        c = proxied.connect()
        try:
            c.request("GET", "/api/users/me/stats", headers={"Authorization": nip98(url)})
            r = c.getresponse()
            assert (r.status, url) == (expected, url), r.read()
            r.read()
        finally:
            c.close()
