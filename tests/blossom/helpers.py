"""A Blossom server (and the gateway API) on loopback, over one real content store, and the
base of the tests that call it over HTTP (:class:`BlossomRoutes`)."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import treq.client
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from tgateway.blossom.server import BlossomServer
from tgateway.config import parse_config
from tgateway.http.site import StreamingSite
from tgateway.links import Links
from tgateway.nostr.event import public_key_hex
from tgateway.storage.blossom_reports import BlossomStore
from tgateway.storage.db import SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.store import LocalContentStore

from .tokens import SECRET, header

PUB = public_key_hex(SECRET)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Loopback:
    """Blossom on 127.0.0.1:<port> (and ``api_url``: the gateway API on the same store)."""

    def __init__(self, tmp: Path, blossom: dict[str, Any] | None = None, **sections: Any) -> None:
        self.tmp = tmp
        self.blossom_cfg = {"host": "127.0.0.1", "rate_limit": {"requests_per_minute": 6000,
                                                                 "burst_size": 1000}}
        self.blossom_cfg.update(blossom or {})
        self.sections = sections
        self.ports: list[Any] = []

    async def start(self) -> Loopback:
        from tgateway.web.api import GatewayApi

        storage = {"metadata_db": ":memory:", "blob_storage": str(self.tmp / "blobs"),
                   "chunk_storage": str(self.tmp / "chunks"), **self.sections.pop("storage", {})}
        port_b = await TCP4ServerEndpoint(_reactor, 0, interface="127.0.0.1").listen(
            _placeholder())
        bport = port_b.getHost().port
        await port_b.stopListening()
        cfg = {"blossom_server": {**self.blossom_cfg, "port": bport},
               "storage": storage, **self.sections}
        self.config = parse_config(cfg)
        self.db = SyncDatabase()
        self.db.open()
        layout = DiskLayout(storage["blob_storage"], storage["chunk_storage"])
        self.store = LocalContentStore(reactor=_reactor, db=self.db, layout=layout,
                                       config=self.config.storage, threaded=False)
        self.store.start()
        self.bstore = BlossomStore(self.db)
        self.links = Links(base_url="http://127.0.0.1:1", tracker_urls=("udp://127.0.0.1:1",),
                           blossom_url=self.config.blossom_server.base_url())
        self.server = BlossomServer(config=self.config, store=self.store,
                                    blossom_store=self.bstore, links=self.links, clock=_reactor)
        site = StreamingSite(self.server.app.resource(), streaming_routes=[(b"PUT", b"/upload")],
                             max_request_body=64 * 1024, clock=_reactor)
        self.ports.append(await TCP4ServerEndpoint(_reactor, bport, interface="127.0.0.1").listen(
            site))
        self.url = f"http://127.0.0.1:{bport}"
        api = GatewayApi(config=self.config, store=self.store, links=self.links, clock=_reactor)
        api_site = StreamingSite(api.app.resource(),
                                 streaming_routes=[(b"POST", b"/api/upload"),
                                                   (b"PUT", b"/api/upload")],
                                 max_request_body=64 * 1024, clock=_reactor)
        p = await TCP4ServerEndpoint(_reactor, 0, interface="127.0.0.1").listen(api_site)
        self.ports.append(p)
        self.api_url = f"http://127.0.0.1:{p.getHost().port}"
        return self

    async def stop(self) -> None:
        for p in self.ports:
            await p.stopListening()
        self.store.stop()
        self.db.close()


def _placeholder() -> Any:
    from twisted.internet.protocol import Factory, Protocol

    return Factory.forProtocol(Protocol)


def client() -> treq.client.HTTPClient:
    return treq.client.HTTPClient(Agent(_reactor, pool=HTTPConnectionPool(_reactor,
                                                                         persistent=False)))


def d(coro: Any) -> Deferred[Any]:
    return ensureDeferred(coro)


class BlossomRoutes(TestCase):
    blossom: dict[str, Any] = {}
    sections: dict[str, Any] = {}

    def setUp(self) -> Deferred[None]:
        self.http = client()
        tmp = tempfile.mkdtemp(prefix="tgw-blossom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        self.lb = Loopback(Path(tmp), dict(self.blossom), **dict(self.sections))

        async def go() -> None:
            await self.lb.start()
            self.addCleanup(lambda: d(self.lb.stop()))

        return d(go())

    async def put(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
        return await self.http.put(self.lb.url + path, data=data, headers=headers or {})

    async def upload(self, data: bytes, **hdrs: str) -> Any:
        h = {"X-SHA-256": sha(data), "Authorization": header("upload", hashes=(sha(data),))}
        h.update(hdrs)
        return await self.put("/upload", data, h)

    async def stored(self) -> dict[str, int]:
        return await self.lb.store.stats()
