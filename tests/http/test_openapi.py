"""The OpenAPI documents of the gateway and Blossom ports are generated from the route
declarations: every route a running gateway serves is described (or marked hidden), and the
documents say what the declarations say (converters, auth, rate limits, errors)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from klein import Klein
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from harness.gateway import serving_config
from tgateway import tap
from tgateway.http.app import new_app
from tgateway.http.auth import Need, authorized
from tgateway.http.openapi import Op, Reply, document, route, undescribed
from tgateway.http.root import MountRoot


def _result(d: Deferred[Any]) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "the Deferred did not fire"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every component that serves HTTP: tracker, DHT, transcoder, Blossom, retention (built
    once: the tests only read what was built)."""
    config = serving_config(str(tmp_path_factory.mktemp("openapi")), tracker={"enabled": True},
                            dht={"enabled": True, "bootstrap_nodes": []},
                            transcoding={"enabled": True})
    return tap.makeService({"config": config}, reactor=MemoryReactorClock()).gateway


def test_every_mounted_route_is_described(gateway: Any) -> None:
    for name in ("gateway", "blossom"):
        assert undescribed(gateway.sites[name].resource) == [], name


def test_a_route_without_a_description_is_found() -> None:
    class Face:
        app = new_app()

        @route(app, "/described", methods=["GET"], op=Op("a route", replies={200: Reply("ok")}))
        def described(self, request: Any) -> bytes:
            return b""

        @app.route("/bare", methods=["POST"])
        def bare(self, request: Any) -> bytes:
            return b""

        @authorized(app, "/guarded", methods=["DELETE"], need=Need.USER)
        async def guarded(self, request: Any, principal: Any) -> bytes:
            return b""

    root = MountRoot(Face().app.resource())
    root.mount("/other", Klein().resource())  # not a Klein app of ours, but a Klein app
    from twisted.web.resource import Resource
    root.mount("/plain", Resource())
    assert undescribed(root) == ["POST /bare", "DELETE /guarded", "mount /plain"]


