"""A network namespace of the test's own (root only), for clients that refuse loopback peers."""


from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

from harness.procs import run
from harness.tools import missing, which

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


