"""Routes declared with the toolkit (tgateway.http.app, .auth, .converters), in memory with
StubTreq: auth on the route hands the handler a typed principal; path converters check and
lowercase hashes while the route is matched, with the JSON errors the handlers used to raise."""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from tgateway.errors import ApiError, TooManyRequests, Unauthorized
from tgateway.http.app import new_app
from tgateway.http.auth import Need, Principal, Proof, authorized

ALICE = Principal(pubkey="a1" * 32, admin=False, proof=Proof.SESSION)
ROOT = Principal(pubkey="f0" * 32, admin=True, proof=Proof.SESSION)


class FakeAuth:
    """``Bearer alice`` / ``Bearer root``; any other credentials are refused."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def authenticate(self, request: Any, scope: str = "") -> Principal | None:
        self.calls.append(scope)
        value = request.getHeader(b"authorization")
        if value is None:
            return None
        who = {b"Bearer alice": ALICE, b"Bearer root": ROOT}.get(value)
        if who is None:
            raise Unauthorized("bad credentials", code="invalid_session")
        return who

    def missing(self, scope: str = "") -> ApiError:
        return Unauthorized(f"sign in to {scope or 'continue'}", code="auth_required")


class Routes:
    app = new_app()

    def __init__(self) -> None:
        self.auth = FakeAuth()
        self.limited = False
        self.optional_need = Need.OPTIONAL

    def _gate(self, request: Any) -> None:
        if self.limited:
            raise TooManyRequests("slow down", retry_after=1)

    def _need(self) -> Need:
        return self.optional_need

    @authorized(app, "/me", methods=["GET"], need=Need.USER)
    async def me(self, request: Any, principal: Principal) -> bytes:
        return json.dumps([principal.pubkey, principal.proof.value]).encode()

    @authorized(app, "/files/<sha256:sha>", methods=["PUT"], need=_need, scope="upload",
                before=_gate)
    async def put(self, request: Any, principal: Principal | None, sha: str) -> bytes:
        return json.dumps([principal.pubkey if principal else None, sha]).encode()

    @authorized(app, "/admin/<info_hash:ih>", methods=["POST"], need=Need.ADMIN)
    async def admin(self, request: Any, principal: Principal, ih: str) -> bytes:
        return json.dumps(ih).encode()

    @authorized(app, "/open/<pubkey:key>", methods=["GET"], need=Need.NONE)
    async def open(self, request: Any, principal: None, key: str) -> bytes:
        return json.dumps([principal, key]).encode()

    @app.route("/blob/<blob:sha>", methods=["GET"])
    def blob(self, request: Any, sha: str) -> bytes:
        return json.dumps(sha).encode()


class RouteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.routes = Routes()
        self.client = StubTreq(self.routes.app.resource())

    def call(self, method: str, path: str, who: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {who}"} if who else {}
        r = self.successResultOf(self.client.request(method, "http://x" + path, headers=headers))
        body = self.successResultOf(r.content())
        if r.code >= 400:
            self.assertEqual(r.headers.getRawHeaders("content-type"), ["application/json"])
        return r.code, json.loads(body)

    def test_a_user_route_gets_the_principal(self) -> None:
        self.assertEqual(self.call("GET", "/me", "alice"), (200, [ALICE.pubkey, "session"]))
        code, body = self.call("GET", "/me")
        self.assertEqual((code, body["error"]), (401, "auth_required"))
        code, body = self.call("GET", "/me", "mallory")
        self.assertEqual((code, body["error"]), (401, "invalid_session"))

    def test_optional_auth_anonymous_or_principal_never_ignored_credentials(self) -> None:
        sha = "AB" * 32
        self.assertEqual(self.call("PUT", f"/files/{sha}"), (200, [None, "ab" * 32]))
        self.assertEqual(self.call("PUT", f"/files/{sha}", "alice"), (200, [ALICE.pubkey, "ab" * 32]))
        code, body = self.call("PUT", f"/files/{sha}", "mallory")
        self.assertEqual((code, body["error"]), (401, "invalid_session"))
        self.assertEqual(self.routes.auth.calls[-1], "upload")  # the route's scope

    def test_the_need_can_come_from_the_route_owner(self) -> None:
        self.routes.optional_need = Need.USER  # e.g. anonymous uploads switched off
        code, body = self.call("PUT", f"/files/{'ab' * 32}")
        self.assertEqual((code, body["error"], body["message"]), (401, "auth_required",
                                                                  "sign in to upload"))

    def test_before_runs_ahead_of_authentication(self) -> None:
        self.routes.limited = True
        calls = len(self.routes.auth.calls)
        code, body = self.call("PUT", f"/files/{'ab' * 32}", "mallory")
        self.assertEqual((code, body["error"]), (429, "rate_limited"))
        self.assertEqual(len(self.routes.auth.calls), calls)

    def test_admin_routes(self) -> None:
        ih = "CD" * 20
        self.assertEqual(self.call("POST", f"/admin/{ih}", "root"), (200, "cd" * 20))
        code, body = self.call("POST", f"/admin/{ih}", "alice")
        self.assertEqual((code, body["error"]), (403, "not_admin"))
        code, body = self.call("POST", f"/admin/{ih}")
        self.assertEqual((code, body["error"]), (401, "auth_required"))

    def test_no_auth_looks_at_no_credentials(self) -> None:
        self.assertEqual(self.call("GET", f"/open/{'EF' * 32}", "mallory"), (200, [None, "ef" * 32]))
        self.assertEqual(self.routes.auth.calls, [])

    def test_converters_refuse_bad_values_with_the_handlers_errors(self) -> None:
        for path, method, who, field in (
            ("/files/xyz", "PUT", None, "sha256"),
            (f"/files/{'a' * 63}", "PUT", None, "sha256"),
            (f"/files/{'g' * 64}", "PUT", None, "sha256"),
            (f"/admin/{'b' * 39}", "POST", "root", "info_hash"),
            (f"/admin/{'b' * 64}", "POST", "root", "info_hash"),
            ("/open/npub1xyz", "GET", None, "pubkey"),
        ):
            code, body = self.call(method, path, who)
            self.assertEqual((code, body["error"]), (400, "invalid_hash"), path)
            self.assertTrue(body["message"].startswith(field + " must be"), body)
        # a bad path is refused before the credentials are looked at
        self.assertEqual(self.routes.auth.calls, [])

    def test_blob_addresses(self) -> None:
        sha = "AB" * 32
        self.assertEqual(self.call("GET", f"/blob/{sha}"), (200, "ab" * 32))
        self.assertEqual(self.call("GET", f"/blob/{sha}.pdf"), (200, "ab" * 32))
        for bad in ("upload", sha + ".", sha[:-1] + ".png", sha + "." + "x" * 33):
            code, body = self.call("GET", f"/blob/{bad}")
            self.assertEqual((code, body["error"]), (404, "not_found"), bad)

    def test_routing_misses_are_json(self) -> None:
        code, body = self.call("GET", "/nothing")
        self.assertEqual((code, body["error"]), (404, "not_found"))
        code, body = self.call("DELETE", "/me")
        self.assertEqual((code, body["error"]), (405, "method_not_allowed"))
