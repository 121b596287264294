"""Where the shared cryptographic test vectors live: ``../shared/vectors`` from the repo root.

A missing file is a test failure, not a skip: the vectors are part of the acceptance criteria.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors"


def vector_file(name: str) -> Path:
    path = VECTORS / name
    if not path.exists():
        raise FileNotFoundError(f"test vectors not found at {path} (expected ../shared/vectors)")
    return path
