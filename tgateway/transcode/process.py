"""Running FFmpeg: a pure ``-progress`` parser and a thin ``ProcessProtocol`` adapter.

``-progress pipe:1`` writes ``key=value`` lines to stdout, one block per update, each block ending
with ``progress=continue`` (or ``progress=end``). :class:`ProgressParser` turns bytes into
:class:`Progress` values (``out_time`` and a percentage of the known duration).

:func:`run_ffmpeg` starts FFmpeg with ``reactor.spawnProcess`` and returns an
:class:`FFmpegRun`: ``.done`` fires with the collected stdout on exit code 0, or fails with
:class:`FFmpegFailed` (exit code or signal, and the tail of stderr); ``.cancel()`` sends SIGTERM,
then SIGKILL after ``kill_after`` seconds, and ``.done`` fails with :class:`FFmpegCancelled`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

__all__ = [
    "FFmpegCancelled",
    "FFmpegFailed",
    "FFmpegRun",
    "IFFmpegReactor",
    "Progress",
    "ProgressParser",
    "run_ffmpeg",
]

STDERR_TAIL = 4096
MAX_STDOUT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Progress:
    out_time: float  # seconds of output written
    percent: float  # 0..100 (0 when the duration is unknown)
    speed: float  # x realtime, 0 if unknown
    ended: bool


class ProgressParser:
    """Bytes of ``-progress`` output in, :class:`Progress` values out. Never raises."""

    def __init__(self, duration: float) -> None:
        self.duration = duration
        self._buf = b""
        self._block: dict[str, str] = {}
        self.last: Progress | None = None

    def feed(self, data: bytes) -> list[Progress]:
        self._buf += data
        out = []
        *lines, self._buf = self._buf.split(b"\n")
        if len(self._buf) > 4096:  # no newline in sight: garbage
            self._buf = b""
        for raw in lines:
            key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if key != "progress":
                self._block[key] = value
                continue
            p = self._progress(self._block, ended=value == "end")
            self._block = {}
            self.last = p
            out.append(p)
        return out

    def _progress(self, block: dict[str, str], ended: bool) -> Progress:
        out_time = 0.0
        for key, scale in (("out_time_us", 1e-6), ("out_time_ms", 1e-6)):
            try:
                out_time = max(0.0, int(block[key]) * scale)
                break
            except (KeyError, ValueError):
                continue
        else:
            out_time = _clock_seconds(block.get("out_time", ""))
        if self.last is not None and out_time < self.last.out_time:
            out_time = self.last.out_time
        percent = 0.0
        if self.duration > 0:
            percent = min(100.0, 100.0 * out_time / self.duration)
        if ended:
            percent = 100.0
        speed = 0.0
        try:
            speed = float(block.get("speed", "").rstrip("x"))
        except ValueError:
            pass
        return Progress(out_time=out_time, percent=round(percent, 2), speed=speed, ended=ended)


def _clock_seconds(text: str) -> float:
    try:
        h, m, s = text.split(":")
        return max(0.0, int(h) * 3600 + int(m) * 60 + float(s))
    except ValueError:
        return 0.0


class FFmpegFailed(Exception):
    def __init__(self, exit_code: int | None, signal: int | None, stderr_tail: str) -> None:
        self.exit_code = exit_code
        self.signal = signal
        self.stderr_tail = stderr_tail
        how = f"exit code {exit_code}" if signal is None else f"signal {signal}"
        last = [line for line in stderr_tail.strip().splitlines() if line.strip()]
        detail = last[-1].strip() if last else "no error message"
        super().__init__(f"ffmpeg failed ({how}): {detail}")
        self.message = str(self)


class FFmpegCancelled(Exception):
    pass


class FFmpegProtocol(ProcessProtocol):
    """stdout -> the progress parser (and kept, for probes); stderr -> a bounded tail."""

    def __init__(self, parser: ProgressParser | None, on_progress: Callable[[Progress], Any] | None,
                 keep_stdout: bool, tail_size: int = STDERR_TAIL) -> None:
        self.tail_size = tail_size
        self.parser = parser
        self.on_progress = on_progress
        self.keep_stdout = keep_stdout
        self.stdout: list[bytes] = []
        self._stdout_size = 0
        self.stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self.ended: Deferred[Failure | None] = Deferred()
        self._lost: set[int] = set()
        self.on_pipes_closed: Callable[[], None] | None = None

    def connectionMade(self) -> None:
        self.transport.closeStdin()  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        if self.keep_stdout and self._stdout_size < MAX_STDOUT:
            self.stdout.append(data)
            self._stdout_size += len(data)
        if self.parser is not None:
            for p in self.parser.feed(data):
                if self.on_progress is not None:
                    self.on_progress(p)

    def errReceived(self, data: bytes) -> None:
        self.stderr.append(data)
        self._stderr_size += len(data)
        while self._stderr_size - len(self.stderr[0]) >= self.tail_size and len(self.stderr) > 1:
            self._stderr_size -= len(self.stderr.popleft())

    def stderr_tail(self) -> str:
        return b"".join(self.stderr)[-self.tail_size:].decode("utf-8", "replace")

    def childConnectionLost(self, childFD: int) -> None:
        self._lost.add(childFD)
        if self._lost >= {0, 1, 2} and self.on_pipes_closed is not None:
            self.on_pipes_closed()

    def processEnded(self, reason: Failure) -> None:
        if not self.ended.called:
            self.ended.callback(reason)


class IFFmpegReactor(IReactorTime, IReactorProcess):
    """What running FFmpeg needs of the reactor: spawning processes, and a clock for the
    progress, reap and kill timers."""


class FFmpegRun:
    def __init__(self, clock: IReactorTime, protocol: FFmpegProtocol, kill_after: float) -> None:
        self.clock = clock
        self.protocol = protocol
        self.kill_after = kill_after
        self.cancelled = False
        self._kill_call: Any = None
        self.done: Deferred[bytes] = Deferred()
        protocol.ended.addBoth(self._ended)  # fired with a Failure (ProcessDone too)
        protocol.on_pipes_closed = self._reap_soon
        self._reap_call: Any = None

    def _reap_soon(self) -> None:
        """The pipes are closed: the exit status follows. Without SIGCHLD handling (a reactor
        run with ``installSignalHandlers=False``) nobody would collect it, so poll for it."""
        if self.protocol.ended.called:
            return
        reap = getattr(self.protocol.transport, "reapProcess", None)
        if reap is not None and getattr(self.protocol.transport, "pid", None) is not None:
            reap()
        if not self.protocol.ended.called:
            self._reap_call = self.clock.callLater(0.05, self._reap_soon)

    @property
    def pid(self) -> int | None:
        return getattr(self.protocol.transport, "pid", None)

    def _ended(self, reason: Failure) -> None:
        if self._kill_call is not None and self._kill_call.active():
            self._kill_call.cancel()
        if self._reap_call is not None and self._reap_call.active():
            self._reap_call.cancel()
        if self.cancelled:
            self.done.errback(FFmpegCancelled("ffmpeg was stopped"))
            return
        value = reason.value
        if isinstance(value, error.ProcessDone):
            self.done.callback(b"".join(self.protocol.stdout))
            return
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        self.done.errback(FFmpegFailed(code, sig, self.protocol.stderr_tail()))

    def cancel(self) -> Deferred[bytes]:
        """SIGTERM now, SIGKILL if still running after ``kill_after``. Returns ``.done``."""
        if not self.cancelled and not self.done.called:
            self.cancelled = True
            self._signal("TERM")
            self._kill_call = self.clock.callLater(self.kill_after, self._signal, "KILL")
        return self.done

    def _signal(self, name: str) -> None:
        try:
            self.protocol.transport.signalProcess(name)  # type: ignore[union-attr]
        except (error.ProcessExitedAlready, AttributeError, OSError):
            pass


def run_ffmpeg(
    reactor: IFFmpegReactor,
    argv: Sequence[str],
    *,
    duration: float = 0.0,
    on_progress: Callable[[Progress], Any] | None = None,
    keep_stdout: bool = False,
    stderr_tail: int = STDERR_TAIL,
    kill_after: float = 5.0,
    env: dict[str, str] | None = None,
) -> FFmpegRun:
    """Spawn ``argv`` (``argv[0]`` is the executable) and follow it."""
    parser = ProgressParser(duration) if on_progress is not None else None
    protocol = FFmpegProtocol(parser, on_progress, keep_stdout, stderr_tail)
    run = FFmpegRun(reactor, protocol, kill_after)
    if env is None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    reactor.spawnProcess(protocol, argv[0], list(argv), env=env)
    return run
