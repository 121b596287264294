"""Blossom authorization tokens (kind 24242, BUD-11; formerly BUD-01/BUD-02): a pure check.

``Authorization: Nostr <token>`` where the token is the JSON event encoded in base64 or
base64url, padded or not (blossom-client-sdk sends unpadded base64url). The event goes through
the project's one verifier (:func:`tgateway.nostr.event.parse_event`: id and BIP-340
signature), then the Blossom rules:

- ``kind`` is 24242;
- ``created_at`` is in the past (a small clock skew is tolerated);
- the ``expiration`` tag (NIP-40) is an integer in the future;
- a ``t`` tag equals the verb of the endpoint (``get``, ``upload``, ``list``, ``delete``);
- ``server`` tags, when present, scope the token: one of them must name this server's domain
  (a domain; a full URL is tolerated and reduced to its host name);
- ``x`` tags, when present, scope the token to those blob hashes. ``upload`` and ``delete``
  need at least one; the endpoint checks the hash it acts on with :meth:`BlossomAuth.allows`.

Replays are not refused: a token is valid until its expiration, and clients reuse one on
purpose (blossom-client-sdk sends the same upload token to ``HEAD /upload`` and ``PUT /upload``,
and keeps tokens for reuse); the ``x`` and ``server`` scopes and a short expiration are what
limit a leaked token.

:func:`check_token` is a function of its arguments (``now`` is passed in); no I/O, no reactor.
Failures raise :class:`AuthError`, a 401 whose message is also sent as ``X-Reason``.
:class:`BlossomAuthenticator` is the Blossom routes' :class:`~tgateway.http.auth.Authenticator`:
a verified token becomes a :class:`~tgateway.http.auth.Principal` scoped to its ``x`` tags.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.interfaces import IReactorTime

from tgateway.blocklist import Bans
from tgateway.errors import ApiError, Unauthorized
from tgateway.http.auth import Principal, Proof, refuse_banned
from tgateway.nostr.event import Event, EventError, parse_event

KIND = 24242
VERBS = frozenset({"get", "upload", "list", "delete", "media"})
#: verbs whose token must carry at least one ``x`` tag
NEEDS_HASH = frozenset({"upload", "delete", "media"})
#: tolerated clock skew for ``created_at`` (seconds ahead of our clock)
CLOCK_SKEW = 60
#: the longest header accepted (a token is a few hundred bytes; many x tags make it longer)
MAX_HEADER = 64 * 1024

_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_B64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}\Z")


class AuthError(Unauthorized):
    """A missing or invalid authorization token (HTTP 401, ``X-Reason`` = message)."""

    code = "unauthorized"

    def __init__(self, message: str, *, code: str = "invalid_auth") -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Nostr"})


@dataclass(frozen=True)
class BlossomAuth:
    """A verified token: who signed it, for what verb, scoped to which hashes (empty: any)."""

    event: Event
    verb: str
    hashes: frozenset[str]
    expiration: int

    @property
    def pubkey(self) -> str:
        return self.event.pubkey

    def allows(self, sha256: str) -> bool:
        """True when the token's ``x`` tags (if any) include ``sha256``."""
        return not self.hashes or sha256.lower() in self.hashes


def decode_token(header: str | bytes) -> object:
    """The JSON object in an ``Authorization: Nostr <token>`` header value.

    Accepts standard and URL-safe base64, with or without padding. Raises AuthError.
    """
    if isinstance(header, bytes):
        try:
            header = header.decode("ascii")
        except UnicodeDecodeError:
            raise AuthError("authorization header is not ASCII", code="malformed_auth") from None
    if len(header) > MAX_HEADER:
        raise AuthError("authorization header is too long", code="malformed_auth")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "nostr":
        raise AuthError("authorization scheme must be Nostr", code="malformed_auth")
    token = token.strip()
    if not token or not _B64.match(token):
        raise AuthError("authorization token is not base64", code="malformed_auth")
    token = token.rstrip("=").replace("-", "+").replace("_", "/")
    if len(token) % 4 == 1:
        raise AuthError("authorization token is not base64", code="malformed_auth")
    token += "=" * (-len(token) % 4)
    try:
        raw = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError("authorization token is not base64", code="malformed_auth") from None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise AuthError("authorization token is not a JSON event", code="malformed_auth") from None


def server_domain(value: str) -> str:
    """A ``server`` tag value as a lowercase host name (a URL is reduced to its host)."""
    v = value.strip().lower()
    if "://" in v:
        try:
            return (urlsplit(v).hostname or "").rstrip(".")
        except ValueError:
            return ""
    v = v.split("/", 1)[0]
    if v.startswith("["):  # [v6]:port
        return v[1:].split("]", 1)[0]
    if v.count(":") == 1:
        v = v.split(":", 1)[0]
    return v.rstrip(".")


def check_token(
    header: str | bytes | None,
    *,
    verb: str,
    now: float,
    domains: Iterable[str],
    require_hash: bool | None = None,
) -> BlossomAuth:
    """Verify an ``Authorization`` header value for ``verb`` at time ``now``.

    ``domains``: the names this server answers to (lowercase host names), checked against
    ``server`` tags. ``require_hash``: whether at least one ``x`` tag is needed (default: for
    upload, delete and media). Raises :class:`AuthError` (401) naming the first problem.
    """
    if header is None or (isinstance(header, (str, bytes)) and not header.strip()):
        raise AuthError("authorization required", code="auth_required")
    obj = decode_token(header)
    try:
        event = parse_event(obj)
    except EventError as e:
        raise AuthError(f"authorization event {e.message}", code="invalid_auth") from None
    if event.kind != KIND:
        raise AuthError(f"authorization event must be kind {KIND}, got {event.kind}")
    if event.created_at > now + CLOCK_SKEW:
        raise AuthError("authorization event created_at is in the future")
    exp_values = event.tag_values("expiration")
    if not exp_values:
        raise AuthError("authorization event has no expiration tag")
    try:
        expiration = int(exp_values[0])
    except ValueError:
        raise AuthError("authorization event expiration is not a timestamp") from None
    if expiration <= now:
        raise AuthError("authorization event has expired", code="auth_expired")
    verbs = event.tag_values("t")
    if verb not in verbs:
        got = ", ".join(verbs) or "none"
        raise AuthError(f"authorization event is for {got}, not {verb}", code="wrong_verb")
    servers = [server_domain(s) for s in event.tag_values("server")]
    if servers:
        ours = {d.lower().rstrip(".") for d in domains}
        if not ours.intersection(servers):
            raise AuthError("authorization event is for another server", code="wrong_server")
    xs = [x.lower() for x in event.tag_values("x")]
    if any(not _HEX64.match(x) for x in xs):
        raise AuthError("authorization event has an x tag that is not a sha256")
    hashes = frozenset(xs)
    if require_hash is None:
        require_hash = verb in NEEDS_HASH
    if require_hash and not hashes:
        raise AuthError(f"authorization event for {verb} needs an x tag", code="wrong_hash")
    if verb == "get" and not hashes and not servers:
        # BUD-01: a get token names the server or the blobs; an unscoped one is refused
        raise AuthError("authorization event for get needs a server or an x tag", code="wrong_hash")
    return BlossomAuth(event=event, verb=verb, hashes=hashes, expiration=expiration)


def require_hash_match(auth: BlossomAuth | Principal, sha256: str) -> None:
    """Raise AuthError unless the token's ``x`` tags cover ``sha256``."""
    if not auth.allows(sha256):
        raise AuthError(
            f"authorization event has no x tag for {sha256.lower()}", code="wrong_hash"
        )


#: the token verb each route scope needs (a mirror is an upload: BUD-04)
SCOPE_VERBS = {"mirror": "upload"}


class BlossomAuthenticator:
    """``Authorization: Nostr <kind 24242 token>`` -> :class:`Principal` for a route's scope (the
    verb the token must name, see :data:`SCOPE_VERBS`), checked against this server's name
    (``domain``: never the request's Host) at the clock's time."""

    def __init__(self, *, clock: IReactorTime, domain: str, admins: Iterable[str] = (),
                 bans: Bans | None = None) -> None:
        self.clock = clock
        self.domain = domain
        self.admins = frozenset(k.lower() for k in admins)
        self.bans = bans

    @staticmethod
    def verb(scope: str) -> str:
        return SCOPE_VERBS.get(scope, scope)

    async def authenticate(self, request: Any, scope: str = "") -> Principal | None:
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        token = check_token(header, verb=self.verb(scope), now=self.clock.seconds(),
                            domains={self.domain})
        refuse_banned(self.bans, token.pubkey)  # 403 banned, with X-Reason
        return Principal(pubkey=token.pubkey, admin=token.pubkey.lower() in self.admins,
                         proof=Proof.BLOSSOM, event=token.event, hashes=token.hashes)

    def missing(self, scope: str = "") -> ApiError:
        return AuthError(f"authorization required to {self.verb(scope)}", code="auth_required")


__all__ = [
    "AuthError",
    "BlossomAuth",
    "BlossomAuthenticator",
    "SCOPE_VERBS",
    "KIND",
    "check_token",
    "decode_token",
    "require_hash_match",
    "server_domain",
]
