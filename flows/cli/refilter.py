"""``pairsmith refilter``: Img-Diff's threshold ablation as a command over stored scores, for any stored pipeline.

The ``pairsmith.flows.cli.main`` helpers are imported inside the command: ``pairsmith.flows.cli.main`` imports this module to
register it, so a module-level import would fail whenever this module is imported first.
"""

from __future__ import annotations

import click

from pairsmith.storage.db_uri import DEFAULT_DB  # stdlib only, as pairsmith.flows.cli.main uses it


class _RefilterCommand(click.Command):
    """Its help ends with the stages it re-judges, read from the pipeline declarations when asked."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from pairsmith.filters.rejudge import refilter_table

        rows = refilter_table()
        for method in dict.fromkeys(r[0] for r in rows):
            with formatter.section(f"Stages of {method}, in order (thresholds read; reasons given)"):
                formatter.write_dl([(stage, f"{fields or 'no thresholds'}; {reasons}")
                                    for m, stage, fields, reasons in rows if m == method])


@click.command(cls=_RefilterCommand)
@click.option("--run", "run", required=True, help="The imgdiff-replace / imgdiff-remove / med-edit run to re-filter.")
@click.option("--config", "config_path", required=True, type=str,
              help="YAML with 'replace:', 'remove:' (Img-Diff) and/or 'similarity:' (med-edit) threshold sections "
                   "(filters/refilterable.py).")
@click.option("--db", default=DEFAULT_DB, show_default=True, help="LanceDB URI.")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def refilter(run: str, config_path: str, db: str, verbose: bool) -> None:
    """Re-apply thresholds to a run's stored scores (no model runs); write new verdicts and a funnel."""
    from pairsmith.flows.cli.common import CliError, load_yaml, open_store_or_fail, pick_run
    from pairsmith.flows.cli.common import quiet_prefect, validate_config

    quiet_prefect(verbose)  # before pairsmith.flows.refilter imports prefect, which reads its settings once
    from pairsmith.filters.refilterable import RefilterThresholds
    from pairsmith.flows.refilter import RefilterConfig, check_refilterable
    from pairsmith.storage.store import sql_literal

    thresholds = validate_config(RefilterThresholds, load_yaml(config_path), config_path)
    store = open_store_or_fail(db)
    pick_run(store, run)
    try:  # before Prefect starts: a run with nothing to re-filter is a usage error, not a failed run
        check_refilterable(run, store.read("pairs", where=f"run_id = {sql_literal(run)}", columns=["method"]).to_pylist())
    except ValueError as err:
        raise CliError(str(err)) from None
    config = RefilterConfig(db=store.uri, run=run, thresholds=thresholds)
    from pairsmith.flows.cli.run import execute
    from pairsmith.flows.registry import FLOWS

    execute(FLOWS["refilter"], config, config_path, verbose)
