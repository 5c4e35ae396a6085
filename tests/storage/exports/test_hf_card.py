"""The hf export: a re-export loads its own rows through `datasets`' cache, and its card says what it holds."""

from __future__ import annotations

import re

import pytest

from pairsmith.flows.cli.main import main
from pairsmith.storage.store import PairStore
from tests.synthetic_db import SyntheticRun, build
from tests.flows.cli.test_run_inspect import bars  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> str:
    """Two render-like runs: 'small' with 4 pairs, 'large' with 7 (different samples, different counts)."""
    db = str(tmp_path_factory.mktemp("hfcard") / "db.lance")
    store = PairStore(db)
    build(store, SyntheticRun(run_id="small", unique_bytes=10), 4, batch_pairs=4)
    build(store, SyntheticRun(run_id="large", unique_bytes=10), 7, batch_pairs=7)
    return db


def _export(db: str, out, *args: str) -> None:
    assert main(["export", "--format", "hf", "--db", db, "--out", str(out), *args]) == 0


def _ids(folder, cache) -> list[str]:
    from datasets import load_dataset

    return sorted(load_dataset(str(folder), cache_dir=str(cache))["train"]["id"])


def _expected(db: str, run: str) -> list[str]:
    store = PairStore(db)
    kept = set(store.read("pairs", where="status = 'kept'", columns=["pair_id"]).column("pair_id").to_pylist())
    rows = store.read("samples", where=f"run_id = '{run}' AND split = 'train'", columns=["sample_id", "pair_id"]).to_pylist()
    return sorted(r["sample_id"] for r in rows if r["pair_id"] in kept)


def test_a_reexport_with_overwrite_loads_the_new_rows_not_the_cached_ones(two_runs, tmp_path, capsys):
    out, cache = tmp_path / "hf", tmp_path / "cache"
    _export(two_runs, out, "--run", "small")
    assert _ids(out, cache) == _expected(two_runs, "small")
    _export(two_runs, out, "--run", "large", "--overwrite")
    assert _ids(out, cache) == _expected(two_runs, "large") != _expected(two_runs, "small")
    _export(two_runs, out, "--run", "small", "--overwrite")  # back to the first rows: their own names again
    assert _ids(out, cache) == _expected(two_runs, "small")


def test_exports_in_folders_of_the_same_name_load_their_own_rows(two_runs, tmp_path, capsys):
    cache = tmp_path / "cache"
    first, second = tmp_path / "a" / "export", tmp_path / "b" / "export"
    _export(two_runs, first, "--run", "large")
    _export(two_runs, second, "--run", "small")
    assert _ids(first, cache) == _expected(two_runs, "large")
    assert _ids(second, cache) == _expected(two_runs, "small")
    names = {p.name for p in (first / "data").glob("*.parquet")} | {p.name for p in (second / "data").glob("*.parquet")}
    assert len(names) == 2  # the names differ with the rows


def _section(card: str, title: str) -> str:
    return card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_card_describes_fields_sources_funnels_and_config(two_runs, tmp_path, capsys):
    import pyarrow.parquet as pq

    out = tmp_path / "hf"
    _export(two_runs, out, "--layout", "side-by-side", "--box-format", "norm1000")
    card = (out / "README.md").read_text()
    key = re.search(r"config_name: export-([0-9a-f]{12})", card).group(1)
    assert all(p.name.endswith(f"-{key}.parquet") for p in (out / "data").glob("*.parquet"))
    columns = pq.read_schema(next((out / "data").glob("*.parquet"))).names
    fields = _section(card, "Fields")
    assert all(f"| `{c}` |" in fields for c in columns)  # every column, with its meaning
    assert "[x1, y1, x2, y2]" in fields
    assert "`norm1000`: integers 0-1000" in card and "whole picture" in card and "Layout: `side-by-side`" in card
    sources = _section(card, "Sources and licences")
    assert "| dig-render |" in sources and "no third-party rights" in sources
    funnels = _section(card, "Runs and their funnels")
    assert "### large (" in funnels and "### small (" in funnels and "stage " in funnels and "visibility" in funnels
    config = _section(card, "Export config")
    assert 'box_format: "norm1000"' in config and 'layout: "side-by-side"' in config and "table_versions:" in config
    contents = _section(card, "Contents")
    counted = sum(int(line.rsplit("|", 2)[1]) for line in contents.splitlines() if line.startswith("| train"))
    assert counted == len(_expected(two_runs, "small")) + len(_expected(two_runs, "large"))


def test_export_draws_a_progress_bar_over_the_samples(two_runs, tmp_path, capsys, bars):
    _export(two_runs, tmp_path / "x", "--run", "large")
    err = capsys.readouterr().err
    n = len(_expected(two_runs, "large"))
    assert "exporting hf" in err and f"{n}/{n}" in err


def test_the_card_carries_the_dataset_statistics_and_the_preset_of_each_run(tmp_path):
    """The figures of `pairsmith stats --dataset` over the exported runs only, and each run's preset:
    the configs/papers/ file whose content gives the run's id (here DiG's corpus), else "custom"."""
    from pairsmith.flows.papers import load_parameters, load_preset
    from pairsmith.storage.dataset_stats import dataset_stats, format_dataset_stats

    corpus_run = load_preset(load_parameters().papers["dig"].presets["corpus"]).run_id()
    db = str(tmp_path / "db.lance")
    store = PairStore(db)
    build(store, SyntheticRun(run_id=corpus_run, unique_bytes=10), 6, batch_pairs=6)
    build(store, SyntheticRun(run_id="other", unique_bytes=10), 9, batch_pairs=9)
    out = tmp_path / "hf"
    _export(db, out, "--run", corpus_run)
    card = (out / "README.md").read_text()
    stats = _section(card, "Statistics")
    expected = format_dataset_stats(dataset_stats(PairStore(db), {corpus_run}))
    assert f"```\n{expected}\n```" in stats
    # only the exported run: its 6 pairs, not the other run's 9
    assert "dataset dig-render: 6 pairs kept, 0 dropped (1 run)" in stats
    assert "pairs by subset: double 2, mixed 2, single 2" in stats and "pairs by differences per pair (K): 1 2, 2 2, 3 2" in stats
    assert "caption length (words): mean" in stats and "most frequent words: " in stats and "funnel" in stats
    funnels = _section(card, "Runs and their funnels")
    assert "Preset: dig/corpus (configs/papers/dig/corpus.yaml)" in funnels

    _export(db, tmp_path / "hf2", "--run", "other")
    card = (tmp_path / "hf2" / "README.md").read_text()
    assert "Preset: custom" in card and "dataset dig-render: 9 pairs kept, 0 dropped (1 run)" in card
    assert "Preset: dig/corpus" not in card
