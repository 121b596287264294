"""The onion service's pure parts: the ``ADD_ONION`` command and its reply, the key file, the
targets, the torrc of a launched tor and the onion URLs.

``ADD_ONION`` (control-spec 3.27) creates the service on a running tor without a
``HiddenServiceDir``: ``NEW:ED25519-V3`` makes a key and the reply carries it
(``PrivateKey=ED25519-V3:<base64>``: the 64-byte expanded ed25519 secret key); passing it back
(``ED25519-V3:<base64>``, ``Flags=DiscardPK``) gives the same address again. tor answers at once,
before any descriptor is uploaded, so this works offline (``DisableNetwork 1``) too.

The key is kept in tor's own ``hs_ed25519_secret_key`` format (a 32-byte header, then the 64
bytes), so the file can be moved into a ``HiddenServiceDir`` and keep the address.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["KEY_HEADER", "AddOnionReply", "OnionError", "add_onion_command", "decode_key_file",
           "encode_key_file", "onion_url", "parse_add_onion", "target", "torrc_lines"]

KEY_HEADER = b"== ed25519v1-secret: type0 ==\x00\x00\x00"  # tor's hs_ed25519_secret_key
KEY_TYPE = "ED25519-V3"
_SERVICE_ID = re.compile(r"[a-z2-7]{55}d\Z")  # v3: base32 of key, checksum, version 3


class OnionError(ValueError):
    """A key file or a tor reply that is not what it should be."""


@dataclass(frozen=True)
class AddOnionReply:
    service_id: str  # the address without ".onion"
    private_key: str | None  # ``ED25519-V3:<base64>`` for a new key, else None (DiscardPK)

    @property
    def address(self) -> str:
        return f"{self.service_id}.onion"


def encode_key_file(private_key: str) -> bytes:
    """tor's ``hs_ed25519_secret_key`` bytes of an ``ED25519-V3:<base64>`` key."""
    kind, _, blob = private_key.partition(":")
    if kind != KEY_TYPE:
        raise OnionError(f"not an {KEY_TYPE} key")
    try:
        raw = base64.b64decode(blob, validate=True)
    except binascii.Error:
        raise OnionError("the key is not base64") from None
    if len(raw) != 64:
        raise OnionError(f"an {KEY_TYPE} key has 64 bytes, not {len(raw)}")
    return KEY_HEADER + raw


def decode_key_file(data: bytes) -> str:
    """The ``ED25519-V3:<base64>`` key of an ``hs_ed25519_secret_key`` file; raises
    :class:`OnionError` for anything else."""
    if len(data) != len(KEY_HEADER) + 64 or not data.startswith(KEY_HEADER):
        raise OnionError("not an ed25519 onion service secret key (hs_ed25519_secret_key)")
    return f"{KEY_TYPE}:{base64.b64encode(data[len(KEY_HEADER):]).decode()}"


def add_onion_command(private_key: str | None, ports: Sequence[tuple[int, str]]) -> str:
    """``ADD_ONION``: a new v3 key when ``private_key`` is None, else that key (not echoed
    back); ``ports``: (onion port, ``host:port`` target) pairs."""
    if not ports:
        raise ValueError("an onion service needs at least one port")
    key = f"NEW:{KEY_TYPE}" if private_key is None else private_key
    parts = ["ADD_ONION", key]
    if private_key is not None:
        parts.append("Flags=DiscardPK")
    parts += [f"Port={virtual},{where}" for virtual, where in ports]
    return " ".join(parts)


def parse_add_onion(reply: str, *, new_key: bool) -> AddOnionReply:
    """The ``250`` reply lines of ``ADD_ONION`` (``ServiceID=...``, ``PrivateKey=...``)."""
    values = dict(line.partition("=")[::2] for line in reply.splitlines() if "=" in line)
    service_id = values.get("ServiceID", "")
    if not _SERVICE_ID.match(service_id):
        raise OnionError(f"tor answered ADD_ONION without a v3 ServiceID: {reply!r}")
    private_key = values.get("PrivateKey")
    if new_key:
        if private_key is None:
            raise OnionError("tor answered ADD_ONION NEW without the PrivateKey")
        encode_key_file(private_key)  # checks it
    return AddOnionReply(service_id, private_key if new_key else None)


def target(host: str, port: int) -> str:
    """Where tor forwards a port of the service: the listener at ``host:port`` (loopback for a
    wildcard listener)."""
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def onion_url(address: str, port: int) -> str:
    """The ``http://`` base URL of ``address`` at ``port`` (onion services need no TLS: the
    address is the key)."""
    return f"http://{address}" if port == 80 else f"http://{address}:{port}"


def torrc_lines(*, data_directory: str, control_socket: str, owner_pid: int,
                extra: Sequence[str]) -> list[str]:
    """The torrc of the tor the gateway launches: its state in ``data_directory``, a control
    socket with cookie authentication, no SOCKS port (unless ``extra`` sets one), logs on stdout
    (the gateway logs them), and an exit when the gateway's process goes away."""
    lines = [
        f"DataDirectory {data_directory}",
        f"ControlPort unix:{control_socket}",
        "CookieAuthentication 1",
        "Log notice stdout",
        f"__OwningControllerProcess {owner_pid}",
    ]
    if not any(line.split(None, 1)[0].lower() == "socksport" for line in extra):
        lines.append("SocksPort 0")
    return lines + list(extra)
