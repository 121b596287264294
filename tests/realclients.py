"""Locate and run the real clients that integration tests talk to.

Everything here is installed by ``scripts/install-test-deps`` (``make test`` runs it):

- node 20 with the npm clients in ``tests/clients/node_modules`` (webtorrent, bittorrent-tracker,
  bittorrent-dht, create-torrent, parse-torrent, nostr-tools, blossom-client-sdk, ws);
- Debian's ``/usr/bin/python3`` with ``libtorrent`` (python3-libtorrent imports only there, never in
  the project's virtualenv);
- ``aria2c``, ``ffmpeg``/``ffprobe``, ``curl``, ``nginx``, ``opentracker``, ``wrk``, ``prometheus``, ``tor``,
  ``systemd-analyze`` (systemd), ``openssl``;
- the BitTorrent daemons ``qbittorrent-nox``, ``transmission-daemon`` and ``deluged`` (with
  ``deluge-console``), driven through their own interfaces (``start_qbittorrent`` and friends);
- ``nostr-relay`` 1.14 in its own virtualenv, ``.tools/nostr-relay-venv``;
- Debian's ``chromium``, driven by Playwright for Python (the ``test`` extras): see
  ``chromium_browser`` (Playwright never downloads a browser here).

``NetworkNamespace`` gives a test addresses of its own (10.99.x) in a network namespace where
nothing reaches another host (root only): for clients that refuse loopback peers.

When a client is missing the test FAILS with a message naming the client and the command that
installs it. With ``TGATEWAY_ALLOW_MISSING_CLIENTS=1`` in the environment it is skipped instead, with
the same message as the reason. Nothing is skipped silently.

JavaScript: the npm clients are ES modules only (their ``exports`` have no ``require`` entry), so
test scripts are ``.mjs`` files in ``tests/clients/js/`` using ``import``; bare specifiers resolve
by walking up to ``tests/clients/node_modules``. ``NODE_PATH`` is also set, for CommonJS scripts.
A script reports results by printing JSON; ``run_node_json`` parses the last JSON line.

Blocking helpers (``run_node``, ``run``, ``ClientProcess.wait_for_json``) must not be called from
code running on a reactor that the client needs to talk to (it would deadlock): use
``run_deferred`` / ``run_node_deferred`` there, or start the client with ``ClientProcess`` (its
output is drained by threads) and wait with ``ClientProcess.json_deferred``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parent.parent
CLIENTS_DIR = REPO_ROOT / "tests" / "clients"
JS_DIR = CLIENTS_DIR / "js"
NODE_MODULES = CLIENTS_DIR / "node_modules"
TOOLS_DIR = REPO_ROOT / ".tools"
NOSTR_RELAY_VENV = TOOLS_DIR / "nostr-relay-venv"
DEBIAN_PYTHON = "/usr/bin/python3"
INSTALL_SCRIPT = "scripts/install-test-deps"
ALLOW_MISSING_ENV = "TGATEWAY_ALLOW_MISSING_CLIENTS"
INSTALL_HINT = f"install it with `make test` or `{INSTALL_SCRIPT}` (as root)"

# Extra directories searched for binaries: Debian puts nginx and tor in /usr/sbin, which is not
# on a non-root PATH.
_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


# Clients started by ClientProcess / run_deferred that may still be running. A test that dies
# before its cleanup (or a reactor that never fires a timeout) must not leave them behind: they
# are killed when the test process exits.
_LIVE_GROUPS: set[int] = set()
_LIVE_TREES: set[int] = set()


@atexit.register
def _kill_leftovers() -> None:
    for pgid in list(_LIVE_GROUPS):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError:
            pass
    for pid in list(_LIVE_TREES):
        _kill_tree(pid)


class MissingClient(AssertionError):
    """A real client needed by the test is not installed (a test failure, not an error)."""


class ClientFailed(AssertionError):
    """A real client ran but exited with an error; the message holds its output."""


def missing(client: str, detail: str = "") -> NoReturn:
    """Fail (or, with TGATEWAY_ALLOW_MISSING_CLIENTS=1, skip) because ``client`` is missing."""
    message = f"real client missing: {client}"
    if detail:
        message += f" ({detail})"
    message += f"; {INSTALL_HINT}"
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        # unittest.SkipTest is understood by pytest (functions and fixtures) and by trial.
        raise unittest.SkipTest(message)
    raise MissingClient(message)


# --- ports ---------------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(kind: str = "tcp", host: str = "127.0.0.1") -> int:
    """A port that was free on ``host`` a moment ago (``kind`` is "tcp" or "udp").

    Bind to port 0 and close: prefer letting the server under test bind 0 itself and reading the
    port back; use this only for programs that need the port on their command line or config.
    """
    sock_type = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}[kind]
    with socket.socket(_family(host), sock_type) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on ``host`` (see ``free_port``)."""
    return free_port("tcp", host)


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A free UDP port on ``host`` (see ``free_port``)."""
    return free_port("udp", host)


def free_tcp_udp_port(host: str = "127.0.0.1", attempts: int = 50) -> int:
    """A port free for both TCP and UDP on ``host`` (BitTorrent clients listen on both)."""
    for _ in range(attempts):
        port = free_tcp_port(host)
        try:
            with socket.socket(_family(host), socket.SOCK_DGRAM) as sock:
                sock.bind((host, port))
        except OSError:
            continue
        return port
    raise OSError(f"no port free for both TCP and UDP on {host} after {attempts} attempts")


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_tcp(
    host: str,
    port: int,
    timeout: float = 20.0,
    process: ClientProcess | subprocess.Popen[Any] | None = None,
) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Raises TimeoutError after ``timeout`` seconds, or ClientFailed as soon as ``process`` (the
    server being waited for, if given) exits; both messages include its output when known.
    """
    deadline = time.monotonic() + timeout
    while True:
        if tcp_accepts(host, port):
            return
        if process is not None and process.poll() is not None:
            raise ClientFailed(
                f"process exited with {process.returncode} before {host}:{port} accepted"
                + _output_of(process)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{host}:{port} did not accept TCP connections within {timeout}s"
                + _output_of(process)
            )
        time.sleep(0.05)


