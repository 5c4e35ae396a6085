"""Ctrl-C and SIGTERM as a clean stop: KeyboardInterrupt, raised where Python code can unwind.

The CLI installs ``install()``'s handlers. A signal normally raises KeyboardInterrupt at once; but
a signal that arrives while Blender (bpy) runs one of its Python callbacks (Cycles' render engine)
would raise inside Blender, which prints the exception and carries on rendering. So the handler
always records the request, raises only outside bpy's code, and long loops call ``check()`` at
safe points (``RunProgress.advance`` does, after every rendered pair and every batch), where the
recorded request becomes a KeyboardInterrupt. Committing a batch is one ``deferred()`` section
(``tasks/write_batch.py``): a stop asked for during the commit waits for it to end, so Ctrl-C never
leaves half a batch behind. Committed batches stay; the same command resumes.

Handlers are set explicitly because a process started in the background by a shell inherits SIGINT
as *ignored*, and because SIGTERM would otherwise end Python without any cleanup (Prefect's
server stop, the flow run marked crashed).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from types import FrameType

_requested: str | None = None
_deferring = 0  # critical sections open (any thread): a signal is recorded, raised when the last ends
_lock = threading.Lock()


def _inside_bpy(frame: FrameType | None) -> bool:
    while frame is not None:
        if "/bpy/" in frame.f_code.co_filename:  # bpy's own scripts, Cycles' render engine among them
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = signal.Signals(signum).name
    if not _deferring and not _inside_bpy(frame):
        raise KeyboardInterrupt(_requested)


def install() -> dict:
    """Route SIGINT and SIGTERM here (main thread only); returns the previous handlers."""
    global _requested
    _requested = None
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}


def restore(previous: dict) -> None:
    global _requested
    _requested = None
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for (a safe point in a long loop)."""
    if _requested is not None:
        raise KeyboardInterrupt(_requested)


@contextmanager
def deferred():
    """A section a stop must not cut in two (one batch's commit): a signal arriving inside it is
    recorded and raised when the section ends (in the main thread; a worker thread's section leaves
    it to the main thread's next ``check()``)."""
    global _deferring
    with _lock:
        _deferring += 1
    try:
        yield
    finally:
        with _lock:
            _deferring -= 1
            last = _deferring == 0
    if last and threading.current_thread() is threading.main_thread():
        check()
