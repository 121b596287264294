"""Ports: free ones, and waiting for a listener (TCP, WebSocket)."""


from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from typing import Any

from harness.procs import ClientProcess
from harness.tools import ClientFailed


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


