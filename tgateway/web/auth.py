"""Sign-in on ``gateway.port``: the one request authenticator and the ``/api/auth/*`` routes.

:class:`RequestAuthenticator` turns a request into the caller:

- ``Authorization: Bearer <session token>``: a live session (``tgateway.storage.auth_sessions``);
- ``Authorization: Nostr <base64 kind 27235 event>`` (NIP-98): ``u`` must equal the external URL
  of the request: the gateway's public URL (``gateway.public_url``, or the listening address when
  it is empty) + path and query. Never the ``Host`` header: a client could otherwise replay an
  event signed for another server by sending that server's name; behind a reverse proxy, set
  ``gateway.public_url``. ``method`` must be the request method, ``created_at`` within 60 s,
  and the event must not have been used before. A ``payload`` tag is checked against the body's
  SHA-256; for streamed uploads the body is only known at the end, so the principal carries the
  event and the upload checks it before the file becomes visible (:func:`nip98_payload_check`);
- no ``Authorization`` header: anonymous (None). Anything else: 401 saying what was wrong.

A banned key (``bans``, the block list) gets 403 ``banned`` for a session, a NIP-98 header and
a login (NIP-07 and NIP-46) alike.

The caller comes out as a :class:`~tgateway.http.auth.Principal` (``admin`` for the keys in
``admin.pubkeys``); routes declare what they need with :func:`tgateway.http.auth.authorized`.

Routes (:class:`AuthApi`): ``GET /api/auth/challenge`` (a challenge, and the URLs a login event
must name: ``relay`` for a kind 22242 ``relay`` tag, ``url`` for a kind 27235 ``u`` tag),
``POST /api/auth/login`` (``auth_type`` ``nip07`` with a signed event bound to this gateway in
``auth_event``, ``event`` or ``signed_event``, an object or a JSON string, see
:mod:`tgateway.nostr.login`; or ``nip46`` with a ``bunker://`` URL, or ``login_id`` to poll a
NIP-46 login that is waiting for the user's approval at ``auth_url``), ``POST /api/auth/logout``
and ``GET /api/auth/session``. Login attempts are rate limited per IP (``rate_limiting.auth``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import CancelledError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tgateway.blocklist import Bans
from tgateway.errors import ApiError, BadRequest, ServiceUnavailable, TooManyRequests, Unauthorized
from tgateway.http.app import new_app
from tgateway.http.auth import (
    AUTH_HELP,
    Need,
    Principal,
    Proof,
    authorized,
    refuse_banned,
    sign_in_required,
)
from tgateway.http.headers import answer_preflight, client_ip
from tgateway.http.jsonio import json_body, read_json
from tgateway.nostr.event import Event
from tgateway.nostr.keys import npub_encode
from tgateway.nostr.login import LOGIN_KINDS, ChallengeStore, LoginBinding, verify_login_event
from tgateway.nostr.nip46 import Nip46Error
from tgateway.nostr.nip46_login import Nip46Attempt, Nip46Busy, Nip46Logins
from tgateway.nostr.nip98 import DEFAULT_WINDOW, ReplayCache, check_payload, verify_http_auth
from tgateway.proxies import NO_PROXIES, ProxyPolicy
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.api import Received
from tgateway.storage.auth_sessions import SessionStore

__all__ = ["AuthApi", "RequestAuthenticator", "nip98_payload_check", "wants_payload_check"]

POLL_WAIT = 25.0  # a poll of a NIP-46 login waits this long for the end before answering 202
#: where a nip07 login body may carry the signed event, first found wins (``auth_event``: the
#: seed's API reference)
LOGIN_EVENT_FIELDS = ("auth_event", "event", "signed_event")


class RequestAuthenticator:
    """Session bearer tokens and NIP-98 headers -> :class:`Principal` (the gateway's
    :class:`~tgateway.http.auth.Authenticator`)."""

    def __init__(
        self,
        *,
        sessions: SessionStore,
        clock: IReactorTime,
        base_url: str,
        admins: Iterable[str] = (),
        window: float = DEFAULT_WINDOW,
        replay: ReplayCache | None = None,
        bans: Bans | None = None,
    ) -> None:
        self.sessions = sessions
        self.bans = bans
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.admins = frozenset(k.lower() for k in admins)
        self.window = window
        self.replay = replay if replay is not None else ReplayCache(ttl=2 * window + 5)

    def external_url(self, request: Any) -> str:
        """The absolute URL of the request, as NIP-98's ``u`` tag must name it: the gateway's
        public URL + path and query (whatever ``Host`` the client sent)."""
        uri: str = request.uri.decode("latin-1")
        return self.base_url + uri

    def missing(self, scope: str = "") -> ApiError:
        return sign_in_required(scope)

    async def authenticate(self, request: Any, scope: str = "") -> Principal | None:
        header = request.getHeader(b"authorization")
        if header is None:
            return None
        value = header.decode("latin-1").strip()
        scheme, _, credentials = value.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer":
            return await self._session(credentials.strip())
        if scheme == "nostr":
            return self._nip98(request, value)
        raise Unauthorized(
            f"unsupported Authorization scheme: {AUTH_HELP}", code="unsupported_auth_scheme"
        )

    def _principal(self, pubkey: str, proof: Proof, event: Event | None = None) -> Principal:
        refuse_banned(self.bans, pubkey)
        return Principal(pubkey=pubkey, admin=pubkey.lower() in self.admins, proof=proof,
                         event=event)

    async def _session(self, token: str) -> Principal:
        if not token:
            raise Unauthorized("the Bearer session token is empty", code="invalid_session")
        session = await self.sessions.lookup(token, self.clock.seconds())
        if session is None:
            raise Unauthorized(
                "the session token is unknown, expired or revoked: sign in again",
                code="invalid_session",
            )
        return self._principal(str(session.pubkey), Proof.SESSION)

    def _nip98(self, request: Any, header: str) -> Principal:
        streamed = getattr(request, "body_stream", None) is not None
        body_sha256 = None if streamed else _body_sha256(request)
        try:
            event = verify_http_auth(
                header,
                method=request.method.decode("latin-1"),
                url=self.external_url(request),
                now=self.clock.seconds(),
                replay=self.replay,
                body_sha256=body_sha256,
                window=self.window,
            )
        except Unauthorized as e:
            raise Unauthorized(e.message, code="invalid_nip98") from None
        # a streamed body's payload tag is checked once the body is in (nip98_payload_check)
        return self._principal(event.pubkey, Proof.NIP98, event)


def wants_payload_check(principal: Principal | None) -> bool:
    """Whether ``principal`` came with a NIP-98 event whose ``payload`` tag names the body."""
    return (principal is not None and principal.proof is Proof.NIP98
            and principal.event is not None and principal.event.first_tag("payload") is not None)


def nip98_payload_check(
    principal: Principal | None, body_sha256: Callable[[Received], str]
) -> Callable[[Received], None] | None:
    """The upload check (run before the file becomes visible) that refuses a streamed body the
    NIP-98 ``payload`` tag does not name (401 ``invalid_nip98``); None when there is nothing to
    check. ``body_sha256``: the SHA-256 of the request body, given the ingest's result."""
    if not wants_payload_check(principal):
        return None
    assert principal is not None and principal.event is not None
    event = principal.event

    def check(result: Received) -> None:
        try:
            check_payload(event, body_sha256(result))
        except Unauthorized as e:
            raise Unauthorized(e.message, code="invalid_nip98") from None

    return check


