"""The two-state SHA-256 extension against hashlib, and that it is built where it can run."""

from __future__ import annotations

import hashlib
import os
import platform
import random
from pathlib import Path

import pytest

from tgateway.storage import hashing
from tgateway.storage.hashing import Sha256Pair, pair_available


def _cpu_has_sha() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " sha_ni" in flags


def test_the_extension_is_built_and_used_where_the_cpu_has_sha() -> None:
    """scripts/setup-venv installs a compiler and the Python headers, so on an x86 CPU with the
    SHA extensions (the CI machines) a missing build is a failure, not a silent slow path."""
    if platform.machine() in ("x86_64", "AMD64") and _cpu_has_sha():
        assert hashing._sha256x2 is not None, "tgateway.storage._sha256x2 was not built"
        assert pair_available()
    else:
        assert not pair_available() or hashing._sha256x2 is not None


needs_pair = pytest.mark.skipif(not pair_available(), reason="no SHA extensions on this CPU")


@needs_pair
@pytest.mark.parametrize("chunk_size", [64, 128, 16384, 65536])
def test_pair_matches_hashlib_at_every_boundary(chunk_size: int) -> None:
    rnd = random.Random(chunk_size)
    cs = chunk_size
    sizes = [0, 1, 55, 56, 63, 64, 65, 119, 120, cs - 1, cs, cs + 1, 3 * cs + 17, 7 * cs]
    for size in sizes + [rnd.randrange(10 * cs) for _ in range(30)]:
        data = os.urandom(size)
        pair = Sha256Pair()
        chunks = []
        pos = 0
        while pos < size:
            end = min(size, (pos // cs + 1) * cs)
            while pos < end:  # the chunk in uneven pieces
                step = min(end - pos, rnd.choice([1, 7, 63, 64, 65, 100, 4096, 100_000]))
                pair.update(data[pos:pos + step])
                pos += step
            chunks.append(pair.end_chunk())
        assert chunks == [hashlib.sha256(data[i:i + cs]).hexdigest() for i in range(0, size, cs)]
        assert pair.whole_hexdigest() == hashlib.sha256(data).hexdigest()


@needs_pair
def test_compress_refuses_bad_arguments() -> None:
    ext = hashing._sha256x2
    state = bytearray(32)
    with pytest.raises(ValueError):
        ext.compress(state, None, b"x" * 63)
    with pytest.raises(ValueError):
        ext.compress(bytearray(31), None, b"x" * 64)
    with pytest.raises(BufferError):
        ext.compress(bytes(32), None, b"x" * 64)  # read-only state
    assert state == bytearray(32)
