"""Links of a stored file: the BUD-10 ``blossom:`` URI."""

from __future__ import annotations

from tgateway.links import Links, blob_extension
from tgateway.storage.model import StoredFile


def stored(name: str, mime: str) -> StoredFile:
    return StoredFile(sha256="ab" * 32, size=1234, name=name, mime=mime, storage="blob",
                      piece_length=16384, info_hash="cd" * 20, info=b"d4:name1:xe", created_at=0.0)


def test_blossom_uri_names_the_server_and_size() -> None:
    links = Links(base_url="http://gw.example:9877", blossom_url="http://blobs.example:8082")
    uri = links.blossom_uri(stored("clip.MP4", "video/mp4"))
    assert uri == f"blossom:{'ab' * 32}.mp4?xs=http%3A%2F%2Fblobs.example%3A8082&sz=1234"
    described = links.describe(stored("clip.MP4", "video/mp4"))
    assert described["urls"]["blossom_uri"] == uri  # type: ignore[index]
    assert Links(base_url="http://gw.example").blossom_uri(stored("a", "b/c")) is None


def test_blob_extension_comes_from_the_name_then_the_type() -> None:
    assert blob_extension("notes.TXT", "text/plain") == "txt"
    assert blob_extension("photo", "image/jpeg") == "jpg"
    assert blob_extension("archive.tar.gz", "application/gzip") == "gz"
    assert blob_extension("weird.name with space", "application/x-unknown-thing") == "bin"
    assert blob_extension("no-type", "") == "bin"
    assert blob_extension("too.longextension1", "video/mp4") == "mp4"
