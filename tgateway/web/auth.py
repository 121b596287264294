"""Sign-in on ``gateway.port``: the one request authenticator and the ``/api/auth/*`` routes.

:class:`RequestAuthenticator` turns a request into the caller's hex pubkey:

- ``Authorization: Bearer <session token>``: a live session (``tgateway.storage.sessions``);
- ``Authorization: Nostr <base64 kind 27235 event>`` (NIP-98): ``u`` must equal the external URL
  of the request: the gateway's public URL (``gateway.public_url``, or the listening address when
  it is empty) + path and query. Never the ``Host`` header: a client could otherwise replay an
  event signed for another server by sending that server's name; behind a reverse proxy, set
  ``gateway.public_url``. ``method`` must be the request method, ``created_at`` within 60 s,
  and the event must not have been used before. A ``payload`` tag is checked against the body's
  SHA-256; for streamed uploads the body is only known at the end, so the event is left on the
  request as ``request.nip98_event`` and the upload route checks it before the file is stored;
- no ``Authorization`` header: anonymous (None). Anything else: 401 saying what was wrong.

Routes (:class:`AuthApi`): ``GET /api/auth/challenge`` (a challenge, and the URLs a login event
must name: ``relay`` for a kind 22242 ``relay`` tag, ``url`` for a kind 27235 ``u`` tag),
``POST /api/auth/login`` (``auth_type`` ``nip07`` with a signed event bound to this gateway, see
:mod:`tgateway.nostr.login`; or ``nip46`` with a ``bunker://`` URL, or ``login_id`` to poll a
NIP-46 login that is waiting for the user's approval at ``auth_url``, or ``event``: a login event
signed by a NIP-46 signer the web page reached itself through ``nostrconnect://``, checked like a
NIP-07 one), ``POST /api/auth/logout``
and ``GET /api/auth/session``. Login attempts are rate limited per IP (``rate_limiting.auth``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from klein import Klein
from twisted.internet.defer import CancelledError, TimeoutError
from twisted.logger import Logger

from tgateway.errors import ApiError, BadRequest, ServiceUnavailable, TooManyRequests, Unauthorized
from tgateway.nostr.keys import npub_encode
from tgateway.nostr.login import LOGIN_KINDS, ChallengeStore, LoginBinding, verify_login_event
from tgateway.nostr.nip46 import Nip46Error
from tgateway.nostr.nip46_login import Nip46Attempt, Nip46Busy, Nip46Logins
from tgateway.nostr.nip98 import DEFAULT_WINDOW, ReplayCache, verify_http_auth
from tgateway.ratelimit import KeyedLimiter
from tgateway.storage.sessions import SessionStore

from .errors import install_error_handlers
from .send import CORS_PREFLIGHT, client_ip, json_body, set_headers

__all__ = ["AuthApi", "RequestAuthenticator", "require_user"]

POLL_WAIT = 25.0  # a poll of a NIP-46 login waits this long for the end before answering 202
AUTH_HELP = "send Authorization: Bearer <session token> or Authorization: Nostr <NIP-98 event>"


class RequestAuthenticator:
    """Session bearer tokens and NIP-98 headers -> hex pubkey (the ``Authenticator`` of
    ``tgateway.web.api``)."""

    def __init__(
        self,
        *,
        sessions: SessionStore,
        clock: Any,
        base_url: str,
        window: float = DEFAULT_WINDOW,
        replay: ReplayCache | None = None,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.base_url = base_url.rstrip("/")
        self.window = window
        self.replay = replay if replay is not None else ReplayCache(ttl=2 * window + 5)

    def external_url(self, request: Any) -> str:
        """The absolute URL of the request, as NIP-98's ``u`` tag must name it: the gateway's
        public URL + path and query (whatever ``Host`` the client sent)."""
        uri: str = request.uri.decode("latin-1")
        return self.base_url + uri

    async def authenticate(self, request: Any) -> str | None:
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

    async def _session(self, token: str) -> str:
        if not token:
            raise Unauthorized("the Bearer session token is empty", code="invalid_session")
        session = await self.sessions.lookup(token, self.clock.seconds())
        if session is None:
            raise Unauthorized(
                "the session token is unknown, expired or revoked: sign in again",
                code="invalid_session",
            )
        return str(session.pubkey)

    def _nip98(self, request: Any, header: str) -> str:
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
        if streamed and event.first_tag("payload") is not None:
            request.nip98_event = event  # checked by the upload route once the body is in
        return event.pubkey


def _body_sha256(request: Any) -> str:
    content = getattr(request, "content", None)
    if content is None:
        return hashlib.sha256(b"").hexdigest()
    content.seek(0)
    data = content.read()
    content.seek(0)
    return hashlib.sha256(data).hexdigest()


async def require_user(auth: Any, request: Any) -> str:
    """The caller's pubkey; 401 ``auth_required`` for an anonymous request."""
    pubkey: str | None = await auth.authenticate(request)
    if pubkey is None:
        raise Unauthorized(f"sign in first: {AUTH_HELP}", code="auth_required")
    return pubkey


