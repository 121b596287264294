"""Torrent metainfo (:mod:`tgateway.metainfo`): info dict, .torrent bytes, magnet links."""

from __future__ import annotations

from tgateway import bencode
from tgateway.links import Links
from tgateway.metainfo import build_info, magnet_uri, torrent_bytes
from tgateway.storage.model import StoredFile

CS = 16384


def test_build_info_is_canonical() -> None:
    info = build_info("n", 5, CS, b"\x01" * 20)
    assert bencode.encode(bencode.decode(info)) == info


def stored(name: str = "a b.mp4") -> StoredFile:
    info = build_info(name, 5, CS, b"\x01" * 20)
    import hashlib

    return StoredFile(sha256="ab" * 32, size=5, name=name, mime="video/mp4", storage="blob",
                      piece_length=CS, info_hash=hashlib.sha1(info).hexdigest(), info=info,
                      created_at=1_700_000_000.5)


def test_magnet_lists_size_trackers_and_webseeds_in_order() -> None:
    assert magnet_uri("cd" * 20, "a b", ["udp://t:1/announce"], ["http://w/x/"], 5) == (
        f"magnet:?xt=urn:btih:{'cd' * 20}&dn=a%20b&xl=5&tr=udp%3A%2F%2Ft%3A1%2Fannounce"
        "&ws=http%3A%2F%2Fw%2Fx%2F"
    )
    assert magnet_uri("cd" * 20, "n") == f"magnet:?xt=urn:btih:{'cd' * 20}&dn=n"


def test_links_build_the_magnet_and_torrent_of_a_stored_file_from_metainfo() -> None:
    f = stored()
    links = Links(base_url="http://gw:9877", tracker_urls=("http://gw:9877/announce",
                                                           "udp://gw:6969/announce"))
    webseed = f"http://gw:9877/api/webseed/{f.info_hash}/a%20b.mp4"
    assert links.magnet(f) == magnet_uri(f.info_hash, f.name, links.tracker_urls, [webseed], 5)
    data = links.torrent_bytes(f)
    assert data == torrent_bytes(f.info, created_at=f.created_at, trackers=links.tracker_urls,
                                 webseed_bases=[f"http://gw:9877/api/webseed/{f.info_hash}/"])
    torrent = bencode.decode(data)
    assert torrent[b"announce"] == b"http://gw:9877/announce"
    assert torrent[b"announce-list"] == [[b"http://gw:9877/announce"], [b"udp://gw:6969/announce"]]
    assert torrent[b"url-list"] == [f"http://gw:9877/api/webseed/{f.info_hash}/".encode()]
    assert torrent[b"creation date"] == 1_700_000_000
    assert f.info in data  # spliced verbatim: the info-hash cannot change
    assert b"url-list" not in links.torrent_bytes(f, webseed=False)
    assert b"announce" not in Links(base_url="http://gw").torrent_bytes(f)
