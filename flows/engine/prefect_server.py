"""Prefect's ephemeral API server as a child process that never outlives pairsmith.

Without a ``PREFECT_API_URL``, Prefect 3.8 starts a temporary API server (``uvicorn``, ~200 MB,
listening on 127.0.0.1) as a child process and stops it from an ``atexit`` hook. Two things go
wrong for a command-line tool:

* the child is in the CLI's process group, so Ctrl-C in the terminal kills the server too, and
  the CLI then retries its dead API for a minute and more before failing;
* ``kill -9`` (or an OOM kill) of the CLI skips ``atexit``, and the server runs on for good.

``install()`` makes Prefect start that server through this module instead: in a session of its
own (a terminal's Ctrl-C reaches only the CLI, which then stops the server on its way out), with
a watchdog thread that ends the server within about a second once the process that started it is
gone, however it died. A stop that does not unwind within ``interrupts.STOP_SECONDS`` kills it
at once (``interrupts.track``). Linux's parent-death signal is not used because it fires when the
*thread* that started the child exits, and Prefect may start the server from a worker thread.

Run as ``python -m pairsmith.flows.engine.prefect_server --parent PID -- UVICORN_ARGS...``.

``check_backend()`` is asked first, by every command that runs flows: a backend that cannot work is
one line within seconds (an unwritable ``PREFECT_HOME`` or database folder for the temporary server,
a ``PREFECT_API_URL`` that does not answer its health check), not minutes of retries and then
blame on the ephemeral server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

WATCH_SECONDS = 0.5
GRACE_SECONDS = 5.0


HEALTH_SECONDS = 3.0


class PrefectBackendError(ValueError):
    """The Prefect API this process would use cannot work; the message names the setting and why."""


def check_backend() -> None:
    """Raise ``PrefectBackendError`` (one line) if flows cannot run here: with ``PREFECT_API_URL``
    set, the server does not answer ``GET <url>/health`` within ``HEALTH_SECONDS`` (or answers 5xx);
    without it, the
    temporary server's folders (``PREFECT_HOME``, and the folder of its SQLite database) cannot be
    created or written. Settings are Prefect's own (environment, profile, ``.env``)."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    url = settings.api.url
    if url:
        problem = _health_problem(str(url))
        if problem:
            raise PrefectBackendError(
                f"PREFECT_API_URL {url}: {problem}; start that Prefect server, or unset PREFECT_API_URL to run "
                "with a temporary one")
        return
    folders = [("PREFECT_HOME", Path(settings.home).expanduser())]
    db_url = settings.server.database.connection_url
    db_url = db_url.get_secret_value() if hasattr(db_url, "get_secret_value") else str(db_url or "")
    if db_url.startswith("sqlite") and ":memory:" not in db_url and "///" in db_url:
        db_file = Path(db_url.split("///", 1)[1].split("?", 1)[0]).expanduser()
        if db_file.parent != folders[0][1]:
            folders.append(("PREFECT_SERVER_DATABASE_CONNECTION_URL's folder", db_file.parent))
    for setting, folder in folders:
        problem = _unwritable(folder)
        if problem:
            raise PrefectBackendError(
                f"{setting} {str(folder)!r} {problem}: Prefect's temporary server keeps its database there; "
                "point PREFECT_HOME at a writable folder (or PREFECT_API_URL at a running server)")


def _unwritable(folder: Path) -> str | None:
    """None if ``folder`` exists (or can be made) and a file can be created in it; else why not."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".pairsmith-write-check-"):
            pass
    except OSError as err:
        return f"is not writable ({err.strerror or type(err).__name__})"
    return None


def _health_problem(url: str) -> str | None:
    import httpx

    try:
        response = httpx.get(url.rstrip("/") + "/health", timeout=HEALTH_SECONDS)
    except httpx.HTTPError as err:
        return f"does not answer ({type(err).__name__}: {' '.join(str(err).split()) or 'no response'})"
    if response.status_code >= 500:
        return f"answers HTTP {response.status_code} to its health check"
    return None  # it answers (a server that wants a key for /health answers 401: it is there)


def install() -> None:
    """Start Prefect's ephemeral server through the watchdog launcher (idempotent, this process)."""
    from prefect.server.api import server

    cls = server.SubprocessASGIServer
    if getattr(cls, "_pairsmith_watchdog", False):
        return

    def run_uvicorn_command(self) -> subprocess.Popen[Any]:
        from prefect.settings import get_current_settings

        # The arguments and environment Prefect 3.8's own _run_uvicorn_command uses.
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        uvicorn_args = [
            "--app-dir", str(server.prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app",
            "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
        ]
        proc = subprocess.Popen(
            args=[sys.executable, "-m", __name__, "--parent", str(os.getpid()), "--", *uvicorn_args],
            env={**os.environ, **server_env, **get_current_settings().to_environment_variables(exclude_unset=True)},
            start_new_session=True,
        )
        from pairsmith.storage import interrupts

        interrupts.track(proc)  # a stop that cannot unwind in time kills the server too
        return proc

    cls._run_uvicorn_command = run_uvicorn_command
    cls._pairsmith_watchdog = True


def _watch(parent: int) -> None:
    """End this process once ``parent`` is gone (we were re-parented): SIGTERM, then a hard exit."""
    while os.getppid() == parent:
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down cleanly on SIGTERM
    time.sleep(GRACE_SECONDS)
    os._exit(0)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] != "--parent" or argv[2] != "--":
        raise SystemExit("usage: python -m pairsmith.flows.engine.prefect_server --parent PID -- UVICORN_ARGS...")
    parent = int(argv[1])
    if os.getppid() != parent:  # the parent died before we got here
        raise SystemExit(0)
    threading.Thread(target=_watch, args=(parent,), name="parent-watchdog", daemon=True).start()
    import uvicorn

    uvicorn.main(argv[3:], prog_name="uvicorn")


if __name__ == "__main__":
    main(sys.argv[1:])
