"""The web interface's pure ES modules under ``node --test`` (``tests/web/js/*.test.mjs``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.tools import node

HERE = Path(__file__).resolve().parent / "js"


def test_pure_modules() -> None:
    files = sorted(str(p) for p in HERE.glob("*.test.mjs"))
    assert files
    done = subprocess.run([node(), "--test", *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
