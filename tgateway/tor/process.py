"""The tor the gateway launches: a child process with its torrc, its output in the gateway's log.

txtorcon's ``launch()`` waits for tor to bootstrap to 100 %, which needs the network; the gateway
needs only the control port (``ADD_ONION`` is answered before tor reaches the network), so it
spawns tor itself and connects with txtorcon as to any running tor.
"""

from __future__ import annotations

from collections import deque

from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["TorProcess"]

KILL_AFTER = 10.0  # seconds between SIGTERM and SIGKILL on stop


class TorProcess(ProcessProtocol):
    """One tor child: :meth:`spawn`, :meth:`when_ended` (fires with a message when it exits),
    :meth:`stop`. Its notice lines are logged at info level, ``[warn]`` and ``[err]`` lines as
    warnings; the last lines are kept for the error message when it exits early."""

    log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._watchers: list[Deferred[str]] = []
        self.exited: str | None = None  # why it exited, once it has
        self.last_lines: deque[str] = deque(maxlen=5)
        self._partial = b""
        self._transport: IProcessTransport | None = None

    def spawn(self, reactor: IReactorProcess, binary: str, torrc: str, cwd: str) -> None:
        self._transport = reactor.spawnProcess(self, binary, [binary, "-f", torrc],
                                               env={"HOME": cwd}, path=cwd)

    def when_ended(self) -> Deferred[str]:
        """Fires with why tor exited, once it has."""
        if self.exited is not None:
            return succeed(self.exited)
        d: Deferred[str] = Deferred()
        self._watchers.append(d)
        return d

    @property
    def pid(self) -> int | None:
        return self._transport.pid if self._transport is not None else None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.last_lines.append(line)
            if "[warn]" in line or "[err]" in line or childFD == 2:
                self.log.warn("tor: {line}", line=line)
            else:
                self.log.info("tor: {line}", line=line)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        if isinstance(value, error.ProcessDone):
            why = "tor exited"
        elif getattr(value, "signal", None):
            why = f"tor was killed by signal {getattr(value, 'signal', '?')}"
        else:
            why = f"tor exited with status {getattr(value, 'exitCode', '?')}"
        if self.last_lines:
            why += ": " + " | ".join(self.last_lines)
        self.exited = why
        watchers, self._watchers = self._watchers, []
        for d in watchers:
            d.callback(why)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after :data:`KILL_AFTER` seconds; returns once it has exited."""
        if self.exited is not None or self._transport is None:
            return
        try:
            self._transport.signalProcess("TERM")
        except error.ProcessExitedAlready:
            return
        kill = self.clock.callLater(KILL_AFTER, self._kill)
        await self.when_ended()
        if kill.active():
            kill.cancel()

    def _kill(self) -> None:
        if self._transport is not None:
            try:
                self._transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass
