"""Auth declared on the route: who may call it, and the caller handed in as a typed principal.

A route says what it needs with :func:`authorized` (in the style of Tahoe-LAFS's
``_authorized_route``)::

    @authorized(app, "/api/users/me/stats", methods=["GET"], need=Need.USER)
    async def stats(self, request, principal: Principal) -> bytes: ...

The decorator asks the route owner's ``auth`` (an :class:`Authenticator`) for the caller before
the handler runs and passes it as the argument after the request: a :class:`Principal`, or None
for an anonymous caller where the route allows one. Nothing is left on the request.

- ``Need.USER``: credentials are required (401 from the authenticator's :meth:`missing`);
- ``Need.ADMIN``: credentials of a key in ``admin.pubkeys`` (403 ``not_admin`` otherwise);
- ``Need.OPTIONAL``: a principal or None; credentials that are present but do not verify are
  still refused (401), never ignored;
- ``Need.NONE``: credentials are not looked at; the handler gets None.

A banned key (the block list's :class:`~tgateway.blocklist.Bans`) never becomes a principal: the
authenticators refuse it with 403 ``banned`` (:func:`refuse_banned`), whatever the route needs.

``need`` may also be a function of the route owner, for a need that comes from configuration
(Blossom's ``require_auth``, the gateway's ``allow_anonymous_uploads``). ``scope`` names what the
credentials must be for: the verb of a Blossom token (``upload``, ``delete``...); the gateway's
authenticator uses it only for its messages. ``before`` runs ahead of the authentication (CORS
headers, a rate limit that must count refused credentials too).
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from klein import Klein

from tgateway.blocklist import Bans
from tgateway.errors import ApiError, Forbidden, Unauthorized
from tgateway.nostr.event import Event


class Proof(enum.Enum):
    """How a principal proved who it is."""

    SESSION = "session"  # Authorization: Bearer <session token>
    NIP98 = "nip98"  # Authorization: Nostr <kind 27235 event>
    BLOSSOM = "blossom"  # Authorization: Nostr <kind 24242 token>


@dataclass(frozen=True)
class Principal:
    """A caller whose credentials verified.

    ``event``: the signed event that proved it (NIP-98, Blossom token), for what is checked
    later: a NIP-98 ``payload`` tag against the body once it is in. ``hashes``: the blobs a
    Blossom token is scoped to (its ``x`` tags); empty for credentials not scoped to blobs.
    """

    pubkey: str
    admin: bool
    proof: Proof
    event: Event | None = None
    hashes: frozenset[str] = frozenset()

    def allows(self, sha256: str) -> bool:
        """True when the credentials cover the blob ``sha256`` (unscoped ones cover every blob)."""
        return not self.hashes or sha256.lower() in self.hashes


class Need(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"
    USER = "user"
    ADMIN = "admin"


class Authenticator(Protocol):
    async def authenticate(self, request: Any, scope: str = "") -> Principal | None:
        """The caller, or None when the request carries no credentials. Raises Unauthorized
        (401) when it carries credentials that do not verify, or that are not for ``scope``."""

    def missing(self, scope: str = "") -> ApiError:
        """The error for a request without credentials to a route that needs them."""


class Guarded(Protocol):
    """What :func:`authorized` needs of the object whose routes it guards."""

    auth: Authenticator


class AnonymousOnly:
    """Used while no sign-in method is configured: credentials are refused, not ignored."""

    async def authenticate(self, request: Any, scope: str = "") -> Principal | None:
        if request.getHeader(b"authorization"):
            raise Unauthorized("this gateway has no sign-in configured", code="auth_unavailable")
        return None

    def missing(self, scope: str = "") -> ApiError:
        return sign_in_required(scope)


AUTH_HELP = "send Authorization: Bearer <session token> or Authorization: Nostr <NIP-98 event>"


def sign_in_required(scope: str = "") -> Unauthorized:
    """The gateway's 401 for a caller without credentials."""
    message = f"sign in to {scope}" if scope else f"sign in first: {AUTH_HELP}"
    return Unauthorized(message, code="auth_required")


class Banned(Forbidden):
    """Credentials of a banned key (403 ``banned``): refused for sign-in and for every request."""

    code = "banned"


def refuse_banned(bans: Bans | None, pubkey: str) -> None:
    """Raise :class:`Banned` when ``pubkey`` is banned: every authenticator calls this before it
    hands out a principal, and sign-in before it creates a session."""
    if bans is not None and bans.is_banned(pubkey):
        raise Banned("this key is banned from this gateway", code="banned")


NeedOf = Need | Callable[[Any], Need]


def authorized(
    app: Klein,
    path: str,
    *,
    need: NeedOf,
    scope: str = "",
    before: Callable[[Any, Any], None] | None = None,
    **route: Any,
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Declare a route of ``app`` (``path`` and ``route`` go to ``app.route``) whose handler
    ``f(self, request, principal, **path_values)`` receives the caller (see the module
    docstring). The route owner must have ``auth`` (:class:`Guarded`)."""

    def deco(f: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(f)
        async def handler(self: Guarded, request: Any, **values: Any) -> Any:
            if before is not None:
                before(self, request)
            principal = await caller(self, request, need(self) if callable(need) else need, scope)
            return await f(self, request, principal, **values)

        app.route(path, **route)(handler)
        return handler

    return deco


async def caller(owner: Guarded, request: Any, need: Need, scope: str = "") -> Principal | None:
    """The principal a route with ``need`` gets (or the error it raises)."""
    if need is Need.NONE:
        return None
    principal = await owner.auth.authenticate(request, scope)
    if principal is None:
        if need is Need.OPTIONAL:
            return None
        raise owner.auth.missing(scope)
    if need is Need.ADMIN and not principal.admin:
        raise Forbidden("administrators only", code="not_admin")
    return principal


__all__ = [
    "AUTH_HELP",
    "AnonymousOnly",
    "Authenticator",
    "Banned",
    "Guarded",
    "Need",
    "Principal",
    "Proof",
    "authorized",
    "caller",
    "refuse_banned",
    "sign_in_required",
]
