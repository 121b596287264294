"""The quota holds for content that is already stored (by someone else) and under concurrency:
concurrent uploads by one user of files others stored all pass the early checks, and exactly
those that fit are accepted (the check runs in the store's commit, with the owner's row)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from harness.gateway import case_data_dir, small_config, start_gateway

http = treq.client.HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

SIZE = 30_000
QUOTA = 100_000  # three of five 30 000-byte files fit


@implementer(IBodyProducer)
class HeldBody:
    """Sends the first half of the body at once and the rest once ``gate`` fires: the request
    has passed the route's early checks, its commit waits for the test."""

    def __init__(self, data: bytes, gate: Deferred[None]) -> None:
        self.data = data
        self.length = len(data)
        self.gate = gate

    def startProducing(self, consumer: Any) -> Deferred[None]:
        half = self.length // 2
        consumer.write(self.data[:half])

        def rest(_: Any) -> None:
            consumer.write(self.data[half:])

        return self.gate.addCallback(rest)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


async def concurrently(send: Any, bodies: list[bytes]) -> list[tuple[int, Any]]:
    """Start every upload, let each pass its early checks, then release all bodies at once."""
    gates: list[Deferred[None]] = [Deferred() for _ in bodies]
    pending = [send(HeldBody(b, g)) for b, g in zip(bodies, gates, strict=True)]
    await deferLater(reactor, 0.5, lambda: None)
    for g in gates:
        g.callback(None)
    results = await DeferredList(pending, consumeErrors=False)
    out = []
    for ok, r in results:
        assert ok, r
        out.append((r.code, json.loads(await r.text() or "null")))
    return out


class UploadQuotaTests(TestCase):

    async def test_concurrent_uploads_of_files_others_stored_respect_the_quota(self) -> None:
        g = start_gateway(self, small_config(case_data_dir(self), admin={"default_user_storage_limit": QUOTA}))
        files = [os.urandom(SIZE) for _ in range(5)]
        for data in files:  # stored first by an anonymous uploader
            r = await http.put(g.url("/api/upload"), data=data,
                               headers={"Content-Type": "application/octet-stream"})
            assert r.code == 201, await r.text()
        alice = "a1" * 32
        token, _ = await g.gateway.components.gateway.users.sessions.create(alice, "test", time.time())

        def send(body: HeldBody) -> Deferred[Any]:
            return http.put(g.url("/api/upload"), data=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream",
                "X-Filename": "mine.bin"})

        results = await concurrently(send, files)

        codes = sorted(code for code, _ in results)
        assert codes == [200, 200, 200, 413, 413], results
        assert all(body["error"] == "quota_exceeded" for code, body in results if code == 413)
        accepted = {body["sha256"] for code, body in results if code == 200}
        assert accepted <= {hashlib.sha256(f).hexdigest() for f in files}
        files_used, used = await g.store.usage(alice)
        assert (files_used, used) == (3, 3 * SIZE) and used <= QUOTA
        r = await http.get(g.url("/api/users/me/stats"), headers={"Authorization": f"Bearer {token}"})
        stats = await r.json()
        assert (stats["files"], stats["bytes_used"], stats["quota"]) == (3, 3 * SIZE, QUOTA)
        # the owners' rows agree: each accepted file has Alice, each refused one does not
        for data in files:
            sha = hashlib.sha256(data).hexdigest()
            owners = {o.owner for o in await g.store.owners(sha)}
            assert (alice in owners) == (sha in accepted)
