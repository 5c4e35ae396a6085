"""Ctrl-C and SIGTERM: a clean stop within a few seconds, whatever the command is doing.

The CLI installs ``install()``'s handlers. On the first SIGINT or SIGTERM:

1. ``pairsmith: stopping (SIGINT) ...`` goes to stderr at once;
2. KeyboardInterrupt is raised in the main thread, so the command unwinds: the flow run is marked
   crashed, a Blender worker (``pairsmith.scenes.render_worker``) or a Ray runtime is shut down,
   and ``exit_now`` ends every child process (Prefect's server included: SIGTERM, then SIGKILL
   after ``CHILD_GRACE_SECONDS``); the CLI exits ``128 + signal``: 130 for SIGINT, 143 for SIGTERM;
3. if the process has not exited ``STOP_SECONDS`` later (a thread stuck in a request, a library
   that holds the signal), every child process is killed and the process exits with that code.
   A batch commit in progress (a ``deferred()`` section) gets up to ``COMMIT_GRACE_SECONDS`` more.

A second signal stops at once (children killed). Waits that can last (a Blender render, a
Gemini backoff) wait in a way a stop interrupts (a socket poll, ``interruptible_map``), and child
processes that pairsmith starts are registered with ``track()`` so a forced stop kills them too.

Committed batches stay; the same command resumes. A commit (``tasks/write_batch.py``) is one
``deferred()`` section: a stop asked for during it is raised when it ends, so Ctrl-C never leaves
half a batch behind (and the writer's order makes even a forced stop safe: a batch counts as done
only once its last row is stored).

Signals are noticed twice: by the Python handler (which runs only when the main thread runs
Python code) and by a watcher thread woken through ``signal.set_wakeup_fd`` (which runs even while
the main thread sits in C code that retries its system calls). Handlers are set explicitly because
a process started in the background by a shell inherits SIGINT as *ignored*, and because SIGTERM
would otherwise end Python without any cleanup.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

STOP_SECONDS = 5.0  # from the first signal to a forced exit (children killed)
COMMIT_GRACE_SECONDS = 30.0  # more time for a batch commit that is under way when that comes
CHILD_GRACE_SECONDS = 1.5  # from SIGTERM to SIGKILL for the children of a stopped CLI

_requested: str | None = None
_signals_seen = 0  # by the Python handler
_bytes_seen = 0  # by the wakeup-fd watcher
_deferring = 0  # critical sections open (any thread): a signal is recorded, raised when the last ends
_lock = threading.RLock()  # re-entrant: the handler may run while the main thread holds it (deferred())
_stop_started = threading.Event()  # set by the first signal
_disarmed = threading.Event()  # set by restore() when no stop was asked for (main() called in-process)
_children: dict[int, object] = {}  # pid -> Popen-like: killed (their process group) on a forced stop
_wakeup: tuple[int, int, int] | None = None  # (read fd, write fd, previous wakeup fd)


def exit_code(name: str | None) -> int:
    """The conventional exit status for a stop by signal ``name``: 128 + its number (SIGINT 130)."""
    return 128 + int(getattr(signal, name or "SIGINT", signal.SIGINT))


def requested() -> str | None:
    """The name of the signal that asked for a stop, or None."""
    return _requested


def _say(text: str) -> None:
    try:
        os.write(2, text.encode())  # not sys.stderr: the handler may run while the main thread writes there
    except OSError:
        pass


def _begin_stop(name: str) -> None:
    """First signal: say so and arm the forced exit (idempotent)."""
    global _requested
    with _lock:
        if _stop_started.is_set():
            return
        _requested = name
        _stop_started.set()
    _say(f"pairsmith: stopping ({name}); committed batches are kept, the same command resumes. "
         f"A second Ctrl-C or SIGTERM stops at once.\n")
    threading.Thread(target=_force_later, name="pairsmith-stop", daemon=True).start()


def _force_later() -> None:
    if _disarmed.wait(STOP_SECONDS):
        return
    deadline = time.monotonic() + COMMIT_GRACE_SECONDS
    while _deferring and time.monotonic() < deadline and not _disarmed.is_set():
        time.sleep(0.1)
    if not _disarmed.is_set():
        force_exit(f"did not stop within {STOP_SECONDS:.0f} s")


def exit_now(code: int) -> None:
    """End a stopped CLI at once: stdout and stderr flushed, every child process asked to end
    (SIGTERM: Prefect's server shuts down cleanly) and killed if it has not within
    ``CHILD_GRACE_SECONDS``, then the process ends, skipping ``atexit`` hooks (logging's flush
    to an API server already gone can block), worker threads still blocked in a request and the
    interpreter's teardown (seconds of CPU with torch, pyarrow and Prefect loaded)."""
    import sys

    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        end_children(CHILD_GRACE_SECONDS)
    finally:
        os._exit(code)


def force_exit(why: str) -> None:
    """Kill every child process and end this process now, with the stop's exit code."""
    kill_children()
    _say(f"pairsmith: stopped ({why}); child processes killed\n")
    os._exit(exit_code(_requested))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _signals_seen
    _signals_seen += 1
    _begin_stop(signal.Signals(signum).name)
    if max(_signals_seen, _bytes_seen) >= 2:
        force_exit("second signal")
    if not _deferring:
        raise KeyboardInterrupt(_requested)


def _watch_wakeup(read_fd: int) -> None:
    """Wake on every signal, even while the main thread is stuck in C code."""
    global _bytes_seen
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            data = b""
        if not data:
            try:
                os.close(read_fd)
            except OSError:
                pass
            return
        for signum in data:
            if signum not in (signal.SIGINT, signal.SIGTERM):
                continue
            _bytes_seen += 1
            _begin_stop(signal.Signals(signum).name)
            if max(_signals_seen, _bytes_seen) >= 2 and not _disarmed.is_set():
                force_exit("second signal")


def install() -> dict:
    """Route SIGINT and SIGTERM here (main thread only); returns the previous handlers."""
    global _requested, _signals_seen, _bytes_seen, _wakeup
    _requested, _signals_seen, _bytes_seen = None, 0, 0
    _stop_started.clear()
    _disarmed.clear()
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        old = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        os.close(read_fd)
        os.close(write_fd)
    else:
        _wakeup = (read_fd, write_fd, old)
        threading.Thread(target=_watch_wakeup, args=(read_fd,), name="pairsmith-signals", daemon=True).start()
    return previous


def restore(previous: dict) -> None:
    """Put the previous handlers back. A stop under way stays armed (the process is ending); without
    one, nothing of ours is left (``main()`` called in-process, as tests do)."""
    global _wakeup
    if not _stop_started.is_set():
        _disarmed.set()
    if _wakeup is not None and threading.current_thread() is threading.main_thread():
        read_fd, write_fd, old = _wakeup
        _wakeup = None
        try:
            signal.set_wakeup_fd(old)
        except ValueError:
            pass
        os.close(write_fd)  # the watcher reads EOF, closes the read end and ends
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def check() -> None:
    """Raise KeyboardInterrupt if a stop was asked for (a safe point in a long loop)."""
    if _requested is not None:
        raise KeyboardInterrupt(_requested)


def interruptible_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[int, R]]:
    """``(index, fn(item))`` as each call finishes, ``workers`` calls at a time, on daemon threads.

    For requests that may sit in a client's retry backoff or a long HTTP timeout (Gemini): unlike a
    ``ThreadPoolExecutor``, whose exit (and the interpreter's) joins its threads, a stop (or the
    caller leaving early, or an exception from ``fn``, re-raised here) abandons the calls in
    flight at once and starts no more. The waiting caller checks for a stop asked for in any thread
    every 0.2 s."""
    pending = list(enumerate(items))
    if not pending:
        return
    todo: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()
    for entry in pending:
        todo.put(entry)
    leave = threading.Event()

    def work() -> None:
        while not leave.is_set():
            try:
                index, item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((index, True, fn(item)))
            except BaseException as err:  # handed to the caller
                done.put((index, False, err))

    for n in range(min(max(1, workers), len(pending))):
        threading.Thread(target=work, name=f"pairsmith-request-{n}", daemon=True).start()
    try:
        for _ in pending:
            while True:
                check()
                try:
                    index, ok, value = done.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue
            if not ok:
                raise value
            yield index, value
    finally:
        leave.set()


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


