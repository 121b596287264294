"""schemathesis against a running ``twistd tgateway`` (every HTTP face on: gateway, tracker,
DHT status, transcoder's stream routes, Blossom, retention's and the admin API's routes, the
health component's, the web interface's pages, static files and JSON routes): every operation of
both OpenAPI documents with generated inputs, signed where the route takes credentials (a test
key, an administrator, signs NIP-98 and Blossom tokens in a ``before_call`` hook; GETs use a
session it signed in for), checking no 5xx, statuses, content types, bodies and headers as the
documents say, then the stateful run the documents' links allow (upload -> download, metadata,
torrent -> delete) on both ports, and no failure in the gateway's log."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

schemathesis = pytest.importorskip("schemathesis")
import requests  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.ports import free_tcp_port  # noqa: E402
from harness.twistd import GatewayProcess, gateway_config  # noqa: E402
from tgateway.nostr.event import EventTemplate, public_key_hex, sign  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = b"\x5a" * 32
PUB = public_key_hex(KEY)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
EXAMPLES = 12  # per operation; the run stays within a few minutes on a loaded machine
#: Blossom's verb (BUD-11 ``t`` tag) for each operation that takes a token
VERBS = {"get_blob": "get", "get_blob_head": "get", "upload": "upload", "upload_check": "upload",
         "media_check": "media", "media_upload": "media", "list_blobs": "list",
         "list_blobs_head": "list", "delete_blob": "delete", "mirror": "upload"}


def _nonce() -> tuple[str, str]:
    """Two requests alike in the same second are signed by different events (NIP-98 refuses
    an event it has seen)."""
    return ("nonce", os.urandom(8).hex())


def _nostr(event: Any) -> str:
    return "Nostr " + base64.b64encode(json.dumps(event.to_json()).encode()).decode()


class Signer:
    """Signs each request the way its port wants: NIP-98 or a session on the gateway port,
    a kind 24242 token on Blossom's."""

    def __init__(self, gateway: str, blossom: str) -> None:
        self.gateway, self.blossom = gateway, blossom
        self.session: str | None = None

    def sign_in(self) -> None:
        challenge = requests.get(self.gateway + "/api/auth/challenge", timeout=30).json()
        event = sign(EventTemplate(kind=27235, created_at=int(time.time()), tags=(
            ("u", challenge["url"]), ("method", "POST"),
            ("challenge", challenge["challenge"]))), KEY)
        r = requests.post(self.gateway + "/api/auth/login", timeout=30,
                          json={"auth_type": "nip07", "auth_event": event.to_json()})
        assert r.status_code == 200, r.text
        self.session = r.json()["token"]

    def headers(self, case: Any) -> dict[str, str]:
        op = case.operation.definition.raw
        if not op.get("security"):
            return {}
        op_id = op["operationId"]
        if op_id in VERBS:
            return {"Authorization": _nostr(self._blossom_token(case, VERBS[op_id]))}
        if case.method in ("GET", "HEAD") and self.session:
            return {"Authorization": "Bearer " + self.session}
        url = requests.Request(case.method, self.gateway + case.formatted_path,
                               params=case.query or None).prepare().url
        event = sign(EventTemplate(kind=27235, created_at=int(time.time()), tags=(
            ("u", url), ("method", case.method), _nonce())), KEY)
        return {"Authorization": _nostr(event)}

    def _blossom_token(self, case: Any, verb: str) -> Any:
        tags: list[tuple[str, ...]] = [("t", verb), ("expiration", str(int(time.time()) + 600)),
                                       _nonce()]
        sha = (case.path_parameters or {}).get("sha")
        header = {k.lower(): v for k, v in (case.headers or {}).items()}.get("x-sha-256")
        body = case.body
        if body is not None and not isinstance(body, dict):  # the bytes as they will be sent
            body = case.as_transport_kwargs(base_url=self.blossom).get("data")
        if sha:
            tags.append(("x", str(sha)[:64].lower()))
        elif isinstance(header, str):
            tags.append(("x", header.lower()))
        elif isinstance(body, bytes):
            tags.append(("x", hashlib.sha256(body).hexdigest()))
        elif isinstance(body, dict) and isinstance(body.get("url"), str):  # a mirror
            tags.append(("x", body["url"].rsplit("/", 1)[-1][:64]))
        else:
            tags.append(("server", urlsplit(self.blossom).hostname or ""))
        return sign(EventTemplate(kind=24242, created_at=int(time.time()), tags=tuple(tags),
                                  content=verb), KEY)


