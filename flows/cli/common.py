"""What every ``pairsmith`` command shares: one-line errors, config files, the store, Prefect's console.

A module of its own, so command modules (``flows/cli_<topic>.py``) import these at the top without
importing ``pairsmith.flows.cli.main``, which registers those same modules (no import cycle).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from pairsmith.storage.db_uri import DEFAULT_DB  # noqa: F401  (re-exported to command modules)

EXIT_USAGE = 2
EXIT_FAILED = 1


class CliError(click.ClickException):
    """A problem with the user's input; printed as one line."""

    exit_code = EXIT_USAGE


def quiet_prefect(verbose: bool) -> None:
    """Ready Prefect for a command that runs flows; call it before anything imports prefect.

    Keeps Prefect's console to warnings unless asked (its logs still reach the API and UI), and
    makes its ephemeral API server a child that Ctrl-C does not reach and that never outlives this
    process (``pairsmith.flows.engine.prefect_server``). A backend that cannot work (an unwritable
    ``PREFECT_HOME``, a ``PREFECT_API_URL`` that does not answer) is a ``CliError`` (exit 2) naming it."""
    import warnings

    # Prefect's own warning about a home folder it could not create: check_backend says it in one line
    warnings.filterwarnings("ignore", message="Failed to create the Prefect home directory")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here
    # Prefect's ephemeral server gives up after 20 s; two runs at once on a busy 2-core machine take longer.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
        # the temporary server's own errors while it shuts down (events it could not flush after the
        # run ended) are not the command's; a Prefect server of your own keeps its logs
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    from pairsmith.flows.engine.prefect_server import PrefectBackendError, check_backend, install

    try:
        check_backend()  # an unwritable PREFECT_HOME, an API that does not answer: one line, in seconds
    except PrefectBackendError as err:
        raise CliError(str(err)) from None
    install()
    if not verbose:
        import prefect.main  # noqa: F401  (configures Prefect's logging: its console handler now exists)
        from prefect.logging.handlers import PrefectConsoleHandler

        for handler in logging.getLogger().handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(_run_errors_stay_in_the_ui)


def _run_errors_stay_in_the_ui(record: logging.LogRecord) -> bool:
    """Console filter: a flow or task run's own error records (its traceback, "Finished in state
    Failed", "Crash detected!") reach the API and UI but not the console, where the command says
    what failed in one line (``--verbose`` shows them)."""
    return not (record.levelno >= logging.ERROR and record.name.startswith(("prefect.flow_runs", "prefect.task_runs")))


def describe_failure(err: BaseException, limit: int = 500) -> str:
    """``Type: message`` in one line for the console (``pairsmith.storage.store.short_error``: line
    breaks collapsed, Lance's Rust source locations left out)."""
    from pairsmith.storage.store import short_error

    return f"{type(err).__name__}: {short_error(err, limit)}"


def _strict_loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """PyYAML's safe loader, but a key written twice in one mapping is an error (PyYAML keeps the
        last one silently, so ``pairs: 2`` then ``pairs: 3`` would run 3)."""

        def construct_mapping(self, node, deep=False):
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictLoader


def load_yaml(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    from pairsmith.storage.input_files import read_text_file

    try:
        data = yaml.load(read_text_file(path, "--config"), Loader=_strict_loader())
    except ValueError as err:  # missing, unreadable or not UTF-8: the message names the file (and line)
        raise CliError(str(err)) from None
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0]
        where = f", line {err.problem_mark.line + 1}" if getattr(err, "problem_mark", None) else ""
        raise CliError(f"--config {path!r}{where}: not valid YAML ({first})") from None
    if not isinstance(data, dict):
        raise CliError(f"--config {path!r}: expected a mapping of settings at the top level")
    return data


def set_option(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Put a CLI option into the (possibly nested) config dict, if the user gave it."""
    if value is None or value == ():
        return
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
    tree[leaf] = value


def validate_config(model: type, data: dict[str, Any], source: str):
    """``data`` (from a YAML file and options) as ``model``, strictly: a string or a boolean where a
    number belongs, NaN or infinity, or an unknown key is an error naming the field, not a value
    quietly converted. Lists are read as tuples where a field wants one, as in JSON."""
    import json

    from pydantic import ValidationError

    from pairsmith.scenes.scene_config import format_validation_error

    try:
        text = json.dumps(data, default=str)
    except ValueError as err:  # a circular structure from a YAML alias
        raise CliError(f"{source}: cannot read the settings ({err})") from None
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as err:
        raise CliError(format_validation_error(err, source)) from None


def open_store_or_fail(db: str, must_exist: bool = False, read_only: bool = False):
    """The store at ``db``, its URI checked and, if it exists, reachable; ``must_exist``: a local
    database that is not there is bad input (commands that only read), never created; ``read_only``:
    a command that only reads, so a database it cannot write (a read-only mount) still opens."""
    from pairsmith.storage.store import PairStore

    try:
        store = PairStore(db, read_only=read_only)
    except ValueError as err:
        raise CliError(str(err)) from None
    if must_exist and not store.exists():
        raise CliError(f"--db {db!r}: no such database")
    if store.exists():  # never create a folder just to check
        try:
            store.check_reachable()
        except ValueError as err:
            raise CliError(str(err)) from None
    return store


def pick_run(store, run: str | None) -> str:
    runs = store.runs()
    if run is None:
        if not runs:
            raise CliError(f"--db {store.uri!r}: no runs stored yet; run 'pairsmith render' first")
        return runs[0]["run_id"]
    if run not in {r["run_id"] for r in runs}:
        raise CliError(f"--run {run!r}: no such run in {store.uri!r} (see 'pairsmith stats --list')")
    return run