def websocket_accepts(host: str, port: int, path: str = "/", timeout: float = 2.0) -> bool:
    """Whether ``ws://host:port/path`` completes a WebSocket handshake (HTTP 101) now."""
    key = base64.b64encode(os.urandom(16)).decode()
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request.encode())
            head = b""
            while b"\r\n" not in head and len(head) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return False
    return head.split(b"\r\n", 1)[0].split(b" ")[1:2] == [b"101"]


def wait_for_websocket(
    host: str,
    port: int,
    path: str = "/",
    timeout: float = 30.0,
    process: ClientProcess | subprocess.Popen[Any] | None = None,
) -> None:
    """Block until ``ws://host:port/path`` completes a WebSocket handshake.

    A listening socket is not enough (gunicorn's master listens before its worker serves).
    Raises like ``wait_for_tcp``.
    """
    deadline = time.monotonic() + timeout
    while True:
        if websocket_accepts(host, port, path):
            return
        if process is not None and process.poll() is not None:
            raise ClientFailed(
                f"process exited with {process.returncode} before ws://{host}:{port}{path} "
                "accepted" + _output_of(process)
            )
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ws://{host}:{port}{path} did not accept WebSocket connections within "
                f"{timeout}s" + _output_of(process)
            )
        time.sleep(0.1)


def _output_of(process: object) -> str:
    if isinstance(process, ClientProcess):
        return "\n" + process.describe()
    return ""


# --- finding clients -----------------------------------------------------------------------------


def which(name: str, package: str | None = None) -> str:
    """Absolute path of the program ``name`` (PATH, then the sbin directories), or fail/skip.

    ``package`` is the Debian package that provides it, for the message.
    """
    path = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))
    if path is None:
        missing(name, f"not on PATH; Debian package {package or name}")
    return path


def aria2c() -> str:
    """aria2 speaks udp:// trackers only with its DHT on (``--enable-dht=true
    --dht-file-path=EMPTY_FILE``); webseed-only runs: ``--bt-exclude-tracker='*'``."""
    return which("aria2c", "aria2")


def ffmpeg() -> str:
    return which("ffmpeg", "ffmpeg")


def ffprobe() -> str:
    return which("ffprobe", "ffmpeg")


def curl() -> str:
    return which("curl", "curl")


def nginx() -> str:
    """Run in the foreground as a ClientProcess: ``-p TMPDIR -c CONF -g 'daemon off;'``, with
    ``pid``, ``error_log`` and the ``*_temp_path``s inside TMPDIR."""
    return which("nginx", "nginx-light")


