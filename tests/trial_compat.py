"""Let trial ``TestCase``s and pytest-twisted share one reactor in one pytest session.

pytest-twisted runs the reactor in a greenlet, started by the first test function it handles
(it handles every plain test function). From then on the reactor counts as running, and a trial
``TestCase`` whose test returns a Deferred fails: trial's ``_wait`` calls ``reactor.run()`` itself
(DirtyReactorAggregateError, "reactor already running"). So once that greenlet is running, trial
waits through it instead (:func:`_blockon`, pytest-twisted's ``blockon`` with one change); before
that, trial runs the reactor as usual. Installed by tests/conftest.py.

The change: the test's greenlet gets the result on a fresh reactor turn (``callLater(0)``), not
from inside the callback that fired it. That callback may run in the reactor's loop over calls
from threads, which runs the queued calls and only then removes them; parked there, the reactor's
greenlet would leave them queued while trial's janitor, in the test's greenlet, iterates the
reactor (``reactor.iterate(0)``) and runs them a second time (AlreadyCalledError on a
``deferToThread`` Deferred whose thread had answered). Background work that calls back from
threads while a test ends (the start-up storage check, for one) made that happen.
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
            _blockon(d, greenlet)  # trial's Deferreds here only ever callback
        finally:
            running.pop()

    _wait._tgateway_greenlet_bridge = True  # type: ignore[attr-defined]
    _asynctest.TestCase._wait = _wait  # type: ignore[method-assign]


def _blockon(d: Any, reactor_greenlet: Any) -> Any:
    """Wait for ``d`` in the reactor's greenlet; come back on a fresh reactor turn."""
    import greenlet
    from twisted.internet import reactor

    current = greenlet.getcurrent()
    result: list[Any] = []

    def done(r: Any) -> None:
        result.append(r)
        if greenlet.getcurrent() is not current:
            reactor.callLater(0, current.switch, result)

    d.addBoth(done)
    if not result:
        back = reactor_greenlet.switch()
        assert back is result, "illegal switch in _blockon"
    from twisted.python.failure import Failure

    if isinstance(result[0], Failure):
        result[0].raiseException()
    return result[0]
