"""Blossom's blob routes (:mod:`tgateway.blossom.blobs`): get, head, ranges, list and delete,
on a loopback site over a real content store (trial, real reactor)."""

from __future__ import annotations

from twisted.internet.defer import Deferred

from .helpers import PUB, BlossomRoutes, d, sha
from .tokens import header


class UploadGetList(BlossomRoutes):
    def test_upload_get_head_range_list_delete(self) -> Deferred[None]:
        async def go() -> None:
            data = b"%PDF-1.4 hello blossom" * 100
            r = await self.upload(data, **{"Content-Type": "application/pdf"})
            self.assertEqual(r.code, 201)
            self.assertEqual(r.headers.getRawHeaders("access-control-allow-origin"), ["*"])
            desc = await r.json()
            self.assertEqual(desc["sha256"], sha(data))
            self.assertEqual(desc["size"], len(data))
            self.assertEqual(desc["type"], "application/pdf")
            self.assertTrue(desc["url"].endswith(sha(data) + ".pdf"))
            self.assertTrue(desc["magnet"].startswith("magnet:?xt=urn:btih:" + desc["infohash"]))
            tags = dict((t[0], t[1]) for t in desc["nip94"])
            self.assertEqual(tags["x"], sha(data))
            self.assertEqual(tags["i"], desc["infohash"])
            self.assertEqual(tags["m"], "application/pdf")
            # again: 200, same descriptor
            r2 = await self.upload(data)
            self.assertEqual(r2.code, 200)
            self.assertEqual((await r2.json())["uploaded"], desc["uploaded"])

            r = await self.http.get(desc["url"])
            self.assertEqual(r.code, 200)
            self.assertEqual(await r.content(), data)
            self.assertEqual(r.headers.getRawHeaders("content-type"), ["application/pdf"])
            r = await self.http.head(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(r.code, 200)
            self.assertEqual(r.headers.getRawHeaders("content-length"), [str(len(data))])
            r = await self.http.get(f"{self.lb.url}/{sha(data)}.bin", headers={"Range": "bytes=5-9"})
            self.assertEqual(r.code, 206)
            self.assertEqual(await r.content(), data[5:10])

            r = await self.http.get(f"{self.lb.url}/list/{PUB}")
            listed = await r.json()
            self.assertEqual([b["sha256"] for b in listed], [sha(data)])
            r = await self.http.get(f"{self.lb.url}/list/{PUB}?since={desc['uploaded'] + 10}")
            self.assertEqual(await r.json(), [])
            r = await self.http.get(f"{self.lb.url}/list/{PUB}?until={desc['uploaded'] - 10}")
            self.assertEqual(await r.json(), [])

            # delete needs a token with this x
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(r.code, 401)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}",
                                       headers={"Authorization": header("delete",
                                                                        hashes=("00" * 32,))})
            self.assertEqual(r.code, 401)
            r = await self.http.delete(f"{self.lb.url}/{sha(data)}",
                                       headers={"Authorization": header("delete",
                                                                        hashes=(sha(data),))})
            self.assertEqual(r.code, 200)
            r = await self.http.get(desc["url"])
            self.assertEqual(r.code, 404)
            self.assertTrue(r.headers.getRawHeaders("x-reason"))
            self.assertEqual(r.headers.getRawHeaders("access-control-allow-origin"), ["*"])
            self.assertEqual((await self.stored())["files"], 0)

        return d(go())

    def test_list_paging(self) -> Deferred[None]:
        async def go() -> None:
            blobs = [f"blob {i}".encode() * 10 for i in range(5)]
            for b in blobs:
                self.assertEqual((await self.upload(b)).code, 201)
            got: list[str] = []
            cursor = ""
            for _ in range(5):
                q = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
                page = await (await self.http.get(f"{self.lb.url}/list/{PUB}{q}")).json()
                if not page:
                    break
                got += [b["sha256"] for b in page]
                cursor = page[-1]["sha256"]
            self.assertEqual(sorted(got), sorted(sha(b) for b in blobs))
            self.assertEqual(len(got), 5)

        return d(go())


class OneStore(BlossomRoutes):
    sections = {"storage": {"blob_threshold": 32768, "chunk_size": 16384}}

    def test_gateway_upload_served_by_blossom_and_back(self) -> Deferred[None]:
        async def go() -> None:
            data = bytes(range(256)) * 400  # 102,400 bytes: chunked (threshold 32 KiB)
            r = await self.http.post(self.lb.api_url + "/api/upload", data=data,
                                     headers={"X-Filename": "data.bin"})
            self.assertEqual(r.code, 201, await r.text())
            self.assertEqual((await r.json())["storage"], "chunked")
            r = await self.http.get(f"{self.lb.url}/{sha(data)}")
            self.assertEqual(await r.content(), data)
            r = await self.http.get(f"{self.lb.url}/{sha(data)}",
                                    headers={"Range": "bytes=40000-50000"})
            self.assertEqual(r.code, 206)
            self.assertEqual(await r.content(), data[40000:50001])
            # a Blossom upload is a gateway download and a torrent
            blob = b"blossom side" * 10
            r = await self.upload(blob)
            self.assertEqual(r.code, 201)
            r = await self.http.get(f"{self.lb.api_url}/api/download/{sha(blob)}")
            self.assertEqual(await r.content(), blob)
            r = await self.http.get(f"{self.lb.api_url}/api/torrent/{sha(blob)}")
            self.assertEqual(r.code, 200)
            self.assertTrue((await r.content()).startswith(b"d"))

        return d(go())
