"""Seeing a run without Python: ``pairsmith inspect`` lists dropped rows, ``stats`` every reason and the status."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from PIL import Image

from pairsmith.flows.cli.main import main
from pairsmith.flows.propose_regions import ProposeRegionsConfig, propose_regions
from pairsmith.storage.schemas import PairRow, RegionRow, RunStartRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.write_batch import stage_rows
from tests.models.proposers.test_change_regions import edited, jpeg, photo
from tests.flows.test_propose_regions import _pair


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def proposed(tmp_path_factory) -> tuple[str, str]:
    """Three edited pairs after propose-regions: one local with boxes, one whole-image, one with no change."""
    db = str(tmp_path_factory.mktemp("inspect") / "db.lance")
    local, reframed, other = photo(3), photo(4, size=(400, 300)), photo(8)
    crop = jpeg(reframed.crop((100, 70, 340, 250)).resize((480, 360), Image.BICUBIC))
    PairStore(db).upsert("pairs", [_pair("p-local", local, edited(local)), _pair("p-reframed", reframed, crop),
                                   _pair("p-same", other, jpeg(other, quality=90))])
    return db, propose_regions(ProposeRegionsConfig(db=db)).run_id


def test_inspect_lists_whole_image_and_no_region_pairs_with_their_reasons(proposed, capsys):
    db, run_id = proposed
    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", run_id, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    by_pair = {r["pair_id"]: r for r in rows if r["kind"] == "pair"}
    assert set(by_pair) == {"p-reframed", "p-same"}  # the local pair with a kept box is not dropped
    assert (by_pair["p-reframed"]["stage"], by_pair["p-reframed"]["reason"]) == ("extent", "extent_reframed")
    assert "change_extent_score 0." in by_pair["p-reframed"]["detail"]
    assert (by_pair["p-same"]["stage"], by_pair["p-same"]["reason"]) == ("region_propose", "propose_no_regions")
    # the counts agree with the funnel stats prints
    code, out, _ = run_cli(capsys, "stats", "--db", db, "--run", run_id)
    assert "extent_reframed (1)" in out and "propose_no_regions (1)" in out and "complete" in out

    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", run_id, "--stage", "extent")
    assert code == 0 and "1 dropped rows (stage extent)" in out
    assert "p-reframed" in out and "p-same" not in out and "extent_reframed" in out
    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", run_id, "--reason", "propose_no_regions", "--json")
    assert [json.loads(line)["pair_id"] for line in out.splitlines()] == ["p-same"]


def _pipeline_run(db: str) -> str:
    """A run that owns its rows: dropped pairs with details, a dropped region, five reasons at one stage."""
    run_id = "dig-render-test"
    reasons = ["visibility_occluded", "visibility_too_small", "visibility_offscreen", "visibility_tiny_change",
               "render_error"]
    pairs = [PairRow(pair_id=f"p{i}", run_id=run_id, method="dig-render", width=8, height=8, status="dropped",
                     drop_stage="render" if r == "render_error" else "visibility", drop_reason=r,
                     drop_detail="RuntimeError: Cycles ran out of memory\nat frame 1" if r == "render_error" else None,
                     created_at=utc_now()) for i, r in enumerate(reasons)]
    pairs.append(PairRow(pair_id="p9", run_id=run_id, method="dig-render", width=8, height=8, status="kept",
                         created_at=utc_now()))
    regions = [RegionRow(region_id="r1", pair_id="p9", run_id=run_id, box=[0, 0, 4, 4], proposer="render-gt",
                         status="dropped", reason="visibility_occluded", created_at=utc_now())]
    render, visibility = StageStats("render"), StageStats("visibility")
    for r in reasons:
        render.record(Verdict.drop(r) if r == "render_error" else KEEP)
        if r != "render_error":
            visibility.record(Verdict.drop(r))
    render.record(KEEP)
    visibility.record(KEEP)
    store = PairStore(db)
    store.upsert("pairs", pairs)
    store.upsert("regions", regions)
    store.upsert("stage_stats", stage_rows(run_id, "dig-render", "0000000-0000006", [render, visibility]))
    # a second run whose batches have a gap: interrupted
    store.upsert("stage_stats", stage_rows("other-run", "dig-render", "0000000-0000010", [StageStats("render")])
                 + stage_rows("other-run", "dig-render", "0000020-0000030", [StageStats("render")]))
    # a run stopped (Ctrl-C) after its first stored batch: no hole, but 10 items were asked for
    store.upsert("stage_stats", stage_rows("stopped-run", "dig-render", "0000000-0000004", [StageStats("render")]))
    store.upsert("run_starts", [RunStartRow(run_id="stopped-run", flow="dig-render", items=10, host="h", pid=1,
                                            created_at=utc_now())])
    # a run made by two invocations at once with other batch sizes: overlapping batches, no hole
    store.upsert("stage_stats", [row for name in ("0000000-0000004", "0000000-0000005", "0000004-0000008",
                                                  "0000005-0000010")
                                 for row in stage_rows("overlap-run", "import-folder", name, [StageStats("load")])])
    return run_id


def test_inspect_of_a_pipeline_run_and_stats_details(tmp_path, capsys):
    db = str(tmp_path / "db.lance")
    run_id = _pipeline_run(db)
    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", run_id, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert Counter((r["stage"], r["kind"]) for r in rows) == {("render", "pair"): 1, ("visibility", "pair"): 4,
                                                             ("visibility", "region"): 1}
    error = next(r for r in rows if r["reason"] == "render_error")
    assert error["pair_id"] == "p4" and error["detail"].startswith("RuntimeError: Cycles ran out of memory")
    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", run_id, "--stage", "render")
    assert "RuntimeError: Cycles ran out of memory at frame 1" in out  # one line per row in the table
    assert len(out.splitlines()) == 3  # title, header, the row

    code, out, _ = run_cli(capsys, "stats", "--db", db, "--run", run_id)
    assert "visibility_offscreen" in out and out.count("visibility_") == 3  # the top 3
    assert "incomplete: 1 of 1 batches have items that failed with errors" in out
    code, out, _ = run_cli(capsys, "stats", "--db", db, "--run", run_id, "--all-reasons")
    assert all(f"{r} (1)" in out for r in ("visibility_occluded", "visibility_too_small", "visibility_offscreen",
                                           "visibility_tiny_change"))
    code, out, _ = run_cli(capsys, "stats", "--db", db, "--list")
    listing = {line.split()[0]: line for line in out.splitlines()}
    assert "in 6  kept 1  dropped 5" in listing[run_id] and "incomplete" in listing[run_id]
    assert "incomplete: interrupted" in listing["other-run"]
    assert "complete (4 batches)" in listing["overlap-run"] and "incomplete" not in listing["overlap-run"]
    assert "incomplete: 4 of the 10 items its last start asked for are stored" in listing["stopped-run"]

    # a refilter run that dropped one of this run's kept pairs lists it under its own id
    store = PairStore(db)
    store.update("pairs", [{"pair_id": "p9", "status": "dropped", "drop_stage": "crop_filter",
                            "drop_reason": "crop_too_similar", "drop_detail": "refilter refilter-x"}])
    store.upsert("stage_stats", stage_rows("refilter-x", "refilter", "0000000-0000001", [StageStats("crop_filter")]))
    code, out, _ = run_cli(capsys, "inspect", "--db", db, "--run", "refilter-x", "--json")
    assert [(r["pair_id"], r["reason"]) for r in map(json.loads, out.splitlines())] == [("p9", "crop_too_similar")]

    code, _, err = run_cli(capsys, "inspect", "--db", db, "--run", "nope")
    assert code == 2 and "--run 'nope': no such run" in err


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"pairsmith {version('pairsmith')}"


def _flow_run_names(flow_name: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from pairsmith.flows.engine.prefect_compat import install

    install()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), limit=50)
    return [r.name for r in runs]


def test_the_prefect_flow_run_is_named_by_the_pairsmith_run_id(proposed, tmp_path):
    from pairsmith.flows.engine.run_name import run_id_of
    from pairsmith.flows.maintenance import MaintenanceConfig, maintenance
    from pairsmith.tasks.imports.med_bench import MedBenchConfig

    _, run_id = proposed
    assert run_id in _flow_run_names("propose-regions")
    # another flow: maintenance has no run id of its own and gets flow name + time
    maintenance(MaintenanceConfig(db=proposed[0]))
    assert any(re.fullmatch(r"maintenance-\d{8}T\d{6}Z", n) for n in _flow_run_names("maintenance"))
    # an import is named by its importer's run id
    (tmp_path / "MED.json").write_text("[]")
    config = MedBenchConfig(db=str(tmp_path / "db"), json_path=str(tmp_path / "MED.json"))
    assert run_id_of(config).startswith("import-med-bench-")


@pytest.fixture
def bars():
    from pairsmith.flows.engine.progress import show_in_terminal

    was = show_in_terminal(True)  # what `pairsmith` does when stderr is a terminal
    yield
    show_in_terminal(was)


def test_export_and_maintain_draw_progress_bars(proposed, tmp_path, capsys, bars):
    db, _ = proposed
    code, _, err = run_cli(capsys, "maintain", "--db", db)
    assert code == 0 and "maintaining tables" in err and "4/4" in err  # pairs, regions, stage_stats, run_starts
    # the propose-regions run made no samples: export refuses in one line before any bar
    code, _, err = run_cli(capsys, "export", "--format", "llava", "--db", db, "--out", str(tmp_path / "x"))
    assert code == 2 and "exporting" not in err