def test_gateway_document(gateway: Any) -> None:
    doc = document(gateway.sites["gateway"].resource, title="t", version="1")
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    # converters: patterns, and the 400 a malformed segment gets
    download = paths["/api/download/{sha}"]["get"]
    (sha,) = [p for p in download["parameters"] if p["in"] == "path"]
    assert sha["schema"]["pattern"] == "^[0-9a-fA-F]{64}$" and sha["required"]
    assert download["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    webseed = paths["/api/webseed/{ih}/{name}"]["get"]
    assert webseed["parameters"][0]["schema"]["pattern"] == "^[0-9a-fA-F]{40}$"
    # rate limits: 429 with Retry-After
    assert download["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    # auth from the declaration's need
    assert paths["/api/users/me/stats"]["get"]["security"] == [{"session": []}, {"nip98": []}]
    admin = paths["/api/admin/cleanup"]["post"]
    assert {"401", "403"} <= set(admin["responses"])
    upload = paths["/api/upload"]["post"]
    assert upload["security"][0] == {}  # anonymous uploads by configuration
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data",
                                                    "application/octet-stream"}
    assert upload["responses"]["201"]["links"]["download"]["operationId"] == "download"
    assert paths["/api/health"]["get"]["security"] == []
    # HEAD answers GET's headers, no body
    assert "content" not in paths["/api/download/{sha}"]["head"]["responses"]["200"]
    # non-Klein mounts: the tracker, the DHT's status, the document itself
    assert {"/announce", "/scrape", "/api/dht/status", "/api/openapi.json"} <= set(paths)
    # hidden routes (preflights, 404 fallbacks) are not in it
    assert not any("__rest__" in p for p in paths)
    ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(ids) == len(set(ids))
    json.dumps(doc)


def test_the_admin_api_and_the_web_interface_are_described(gateway: Any) -> None:
    paths = document(gateway.sites["gateway"].resource, title="t", version="1")["paths"]
    admin = [op for p, item in paths.items() if p.startswith("/api/admin/")
             and p != "/api/admin/cleanup" for op in item.values()]
    # 12 operations of the admin API and the health's diagnostics and history, 10 of them GETs
    # with a HEAD
    assert len(admin) == 24
    for op in admin:
        assert op["security"] == [{"session": []}, {"nip98": []}], op["operationId"]
        assert {"401", "403"} <= set(op["responses"]), op["operationId"]
    users = paths["/api/admin/users"]["get"]
    assert [p["name"] for p in users["parameters"]] == ["q", "banned", "limit", "offset"]
    page = users["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"users", "total", "next_offset"} <= set(page["required"])
    act = paths["/api/admin/reports/{report_id}"]["post"]
    assert act["parameters"][0]["schema"]["pattern"] == "^[0-9a-fA-F]{64}$"  # narrowed
    assert act["requestBody"]["content"]["application/json"]["schema"]["required"] == ["action"]
    assert set(paths["/api/admin/transcode/{sha}/retry"]["post"]["responses"]) >= {
        "202", "400", "404", "503"}
    # pages are HTML (the file page's 404 too), the UI's routes JSON, static files by name
    for path in ("/", "/me", "/f/{sha256}"):
        assert set(paths[path]["get"]["responses"]["200"]["content"]) == {"text/html"}
    assert "text/html" in paths["/f/{sha256}"]["get"]["responses"]["404"]["content"]
    assert paths["/api/files/{sha}/ownership"]["get"]["security"] == [{"session": []},
                                                                      {"nip98": []}]
    assert "503" in paths["/api/files/{sha}/swarm"]["get"]["responses"]
    assert "features" in paths["/api/config"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["required"]
    vendor = paths["/static/vendor/{name}"]["get"]
    assert "MANIFEST.json" in vendor["parameters"][0]["schema"]["enum"]
    assert {"304", "404"} <= set(vendor["responses"])
    # the health component: /api/health answers its body with a 503 too, /metrics is text
    health = paths["/api/health"]["get"]
    assert set(health["responses"]) == {"200", "503"} and health["security"] == []
    assert "scores" in health["responses"]["503"]["content"]["application/json"]["schema"][
        "required"]
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert "reasons" in paths["/api/admin/diagnostics"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]["required"]
    history = paths["/api/admin/history"]["get"]["responses"]["200"]["content"][
        "application/json"]["schema"]
    assert {"times", "series"} <= set(history["required"])
    assert "restart" in paths["/api/admin/history"]["get"]["description"]  # not durable: said
    app = next(p for p in paths if p.startswith("/static/app-") and p.endswith("/js/{name}"))
    assert "main.js" in paths[app]["get"]["parameters"][0]["schema"]["enum"]


def test_a_path_param_narrows_the_converter_and_must_name_one() -> None:
    from tgateway.http.openapi import Param

    class Face:
        app = new_app()

        @route(app, "/things/<thing>", methods=["GET"], op=Op(
            "a thing", params=[Param("thing", "path", {"enum": ["a", "b"]}, description="which")],
            replies={200: Reply("ok")}))
        def thing(self, request: Any, thing: str) -> bytes:
            return b""

    (param,) = document(MountRoot(Face().app.resource()), title="t", version="1")[
        "paths"]["/things/{thing}"]["get"]["parameters"]
    assert param == {"name": "thing", "in": "path", "required": True, "schema": {"enum": ["a", "b"]},
                     "description": "which"}

    class Wrong:
        app = new_app()

        @route(app, "/things", methods=["GET"], op=Op(
            "things", params=[Param("thing", "path")], replies={200: Reply("ok")}))
        def things(self, request: Any) -> bytes:
            return b""

    with pytest.raises(ValueError, match="no path parameter thing"):
        document(MountRoot(Wrong().app.resource()), title="t", version="1")


def test_blossom_document(gateway: Any) -> None:
    doc = document(gateway.sites["blossom"].resource, title="t", version="1",
                   schemes=("blossom",))
    paths = doc["paths"]
    assert set(doc["components"]["securitySchemes"]) == {"blossom"}
    blob = paths["/{sha}"]
    assert blob["delete"]["security"] == [{"blossom": []}]
    assert blob["get"]["parameters"][0]["schema"]["pattern"].startswith("^[0-9a-fA-F]{64}(")
    assert "404" in blob["get"]["responses"]  # a malformed blob address
    assert paths["/upload"]["put"]["requestBody"]["content"] == {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    assert paths["/upload"]["put"]["responses"]["201"]["links"]["delete"]["operationId"] == \
        "delete_blob"
    assert "head" in paths["/upload"] and "/openapi.json" in paths


def test_documents_are_served(gateway: Any) -> None:
    for name, path in (("gateway", "/api/openapi.json"), ("blossom", "/openapi.json")):
        client = StubTreq(gateway.sites[name].resource)
        r = _result(client.get(f"http://gw.test{path}"))
        assert r.code == 200 and r.headers.getRawHeaders("content-type") == ["application/json"]
        doc = json.loads(_result(r.content()))
        assert doc["openapi"] == "3.1.0" and path in doc["paths"]
        r = _result(client.post(f"http://gw.test{path}", data=b"{}"))
        assert r.code == 405 and json.loads(_result(r.content()))["error"] == "method_not_allowed"


def test_the_documents_are_valid_openapi(gateway: Any) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    for name in ("gateway", "blossom"):
        doc = document(gateway.sites[name].resource, title="t", version="1",
                       schemes=("blossom",) if name == "blossom" else ("session", "nip98"))
        schema = schemathesis.openapi.from_dict(doc)
        ops = [r.ok() for r in schema.get_all_operations()]
        assert len(ops) > 10


def test_the_docs_page_renders_the_document_with_its_own_script(gateway: Any) -> None:
    client = StubTreq(gateway.sites["gateway"].resource)
    r = _result(client.get("http://gw.test/docs/api"))
    assert r.code == 200
    csp = r.headers.getRawHeaders("content-security-policy")[0]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    page = _result(r.content()).decode()
    assert '<script type="module" src="/docs/api.js"></script>' in page
    assert 'href="/api/openapi.json"' in page
    r = _result(client.get("http://gw.test/docs/api.js"))
    assert r.code == 200 and r.headers.getRawHeaders("content-type")[0].startswith("text/javascript")
    script = _result(r.content()).decode()
    assert "fetch('/api/openapi.json')" in script and "innerHTML" not in script