def _tame(case: Any, blossom: str) -> None:
    """Nothing generated leaves loopback: a mirror's URL is a blob of this Blossom server, a
    NIP-46 bunker's relay is on loopback (refused: private address)."""
    body = case.body
    if case.operation.definition.raw.get("operationId") == "mirror" and isinstance(body, dict):
        body["url"] = f"{blossom}/{'ab' * 32}"
    if case.operation.path == "/api/auth/login" and isinstance(body, dict):
        for key in ("bunker_url", "bunker"):
            if key in body:
                body[key] = f"bunker://{PUB}?relay=ws://127.0.0.1:1"


#: the operations that store a file (the gateway's upload, Blossom's)
UPLOADS = {"upload_post", "upload_put", "upload"}


def _fresh(case: Any) -> None:
    """An upload in the stateful run stores bytes never sent before: whether its answer is 201
    (new) or 200 (stored already) then does not depend on what earlier examples uploaded, and
    neither do the rules its answer enables (Hypothesis refuses a run whose choices lead to
    other rules on a replay: FlakyStrategyDefinition)."""
    if case.operation.definition.raw.get("operationId") not in UPLOADS:
        return
    nonce = os.urandom(16)
    body = case.body
    if isinstance(body, (bytes, str)):
        case.body = (body.encode() if isinstance(body, str) else body) + nonce
    elif isinstance(body, dict) and isinstance(body.get("file"), (bytes, str)):
        file = body["file"]
        body["file"] = (file.encode() if isinstance(file, str) else file) + nonce


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, str]]:
    work = tmp_path_factory.mktemp("openapi-fuzz")
    blossom_port = free_tcp_port()
    config = gateway_config(
        work / "data",
        mode="unified",
        tracker={"enabled": True},
        transcoding={"enabled": True, "work_dir": str(work / "transcode")},
        blossom_server={"port": blossom_port, "host": "127.0.0.1",
                        "rate_limit": {"requests_per_minute": 600000, "burst_size": 100000}},
        admin={"pubkeys": [PUB]},
        rate_limiting={"upload": {"requests_per_second": 1000, "burst_size": 1000},
                       "download": {"requests_per_second": 100000, "burst_size": 100000},
                       "stream": {"requests_per_second": 100000, "burst_size": 100000,
                                  "max_concurrent": 1000}},
    )
    gw = GatewayProcess(config, work).start(timeout=60)
    try:
        yield gw, f"http://127.0.0.1:{blossom_port}"
    finally:
        gw.stop()


def _schema(url: str, base: str) -> Any:
    doc = requests.get(url, timeout=60).json()
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=base)
    return schema


def _log_failures(gw: GatewayProcess) -> list[str]:
    text = gw.log()
    return [line for line in text.splitlines()
            if "Traceback" in line or "Unhandled" in line or "unhandled error" in line
            or "status failed" in line]


def _fuzz(op: Any, session: requests.Session, seen: Counter[tuple[str, int]]) -> None:
    """Inputs the document allows (every check), then inputs it does not (no 5xx: a bad
    request is the client's error, answered as one)."""
    _run(op, session, seen, GenerationMode.POSITIVE, CHECKS)
    raw = op.definition.raw
    # HEAD: the same handler as GET; without parameters or a body there is nothing to negate
    if op.method.upper() != "HEAD" and (raw.get("parameters") or raw.get("requestBody")):
        _run(op, session, seen, GenerationMode.NEGATIVE, [not_a_server_error])


def _run(op: Any, session: requests.Session, seen: Counter[tuple[str, int]],
         mode: Any, checks: list[Any]) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(session=session, checks=checks, timeout=60)
        seen[(op.label, response.status_code)] += 1

    run()


