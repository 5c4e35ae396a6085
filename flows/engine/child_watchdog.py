"""A watchdog process: when the CLI process dies (even ``kill -9``), end every process it had started.

``--runner ray`` starts a local Ray whose GCS server and raylet are children of the CLI and whose
workers and agents are children of the raylet. Ray ties the raylet's life to the CLI, but its
workers and agents only notice their parent is gone on their next check, 60-90 s later, and go on
holding CPUs, memory and the GPU. This watchdog, started beside the local Ray
(``task_runners.open_task_runner``), reads the CLI's descendants every ``POLL_S`` seconds while the
CLI lives (so it still knows them after the raylet dies and they are reparented), and once the CLI
is gone sends them SIGTERM, then SIGKILL to those still there after ``GRACE_S``. A pid is only
signalled if it still belongs to the process seen (same start time), never to one that reused it.

Run as a script (standard library only, no pairsmith import): ``python child_watchdog.py <cli pid>``;
it runs in its own session, so a Ctrl-C to the CLI's terminal does not reach it, and it ends on
SIGTERM (the runner closing normally) or once it has cleaned up.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid`` from /proc, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every process below ``root`` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
                starts[int(entry)] = stat[1]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found and child != os.getpid():
                found[child] = starts[child]
                todo.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] == start


def watch(cli: int) -> None:
    cli_start = (_stat(cli) or (0, -1))[1]
    known: dict[int, int] = {}
    while _alive(cli, cli_start):
        known.update(descendants(cli))
        known = {p: s for p, s in known.items() if _alive(p, s)}
        time.sleep(POLL_S)
    for pid in list(known):  # what the known ones started since the last look, reparented or not
        known.update(descendants(pid))
    left = {p: s for p, s in known.items() if _alive(p, s)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in left.items():
            if _alive(pid, start):
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
        deadline = time.time() + GRACE_S
        while time.time() < deadline and any(_alive(p, s) for p, s in left.items()):
            time.sleep(0.1)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(sys.argv[1]))
