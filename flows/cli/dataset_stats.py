"""``pairsmith stats --dataset [--plot FILE.png]``: the figures the papers report about their data, per dataset.

The figures are computed in ``pairsmith.storage.dataset_stats`` (see there for what each one is and
which paper reports it); this prints them and, with ``--plot``, draws them into a PNG.
"""

from __future__ import annotations

from pathlib import Path

import click

from pairsmith.flows.cli.common import CliError


def print_dataset_stats(store, plot: str | None, per_dataset: bool) -> None:
    from pairsmith.storage.dataset_stats import dataset_stats, format_dataset_stats, plot_dataset_stats

    if plot is not None and not per_dataset:
        raise CliError("--plot: draws the --dataset figures; add --dataset")
    if plot is not None and not Path(plot).suffix.lower() == ".png":
        raise CliError(f"--plot: {plot}: the plot is a PNG, name it *.png")
    if plot is not None and not Path(plot).resolve().parent.is_dir():
        raise CliError(f"--plot: {plot}: the folder {Path(plot).resolve().parent} does not exist")
    datasets = dataset_stats(store)
    click.echo(f"database {store.uri}")
    click.echo(format_dataset_stats(datasets))
    if plot is not None:
        plot_dataset_stats(datasets, plot)
        click.echo(f"plot: {plot}")