def opentracker() -> str:
    """Debian's opentracker is a whitelist build: start it with ``-w FILE`` (hex info-hashes)."""
    return which("opentracker", "opentracker")


def wrk() -> str:
    return which("wrk", "wrk")


def prometheus() -> str:
    """Debian's Prometheus server: ``--config.file``, ``--storage.tsdb.path`` in the test's tmp
    folder, ``--web.listen-address=127.0.0.1:PORT``; the HTTP query API is ``/api/v1/query``."""
    return which("prometheus", "prometheus")


def tor() -> str:
    """Offline use: ``DisableNetwork 1``, a loopback ``ControlPort``, cookie auth, and a
    ``DataDirectory`` in the test's tmp folder."""
    return which("tor", "tor")


def nostr_relay() -> str:
    """The ``nostr-relay`` 1.14 executable in ``.tools/nostr-relay-venv``."""
    path = NOSTR_RELAY_VENV / "bin" / "nostr-relay"
    if not os.access(path, os.X_OK):
        missing("nostr-relay", f"{path.relative_to(REPO_ROOT)} does not exist")
    return str(path)


@functools.cache
def _node_version(path: str) -> tuple[int, ...]:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return tuple(int(x) for x in match.groups()) if match else (0,)


def node() -> str:
    """Absolute path of node (version 20 or newer: webtorrent 2.8.5), or fail/skip."""
    path = shutil.which("node")
    if path is None:
        missing("node", "node 20 is not on PATH")
    version = _node_version(path)
    if version < (20,):
        missing("node 20", f"{path} is version {'.'.join(map(str, version))}")
    return path


def _npm_pins() -> dict[str, str]:
    manifest = json.loads((CLIENTS_DIR / "package.json").read_text())
    pins: dict[str, str] = manifest["dependencies"]
    return pins


def _check_node_modules() -> str | None:
    """Why tests/clients/node_modules is not usable, or None."""
    if not NODE_MODULES.is_dir():
        return "tests/clients/node_modules does not exist"
    for name, spec in _npm_pins().items():
        manifest = NODE_MODULES / name / "package.json"
        if not manifest.is_file():
            return f"npm package {name} is not in tests/clients/node_modules"
        if re.fullmatch(r"\d+\.\d+\.\d+", spec):
            version = json.loads(manifest.read_text()).get("version")
            if version != spec:
                return f"npm package {name} is {version}, package.json pins {spec}"
    return None


def node_modules() -> Path:
    """``tests/clients/node_modules``, checked against the pins in package.json, or fail/skip."""
    problem = _check_node_modules()
    if problem:
        missing("npm test clients", problem)
    return NODE_MODULES


def node_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment node scripts run with: ours, plus NODE_PATH, plus ``env``."""
    merged = dict(os.environ)
    merged["NODE_PATH"] = str(NODE_MODULES)
    merged.pop("NODE_OPTIONS", None)
    if env:
        merged.update(env)
    return merged


def _script_path(script: str | os.PathLike[str]) -> Path:
    path = Path(script)
    if not path.is_absolute():
        path = JS_DIR / path
    if not path.is_file():
        raise FileNotFoundError(f"node script {path} does not exist")
    return path


def node_command(script: str | os.PathLike[str], *args: str) -> list[str]:
    """argv that runs a JS file (a name in tests/clients/js/ or a path) with node.

    Checks node and node_modules first (fail/skip when missing). Run it with ``cwd=CLIENTS_DIR``
    and ``env=node_env()``.
    """
    exe = node()
    node_modules()
    return [exe, str(_script_path(script)), *map(str, args)]


@functools.cache
def _libtorrent_problem() -> str | None:
    if not os.access(DEBIAN_PYTHON, os.X_OK):
        return f"{DEBIAN_PYTHON} does not exist (Debian package python3)"
    proc = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import libtorrent; print(libtorrent.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        env=debian_python_env(),
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return f"{DEBIAN_PYTHON} cannot import libtorrent: {tail[0]} (Debian package python3-libtorrent)"
    return None


def debian_python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment without the virtualenv's Python variables, plus ``env``."""
    merged = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    if env:
        merged.update(env)
    return merged


