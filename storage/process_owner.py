"""Who left this: the host and process that own a temporary folder, a pinning tag or a flow run.

Leftovers of a run killed with ``kill -9`` (``.partial`` export folders, ``export-...running...``
tags, Prefect flow runs stuck in RUNNING) carry their owner: host name, process id and when the
owner started. A later run sweeps them only when that owner is gone, so it never sweeps what a
running command is still writing:

* **same host**: the owner is gone when no process has its pid, or when the process that has it
  now started after the leftover was made (the pid was reused);
* **another host** (a shared disk or object store): its processes cannot be seen from here, so a
  leftover is swept only once it is older than ``OTHER_HOST_AGE`` (one day: an export running on
  another host for longer than that could lose its ``.partial`` folder or its pinning tag).
"""

from __future__ import annotations

import os
import re
import socket
import time

OTHER_HOST_AGE = 24 * 3600.0
"""Seconds after which a leftover of a process on another host counts as dead."""


def host_name() -> str:
    """This host's name, reduced to the characters a LanceDB tag allows (letters, digits, ``-``)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname() or "host")[:40] or "host"


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (Unix seconds), None when there is none (or it cannot be told)."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except ImportError:
        pass
    except Exception:  # NoSuchProcess, AccessDenied, ZombieProcess
        return None if not _pid_exists(pid) else 0.0
    try:  # Linux without psutil: /proc/<pid>/stat field 22 is the start time in clock ticks after boot
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except Exception:
        return 0.0 if _pid_exists(pid) else None


def _pid_exists(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_gone(host: str, pid: int, made_at: float, now: float | None = None) -> bool:
    """Whether the process (``host``, ``pid``) that made a leftover at ``made_at`` (Unix seconds) is gone."""
    now = time.time() if now is None else now
    if host != host_name():
        return now - made_at > OTHER_HOST_AGE
    if pid == os.getpid():
        return False
    started = process_started(pid)
    if started is None:
        return True
    return started > made_at + 1.0  # a process that started after the leftover was made reused the pid
