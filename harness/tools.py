"""Finding the real clients and tools the tests and benchmarks run; a missing one fails the test."""


from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
import unittest
from collections.abc import Iterator, Mapping
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
    process (``harness.twistd.GatewayProcess``), or from a thread.
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


def qbittorrent_nox() -> str:
    return which("qbittorrent-nox", "qbittorrent-nox")


def transmission_daemon() -> str:
    return which("transmission-daemon", "transmission-daemon")


def deluged() -> str:
    return which("deluged", "deluged")


def deluge_console() -> str:
    return which("deluge-console", "deluge-console")
