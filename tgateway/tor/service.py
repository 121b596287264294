"""The tor component: the gateway API and the Blossom server as one v3 onion service.

When ``tor.enabled`` is on, the service (started after every listener, stopped before them)
launches its own tor (``tor.binary`` with a torrc in ``<data_dir>/tor``, ``tor.torrc`` lines
added) or attaches to a running one (``tor.control_port``), connects to the control port with
txtorcon, and asks for the onion service with ``ADD_ONION`` (:mod:`tgateway.tor.onion`): the
gateway API at ``tor.gateway_port`` and the Blossom server at ``tor.blossom_port``, for those that
run. The first start makes the key and keeps it in ``<data_dir>/tor/onion_service/
hs_ed25519_secret_key``; later starts pass it back, so the ``.onion`` address stays the same.

Once tor has answered, the address goes to the links (:class:`~tgateway.links.OnionOrigin`):
from then on torrents, descriptors, API descriptions and Nostr events carry the onion URLs too.
``/api/health`` shows ``tor.onion``. The service is added without ``Flags=Detach``: it lives as
long as the gateway's control connection, so when the gateway stops (or dies) tor removes it, and
a launched tor exits (``TAKEOWNERSHIP``, ``__OwningControllerProcess``).

A tor that cannot be started, reached or asked (no binary, a bad torrc line, no control port
within :data:`START_TIMEOUT`, an unreadable key) is logged as an error and shown in
``/api/health`` (``tor.status`` ``error``, ``tor.error``); the gateway runs on without the onion
service. So does a tor that exits or hangs up later (it is not restarted).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import txtorcon
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, clientFromString
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import deferLater
from twisted.logger import Logger

from tgateway.component import Component, Deps, IGatewayReactor, Status
from tgateway.config import TorConfig
from tgateway.links import OnionOrigin, Origins

from .onion import (
    AddOnionReply,
    OnionError,
    add_onion_command,
    decode_key_file,
    encode_key_file,
    onion_url,
    parse_add_onion,
    target,
    torrc_lines,
)
from .process import TorProcess

__all__ = ["OnionPort", "TorOnion", "build"]

START_TIMEOUT = 60.0  # seconds for tor's control port to answer
RETRY_EVERY = 0.25
KEY_FILE = "hs_ed25519_secret_key"
MAX_SOCKET_PATH = 100  # a unix socket path has at most 107 bytes on Linux

Connect = Callable[[Any, IStreamClientEndpoint], Awaitable[Any]]


class TorStartError(Exception):
    """Why the onion service is not up, in one line for the log and the health route."""


@dataclass(frozen=True)
class OnionPort:
    site: str  # "gateway" or "blossom"
    port: int  # on the onion address
    host: str  # the listener the port forwards to
    listen_port: int

    def target(self) -> str:
        return target(self.host, self.listen_port)


class TorOnion(Service):
    """Brings the onion service up when started, down when stopped; ``status()`` for health."""

    log = Logger()

    def __init__(self, *, section: TorConfig, reactor: IGatewayReactor, folder: Path,
                 ports: Sequence[OnionPort], origin: OnionOrigin,
                 connect: Connect = txtorcon.connect, start_timeout: float = START_TIMEOUT) -> None:
        self.section = section
        self.reactor = reactor
        self.folder = folder  # <data_dir>/tor: the launched tor's DataDirectory, and the key
        self.ports = tuple(ports)
        self.origin = origin
        self._connect = connect
        self.start_timeout = start_timeout
        self.state = "stopped"  # starting, ok, error, stopped
        self.error: str | None = None
        self.reply: AddOnionReply | None = None
        self.process: TorProcess | None = None
        self._tor: Any = None
        self._starting: Deferred[None] | None = None
        self.setName("tor")

    @property
    def launches(self) -> bool:
        return not self.section.control_port

    @property
    def key_path(self) -> Path:
        return self.folder / "onion_service" / KEY_FILE

    # service ------------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.state, self.error, self.reply = "starting", None, None
        self._starting = Deferred.fromCoroutine(self._start())

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self._stop())

    async def _start(self) -> None:
        try:
            await self._bring_up()
        except CancelledError:
            return
        except Exception as e:
            why = str(e) if isinstance(e, (TorStartError, OnionError)) else f"{type(e).__name__}: {e}"
            self._failed(why)
            if not isinstance(e, (TorStartError, OnionError)):
                self.log.failure("tor: unexpected failure")
            await self._close()

    async def _bring_up(self) -> None:
        for p in self.ports:
            if p.listen_port == 0:
                raise TorStartError(f"the {p.site} listens on port 0 (any free port): the onion "
                                    "service needs its fixed port")
        if not self.ports:
            raise TorStartError("neither the gateway API nor the Blossom server runs in this mode")
        key = self._read_key()
        if self.launches:
            endpoint: IStreamClientEndpoint = self._launch()
            where = f"the tor launched from {self.section.binary}"
        else:
            endpoint = clientFromString(self.reactor, self.section.control_port)
            where = f"tor's control port {self.section.control_port}"
        tor = await self._reach(endpoint, where)
        self._tor = tor
        if self.launches:
            await tor.protocol.queue_command("TAKEOWNERSHIP")  # it exits when we hang up
        command = add_onion_command(key, [(p.port, p.target()) for p in self.ports])
        try:
            answer = await tor.protocol.queue_command(command)
        except txtorcon.TorProtocolError as e:
            raise TorStartError(f"tor refused ADD_ONION: {e}") from None
        reply = parse_add_onion(answer, new_key=key is None)
        if reply.private_key is not None:
            self._write_key(reply.private_key)
        self._up(reply)
        tor.protocol.when_disconnected().addBoth(
            lambda _: self._lost("tor closed the control connection"))
        if self.process is not None:
            self.process.when_ended().addCallback(self._lost)

    def _launch(self) -> IStreamClientEndpoint:
        binary = shutil.which(self.section.binary)
        if binary is None:
            raise TorStartError(f"tor not found ({self.section.binary!r}): install the tor "
                                "package, or set tor.binary")
        folder = self.folder.resolve()
        socket = folder / "control"
        if len(str(socket)) > MAX_SOCKET_PATH:
            raise TorStartError(f"the control socket path {socket} is too long for a unix "
                                "socket: use a shorter data_dir")
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # tor refuses a DataDirectory others can read
        torrc = folder / "torrc"
        lines = torrc_lines(data_directory=str(folder), control_socket=str(socket),
                            owner_pid=os.getpid(), extra=self.section.torrc)
        torrc.write_text("# written by tgateway at each start (tor.torrc adds lines)\n"
                         + "\n".join(lines) + "\n")
        self.process = TorProcess(self.reactor)
        self.process.spawn(self.reactor, binary, str(torrc), str(folder))
        self.log.info("tor: launched {binary} (pid {pid}) with {torrc}", binary=binary,
                      pid=self.process.pid, torrc=str(torrc))
        return UNIXClientEndpoint(self.reactor, str(socket))

    async def _reach(self, endpoint: IStreamClientEndpoint, where: str) -> Any:
        """Connect to the control port, again every :data:`RETRY_EVERY` seconds while it does
        not answer (tor starting), until :attr:`start_timeout`."""
        deadline = self.reactor.seconds() + self.start_timeout
        while True:
            if self.process is not None and self.process.exited is not None:
                raise TorStartError(self.process.exited)
            try:
                return await self._connect(self.reactor, endpoint)
            except ConnectError as e:
                if self.reactor.seconds() >= deadline:
                    raise TorStartError(f"no answer from {where} within {self.start_timeout:g} s "
                                        f"({e})") from None
            await deferLater(self.reactor, RETRY_EVERY)

    def _read_key(self) -> str | None:
        try:
            data = self.key_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise TorStartError(f"cannot read the onion service key {self.key_path}: {e.strerror}") from None
        try:
            return decode_key_file(data)
        except OnionError as e:
            # never replaced: a new key would be a new address
            raise TorStartError(f"{self.key_path}: {e}; move it away to make a new address") from None

    def _write_key(self, private_key: str) -> None:
        """Kept before the address is used anywhere; written whole (temporary file, fsync,
        rename), readable by the gateway's user only."""
        folder = self.key_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        tmp = folder / (KEY_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, encode_key_file(private_key))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.key_path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.log.info("tor: new onion service key in {path}", path=str(self.key_path))

    def _up(self, reply: AddOnionReply) -> None:
        self.reply, self.state = reply, "ok"
        urls = {p.site: onion_url(reply.address, p.port) for p in self.ports}
        self.origin.publish(Origins(gateway=urls.get("gateway"), blossom=urls.get("blossom"),
                                    onion=reply.address))
        self.log.info("tor: onion service {address} up ({urls})", address=reply.address,
                      urls=", ".join(f"{k} {v}" for k, v in urls.items()))

    def _failed(self, why: str) -> None:
        self.origin.withdraw()
        self.state, self.error = "error", why
        self.log.error("tor: no onion service: {error}; the gateway runs without it", error=why)

    def _lost(self, why: str) -> None:
        """tor went away after the service was up (not restarted: the gateway runs without)."""
        if self.running and self.state == "ok":
            self._failed(why)

    async def _stop(self) -> None:
        self.origin.withdraw()
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        await self._close()
        self.state = "stopped"

    async def _close(self) -> None:
        tor, self._tor = self._tor, None
        if tor is not None:
            try:
                await tor.protocol.quit()  # tor removes the service (and a launched tor exits)
            except Exception:
                pass  # already gone
        if self.process is not None:
            await self.process.stop()

    # health -------------------------------------------------------------------------------

    def status(self) -> Status:
        out: Status = {"status": self.state, "tor": "launched" if self.launches else "attached",
                       "onion": self.reply.address if self.reply and self.state == "ok" else None}
        origins = self.origin.current()
        if origins is not None:
            out["urls"] = {k: v for k, v in (("gateway", origins.gateway),
                                             ("blossom", origins.blossom)) if v}
        if self.error:
            out["error"] = self.error
        return out


def build(section: TorConfig, deps: Deps) -> Component[TorOnion]:
    """Built after the gateway and Blossom: the onion service forwards to the sites they built."""
    config = deps.config
    running = {site.name for c in deps.components for site in c.sites}
    listeners = (("gateway", section.gateway_port, config.gateway.host, config.gateway.port),
                 ("blossom", section.blossom_port, config.blossom_server.host,
                  config.blossom_server.port))
    ports = [OnionPort(name, port, host, listen) for name, port, host, listen in listeners
             if name in running]
    onion = TorOnion(section=section, reactor=deps.reactor, folder=Path(config.data_dir) / "tor",
                     ports=ports, origin=deps.links.onion_origin)
    return Component(name="tor", part=onion, services=[onion], report=onion.status)