def test_every_operation_with_generated_inputs(running: tuple[GatewayProcess, str]) -> None:
    gw, blossom = running
    signer = Signer(gw.base, blossom)
    signer.sign_in()
    seen: Counter[tuple[str, int]] = Counter()
    failures: list[str] = []

    @schemathesis.hook
    def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
        _tame(case, blossom)
        case.headers = {**(case.headers or {}), **signer.headers(case)}

    try:
        for base, path in ((gw.base, "/api/openapi.json"), (blossom, "/openapi.json")):
            schema = _schema(base + path, base)
            session = requests.Session()
            for result in schema.get_all_operations():
                op = result.ok()
                try:
                    _fuzz(op, session, seen)
                except (Exception, FailureGroup) as e:  # every operation runs; listed at the end
                    failures.append(f"{op.label}: {e}")
    finally:
        from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
    print("\n".join(f"{k} {v}" for k, v in sorted(seen.items())))  # noqa: T201 (the run's record)
    assert failures == [], "\n\n".join(failures)
    labels = {label for label, _ in seen}
    assert len(labels) >= 40, sorted(labels)
    # the signing works: routes that need credentials answered something other than 401
    for label in ("GET /api/users/me/stats", "POST /api/admin/cleanup", "GET /list/{owner}",
                  "PUT /upload", "PUT /mirror", "DELETE /{sha}", "DELETE /api/users/me/files/{sha}",
                  "GET /api/admin/stats", "PUT /api/admin/users/{pubkey}",
                  "DELETE /api/admin/files/{sha}", "GET /api/files/{sha}/ownership",
                  "GET /api/admin/diagnostics", "GET /api/admin/history", "GET /metrics"):
        assert any(code != 401 for (lb, code) in seen if lb == label), (label, seen)
    assert _log_failures(gw) == []


def test_stateful_upload_download_delete(running: tuple[GatewayProcess, str]) -> None:
    gw, blossom = running
    signer = Signer(gw.base, blossom)
    signer.sign_in()
    statuses: Counter[tuple[str, int]] = Counter()

    @schemathesis.hook
    def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
        _tame(case, blossom)
        _fresh(case)
        case.headers = {**(case.headers or {}), **signer.headers(case)}

    try:
        for base, path in ((gw.base, "/api/openapi.json"), (blossom, "/openapi.json")):
            schema = _schema(base + path, base)
            # the operations the links join; the others have had their run above
            keep = {"upload_post", "upload_put", "download", "metadata", "torrent",
                    "webseed_bare", "delete_my_file", "upload", "get_blob", "delete_blob"}
            schema = schema.include(operation_id=list(keep))
            base_machine = schema.as_state_machine()

            class Machine(base_machine):  # type: ignore[misc, valid-type]
                def validate_response(self, response: Any, case: Any,
                                      additional_checks: Any = None, **kwargs: Any) -> None:
                    statuses[(case.operation.label, response.status_code)] += 1
                    case.validate_response(response, checks=CHECKS)

            Machine.run(settings=settings(max_examples=12, stateful_step_count=5,
                                          deadline=None, database=None,
                                          suppress_health_check=list(HealthCheck)))
    finally:
        from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
        GLOBAL_HOOK_DISPATCHER.unregister(before_call)
    # the links were followed: a download and a delete of something uploaded in the run
    reads = {"GET /api/download/{sha}", "GET /api/files/{sha}", "GET /api/torrent/{sha}",
             "GET /api/webseed/{ih}", "GET /{sha}"}
    assert any(lb in reads and code < 400 for lb, code in statuses), statuses
    assert any(lb == "DELETE /{sha}" and code == 200 for lb, code in statuses), statuses
    assert any(lb == "DELETE /api/users/me/files/{sha}" and code == 200
               for lb, code in statuses), statuses
    assert _log_failures(gw) == []


def test_the_checks_catch_a_response_the_document_does_not_describe(
        running: tuple[GatewayProcess, str]) -> None:
    """The run above cannot pass by not looking: with the document changed to say /api/health's
    ``time`` is a string, the same checks refuse the gateway's answer."""
    gw, _ = running
    doc = requests.get(gw.url("/api/openapi.json"), timeout=60).json()
    health = doc["paths"]["/api/health"]["get"]["responses"]["200"]
    health["content"]["application/json"]["schema"]["properties"]["time"] = {"type": "string"}
    schema = schemathesis.openapi.from_dict(doc)
    schema.config.update(base_url=gw.base)
    case = schema["/api/health"]["GET"].Case()
    with pytest.raises(FailureGroup) as caught:
        case.call_and_validate(checks=CHECKS, timeout=60)
    assert "Response violates schema" in str(caught.value)
