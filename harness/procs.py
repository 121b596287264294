"""Running clients: blocking runs, long-lived client processes, and non-blocking runs on the reactor."""


from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.tools import (
    CLIENTS_DIR,
    REPO_ROOT,
    ClientFailed,
    debian_python_env,
    libtorrent_python,
    node_command,
    node_env,
    which,
)

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