def _body_sha256(request: Any) -> str:
    content = getattr(request, "content", None)
    if content is None:
        return hashlib.sha256(b"").hexdigest()
    content.seek(0)
    data = content.read()
    content.seek(0)
    return hashlib.sha256(data).hexdigest()


class AuthApi:
    """``/api/auth/*``. ``nip46`` is None when the Nostr component is not running."""

    app = new_app()
    log = Logger()

    def __init__(
        self,
        *,
        auth: RequestAuthenticator,
        sessions: SessionStore,
        clock: IReactorTime,
        login_attempts_per_minute: float,
        login_burst: int,
        binding: LoginBinding,
        nip46: Nip46Logins | None = None,
        challenges: ChallengeStore | None = None,
        login_window: float = 300.0,
        proxies: ProxyPolicy = NO_PROXIES,
    ) -> None:
        self.auth = auth
        self.proxies = proxies
        self.sessions = sessions
        self.clock = clock
        self.binding = binding
        self.nip46 = nip46
        self.challenges = challenges or ChallengeStore()
        self.login_window = login_window
        rate = login_attempts_per_minute / 60.0
        self.login_limiter: KeyedLimiter[str] = KeyedLimiter(rate, login_burst)
        self.challenge_limiter: KeyedLimiter[str] = KeyedLimiter(rate, login_burst)

    def _limit(self, limiter: KeyedLimiter[str], request: Any) -> None:
        wait = limiter.take(client_ip(request, self.proxies), self.clock.seconds())
        if wait:
            raise TooManyRequests("too many login attempts; retry later", retry_after=wait)

    @app.route("/api/auth/challenge", methods=["GET"])
    def challenge(self, request: Any) -> bytes:
        if request.method == b"HEAD":
            # The headers a GET gets, and no challenge: HEAD has no side effects (RFC 9110 9.3.2).
            json_body(request, None)
            return b""
        self._limit(self.challenge_limiter, request)
        c = self.challenges.issue(self.clock.seconds())
        return json_body(request, {
            "challenge": c.value,
            "expires_at": int(c.expires_at),
            "kinds": list(LOGIN_KINDS),
            "relay": self.binding.base_url,  # the relay tag of a kind 22242 login event
            "url": self.binding.login_url,  # the u tag of a kind 27235 login event
        })

    @app.route("/api/auth/login", methods=["POST"])
    async def login(self, request: Any) -> bytes:
        body = read_json(request)
        auth_type = body.get("auth_type")
        if auth_type == "nip46" and "login_id" in body and "bunker_url" not in body:
            return await self._nip46_poll(request, body["login_id"])
        self._limit(self.login_limiter, request)
        if auth_type == "nip07":
            return await self._nip07(request, body)
        if auth_type == "nip46":
            return await self._nip46_start(request, body)
        raise BadRequest("auth_type must be nip07 or nip46", code="invalid_auth_type")

    async def _session_answer(self, request: Any, pubkey: str, method: str) -> bytes:
        refuse_banned(self.auth.bans, pubkey)  # NIP-07 and NIP-46 alike
        token, session = await self.sessions.create(pubkey, method, self.clock.seconds())
        self.log.info("signed in {pubkey} ({method})", pubkey=pubkey, method=method)
        return json_body(
            request,
            {
                "status": "ok",
                "token": token,
                "token_type": "Bearer",
                "pubkey": pubkey,
                "npub": npub_encode(pubkey),
                "auth_type": method,
                "expires_at": int(session.expires_at),
            },
        )

    async def _nip07(self, request: Any, body: dict[str, Any]) -> bytes:
        # ``auth_event`` is the name the seed's API reference uses (a JSON string, as a NIP-07
        # extension's signEvent result is usually passed on, or the object itself)
        event = next((body[k] for k in LOGIN_EVENT_FIELDS if body.get(k) is not None), None)
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except (ValueError, RecursionError):
                raise Unauthorized("login event is not valid JSON", code="invalid_login") from None
        if not isinstance(event, dict):
            raise BadRequest("nip07 login needs 'auth_event' (or 'event'): the signed event, as "
                             "an object or a JSON string", code="missing_event")
        try:
            checked = verify_login_event(
                event, challenges=self.challenges, binding=self.binding,
                now=self.clock.seconds(), window=self.login_window,
            )
        except Unauthorized as e:
            code = e.code if e.code != Unauthorized.code else "invalid_login"
            raise Unauthorized(e.message, code=code) from None
        return await self._session_answer(request, checked.pubkey, "nip07")

    async def _nip46_start(self, request: Any, body: dict[str, Any]) -> bytes:
        if self.nip46 is None:
            raise ServiceUnavailable(
                "NIP-46 login needs the Nostr component, which is not running", code="nip46_unavailable"
            )
        url = body.get("bunker_url") or body.get("bunker")
        if not isinstance(url, str) or not url:
            raise BadRequest("nip46 login needs 'bunker_url': a bunker:// URL", code="missing_bunker_url")
        try:
            attempt = await self.nip46.start(url)
        except Nip46Busy as e:
            raise TooManyRequests(str(e), retry_after=5) from None
        except Nip46Error as e:
            raise BadRequest(str(e), code="invalid_bunker_url") from None
        if not attempt.finished and attempt.auth_url is None:
            await attempt.next_change()
        return await self._nip46_answer(request, attempt)

    async def _nip46_poll(self, request: Any, login_id: Any) -> bytes:
        attempt = self.nip46.get(login_id) if self.nip46 is not None else None
        if attempt is None:
            raise Unauthorized("unknown or expired NIP-46 login_id", code="invalid_login")
        if not attempt.finished:
            waiting = attempt.next_change()
            waiting.addTimeout(POLL_WAIT, self.clock)
            try:
                await waiting
            except (TimeoutError, CancelledError):
                pass
        return await self._nip46_answer(request, attempt)

    async def _nip46_answer(self, request: Any, attempt: Nip46Attempt) -> bytes:
        if not attempt.finished:
            return json_body(
                request,
                {"status": "auth_url", "auth_url": attempt.auth_url, "login_id": attempt.id},
                202,
            )
        if attempt.claimed:
            raise Unauthorized("this NIP-46 login was already used", code="invalid_login")
        attempt.claimed = True
        if attempt.pubkey is None:
            raise Unauthorized(str(attempt.error or "NIP-46 login failed"), code="nip46_failed")
        return await self._session_answer(request, attempt.pubkey, "nip46")

    @app.route("/api/auth/logout", methods=["POST"])
    async def logout(self, request: Any) -> bytes:
        header = (request.getHeader(b"authorization") or b"").decode("latin-1").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "logout needs Authorization: Bearer <session token>", code="auth_required"
            )
        if not await self.sessions.revoke(token.strip()):
            raise Unauthorized("the session token is unknown or already ended", code="invalid_session")
        return json_body(request, {"status": "ok", "logged_out": True})

    @authorized(app, "/api/auth/session", methods=["GET"], need=Need.USER)
    async def session(self, request: Any, principal: Principal) -> bytes:
        pubkey = principal.pubkey
        return json_body(request, {"pubkey": pubkey, "npub": npub_encode(pubkey)})

    @app.route("/api/auth/", branch=True, methods=["OPTIONS"])
    def preflight(self, request: Any) -> bytes:
        return answer_preflight(request)

    @app.route("/api/auth/", branch=True, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such API route", status=404, code="not_found")

