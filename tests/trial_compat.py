"""Let trial ``TestCase``s and pytest-twisted share one reactor in one pytest session.

pytest-twisted runs the reactor in a greenlet, started by the first test function it handles
(it handles every plain test function). From then on the reactor counts as running, and a trial
``TestCase`` whose test returns a Deferred fails: trial's ``_wait`` calls ``reactor.run()`` itself
(DirtyReactorAggregateError, "reactor already running"). So once that greenlet is running, trial
waits through it instead (``pytest_twisted.blockon``); before that, trial runs the reactor as
usual. Installed by tests/conftest.py.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Patch ``twisted.trial`` once; no-op without pytest-twisted."""
    try:
        import pytest_twisted
    except ImportError:
        return
    from twisted.trial import _asynctest

    original = _asynctest.TestCase._wait
    if getattr(original, "_tgateway_greenlet_bridge", False):
        return

    def _wait(self: Any, d: Any, running: list[None] = _asynctest._wait_is_running) -> None:
        greenlet = pytest_twisted._instances.gr_twisted
        if greenlet is None or not greenlet:  # not started yet (or dead): trial's own way
            original(self, d, running)  # type: ignore[no-untyped-call]
            return
        if running:
            raise RuntimeError("_wait is not reentrant")
        running.append(None)
        try:
            pytest_twisted.blockon(d)  # trial's Deferreds here only ever callback
        finally:
            running.pop()

    _wait._tgateway_greenlet_bridge = True  # type: ignore[attr-defined]
    _asynctest.TestCase._wait = _wait  # type: ignore[method-assign]