# -- child processes ------------------------------------------------------------------------------


def track(proc) -> None:
    """Kill ``proc`` (a ``subprocess.Popen``; its process group when it leads one) on a forced stop."""
    _children[proc.pid] = proc


def untrack(proc) -> None:
    _children.pop(proc.pid, None)


def _sigkill(pid: int) -> None:
    """SIGKILL ``pid`` and its process group (when it leads one); gone already is fine."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill(proc) -> None:
    """SIGKILL ``proc`` and its process group (when it leads one), then reap it."""
    _sigkill(proc.pid)
    try:
        proc.wait(timeout=5)
    except Exception:
        pass


def descendants(pid: int | None = None) -> list[int]:
    """Process ids of every descendant of ``pid`` (default: this process), from /proc (Linux;
    empty elsewhere)."""
    root = os.getpid() if pid is None else pid
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def end_children(grace: float) -> None:
    """SIGTERM every child process (tracked ones with their process groups, and every other
    descendant), SIGKILL what is left after ``grace`` seconds."""
    groups = []
    for proc in list(_children.values()):
        try:
            if os.getpgid(proc.pid) == proc.pid:
                groups.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    _signal_all(descendants(), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for proc in list(_children.values()):
            try:
                proc.poll()  # reap a tracked child that ended
            except Exception:
                pass
        if not [pid for pid in descendants() if not _is_zombie(pid)]:
            return
        time.sleep(0.05)
    kill_children()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def kill_children() -> None:
    """SIGKILL the tracked children (with their process groups) and every other descendant."""
    for proc in list(_children.values()):
        _sigkill(proc.pid)
    for pid in descendants():
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
