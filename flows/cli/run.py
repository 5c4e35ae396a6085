"""``pairsmith run FLOW [--config FILE] [--pairs N] [--per-type N]``: any pipeline flow from a YAML config.

Flows are looked up by name in ``FLOWS`` (module paths, imported on use so ``--help`` stays fast).
The config file holds the flow's pydantic config (without one, the config's defaults); ``--db``
and ``--pairs`` override its database and its number of pairs, ``--per-type`` med-edit's benchmark
items per difference type. A config with a ``check_inputs()``
method (``med-edit``: its captions file, images folder and Gemini key) is checked before the flow
starts: a problem is one line and exit 2, and no database folder is created.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# flow name -> (config class, flow function), as "module:attribute"
FLOWS: dict[str, tuple[str, str]] = {
    "dig-render": ("pairsmith.flows.dig_render_config:DigRenderConfig", "pairsmith.flows.dig_render:dig_render"),
    "med-edit": ("pairsmith.flows.med_edit_config:MedEditConfig", "pairsmith.flows.med_edit:med_edit"),
    "propose-regions": ("pairsmith.flows.propose_regions:ProposeRegionsConfig", "pairsmith.flows.propose_regions:propose_regions"),
    "imgdiff-replace": ("pairsmith.flows.imgdiff_config:ImgDiffReplaceConfig", "pairsmith.flows.imgdiff_replace:imgdiff_replace"),
    "imgdiff-remove": ("pairsmith.flows.imgdiff_config:ImgDiffRemoveConfig", "pairsmith.flows.imgdiff_remove:imgdiff_remove"),
}
# Written out so ``--help`` imports no Pillow; tests/test_image_decoding.py checks it is image_decode.limits_help()
IMAGE_LIMITS_HELP = ("image_limits: max_pixels 40,000,000 (40 MP), max_bytes 67,108,864 (64 MiB), min_side 32 px; "
                     "transparent pixels are drawn over white")
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: the run stopped early on purpose; the same command continues it


def _load(path: str) -> Any:
    module, attribute = path.split(":")
    return getattr(importlib.import_module(module), attribute)


@click.command("run")
@click.argument("flow_name", metavar="FLOW", type=click.Choice(sorted(FLOWS)))
@click.option("--config", "config_path", default=None, help="YAML file with the flow's config (default: its "
              f"defaults). med-edit's source photos: {IMAGE_LIMITS_HELP}; image_limits.frame picks a frame of "
              "animated or multi-page images (else source_multiframe).")
@click.option("--db", default=None, help="LanceDB URI (overrides the config's).")
@click.option("--pairs", type=click.IntRange(min=1), default=None, help="Number of pairs (overrides the config's).")
@click.option("--per-type", type=click.IntRange(min=0), default=None,
              help="med-edit: benchmark items per difference type (overrides bench.per_type; MED §3.3: 15).")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs.")
def run(flow_name: str, config_path: str | None, db: str | None, pairs: int | None, per_type: int | None,
        verbose: bool) -> None:
    """Run a pipeline flow with its config file and print its drop-off funnel."""
    from pairsmith.flows.cli.common import CliError, describe_failure, load_yaml, open_store_or_fail, quiet_prefect
    from pairsmith.flows.cli.common import validate_config

    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    from pairsmith.flows.engine.funnel import format_funnel, run_funnel
    from pairsmith.flows.engine.run_outcome import exit_on_item_errors

    config_path_cls, flow_path = FLOWS[flow_name]
    data = load_yaml(config_path)
    if db:
        data["db"] = db
    if pairs is not None:
        data["pairs"] = pairs
    if per_type is not None:
        if flow_name != "med-edit":
            raise CliError(f"--per-type: only med-edit builds a benchmark, not {flow_name}")
        data["bench"] = {**(data.get("bench") or {}), "per_type": per_type}
    config_cls = _load(config_path_cls)
    if "show_progress" in config_cls.model_fields:
        data.setdefault("show_progress", True)
    config = validate_config(config_cls, data, config_path or f"{flow_name} defaults")
    if hasattr(config, "check_inputs"):  # input no item could survive: one line, before anything is created
        try:
            config.check_inputs()
        except ValueError as err:
            raise CliError(str(err)) from None
    store = open_store_or_fail(config.db)
    try:
        summary = _load(flow_path)(config)
    except CliError:
        raise
    except Exception as err:  # the flow run failed; committed batches stay and the same command resumes
        click.echo(f"pairsmith: error: run {config.run_id()} failed: {describe_failure(err)}", err=True)
        raise click.exceptions.Exit(1) from None
    funnel = run_funnel(store, summary.run_id)
    counts = {k: v for k, v in summary.model_dump().items() if isinstance(v, int) and not isinstance(v, bool)}
    click.echo(f"run {summary.run_id} ({flow_name}) in {config.db}: "
               + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()))
    click.echo(format_funnel(funnel))
    stopped = getattr(summary, "stopped_early", None)
    if stopped:
        click.echo(f"pairsmith: warning: run {summary.run_id} stopped early: {stopped}", err=True)
        raise click.exceptions.Exit(EXIT_INCOMPLETE)
    exit_on_item_errors(store, summary.run_id)