def libtorrent_python() -> str:
    """Debian's ``/usr/bin/python3``, checked to import ``libtorrent``, or fail/skip.

    Run libtorrent helpers as separate processes with it (``env=debian_python_env()``):
    python3-libtorrent does not import in the project's virtualenv.
    """
    problem = _libtorrent_problem()
    if problem:
        missing("libtorrent (python3-libtorrent)", problem)
    return DEBIAN_PYTHON


# --- a real browser ------------------------------------------------------------------------------

CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str:
    return which("chromium", "chromium")


@contextlib.contextmanager
def chromium_browser(**launch: Any) -> Iterator[Any]:
    """Debian's ``/usr/bin/chromium`` (package ``chromium``), headless, driven by Playwright's sync
    API; yields the Playwright ``Browser`` and closes it afterwards. Nothing is downloaded
    (``playwright install`` is never needed), and the flags keep it off the network: only the
    pages a test opens are fetched. Chromium writes its config and crash reports under HOME:
    unless ``launch`` has an ``env``, HOME and the XDG folders are a temporary folder, removed
    afterwards. It runs in the calling thread's network namespace (``NetworkNamespace``).

    The sync API blocks: call it from a plain (non-reactor) test, with the server in another
    process (``tests.gateway_process.GatewayProcess``), or from a thread.
    """
    import tempfile

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright", "the Python package, in the `test` extras of setup.cfg "
                "(scripts/setup-venv test)")
    path = chromium()
    with contextlib.ExitStack() as stack:
        if "env" not in launch:
            home = stack.enter_context(tempfile.TemporaryDirectory(prefix="tgateway-chromium-"))
            launch["env"] = private_home_env(Path(home))
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=path, args=list(CHROMIUM_ARGS), **launch)
        try:
            yield browser
        finally:
            browser.close()


