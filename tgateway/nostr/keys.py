"""Keys: NIP-19 bech32 entities and the gateway's own key.

NIP-19 encodes keys and ids as bech32 (BIP-173, not bech32m): ``npub`` (x-only public key),
``nsec`` (secret key), ``note`` (event id), each 32 bytes; ``nprofile`` is a TLV list (type 0:
the 32-byte pubkey, type 1: a relay URL, repeatable; unknown types are skipped). Bech32's
90-character limit is lifted for TLV entities, as nostr-tools does (5000 characters here).

The gateway key comes from ``nostr.private_key`` (hex or nsec). When empty, a key is generated
on first start and kept in ``<data_dir>/nostr.key`` (hex, mode 0600, written atomically and never
overwritten), so the gateway keeps its identity across restarts.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from coincurve import PrivateKey, PublicKeyXOnly
from twisted.logger import Logger

from tgateway.config import ConfigError

__all__ = [
    "KEY_FILE",
    "Nip19Error",
    "ProfilePointer",
    "bech32_decode",
    "bech32_encode",
    "decode",
    "load_or_create_key",
    "note_encode",
    "nprofile_encode",
    "npub_encode",
    "nsec_encode",
    "parse_private_key",
    "parse_public_key",
    "public_key_of",
]

log = Logger()

KEY_FILE = "nostr.key"
MAX_BECH32_LENGTH = 5000

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_MAP = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")


class Nip19Error(ValueError):
    """A bech32 string is malformed, has a bad checksum, or is not the expected entity."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc, bits, out = 0, 0, []
    maxv = (1 << to_bits) - 1
    for value in data:
        if value >> from_bits:
            raise Nip19Error("invalid bech32 data value")
        acc = (acc << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & maxv)
    elif bits >= from_bits or ((acc << (to_bits - bits)) & maxv):
        raise Nip19Error("invalid bech32 padding")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Bech32 (BIP-173) of ``data`` (bytes, converted to 5-bit groups) with prefix ``hrp``."""
    values = _convert_bits(data, 8, 5, True)
    polymod = _polymod(_hrp_expand(hrp) + values + [0] * 6) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def bech32_decode(text: str, max_length: int = MAX_BECH32_LENGTH) -> tuple[str, bytes]:
    """(hrp, data bytes) of a bech32 string. Raises :class:`Nip19Error`."""
    if not isinstance(text, str) or len(text) > max_length:
        raise Nip19Error("bech32 string is too long or not a string")
    if text.lower() != text and text.upper() != text:
        raise Nip19Error("bech32 string mixes upper and lower case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Nip19Error("bech32 separator missing or misplaced")
    hrp = text[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Nip19Error("bech32 prefix has invalid characters")
    try:
        values = [_CHARSET_MAP[c] for c in text[pos + 1 :]]
    except KeyError:
        raise Nip19Error("bech32 data has invalid characters") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Nip19Error("bech32 checksum is wrong")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, False))


@dataclass(frozen=True)
class ProfilePointer:
    """A decoded ``nprofile``: a public key (hex) and relay hints."""

    pubkey: str
    relays: tuple[str, ...] = ()


def _valid_pubkey(raw: bytes) -> str:
    if len(raw) != 32:
        raise Nip19Error("public key must be 32 bytes")
    try:
        PublicKeyXOnly(raw)
    except ValueError:
        raise Nip19Error("public key is not a point on secp256k1") from None
    return raw.hex()


def npub_encode(pubkey_hex: str) -> str:
    """``npub1...`` for a 64-hex x-only public key."""
    return bech32_encode("npub", bytes.fromhex(pubkey_hex))


def nsec_encode(secret: bytes | PrivateKey) -> str:
    """``nsec1...`` for a 32-byte secret key."""
    raw = secret.secret if isinstance(secret, PrivateKey) else secret
    return bech32_encode("nsec", raw)


def note_encode(event_id_hex: str) -> str:
    """``note1...`` for a 64-hex event id."""
    return bech32_encode("note", bytes.fromhex(event_id_hex))


def nprofile_encode(pointer: ProfilePointer) -> str:
    """``nprofile1...`` with the pubkey (TLV 0) and relays (TLV 1)."""
    tlv = bytearray([0, 32]) + bytes.fromhex(pointer.pubkey)
    for relay in pointer.relays:
        raw = relay.encode("utf-8")
        if len(raw) > 255:
            raise Nip19Error("relay URL is too long for nprofile")
        tlv += bytes([1, len(raw)]) + raw
    return bech32_encode("nprofile", bytes(tlv))


def _parse_tlv(data: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise Nip19Error("truncated TLV entry")
        kind, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise Nip19Error("truncated TLV entry")
        out.setdefault(kind, []).append(value)
        i += 2 + length
    return out


def decode(text: str) -> tuple[str, str | bytes | ProfilePointer]:
    """Decode a NIP-19 entity: ``("npub", hex)``, ``("nsec", bytes)``, ``("note", hex)`` or
    ``("nprofile", ProfilePointer)``. An optional ``nostr:`` URI prefix is accepted.

    Raises :class:`Nip19Error` for anything else or anything malformed.
    """
    if isinstance(text, str) and text.lower().startswith("nostr:"):
        text = text[6:]
    hrp, data = bech32_decode(text)
    if hrp == "npub":
        return hrp, _valid_pubkey(data)
    if hrp == "nsec":
        if len(data) != 32:
            raise Nip19Error("secret key must be 32 bytes")
        try:
            PrivateKey(data)
        except ValueError:
            raise Nip19Error("secret key is out of range") from None
        return hrp, data
    if hrp == "note":
        if len(data) != 32:
            raise Nip19Error("event id must be 32 bytes")
        return hrp, data.hex()
    if hrp == "nprofile":
        tlv = _parse_tlv(data)
        if 0 not in tlv:
            raise Nip19Error("nprofile has no public key")
        try:
            relays = tuple(r.decode("utf-8") for r in tlv.get(1, []))
        except UnicodeDecodeError:
            raise Nip19Error("nprofile relay is not UTF-8") from None
        return hrp, ProfilePointer(_valid_pubkey(tlv[0][0]), relays)
    raise Nip19Error(f"unsupported NIP-19 entity {hrp!r}")


def parse_public_key(text: str) -> str:
    """A public key given as 64 hex or ``npub``/``nprofile``, as lowercase hex.

    Raises :class:`Nip19Error` when it is neither or not a valid curve point.
    """
    text = text.strip()
    if _HEX64.match(text):
        return _valid_pubkey(bytes.fromhex(text))
    kind, value = decode(text)
    if kind == "npub":
        assert isinstance(value, str)
        return value
    if kind == "nprofile":
        assert isinstance(value, ProfilePointer)
        return value.pubkey
    raise Nip19Error(f"expected a public key, got {kind}")


def parse_private_key(text: str) -> PrivateKey:
    """A secret key given as 64 hex or ``nsec``. Raises :class:`Nip19Error`."""
    text = text.strip()
    if _HEX64.match(text):
        raw = bytes.fromhex(text)
    else:
        kind, value = decode(text)
        if kind != "nsec":
            raise Nip19Error(f"expected a secret key, got {kind}")
        assert isinstance(value, bytes)
        raw = value
    try:
        return PrivateKey(raw)
    except ValueError:
        raise Nip19Error("secret key is out of range") from None


def public_key_of(key: PrivateKey) -> str:
    """The x-only public key (hex) of ``key``."""
    return str(key.public_key_xonly.format().hex())


def load_or_create_key(config_private_key: str, data_dir: str) -> PrivateKey:
    """The gateway's Nostr key.

    ``config_private_key`` (hex or nsec) wins when set; a bad one raises :class:`ConfigError`
    naming ``nostr.private_key`` (without echoing the secret). Otherwise the key in
    ``<data_dir>/nostr.key`` is used, generated on first start: created with mode 0600 under a
    temporary name, fsynced, then hard-linked into place so an existing key is never replaced
    (two processes starting at once end up sharing one key). A key file that cannot be parsed
    raises :class:`ConfigError` naming the file.
    """
    if config_private_key.strip():
        try:
            return parse_private_key(config_private_key)
        except Nip19Error as e:
            raise ConfigError(
                f"nostr.private_key: expected a 64-hex secret key or an nsec ({e})"
            ) from None

    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = PrivateKey()
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key.secret.hex() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
                created = True
            except FileExistsError:
                created = False
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        if created:
            log.info("generated a new Nostr key in {path}", path=str(path))
            return key

    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warn(
            "{path} is readable by others (mode {mode:o}); setting 0600", path=str(path), mode=mode
        )
        os.chmod(path, 0o600)
    try:
        return parse_private_key(path.read_text(encoding="ascii"))
    except (Nip19Error, UnicodeDecodeError) as e:
        raise ConfigError(
            f"nostr.private_key: the key file {path} is not a valid key ({e})"
        ) from None


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
