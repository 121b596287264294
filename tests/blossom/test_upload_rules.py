"""Blossom ``PUT /upload`` with the rules every upload path shares: the quota holds for blobs
others already stored, under concurrency; the name is cleaned before any output shows it.

The real service tree in ``blossom-only`` mode (threaded store, database thread), on loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from harness.gateway import case_data_dir, small_config
from harness.ports import free_tcp_port
from tests.web.test_upload_names import CLEAN, HOSTILE
from tests.web.test_upload_quota import HeldBody, concurrently, http
from tgateway.nostr.event import public_key_hex
from tgateway.storage.model import UploadContext
from tgateway.storage.store import LocalContentStore
from tgateway.tap import makeService

from .helpers import sha
from .tokens import SECRET, header

SIZE = 30_000
QUOTA = 100_000


@dataclass
class Blossom:
    base: str
    store: LocalContentStore


def upload_headers(data: bytes) -> dict[str, str]:
    return {"Authorization": header("upload", hashes=(sha(data),)), "X-SHA-256": sha(data),
            "Content-Type": "application/octet-stream"}


class BlossomUploadRuleTests(TestCase):
    def setUp(self) -> None:
        port = free_tcp_port()
        config = small_config(
            case_data_dir(self), mode="blossom-only", admin={"default_user_storage_limit": QUOTA},
            blossom_server={"port": port, "host": "127.0.0.1",
                            "rate_limit": {"requests_per_minute": 6000, "burst_size": 1000}},
        )
        service = makeService({"config": config}, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.blossom = Blossom(f"http://127.0.0.1:{port}", service.gateway.store)

    async def test_concurrent_uploads_of_stored_blobs_stay_within_the_quota(self) -> None:
        blobs = [os.urandom(SIZE) for _ in range(5)]
        for data in blobs:  # stored first by someone else (anonymously)
            ingest = self.blossom.store.begin_upload(size_hint=len(data), max_size=1 << 30)
            ingest.write(data)
            await self.blossom.store.commit(ingest, UploadContext(source="mirror"))

        def send(body: HeldBody) -> Deferred[Any]:
            return http.put(self.blossom.base + "/upload", data=body, headers=upload_headers(body.data))

        results = await concurrently(send, blobs)

        assert sorted(code for code, _ in results) == [200, 200, 200, 413, 413], results
        assert all(b["error"] == "quota_exceeded" for c, b in results if c == 413)
        owner = public_key_hex(SECRET)
        assert await self.blossom.store.usage(owner) == (3, 3 * SIZE)
        r = await http.get(f"{self.blossom.base}/list/{owner}")
        listed = {d["sha256"] for d in await r.json()}
        assert listed == {b["sha256"] for c, b in results if c == 200}

    async def test_the_descriptor_shows_the_cleaned_name(self) -> None:
        data = os.urandom(2000)
        r = await http.put(self.blossom.base + "/upload", data=data,
                           headers={**upload_headers(data), "X-Filename": quote(HOSTILE)})
        desc = await r.json()
        assert r.code == 201, desc
        dn = parse_qs(urlsplit(desc["magnet"]).query)["dn"][0]
        assert dn == CLEAN
        magnet_tag = next(t[1] for t in desc["nip94"] if t[0] == "magnet")
        assert parse_qs(urlsplit(magnet_tag).query)["dn"][0] == CLEAN
        r = await http.get(f"{self.blossom.base}/list/{public_key_hex(SECRET)}")
        [listed] = await r.json()
        assert parse_qs(urlsplit(listed["magnet"]).query)["dn"][0] == CLEAN
