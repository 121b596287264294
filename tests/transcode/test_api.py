"""The transcoder implements the face the stream routes and Blossom's /media use."""

from __future__ import annotations

from twisted.internet.task import Clock

from tests.protocols import assert_implements
from tgateway.config import TranscodingConfig
from tgateway.storage.db import SyncDatabase
from tgateway.transcode.api import Transcoding
from tgateway.transcode.service import Transcoder


def test_the_transcoder_is_the_transcoding_face() -> None:
    db = SyncDatabase()
    db.open()
    try:
        transcoder = Transcoder(config=TranscodingConfig(), store=None, db=db,  # type: ignore[arg-type]
                                reactor=Clock(), tools=None)  # type: ignore[arg-type]
        assert_implements(transcoder, Transcoding)
    finally:
        db.close()
