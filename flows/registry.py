"""Every flow, declared once: ``FLOWS`` maps a flow's name to its config class and flow function.

What reads it:

* the CLI (``flows/cli/run.py``): ``pairsmith run FLOW`` has one sub-command per flow, its options
  generated from the config class (``flows/cli/options.py``), and every verb that runs a flow
  (``render``, ``import``, ``evaluate``, ``refilter``, ``finetune``, ``maintain``) goes through the one
  command path there, which runs, reports and exits the same way for all;
* the tests: every flow has a config class, an example config in ``configs/`` that validates, a
  deployment in ``prefect.yaml`` whose entrypoint is the flow (or a reason why it has none), and
  generated options (``tests/flows/test_flow_registry.py``).

Entries name their config class and flow as ``"module:attribute"`` strings, imported on first use,
so ``pairsmith --help`` imports neither Prefect nor LanceDB. A flow's config lives in
``flows/<flow>_config.py`` beside the flow (the imports' configs are per importer, in
``tasks/imports/``, and the importer registry ``tasks.imports.IMPORTERS`` picks one). Adding a flow is
its config, its flow and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

PACKAGE = "pairsmith.flows"


def load(path: str) -> Any:
    """The object a ``"module:attribute"`` path names (imports the module)."""
    module, attribute = path.split(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class FlowSpec:
    """One flow: where its config class and flow function are, and how the CLI and deployments use it.

    ``config``/``flow``: ``"module:attribute"`` under ``pairsmith.flows`` (the flow module is also
    the ``prefect.yaml`` entrypoint ``flows/<module>.py:<function>``). ``help``: one line for the
    command listings. ``example``: the example config under ``configs/`` (``None`` only for a flow
    whose configs are per importer, checked per importer instead). ``run_command``: listed under
    ``pairsmith run`` (flows that need more than a config, such as a run id to refilter, have a verb
    of their own). ``deployment``: ``None`` when ``prefect.yaml`` deploys it, else why not.
    ``report``: ``"module:function"`` printing a summary for the console (default: the generic one).
    ``exit_if_nothing_kept``: the command exits 1 when the run's funnel keeps nothing;
    ``exit_on_item_errors``: it exits 3 when items of the run failed with errors (README "Exit
    status"). ``failed``: the console line when the flow run fails, formatted with ``run_id`` and
    ``config``."""

    name: str
    config: str
    flow: str
    help: str
    example: str | None
    run_command: bool = True
    deployment: str | None = None
    report: str | None = None
    exit_if_nothing_kept: bool = False
    exit_on_item_errors: bool = True
    failed: str = "run {run_id} failed"

    def config_class(self) -> type:
        return load(f"{PACKAGE}.{self.config}")

    def flow_function(self):
        return load(f"{PACKAGE}.{self.flow}")

    @property
    def entrypoint(self) -> str:
        """The flow as ``prefect.yaml`` names it: ``flows/<module>.py:<function>``."""
        module, function = self.flow.split(":")
        return f"flows/{module.replace('.', '/')}.py:{function}"


FLOWS: dict[str, FlowSpec] = {spec.name: spec for spec in (
    FlowSpec("dig-render", "dig_render_config:DigRenderConfig", "dig_render:dig_render",
             "Blender scene pairs with exact difference boxes (pairsmith render)", "configs/dig_render.yaml",
             report="cli.reports:render_report", exit_if_nothing_kept=True),
    FlowSpec("med-edit", "med_edit_config:MedEditConfig", "med_edit:med_edit",
             "MED micro-edits of photos with Gemini, captions, QA and MCQ samples", "configs/med_edit.yaml"),
    FlowSpec("propose-regions", "propose_regions_config:ProposeRegionsConfig", "propose_regions:propose_regions",
             "boxes where stored photo pairs differ (diff-map proposer)", "configs/propose_regions.yaml"),
    FlowSpec("imgdiff-replace", "imgdiff_config:ImgDiffReplaceConfig", "imgdiff_replace:imgdiff_replace",
             "Img-Diff object replacement pairs (SDXL + Prompt2Prompt)", "configs/imgdiff.yaml"),
    FlowSpec("imgdiff-remove", "imgdiff_config:ImgDiffRemoveConfig", "imgdiff_remove:imgdiff_remove",
             "Img-Diff object removal pairs (inpainting)", "configs/imgdiff_remove.yaml"),
    FlowSpec("import", "import_dataset:ImportConfig", "import_dataset:run_import",
             "published image-difference sets (pairsmith import NAME)", None, run_command=False,
             deployment="each importer has its own config; run 'pairsmith import NAME'",
             report="cli.reports:import_report", exit_if_nothing_kept=True, exit_on_item_errors=False),
    FlowSpec("refilter", "refilter_config:RefilterConfig", "refilter:refilter",
             "re-apply Img-Diff thresholds to a run's stored scores (pairsmith refilter)", "configs/refilter.yaml",
             run_command=False, deployment="it re-judges one named run: run 'pairsmith refilter --run RUN'",
             report="cli.reports:refilter_report", exit_on_item_errors=False, failed="refilter of run {config.run} failed"),
    FlowSpec("evaluate", "evaluate_config:EvaluateConfig", "evaluate:evaluate",
             "score a VLM on held-out samples (pairsmith evaluate)", "configs/evaluate.yaml", run_command=False,
             report="cli.reports:evaluate_report", failed="evaluation failed"),
    FlowSpec("finetune", "finetune_config:FinetuneConfig", "finetune:finetune",
             "LoRA SFT or GRPO on stored samples (pairsmith finetune)", "configs/sft.yaml", run_command=False,
             report="cli.reports:finetune_report", exit_on_item_errors=False, failed="{config.method} run {run_id} failed"),
    FlowSpec("maintenance", "maintenance_config:MaintenanceConfig", "maintenance:maintenance",
             "LanceDB compaction and cleanup (pairsmith maintain)", "configs/maintenance.yaml", run_command=False,
             report="cli.reports:maintenance_report", exit_on_item_errors=False, failed="maintenance of {config.db} failed"),
    FlowSpec("recaption", "recaption_config:RecaptionConfig", "recaption:recaption",
             "caption kept pairs of earlier runs again with another VLM", "configs/recaption.yaml",
             deployment="it re-captions named runs: run 'pairsmith run recaption --runs RUN'"),
)}


def flow_spec(name: str) -> FlowSpec:
    """The registered flow ``name``; ValueError naming the choices otherwise."""
    if name not in FLOWS:
        raise ValueError(f"unknown flow {name!r}; flows are {', '.join(FLOWS)}")
    return FLOWS[name]
