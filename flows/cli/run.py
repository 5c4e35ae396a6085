"""``pairsmith run FLOW``: every registered flow from its config; and the one path every verb runs a flow by.

``run`` has one sub-command per flow of ``pairsmith.flows.registry.FLOWS`` (``run_command``), built
on first use: its options are generated from the flow's config (``pairsmith.flows.cli.options``),
``--config FILE.yaml`` gives any field (options override it). ``pairsmith render`` is
``pairsmith run dig-render`` under another name, with the same options.

``execute`` is the single command path: it checks the flow's inputs (a config's ``check_inputs()``:
a problem is one line and exit 2, and no database folder is created), runs the flow (a failed run is
one line and exit 1; committed batches stay and the same command resumes), prints the flow's report
(``FlowSpec.report``) and exits by the run's own funnel: 75 when it stopped early on purpose, 3 when
items failed with errors, 1 when a flow that must keep something kept nothing.
"""

from __future__ import annotations

from typing import Any

import click

from pairsmith.flows.cli.common import EXIT_FAILED, CliError

# Written out so ``--help`` imports no Pillow; tests/storage/test_image_decode.py checks it is image_decode.limits_help()
IMAGE_LIMITS_HELP = ("image_limits: max_pixels 40,000,000 (40 MP), max_bytes 67,108,864 (64 MiB), min_side 32 px; "
                     "transparent pixels are drawn over white")
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: the run stopped early on purpose; the same command continues it


def _flows():
    from pairsmith.flows.registry import FLOWS

    return FLOWS


