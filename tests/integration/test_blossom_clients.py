"""blossom-client-sdk 5.1.0 (node) against the Blossom server, with tokens it signs via
nostr-tools; hand-made bad tokens; and the server as ``twistd tgateway`` builds it."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import treq.client
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from harness.ports import free_tcp_port
from harness.procs import run_node_json_deferred
from tests.blossom.helpers import Loopback
from tests.blossom.tokens import bad_signature, encode, header, make_event

pytestmark = pytest.mark.integration

SECRET_HEX = "7f" * 32


def client() -> treq.client.HTTPClient:
    return treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


class _Base(TestCase):
    blossom: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:
        tmp = tempfile.mkdtemp(prefix="tgw-blossom-it-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.lb = Loopback(Path(tmp), {"mirror_allow_private": True, **self.blossom},
                           storage={"blob_threshold": 65536, "chunk_size": 16384})
        self.http = client()

        async def go() -> None:
            await self.lb.start()
            self.addCleanup(lambda: ensureDeferred(self.lb.stop()))

        return ensureDeferred(go())

    async def sdk(self) -> Any:
        request = json.dumps({"server": self.lb.url, "secret": SECRET_HEX,
                              "getAuth": "get" in self.lb.config.blossom_server.require_auth})
        return await run_node_json_deferred(reactor, "blossom_sdk.mjs", input=request.encode(),
                                            timeout=60)

    def check_sdk_run(self, out: dict[str, Any]) -> None:
        up = out["upload"]
        self.assertEqual(up["sha256"], out["expectedSha256"])
        self.assertEqual(up["type"], "text/plain")
        self.assertTrue(up["url"].startswith(self.lb.url + "/" + up["sha256"]))
        self.assertEqual(out["uploadAuthRequests"], 1)  # HEAD /upload answered 401: SDK signed
        self.assertEqual(out["upload2"]["sha256"], up["sha256"])
        self.assertTrue(up["magnet"].startswith("magnet:?xt=urn:btih:" + up["infohash"]))
        self.assertIn(["i", up["infohash"]], up["nip94"])
        self.assertIn(up["sha256"], [b["sha256"] for b in out["list"]])
        self.assertEqual(out["download"]["status"], 200)
        self.assertEqual(out["download"]["sha256"], up["sha256"])
        self.assertEqual(out["download"]["cors"], "*")
        self.assertTrue(out["has"])
        pre = out["preflight"]
        self.assertEqual(pre["status"], 204)
        self.assertEqual(pre["origin"], "*")
        self.assertIn("PUT", pre["methods"])
        self.assertIn("Authorization", pre["headers"])
        self.assertEqual(out["mirror"]["sha256"], out["mirrorExpected"])
        self.assertTrue(out["report"]["ok"])
        if "get" not in self.lb.config.blossom_server.require_auth:
            self.assertFalse(out["hasAfterDelete"])  # (with get auth, HEAD is a 401: "has")
        self.assertNotIn(up["sha256"], out["listAfterDelete"])


class SdkDefaultAuth(_Base):
    """require_auth: upload, delete (the default)."""

    def test_sdk_upload_list_get_mirror_report_delete(self) -> Deferred[None]:
        async def go() -> None:
            out = await self.sdk()
            self.check_sdk_run(out)
            # the mirrored blob is in the one store: a gateway download and a .torrent
            sha = out["mirrorExpected"]
            r = await self.http.get(f"{self.lb.api_url}/api/download/{sha}")
            self.assertEqual(hashlib.sha256(await r.content()).hexdigest(), sha)
            r = await self.http.get(f"{self.lb.api_url}/api/torrent/{sha}")
            self.assertEqual(r.code, 200)
            reports = await self.lb.bstore.reports()
            self.assertEqual([x.id for x in reports], [out["report"]["id"]])

        return ensureDeferred(go())


class SdkEverythingSigned(_Base):
    blossom = {"require_auth": ["upload", "list", "delete", "get"]}

    def test_sdk_with_get_and_list_auth(self) -> Deferred[None]:
        async def go() -> None:
            out = await self.sdk()
            self.check_sdk_run(out)
            # without a token, get and list are refused
            r = await self.http.get(f"{self.lb.url}/{out['mirrorExpected']}")
            self.assertEqual(r.code, 401)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            r = await self.http.get(f"{self.lb.url}/list/{out['pubkey']}")
            self.assertEqual(r.code, 401)

        return ensureDeferred(go())


class HandMadeBadTokens(_Base):
    def test_each_bad_token_is_401_and_stores_nothing(self) -> Deferred[None]:
        async def go() -> None:
            data = b"bad token body " * 100
            h = hashlib.sha256(data).hexdigest()
            cases = {
                "expired": header("upload", hashes=(h,), expiration=1000),
                "wrong t": header("get", hashes=(h,)),
                "wrong x": header("upload", hashes=("11" * 32,)),
                "other server": header("upload", hashes=(h,), servers=("cdn.other.example",)),
                "bad signature": encode(bad_signature(make_event("upload", hashes=(h,)))),
                "malformed base64": "Nostr eyJpZCI6@@@",
            }
            for name, value in cases.items():
                for with_x_sha in (True, False):
                    hdrs = {"Authorization": value}
                    if with_x_sha:
                        hdrs["X-SHA-256"] = h
                    r = await self.http.put(self.lb.url + "/upload", data=data, headers=hdrs)
                    self.assertEqual(r.code, 401, name)
                    reason = r.headers.getRawHeaders("x-reason")
                    self.assertTrue(reason and reason[0], name)
                    await r.content()
            self.assertEqual((await self.lb.store.stats())["files"], 0)
            r = await self.http.head(f"{self.lb.url}/{h}")
            self.assertEqual(r.code, 404)

        return ensureDeferred(go())


class TapWiring(TestCase):
    """``makeService`` in blossom-only mode serves Blossom on blossom_server.port."""

    def test_blossom_only_mode(self) -> Deferred[None]:
        from tgateway.config import parse_config
        from tgateway.tap import makeService

        tmp = Path(tempfile.mkdtemp(prefix="tgw-blossom-tap-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        port = free_tcp_port()
        config = parse_config({
            "mode": "blossom-only", "data_dir": str(tmp),
            "blossom_server": {"port": port, "host": "127.0.0.1"},
            "storage": {"metadata_db": str(tmp / "m.db"), "blob_storage": str(tmp / "b"),
                        "chunk_storage": str(tmp / "c")},
        })
        top = makeService({"config": config}, reactor)
        self.assertEqual(sorted(s.name for s in top if s.name), ["blossom-http", "retention", "storage"])
        top.startService()
        self.addCleanup(top.stopService)
        http = client()

        async def go() -> None:
            data = b"via twistd wiring" * 10
            h = hashlib.sha256(data).hexdigest()
            r = await http.put(f"http://127.0.0.1:{port}/upload", data=data, headers={
                "X-SHA-256": h, "Authorization": header("upload", hashes=(h,))})
            self.assertEqual(r.code, 201, await r.text())
            r = await http.get(f"http://127.0.0.1:{port}/{h}.txt")
            self.assertEqual(await r.content(), data)

        return ensureDeferred(go())