def read_json(request: Any) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    content = getattr(request, "content", None)
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read()
    try:
        body = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object", code="invalid_json")
    return body


class AuthApi:
    """``/api/auth/*``. ``nip46`` is None when the Nostr component is not running."""

    app = Klein()
    log = Logger()

    def __init__(
        self,
        *,
        auth: RequestAuthenticator,
        sessions: SessionStore,
        clock: Any,
        login_attempts_per_minute: float,
        login_burst: int,
        binding: LoginBinding,
        nip46: Nip46Logins | None = None,
        challenges: ChallengeStore | None = None,
        login_window: float = 300.0,
    ) -> None:
        self.auth = auth
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
        wait = limiter.take(client_ip(request), self.clock.seconds())
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
        if auth_type == "nip46" and "event" in body and "bunker_url" not in body:
            # signed by a NIP-46 signer the page reached itself (nostrconnect://)
            return await self._nip07(request, body, method="nip46")
        if auth_type == "nip46":
            return await self._nip46_start(request, body)
        raise BadRequest("auth_type must be nip07 or nip46", code="invalid_auth_type")

    async def _session_answer(self, request: Any, pubkey: str, method: str) -> bytes:
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

    async def _nip07(self, request: Any, body: dict[str, Any], method: str = "nip07") -> bytes:
        event = body.get("event", body.get("signed_event"))
        if isinstance(event, str):
            try:
                event = json.loads(event)
            except ValueError:
                raise Unauthorized("login event is not valid JSON", code="invalid_login") from None
        if not isinstance(event, dict):
            raise BadRequest("nip07 login needs 'event': the signed event", code="missing_event")
        try:
            checked = verify_login_event(
                event, challenges=self.challenges, binding=self.binding,
                now=self.clock.seconds(), window=self.login_window,
            )
        except Unauthorized as e:
            code = e.code if e.code != Unauthorized.code else "invalid_login"
            raise Unauthorized(e.message, code=code) from None
        return await self._session_answer(request, checked.pubkey, method)

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

    @app.route("/api/auth/session", methods=["GET"])
    async def session(self, request: Any) -> bytes:
        pubkey = await require_user(self.auth, request)
        return json_body(request, {"pubkey": pubkey, "npub": npub_encode(pubkey)})

    @app.route("/api/auth/", branch=True, methods=["OPTIONS"])
    def preflight(self, request: Any) -> bytes:
        set_headers(request, CORS_PREFLIGHT)
        request.setResponseCode(204)
        return b""

    @app.route("/api/auth/", branch=True, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    def not_found(self, request: Any) -> bytes:
        raise ApiError("no such API route", status=404, code="not_found")


install_error_handlers(AuthApi.app)