# --- running clients -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """A finished client run (``run``: undecodable bytes are kept as surrogate escapes,
    ``result.stdout.encode("utf-8", "surrogateescape")`` gives the exact bytes)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The last line of stdout that parses as JSON (scripts report results that way)."""
        return last_json_line(self.stdout, self)


def last_json_line(stdout: str, context: object = None) -> Any:
    """Parse the last line of ``stdout`` that is JSON; ClientFailed if there is none."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line[:1] in ("{", "["):
            try:
                return json.loads(line)
            except ValueError:
                continue
    tail = _printable(stdout[-4000:])
    raise ClientFailed(f"no JSON line in output of {context or 'client'}:\n{tail}")


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _failure(argv: Sequence[str], code: int | None, stdout: str, stderr: str, why: str) -> str:
    stdout, stderr = _printable(stdout), _printable(stderr)
    return (
        f"{why}: {' '.join(argv)} (exit {code})\n"
        f"--- stdout (tail) ---\n{stdout[-4000:]}\n--- stderr (tail) ---\n{stderr[-4000:]}"
    )


def run(
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: str | None = None,
    check: bool = True,
) -> Result:
    """Run a client to completion (blocking) and return its output.

    The client runs in its own process group, which is killed on timeout. Raises ClientFailed on
    a non-zero exit (when ``check``) and on timeout, with the output in the message.
    """
    command = [str(a) for a in argv]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="surrogateescape",  # lossless: binary output comes back with .encode(errors=...)
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        stdout, stderr = proc.communicate()
        raise ClientFailed(
            _failure(command, None, stdout, stderr, f"timed out after {timeout}s")
        ) from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
            proc.wait()
    if check and proc.returncode != 0:
        raise ClientFailed(_failure(command, proc.returncode, stdout, stderr, "client failed"))
    return Result(command, proc.returncode, stdout, stderr)


def run_node(
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> str:
    """Run a JS file (name in tests/clients/js/, or a path) with node; return its stdout."""
    argv = node_command(script, *args)
    return run(argv, timeout=timeout, env=node_env(env), cwd=CLIENTS_DIR, input=input).stdout


def run_node_json(
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> Any:
    """``run_node``, then parse the last JSON line of stdout."""
    return last_json_line(run_node(script, *args, timeout=timeout, env=env, input=input), script)


def run_libtorrent(
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
) -> Result:
    """Run a Python file with Debian's python3 (which has libtorrent)."""
    argv = [libtorrent_python(), str(script), *map(str, args)]
    return run(argv, timeout=timeout, env=debian_python_env(env), cwd=REPO_ROOT, input=input)


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class ClientProcess:
    """A long-running client (server, seeder, relay) in its own process group.

    Threads drain stdout and stderr into memory, so the client never blocks on a full pipe and
    the test can look for lines in its output. ``stop()`` (idempotent) sends SIGTERM to the whole
    group, then SIGKILL after ``grace`` seconds. Use as a context manager, or stop it in
    teardown (``self.addCleanup(proc.stop)``).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        _LIVE_GROUPS.add(self.proc.pid)
        self._threads = [
            threading.Thread(target=self._drain, args=(stream, key), daemon=True)
            for key, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr))
        ]
        for thread in self._threads:
            thread.start()

    @classmethod
    def node(
        cls,
        script: str | os.PathLike[str],
        *args: str,
        env: Mapping[str, str] | None = None,
    ) -> ClientProcess:
        """Start a JS file (name in tests/clients/js/, or a path) with node."""
        return cls(
            node_command(script, *args), env=node_env(env), cwd=CLIENTS_DIR, name=str(script)
        )

    def _drain(self, stream: Any, key: str) -> None:
        for line in stream:
            with self._cond:
                self._lines[key].append(line.rstrip("\n"))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stdout"])

    @property
    def stderr_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines["stderr"])

    def describe(self, tail: int = 40) -> str:
        """The client's command and the tail of its output, for failure messages."""
        out = "\n".join(self.stdout_lines[-tail:])
        err = "\n".join(self.stderr_lines[-tail:])
        return (
            f"{self.name}: {' '.join(self.argv)} (exit {self.proc.poll()})\n"
            f"--- stdout (tail) ---\n{out}\n--- stderr (tail) ---\n{err}"
        )

    def find_line(
        self, predicate: Callable[[str], bool], stream: str = "stdout", start: int = 0
    ) -> str | None:
        """The first line (from index ``start``) of ``stream`` matching ``predicate``, or None."""
        with self._cond:
            for line in self._lines[stream][start:]:
                if predicate(line):
                    return line
        return None

    def wait_for_line(
        self,
        predicate: Callable[[str], bool],
        timeout: float = 30.0,
        stream: str = "stdout",
    ) -> str:
        """Block until a line of ``stream`` matches ``predicate``; return it.

        Raises ClientFailed if the client exits first, TimeoutError after ``timeout`` seconds;
        both messages include the client's output.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[stream]:
                    if predicate(line):
                        return line
                if self.proc.poll() is not None and not any(t.is_alive() for t in self._threads):
                    raise ClientFailed(f"client exited before the expected line\n{self.describe()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no expected line within {timeout}s\n{self.describe()}")
                self._cond.wait(min(remaining, 0.2))

    def wait_for_json(self, timeout: float = 30.0, key: str | None = None) -> Any:
        """Block until stdout has a JSON line (holding ``key``, if given); return it parsed."""
        line = self.wait_for_line(lambda s: _json_with(s, key) is not None, timeout)
        return _json_with(line, key)

    def json_deferred(self, reactor: Any, timeout: float = 30.0, key: str | None = None) -> Any:
        """Like ``wait_for_json`` but returns a Deferred, polling without blocking the reactor."""
        from twisted.internet import task

        deadline = reactor.seconds() + timeout

        def check() -> Any:
            line = self.find_line(lambda s: _json_with(s, key) is not None)
            if line is not None:
                return _json_with(line, key)
            if self.proc.poll() is not None:
                raise ClientFailed(f"client exited before printing JSON\n{self.describe()}")
            if reactor.seconds() > deadline:
                raise TimeoutError(f"no JSON line within {timeout}s\n{self.describe()}")
            return task.deferLater(reactor, 0.05, check)

        return task.deferLater(reactor, 0, check)

    def stop(self, grace: float = 5.0) -> int:
        """Stop the whole process group (SIGTERM, then SIGKILL); return the exit status."""
        if self.proc.poll() is None:
            _kill_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # The leader may be gone while children of its group live on: always sweep the group.
        _kill_group(self.proc, signal.SIGKILL)
        code = self.proc.wait()
        _LIVE_GROUPS.discard(self.proc.pid)
        for thread in self._threads:
            thread.join(2)
        return code

    def __enter__(self) -> ClientProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _json_with(line: str, key: str | None) -> Any:
    line = line.strip()
    if line[:1] not in ("{", "["):
        return None
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if key is not None and not (isinstance(value, dict) and key in value):
        return None
    return value


# --- Twisted (non-blocking) runs -----------------------------------------------------------------


def run_deferred(
    reactor: Any,
    argv: Sequence[str],
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    check: bool = True,
) -> Any:
    """Run a client with ``reactor.spawnProcess``; a Deferred firing with a ``Result``.

    For tests where the client talks to a server on the same reactor. The client runs under
    ``setsid`` (its own process group); it and its children are killed on timeout or when the
    Deferred is cancelled. Errbacks with ClientFailed like ``run``.
    """
    from twisted.internet import defer, protocol

    command = [str(a) for a in argv]
    pid: list[int | None] = [None]

    def cancel(_: object) -> None:
        _kill_tree(pid[0])

    done: defer.Deferred[Result] = defer.Deferred(cancel)

    class Collect(protocol.ProcessProtocol):
        def __init__(self) -> None:
            self.out: list[bytes] = []
            self.err: list[bytes] = []
            self.timed_out = False

        def connectionMade(self) -> None:
            assert self.transport is not None
            if input is not None:
                self.transport.write(input)
            self.transport.closeStdin()

        def outReceived(self, data: bytes) -> None:
            self.out.append(data)

        def errReceived(self, data: bytes) -> None:
            self.err.append(data)

        def processEnded(self, reason: Any) -> None:
            if pid[0] is not None:
                _LIVE_TREES.discard(pid[0])
            if timer.active():
                timer.cancel()
            if done.called:  # cancelled
                return
            code = reason.value.exitCode
            if code is None:
                code = -(reason.value.signal or 0)
            stdout = b"".join(self.out).decode(errors="replace")
            stderr = b"".join(self.err).decode(errors="replace")
            if self.timed_out:
                why = f"timed out after {timeout}s"
                done.errback(ClientFailed(_failure(command, code, stdout, stderr, why)))
            elif check and code != 0:
                done.errback(ClientFailed(_failure(command, code, stdout, stderr, "client failed")))
            else:
                done.callback(Result(command, code, stdout, stderr))

    proto = Collect()
    # spawnProcess has no preexec hook: util-linux's `setsid` starts a new session and execs.
    full_argv = [which("setsid", "util-linux"), "--wait", *command]
    transport = reactor.spawnProcess(
        proto,
        full_argv[0],
        full_argv,
        env=dict(env) if env is not None else dict(os.environ),
        path=str(cwd) if cwd is not None else None,
    )
    pid[0] = transport.pid
    _LIVE_TREES.add(transport.pid)

    def on_timeout() -> None:
        proto.timed_out = True
        _kill_tree(pid[0])

    timer = reactor.callLater(timeout, on_timeout)
    return done


def _kill_tree(pid: int | None) -> None:
    """SIGKILL ``pid`` and its descendants (found through /proc)."""
    if pid is None:
        return
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    todo, victims = [pid], []
    while todo:
        current = todo.pop()
        victims.append(current)
        todo.extend(children.get(current, []))
    for victim in reversed(victims):
        try:
            os.kill(victim, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_node_deferred(
    reactor: Any,
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> Any:
    """``run_node`` on the reactor: a Deferred firing with the script's stdout."""
    argv = node_command(script, *args)
    d = run_deferred(
        reactor, argv, timeout=timeout, env=node_env(env), cwd=CLIENTS_DIR, input=input
    )
    return d.addCallback(lambda result: result.stdout)


def run_node_json_deferred(
    reactor: Any,
    script: str | os.PathLike[str],
    *args: str,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
) -> Any:
    """``run_node_json`` on the reactor: a Deferred firing with the last JSON line, parsed."""
    d = run_node_deferred(reactor, script, *args, timeout=timeout, env=env, input=input)
    return d.addCallback(last_json_line, script)


async def read_relay_until_found(reactor: Any, relay_url: str, nostr_filter: dict[str, Any], *,
                                 within: float) -> dict[str, Any]:
    """Read ``nostr_filter`` from a relay with nostr-tools (``nostr_relay_read.mjs``) until an
    event matches or ``within`` seconds have passed; returns the last answer (``events``,
    ``verified``)."""
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + within
    answer: dict[str, Any] = {"events": [], "verified": []}
    while time.monotonic() < deadline:
        answer = await run_node_json_deferred(
            reactor, "nostr_relay_read.mjs", relay_url, json.dumps(nostr_filter), timeout=60)
        if answer["events"]:
            break
        await deferLater(reactor, 0.5, lambda: None)
    return answer


# --- nostr-relay ---------------------------------------------------------------------------------


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
    age of events is not (tests use fixed timestamps). Call ``stop()`` when done (the
    ``nostr_relay`` pytest fixture does). ``port``: a fixed port (a relay that comes up later at
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


# --- opentracker ---------------------------------------------------------------------------------


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


# --- a network namespace of the test's own -------------------------------------------------------

_CLONE_NEWNET = 0x40000000


def ip_command() -> str:
    """``ip`` from iproute2."""
    return which("ip", "iproute2")


def _libc_call(name: str, *args: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}: {os.strerror(errno)}")


class NetworkNamespace:
    """A network namespace of the test's own: loopback up, plus ``addresses`` on ``device``.

    Some clients refuse loopback peers (Transmission drops 127.x and ::1 from tracker replies as
    "martian"); inside a namespace the test made, addresses such as 10.99.0.1 and 10.99.0.2 are
    local to that namespace alone, and a server bound to one is reachable from a client bound to
    the other. Nothing inside can reach another host: no link leaves the namespace.

    ``device``: where the addresses go; "lo", or the name of a veth pair made for them inside
    the namespace (both ends stay there: a link to nowhere). Chromium's WebRTC never finishes
    gathering ICE candidates on a host whose only IPv4 interface is loopback: give it a veth.

    ``with ns.inside():`` moves the calling thread into the namespace: sockets it opens and
    processes it starts (``subprocess``, ``ClientProcess``, ``GatewayProcess``) live there, and
    keep living there after the block; the thread goes back to its own namespace at the end. Use
    it from plain (blocking) test code only, never around code that runs the reactor.

    The namespace exists while a process inside it runs or this object is open: stop the
    processes, then ``close()``. Needs root (CAP_SYS_ADMIN); otherwise the test fails (or skips,
    with TGATEWAY_ALLOW_MISSING_CLIENTS=1) through ``missing``.
    """

    def __init__(self, addresses: Sequence[str] = (), device: str = "lo") -> None:
        ip = ip_command()
        self.addresses = tuple(addresses)
        self.device = device
        self._fd = -1
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            try:
                _libc_call("unshare", _CLONE_NEWNET)
            except OSError as e:
                missing("a network namespace", f"{e}; run the tests as root")
            try:
                self._fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
                run([ip, "link", "set", "lo", "up"], timeout=10)
                if device != "lo":
                    # Both ends of the pair stay in the namespace: a link to nowhere.
                    run([ip, "link", "add", device, "type", "veth", "peer", "name", device + "p"],
                        timeout=10)
                    for name in (device, device + "p"):
                        run([ip, "link", "set", name, "up"], timeout=10)
                for address in self.addresses:
                    prefix = 128 if ":" in address else 32
                    run([ip, "addr", "add", f"{address}/{prefix}", "dev", device], timeout=10)
            except BaseException:
                self.close()
                raise
            finally:
                _libc_call("setns", home, _CLONE_NEWNET)
        finally:
            os.close(home)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    @contextlib.contextmanager
    def inside(self) -> Iterator[NetworkNamespace]:
        """The calling thread is in the namespace for the ``with`` block."""
        if self.closed:
            raise ValueError("the network namespace is closed")
        back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _libc_call("setns", self._fd, _CLONE_NEWNET)
            try:
                yield self
            finally:
                _libc_call("setns", back, _CLONE_NEWNET)
        finally:
            os.close(back)

    def close(self) -> None:
        """Let the namespace go (it disappears once the last process inside has exited)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> NetworkNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- BitTorrent daemons: qBittorrent, Transmission, Deluge ---------------------------------------
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


def private_home_env(directory: Path) -> dict[str, str]:
    """Our environment with HOME and the XDG folders inside ``directory`` (created): a client
    that writes to its home (qBittorrent, Deluge, Chromium) leaves nothing in the real one."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    home = directory / "home"
    for name, sub in (("HOME", ""), ("XDG_CONFIG_HOME", ".config"),
                      ("XDG_DATA_HOME", ".local/share"), ("XDG_CACHE_HOME", ".cache")):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    return env


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


# --- pages for the browser ------------------------------------------------------------------------

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