def execute(spec, config, source: str, verbose: bool = False, report=None) -> None:
    """Run ``spec``'s flow with ``config`` (validated), print its report and exit by its outcome (module doc).

    ``report``: what to print instead of the flow's own report (``pairsmith bench``: an accuracy table)."""
    from pairsmith.flows.cli.common import describe_failure, open_store_or_fail, quiet_prefect
    from pairsmith.flows.engine.run_name import run_id_of
    from pairsmith.flows.registry import load

    quiet_prefect(verbose)  # before the flow imports more of prefect: it reads its settings once
    if hasattr(config, "check_inputs"):  # input no item could survive: one line, before anything is created
        try:
            config.check_inputs()
        except ValueError as err:
            raise CliError(str(err)) from None
    store = open_store_or_fail(config.db) if hasattr(config, "db") else None  # a bad bucket: before any work
    try:
        summary = spec.flow_function()(config)
    except CliError:
        raise
    except Exception as err:  # the flow run failed; committed batches stay and the same command resumes
        from pairsmith.storage import interrupts

        if interrupts.requested():  # Ctrl-C / SIGTERM surfaced wrapped in a library's error: a stop, not a failure
            raise KeyboardInterrupt from None
        try:
            run_id = run_id_of(config) or spec.name
        except Exception:  # noqa: BLE001  (a run id is never worth hiding the failure)
            run_id = spec.name
        click.echo(f"pairsmith: error: {spec.failed.format(run_id=run_id, config=config)}: {describe_failure(err)}",
                   err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    if report is None:
        report = load(f"pairsmith.flows.{spec.report or 'cli.reports:generic_report'}")
    report(summary, config, store, spec.name, source)
    exit_by_outcome(spec, summary, store)


def exit_by_outcome(spec, summary, store) -> None:
    """The exit status of a finished flow run (README "Exit status"), with its one-line warning."""
    run_id = getattr(summary, "run_id", None) or getattr(summary, "eval_id", None)
    stopped = getattr(summary, "stopped_early", None)
    if stopped:
        click.echo(f"pairsmith: warning: run {run_id} stopped early: {stopped}", err=True)
        raise click.exceptions.Exit(EXIT_INCOMPLETE)
    if store is None or run_id is None:
        return
    if spec.exit_on_item_errors:
        from pairsmith.flows.engine.run_outcome import exit_on_item_errors

        exit_on_item_errors(store, run_id)
    if spec.exit_if_nothing_kept:
        from pairsmith.flows.engine.funnel import run_funnel

        funnel = run_funnel(store, run_id)
        if not funnel or funnel[-1].n_kept == 0:  # the exit status follows the run's own funnel
            click.echo(f"pairsmith: error: run {run_id} kept no pair (see the reasons above)", err=True)
            raise click.exceptions.Exit(EXIT_FAILED)


def run_config(spec, data: dict[str, Any], source: str, verbose: bool, config_class: type | None = None) -> None:
    """Validate ``data`` (a config file with the options laid over it) as the flow's config and ``execute`` it."""
    from pairsmith.flows.cli.common import validate_config
    from pairsmith.storage.db_uri import check_db_uri

    config_class = config_class or spec.config_class()
    fields = getattr(config_class, "model_fields", {})
    if "show_progress" in fields:
        data.setdefault("show_progress", True)
    try:  # the database URI's and the config's files' own one-line messages, before the rest is validated
        if "db" in data:
            check_db_uri(str(data["db"]))
        if hasattr(config_class, "check_data"):
            config_class.check_data(data)
    except ValueError as err:
        raise CliError(str(err)) from None
    config = validate_config(config_class, data, source)
    from pydantic import RootModel

    execute(spec, config.root if isinstance(config, RootModel) else config, source, verbose)  # finetune: sft | grpo


def flow_command(name: str, command_name: str | None = None, short_help: str | None = None,
                 config_class: type | None = None, doc: str | None = None) -> click.Command:
    """The command of registered flow ``name``: its config's options, ``--config`` and ``--verbose``.

    ``config_class``: another config class of the same flow (an importer's); ``doc``: the help text
    (default: the flow function's description)."""
    from pairsmith.flows.cli.common import load_yaml
    from pairsmith.flows.cli.options import apply_options, config_options, missing_options

    spec = _flows()[name]
    config_class = config_class or spec.config_class()
    options = config_options(config_class)
    params: list[click.Parameter] = [o.option for o in options] + [
        click.Option(["--config", "config_path"], help=f"YAML file with {config_class.__name__} fields "
                     f"(e.g. {IMAGE_LIMITS_HELP}); options override it." if "image_limits" in config_class.model_fields
                     else f"YAML file with {config_class.__name__} fields; options override it."),
        click.Option(["--verbose"], is_flag=True, help="Show Prefect's task-run logs."),
    ]

    def callback(config_path: str | None, verbose: bool, **values: Any) -> None:
        data = apply_options(load_yaml(config_path), options, values)
        missing = missing_options(config_class, data, options)
        if missing:
            raise CliError(f"missing option {missing[0]}")
        run_config(spec, data, config_path or "options", verbose, config_class)

    if doc is None:
        doc = getattr(spec.flow_function(), "description", None) or spec.help
    return click.Command(command_name or name, params=params, callback=callback, short_help=short_help or spec.help,
                         help=doc)


class FlowGroup(click.Group):
    """``pairsmith run``: one sub-command per runnable registered flow, built on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, s in _flows().items() if s.run_command)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        spec = _flows().get(name)
        return flow_command(name) if spec is not None and spec.run_command else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Flows"):  # from the registry: listing imports no flow
            formatter.write_dl([(n, _flows()[n].help) for n in self.list_commands(ctx)])

    def resolve_command(self, ctx: click.Context, args: list[str]):
        from pairsmith.flows.cli.common import quiet_prefect

        # A flow's config module imports Prefect, which reads its console settings once, on import.
        quiet_prefect("--verbose" in args)
        return super().resolve_command(ctx, args)


@click.group("run", cls=FlowGroup)
def run() -> None:
    """Run a pipeline flow with its config (options generated from it; --config FILE.yaml for any field)
    and print its drop-off funnel. `pairsmith run FLOW --help` lists the flow's options.

    \b
    med-edit's source photos: image_limits: max_pixels 40,000,000 (40 MP), max_bytes 67,108,864 (64 MiB),
    min_side 32 px; transparent pixels are drawn over white; image_limits.frame picks a frame of
    animated or multi-page images (else source_multiframe)."""
