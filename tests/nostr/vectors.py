"""Where the shared cryptographic test vectors live: ``../shared/vectors`` from the repo root,
else the copies in ``tests/data/vectors`` (so a clone without ``../shared`` still runs them; the
NIP-44 file's sha256 is checked against the hash pinned in NIP-44 either way).

A missing file is a test failure, not a skip: the vectors are part of the acceptance criteria.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors"
COPIES = REPO_ROOT / "tests" / "data" / "vectors"


def vector_file(name: str) -> Path:
    path = VECTORS / name
    if not path.exists():
        path = COPIES / name
    if not path.exists():
        raise FileNotFoundError(f"test vectors not found at {path} (expected ../shared/vectors)")
    return path
