"""``pairsmith finetune`` (LoRA SFT / GRPO); ``pairsmith evaluate`` is the evaluate flow's generated command
(``flows/cli/main.py``'s ``FLOW_VERBS``)."""

from __future__ import annotations

from typing import Any

import click

from pairsmith.flows.cli.common import DEFAULT_DB, CliError, load_yaml, open_store_or_fail
from pairsmith.flows.cli.common import quiet_prefect, set_option, validate_config


def _check_samples(db: str, where: str, hint: str) -> None:
    """Fail in one line before Prefect or a model starts when no stored sample matches."""
    store = open_store_or_fail(db)
    if "samples" not in store.table_names():
        raise CliError(f"--db {store.uri!r}: no samples yet; run 'pairsmith render' first")
    if store.count("samples", where) == 0:
        raise CliError(f"--db {store.uri!r}: no samples match {where}; {hint}")


@click.command()
@click.option("--config", "config_path", required=True, type=str,
              help="YAML file with the fields of flows/finetune_config.py; 'method: sft' or 'method: grpo'.")
@click.option("--db", default=None, help=f"LanceDB URI (default: the config's, else {DEFAULT_DB}).")
@click.option("--model", "model_id", default=None, help="Base model: hub id or local folder (overrides the config).")
@click.option("--output-dir", default=None, help="Runs folder (default ./runs); the run goes to a sub-folder.")
@click.option("--overwrite", is_flag=True, help="Train again even if this run already finished.")
@click.option("--verbose", is_flag=True, help="Show Prefect's task-run logs and the trainer's progress.")
@click.option("--print-args", is_flag=True, help="Print, as JSON, the trainer arguments that would be passed "
              "(TRL's config per stage, LoRA, reward) and exit: no database, model or GPU is touched.")
def finetune(config_path: str, verbose: bool, print_args: bool, **opts: Any) -> None:
    """Train LoRA adapters on stored samples (SFT or GRPO) and save them with a run card."""
    from pairsmith.flows.finetune_config import FinetuneConfig

    data = load_yaml(config_path)
    for key in ("db", "model_id", "output_dir"):
        set_option(data, key, opts[key])
    set_option(data, "overwrite", opts["overwrite"] or None)  # absent flag: the config decides
    data.setdefault("show_progress", verbose)
    config = validate_config(FinetuneConfig, data, config_path).root
    if print_args:
        import json

        click.echo(json.dumps(trainer_arguments(config), indent=2, default=str))
        return
    quiet_prefect(verbose)  # before anything imports prefect: it reads its settings once
    _check_samples(config.db, config.data.where(training=True), "check data.tasks / splits / methods in the config")
    from pairsmith.flows.cli.run import execute
    from pairsmith.flows.registry import FLOWS

    execute(FLOWS["finetune"], config, config_path, verbose)


def trainer_arguments(config) -> dict[str, Any]:
    """What ``finetune`` would hand the trainers: per stage TRL's config arguments, plus LoRA and
    (GRPO) the reward; built from the config alone (``--print-args``)."""
    work_dir = str(config.run_dir())
    out: dict[str, Any] = {"method": config.method, "model_id": config.model_id, "run_name": config.run_name(),
                           "lora": config.lora.model_dump(mode="json")}
    if config.method == "grpo":
        from pairsmith.models.training.vlm_grpo import grpo_args

        out["reward"] = config.reward.model_dump(mode="json")
        out["online_filter"] = list(config.grpo.filter_range) if config.grpo.filter_range else None
        validation = config.grpo.validation
        out["validation"] = validation.model_dump(mode="json") if validation is not None else None
        out["stages"] = [{"name": s.name, "subsets": s.subsets,
                          "trl_grpo_config": grpo_args(config.grpo, s.steps, config.runtime, work_dir)}
                         for s in config.stages]
    else:
        from pairsmith.models.training.vlm_sft import sft_config_args

        t = config.train
        out["objective"] = {
            "name": t.objective,
            "loss": "l_cap(Z[I(x) - I(x_hat)], answer): the language model fed the difference of the two images' "
                    "visual features (MED Eq. 7)" if t.objective == "feature-difference"
                    else "l_cap(Z[I(x), I(x_hat)], answer): the caption loss on both images as given",
        }
        out["data"] = {"tasks": config.data.tasks, "splits": config.data.splits, "layout": config.data.layout}
        out["learning_rates"] = {"vision_tower": (t.vision_learning_rate or t.learning_rate)
                                 if config.lora.vision_tower else "frozen", "rest": t.learning_rate}
        out["batch_size"] = {"per_device": t.per_device_batch_size, "gradient_accumulation_steps":
                             t.gradient_accumulation_steps, "per_optimizer_step_on_one_process": t.batch_size}
        out["trl_sft_config"] = sft_config_args(t, config.runtime, work_dir)
    return out
