"""Run slow work (building the microscope, loading models, stopping threads) off the UI thread.

:meth:`TaskRunner.submit` runs a function on a named worker thread and delivers its result
(or its exception) to a callback **on the UI thread**, through a queued Qt signal. The UI
stays responsive meanwhile; :attr:`TaskRunner.busy` names what is running so the window can
show a "loading" state.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal

__all__ = ["TaskRunner"]

logger = logging.getLogger("live_deepz.ui")

Done = Callable[[Any], None]
Failed = Callable[[BaseException], None]


class TaskRunner(QObject):
    """Worker threads whose results come back on the UI thread.

    Signals
    -------
    busyChanged(str) : the description of the running task(s), ``""`` when idle.
    """

    busyChanged = Signal(str)
    _finished = Signal(int, object, object)  # token, result, exception

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tokens = itertools.count(1)
        self._pending: dict[int, tuple[str, Done | None, Failed | None, threading.Thread]] = {}
        self._finished.connect(self._deliver)
        self._closed = False

    @property
    def busy(self) -> str:
        """What is running now (``"; "``-joined descriptions), ``""`` when nothing is."""
        return "; ".join(what for what, *_ in self._pending.values())

    def submit(
        self,
        what: str,
        fn: Callable[[], Any],
        on_done: Done | None = None,
        on_error: Failed | None = None,
    ) -> int:
        """Run ``fn()`` on a worker thread; ``on_done(result)`` / ``on_error(exc)`` on the UI
        thread afterwards. ``what`` is shown while it runs ("loading model …")."""
        if self._closed:
            raise RuntimeError("the task runner is shut down")
        token = next(self._tokens)

        def work() -> None:
            try:
                result = fn()
            except BaseException as exc:  # delivered to on_error on the UI thread
                logger.debug("task %r failed:\n%s", what, traceback.format_exc())
                self._emit(token, None, exc)
            else:
                self._emit(token, result, None)

        th = threading.Thread(target=work, name=f"live-deepz-ui-task-{token}", daemon=True)
        self._pending[token] = (what, on_done, on_error, th)
        th.start()
        self.busyChanged.emit(self.busy)
        return token

    def _emit(self, token: int, result: Any, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the runner was deleted (window closed)
            self._finished.emit(token, result, exc)

    def _deliver(self, token: int, result: Any, exc: BaseException | None) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return
        what, on_done, on_error, th = entry
        th.join(1.0)
        self.busyChanged.emit(self.busy)
        if self._closed:
            return
        if exc is not None:
            if on_error is not None:
                on_error(exc)
            else:
                logger.error("%s failed: %s", what, exc)
        elif on_done is not None:
            on_done(result)

    def wait(self, timeout: float = 30.0) -> bool:
        """Join the running tasks (results are dropped after :meth:`shutdown`)."""
        ok = True
        for _, _, _, th in list(self._pending.values()):
            th.join(timeout)
            ok = ok and not th.is_alive()
        return ok

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Refuse new tasks, wait for running ones, drop their callbacks."""
        self._closed = True
        ok = self.wait(timeout)
        self._pending.clear()
        return ok
