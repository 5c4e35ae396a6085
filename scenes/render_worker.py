"""Blender in a child process that a stop can end at once.

A Cycles render runs in C for as long as it takes (minutes at 1024 samples, 800x600) and Python
runs no signal handler until it returns, so a render in the CLI's own process held Ctrl-C and
SIGTERM for the rest of the pair. Here Blender runs in a worker process; the caller waits for each
answer on a socket, which a signal interrupts at once, and a stop kills the worker (its render is
lost: it was not committed anyway).

One worker per calling process serves every ``RenderSettings`` (it keeps one ``BlenderSession``
per settings, as bpy allows one Blender per process). The worker:

* runs in a session of its own, so a terminal's Ctrl-C reaches only the CLI, which decides;
* is registered with ``pairsmith.storage.interrupts``, so a stop that does not unwind in
  time still kills it, and is killed by an ``atexit`` hook on a normal exit;
* watches its parent (every ``WATCH_SECONDS``; Blender releases the GIL while it renders) and
  exits once the parent is gone, however it died (``kill -9``, OOM, a Ray worker torn down).

Run as ``python -m pairsmith.scenes.render_worker --parent PID --fd FD`` (FD: the worker's end of a
socket pair; the caller's end speaks ``multiprocessing.connection``).
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

WATCH_SECONDS = 0.5
POLL_SECONDS = 0.5  # how often a waiting caller checks that the worker is still alive


class RenderWorkerDied(RuntimeError):
    """The Blender worker exited while rendering (a crash in Blender, or it was killed)."""


class _Worker:
    """The caller's side: the child process and its end of the socket."""

    def __init__(self):
        parent_end, child_end = socket.socketpair()
        self.conn = Connection(parent_end.detach())
        fd = child_end.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __name__, "--parent", str(os.getpid()), "--fd", str(fd)],
            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
        )
        child_end.close()
        from pairsmith.storage import interrupts

        interrupts.track(self.proc)

    def request(self, message: tuple) -> tuple:
        self.conn.send(message)
        while not self.conn.poll(POLL_SECONDS):  # a signal interrupts the wait (KeyboardInterrupt)
            if self.proc.poll() is not None:
                break
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.wait()
            raise RenderWorkerDied(f"Blender's render worker exited with code {code} during {message[1]}") from None

    def kill(self) -> None:
        from pairsmith.storage import interrupts

        interrupts.kill(self.proc)
        interrupts.untrack(self.proc)
        self.conn.close()


_lock = threading.Lock()
_worker: _Worker | None = None


def call(settings, method: str, *args: Any) -> tuple[Any, float, int]:
    """Run ``BlenderSession(settings).method(*args)`` in the worker (started on first use); returns
    (its value, seconds inside Blender's renderer, renders). Re-raises the worker's exception."""
    global _worker
    with _lock:
        if _worker is None or _worker.proc.poll() is not None:
            _worker = _Worker()
        worker = _worker
        try:
            ok, value, seconds, renders = worker.request((settings.model_dump_json(), method, args))
        except BaseException:  # a stop (KeyboardInterrupt), a dead worker, a broken socket
            worker.kill()
            _worker = None
            raise
    if not ok:
        raise value
    return value, seconds, renders


def shutdown() -> None:
    """Kill this process's worker, if any (also run at exit)."""
    global _worker
    if _worker is not None:
        _worker.kill()
        _worker = None


atexit.register(shutdown)


# -- the worker process ---------------------------------------------------------------------------


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os._exit(0)


def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling, else a RuntimeError with the same message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def serve(conn: Connection) -> None:
    from pairsmith.scenes.blender_render import RenderSettings, get_session

    while True:
        try:
            settings_json, method, args = conn.recv()
        except EOFError:
            return
        session = get_session(RenderSettings.model_validate_json(settings_json))
        seconds, renders = session.timer.seconds, session.timer.renders
        try:
            value = getattr(session, method)(*args)
            reply = (True, value)
        except Exception as err:
            reply = (False, _portable(err))
        conn.send((*reply, session.timer.seconds - seconds, session.timer.renders - renders))


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[0] != "--parent" or argv[2] != "--fd":
        raise SystemExit("usage: python -m pairsmith.scenes.render_worker --parent PID --fd FD")
    parent = int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the CLI decides; it kills this process to stop it
    if os.getppid() != parent:
        raise SystemExit(0)
    threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()
    serve(Connection(int(argv[3])))


if __name__ == "__main__":
    main(sys.argv[1:])
