"""The storage seams (:mod:`tgateway.storage.api`) match what implements them today.

mypy checks the same where a component takes the seam; this catches a member added to a seam
(or renamed in an implementation) without a type checker, by comparing names and parameters.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.protocols import assert_implements
from tgateway.config import StorageConfig
from tgateway.storage import api
from tgateway.storage.db import Database, SyncDatabase
from tgateway.storage.disk import DiskLayout
from tgateway.storage.ingest import Ingest, IngestResult
from tgateway.storage.reader import ChunkReader, RangeProducer
from tgateway.storage.store import LocalContentStore


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    db = SyncDatabase()
    db.open()
    s = LocalContentStore(reactor=Clock(), db=db,
                          layout=DiskLayout(tmp_path / "b", tmp_path / "c"),
                          config=StorageConfig(), threaded=False)
    s.start()
    return s


def test_the_local_store_is_a_content_store(store: LocalContentStore) -> None:
    assert_implements(store, api.ContentStore)
    assert_implements(store.reader, api.BlockReader)
    assert_implements(store.reader.cache, api.CacheStats)


def test_an_ingest_is_an_upload_and_its_result_what_a_check_sees(store: LocalContentStore) -> None:
    ingest = store.begin_upload(size_hint=10, max_size=10)
    assert isinstance(ingest, Ingest)
    assert_implements(ingest, api.Upload)
    assert {"sha256", "size"} <= set(IngestResult.__dataclass_fields__)
    from twisted.internet.defer import ensureDeferred

    ensureDeferred(ingest.abort())


def test_the_range_producer_is_a_byte_range_producer() -> None:
    assert_implements(RangeProducer, api.ByteRangeProducer)
    assert inspect.signature(ChunkReader.producer).return_annotation == "RangeProducer"


def test_both_databases_are_db_handles(tmp_path: Path) -> None:
    assert_implements(SyncDatabase(), api.Db)
    assert_implements(Database(Clock(), str(tmp_path / "m.db")), api.Db)  # type: ignore[arg-type]

