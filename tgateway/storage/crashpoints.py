"""Test-only crash points: make the process die (SIGKILL) at a named step of the content store.

The crash tests (``tests/integration/test_storage_crash.py``) start a ``twistd tgateway`` child
with ``TGATEWAY_TEST_CRASH_AT=<step>[,<step>...]`` in its environment; the store kills its own
process with SIGKILL, as ``kill -9`` would, when it reaches one of those steps. Without that
variable (always, outside those tests) every crash point is a no-op: :meth:`CrashPoints.reach`
is one lookup in an empty set. Steps:

- ``place:some``: a new chunked file's first half of chunks renamed into place, the rest not;
- ``place:all``: every blob or chunk of a new file placed and its folders fsynced, its row not
  committed yet;
- ``delete:row``: a deleted file's row committed as gone, none of its bytes removed yet;
- ``delete:some``: the row gone, half of the bytes to remove removed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

ENV = "TGATEWAY_TEST_CRASH_AT"
STEPS = frozenset({"place:some", "place:all", "delete:row", "delete:some"})


class CrashPoints:
    def __init__(self, armed: frozenset[str] = frozenset()) -> None:
        unknown = armed - STEPS
        if unknown:
            raise ValueError(f"{ENV}: unknown step(s) {', '.join(sorted(unknown))}")
        self.armed = armed

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CrashPoints:
        raw = environ.get(ENV, "")
        return cls(frozenset(s.strip() for s in raw.split(",") if s.strip()))

    def reach(self, step: str) -> None:
        """Die here (SIGKILL, no clean-up of any kind) when ``step`` is armed."""
        if step in self.armed:
            os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "STEPS", "CrashPoints"]
