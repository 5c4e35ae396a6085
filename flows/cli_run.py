"""``pairsmith run FLOW --config FILE``: any pipeline flow from a YAML config.

Flows are looked up by name in ``FLOWS`` (module paths, imported on use so ``--help`` stays fast).
The config file holds the flow's pydantic config; ``--db`` overrides its database.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# flow name -> (config class, flow function), as "module:attribute"
FLOWS: dict[str, tuple[str, str]] = {
    "dig-render": ("flows.dig_render_config:DigRenderConfig", "flows.dig_render:dig_render"),
    "med-edit": ("flows.med_edit_config:MedEditConfig", "flows.med_edit:med_edit"),
}
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: the run stopped early on purpose; the same command continues it


def _load(path: str) -> Any:
    module, attribute = path.split(":")
    return getattr(importlib.import_module(module), attribute)


@click.command("run")
@click.argument("flow_name", metavar="FLOW", type=click.Choice(sorted(FLOWS)))
@click.option("--config", "config_path", required=True, help="YAML file with the flow's config.")
@click.option("--db", default=None, help="LanceDB URI (overrides the config's).")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def run(flow_name: str, config_path: str, db: str | None, verbose: bool) -> None:
    """Run a pipeline flow with its config file and print its drop-off funnel."""
    from flows.cli import CliError, _load_yaml, _open_store, _quiet_prefect, _validate
    from flows.funnel import format_funnel, run_funnel
    from flows.run_outcome import EXIT_ITEM_ERRORS, describe_errors, error_counts

    config_path_cls, flow_path = FLOWS[flow_name]
    data = _load_yaml(config_path)
    if db:
        data["db"] = db
    data.setdefault("show_progress", True)
    config = _validate(_load(config_path_cls), data, config_path)
    store = _open_store(config.db)
    _quiet_prefect(verbose)
    try:
        summary = _load(flow_path)(config)
    except CliError:
        raise
    except Exception as err:  # the flow run failed; committed batches stay and the same command resumes
        click.echo(f"pairsmith: error: run {config.run_id()} failed: {type(err).__name__}: {err}", err=True)
        raise click.exceptions.Exit(1) from None
    funnel = run_funnel(store, summary.run_id)
    click.echo(f"run {summary.run_id} ({flow_name}) in {config.db}: "
               f"{summary.pairs_kept} pairs kept, {summary.pairs_dropped} dropped, {summary.samples} samples")
    click.echo(format_funnel(funnel))
    stopped = getattr(summary, "stopped_early", None)
    if stopped:
        click.echo(f"pairsmith: warning: run {summary.run_id} stopped early: {stopped}", err=True)
        raise click.exceptions.Exit(EXIT_INCOMPLETE)
    if error_counts(funnel):
        click.echo(f"pairsmith: warning: run {summary.run_id}: {describe_errors(error_counts(funnel))}", err=True)
        raise click.exceptions.Exit(EXIT_ITEM_ERRORS)
