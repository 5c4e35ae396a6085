"""Storage that scales: write, export, contact-sheet and maintain costs against database size.

Databases are built through the product's own store (``PairStore.upsert``, 500 pairs a commit) from
``tests/synthetic_db.py``: 320x240 render-like PNG pairs with index maps, 1-3 regions, 2-3 samples
per kept pair and six stage-stats rows per batch. Prints, per size:

* export (``pairsmith export --format sharegpt``) and contact sheet (``pairsmith contact-sheet --n 12``)
  seconds and peak RSS, each run as its own process, as a user runs them;
* ``maintain`` after the build (every fragment small) and again after a small write (30 pairs in
  three 10-pair batches): seconds, peak RSS, fragments rewritten, disk before / after, and disk after
  against the same rows written in one commit (``keep-days 0``, no tags).

``--import-gib G`` (default 2) writes G GiB of generated JPEG photos and a ``pairs.jsonl`` for
``pairsmith import folder`` and prints the import's seconds and peak RSS (imports stream their
entries in batches, so the peak does not grow with the photos' total size).

and once, at 10k pairs in 10-pair batches into the 4 tables, a run's writes through the product's
writer (``write_batch``) against plain LanceDB ``table.add`` of the same rows (both convert the rows
to Arrow), the minimum of ``--rounds`` interleaved rounds, with the product's per-batch time at the
start and end of the run (median of the first and last 50 batches, each at its fastest over the
rounds), and once more for the product's writer alone. The last line is
``write_ratio_vs_lance_add = X``.

    python benchmarks/storage_scale.py                    # 10k and 50k pairs (50k needs ~25 GB free)
    python benchmarks/storage_scale.py --sizes 1000 --write-pairs 2000 --rounds 1   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.synthetic_db

from tests.synthetic_db import SyntheticRun, build  # noqa: E402

TABLES = ("pairs", "regions", "samples", "stage_stats")


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measured(args: list[str]) -> tuple[float, float, str]:
    """Run ``args`` under /usr/bin/time -v so each child's own peak RSS is read exactly."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args[:6])} ... failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    rss_kb = next(int(line.split()[-1]) for line in proc.stderr.splitlines() if "Maximum resident set size" in line)
    return seconds, rss_kb / 1024, proc.stdout


COMMAND = """
import json, sys, time
start = time.perf_counter()
import lance, PIL.Image, pairsmith.storage.store, pairsmith.storage.exports.base, pairsmith.flows.cli.main as cli
imported, cpu = time.perf_counter(), time.process_time()
code = cli.main(sys.argv[1:])
print(json.dumps({"code": code, "imports": imported - start, "seconds": time.perf_counter() - imported,
                  "cpu": time.process_time() - cpu}))
"""


def command(args: list[str]) -> str:
    """Run ``pairsmith ARGS`` in a fresh process; one line: the command's seconds and CPU seconds (all
    threads: a fairer measure than wall time on a busy machine), the process's wall seconds (Python
    start-up and imports included) and its peak RSS."""
    wall, rss, out = measured([sys.executable, "-c", COMMAND, *args])
    lines = out.strip().splitlines()
    timing = json.loads(lines[-1])
    if timing["code"] != 0:
        raise RuntimeError(f"pairsmith {' '.join(args)} exited {timing['code']}")
    return (f"{timing['seconds']:.1f} s, {timing['cpu']:.1f} s CPU ({wall:.1f} s for the process, {timing['imports']:.1f} s of it imports), "
            f"peak RSS {rss:.0f} MB ({lines[0][:70]})")

MAINTAIN = """
import json, sys
from pairsmith.flows.maintenance import MaintenanceConfig, maintain_table
from pairsmith.storage.store import PairStore
store = PairStore(sys.argv[1])
config = MaintenanceConfig(db=sys.argv[1], keep_versions_days=0)
print(json.dumps([maintain_table(store, t, config).model_dump() for t in store.table_names()]))
"""


def maintain(db: Path) -> dict:
    """``maintain_table`` on every table (the maintenance flow's work, without Prefect's start-up)."""
    seconds, rss, out = measured([sys.executable, "-c", MAINTAIN, str(db)])
    reports = json.loads(out)
    pairs = next(r for r in reports if r["table"] == "pairs")
    return {"seconds": seconds, "work": sum(r["seconds"] for r in reports), "pairs_seconds": pairs["seconds"],
            "rss_mb": rss, "disk_before": sum(r["bytes_on_disk_before"] for r in reports),
            "disk_after": sum(r["bytes_on_disk_after"] for r in reports),
            "rewritten": sum(r["fragments_rewritten"] for r in reports), "pairs_rewritten": pairs["fragments_rewritten"],
            "pairs_fragments": pairs["fragments_after"],
            "bytes_rewritten": sum(r["bytes_rewritten"] for r in reports)}


def one_commit_bytes(workdir: Path, run: SyntheticRun, n_pairs: int) -> int:
    """Disk size of the same rows written with plain LanceDB, one ``add`` (one commit) per table."""
    import lancedb
    import pyarrow as pa

    from pairsmith.storage.schemas import TABLES as MODELS
    from pairsmith.tasks.write_batch import stage_rows
    from tests.synthetic_db import METHOD

    db_path = workdir / "one-commit.lance"
    db = lancedb.connect(str(db_path))
    for name in TABLES:
        schema = MODELS[name].to_arrow_schema()

        def batches(name=name, schema=schema):
            for batch, tables, stages in run.batches(n_pairs, 500):
                rows = stage_rows(run.run_id, METHOD, batch, stages) if name == "stage_stats" else tables[name]
                yield from pa.Table.from_pylist([r.model_dump() for r in rows], schema=schema).to_batches()

        db.create_table(name, data=pa.RecordBatchReader.from_batches(schema, batches()), schema=schema)
    size = disk_bytes(db_path)
    shutil.rmtree(db_path)
    return size


def write_round(workdir: Path, batches: list, round_no: int,
                plain_add: bool = True) -> tuple[list[float], list[float]]:
    """Seconds per batch of one run's writes into two fresh databases, the product's writer and plain
    ``add``, alternating batch by batch so that load from other processes hits both alike
    (``plain_add=False``: the product's writer alone, as in a real run's process)."""
    import lancedb
    import pyarrow as pa

    from pairsmith.storage.schemas import TABLES as MODELS
    from pairsmith.tasks.write_batch import stage_rows, write_batch
    from tests.synthetic_db import METHOD

    # fresh names each round: the product's writer keeps one store per database path and process
    product_db, add_db = workdir / f"writes-product-{round_no}.lance", workdir / f"writes-add-{round_no}.lance"
    for path in (product_db, add_db):
        shutil.rmtree(path, ignore_errors=True)
    os.sync()  # the last round's files are written back now, not during this round's first batches
    db = lancedb.connect(str(add_db))
    tables = {n: db.create_table(n, schema=MODELS[n].to_arrow_schema()) for n in TABLES} if plain_add else {}
    product, plain = [], []
    for name, rows, stages in batches:
        start = time.perf_counter()
        write_batch.fn(str(product_db), "bench-run", METHOD, name, rows, stages)
        product.append(time.perf_counter() - start)
        if not plain_add:
            continue
        start = time.perf_counter()
        for table, models in [*rows.items(), ("stage_stats", stage_rows("bench-run", METHOD, name, stages))]:
            schema = MODELS[table].to_arrow_schema()
            tables[table].add(pa.Table.from_pylist([r.model_dump() for r in models], schema=schema))
        plain.append(time.perf_counter() - start)
    for path in (product_db, add_db):
        shutil.rmtree(path, ignore_errors=True)
    return product, plain


def write_benchmark(workdir: Path, n_pairs: int, rounds: int) -> float:
    run = SyntheticRun(run_id="bench-run")
    batches = list(run.batches(n_pairs, 10))
    product_rounds, add_rounds = [], []
    for r in range(rounds):
        product, plain = write_round(workdir, batches, r)
        product_rounds.append(product)
        add_rounds.append(plain)
        print(f"  round {r + 1}: writes {sum(product):.1f} s, plain add {sum(plain):.1f} s", flush=True)
    best = min(product_rounds, key=sum)
    add_best = min(add_rounds, key=sum)
    k = min(50, len(best) // 4)

    def ends(rounds: list[list[float]]) -> tuple[float, float]:
        """Median of the first and last ``k`` batches, each batch at its fastest over the rounds (a
        burst of load from another process slows some batches of one round, not the same in all)."""
        times = [min(per_round) for per_round in zip(*rounds)]
        return statistics.median(times[:k]) * 1e3, statistics.median(times[-k:]) * 1e3

    (p0, p1), (a0, a1) = ends(product_rounds), ends(add_rounds)
    alone, _ = write_round(workdir, batches, rounds, plain_add=False)
    (s0, s1) = ends([alone])
    print(f"writes ({n_pairs} pairs, {len(batches)} batches of 10 pairs, 4 tables): product {sum(best):.1f} s, "
          f"plain LanceDB add {sum(add_best):.1f} s (min of {rounds} rounds)")
    print(f"  per batch (median of the first / last {k}, each batch's fastest round): product {p0:.0f} -> "
          f"{p1:.0f} ms (end/start {p1 / p0:.2f}); plain add {a0:.0f} -> {a1:.0f} ms (end/start {a1 / a0:.2f})")
    print(f"  the product's writer alone in its process (one more round): {s0:.0f} -> {s1:.0f} ms per batch "
          f"(end/start {s1 / s0:.2f})")
    return sum(best) / sum(add_best)


def photo_import(workdir: Path, gib: float) -> None:
    """``pairsmith import folder`` of ``gib`` GiB of 2048x1536 noisy JPEG photo pairs: seconds, peak RSS."""
    import numpy as np
    from PIL import Image

    folder = workdir / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1536, 2048, 3), dtype=np.uint8)
    total, lines, i = 0, [], 0
    while total < gib * (1 << 30):
        before = np.roll(base, 37 * i, axis=1)
        after = before.copy()
        after[100:400, 100 + i % 1500:400 + i % 1500] = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
        for name, pixels in ((f"{i:05d}_a.jpg", before), (f"{i:05d}_b.jpg", after)):
            Image.fromarray(pixels).save(folder / name, quality=95)
            total += (folder / name).stat().st_size
        lines.append(json.dumps({"before": f"{i:05d}_a.jpg", "after": f"{i:05d}_b.jpg",
                                 "captions": [f"a square of noise appeared in photo {i}"], "id": str(i)}))
        i += 1
    (folder / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    db = workdir / "photos.lance"
    shutil.rmtree(db, ignore_errors=True)
    print(f"import folder of {i} photo pairs ({total / (1 << 30):.2f} GiB of JPEG): " + command(
        ["import", "folder", "--pairs", str(folder / "pairs.jsonl"), "--db", str(db), "--dataset", "photos"]),
        flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(db, ignore_errors=True)


def size_benchmark(workdir: Path, n_pairs: int, reference: bool) -> None:
    db = workdir / f"db-{n_pairs}.lance"
    shutil.rmtree(db, ignore_errors=True)
    run = SyntheticRun(run_id=f"scale-{n_pairs}")
    from pairsmith.storage.store import PairStore

    start = time.perf_counter()
    build(PairStore(str(db)), run, n_pairs, batch_pairs=500)
    built = time.perf_counter() - start
    print(f"\n== {n_pairs} pairs: built in {built:.0f} s through PairStore.upsert (500 pairs a commit), "
          f"{disk_bytes(db) / 1e9:.2f} GB on disk", flush=True)

    out = workdir / f"export-{n_pairs}"
    shutil.rmtree(out, ignore_errors=True)
    print("export --format sharegpt: " + command(["export", "--format", "sharegpt", "--db", str(db), "--out", str(out)]),
          flush=True)
    shutil.rmtree(out, ignore_errors=True)
    sheet = workdir / "sheet.png"
    print("contact-sheet --n 12: " + command(["contact-sheet", "--n", "12", "--db", str(db), "--out", str(sheet)]),
          flush=True)

    first = maintain(db)
    print(f"maintain after the build: {first['work']:.1f} s ({first['seconds']:.1f} s for the process), "
          f"peak RSS {first['rss_mb']:.0f} MB, "
          f"{first['rewritten']} fragments merged, disk {first['disk_before'] / 1e9:.2f} -> "
          f"{first['disk_after'] / 1e9:.2f} GB", flush=True)
    from pairsmith.tasks.write_batch import write_batch

    small = SyntheticRun(run_id=f"scale-{n_pairs}")
    for name, rows, stages in small.batches(30, 10, start=n_pairs):
        write_batch.fn(str(db), small.run_id, "dig-render", name, rows, stages)
    second = maintain(db)
    line = (f"maintain after adding 30 pairs: {second['work']:.1f} s ({second['pairs_seconds']:.1f} s of it pairs; "
            f"{second['seconds']:.1f} s for the process), peak RSS {second['rss_mb']:.0f} MB, "
            f"{second['rewritten']} small fragments merged ({second['pairs_rewritten']} of pairs, "
            f"{second['bytes_rewritten'] / 1e6:.1f} MB rewritten; pairs now {second['pairs_fragments']} fragments), "
            f"disk {second['disk_before'] / 1e9:.2f} -> {second['disk_after'] / 1e9:.2f} GB")
    print(line, flush=True)
    if reference:
        one = one_commit_bytes(workdir, run, n_pairs + 30)
        print(f"  disk after cleanup / one-commit size = {second['disk_after'] / one:.3f} "
              f"(one commit: {one / 1e9:.2f} GB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 50_000], help="database sizes in pairs")
    parser.add_argument("--write-pairs", type=int, default=10_000, help="pairs of the write benchmark (0: skip)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the write benchmark")
    parser.add_argument("--no-reference", action="store_true", help="skip the one-commit reference database")
    parser.add_argument("--import-gib", type=float, default=2.0, help="GiB of photos to import (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where databases go (default: a temp folder); a new or empty folder, or one an earlier "
                        "run of this benchmark made: it deletes and rewrites fixed names inside it")
    args = parser.parse_args()
    from pairsmith.storage.work_folder import claim_work_folder

    try:
        workdir = claim_work_folder(args.workdir or Path(tempfile.mkdtemp(prefix="storage-scale-")),
                                    ".pairsmith-storage-scale", "--workdir")
    except ValueError as err:
        parser.exit(2, f"storage_scale: error: {err}\n")
    try:
        if args.import_gib:
            photo_import(workdir, args.import_gib)
        for n in args.sizes:
            size_benchmark(workdir, n, reference=not args.no_reference)
            shutil.rmtree(workdir / f"db-{n}.lance", ignore_errors=True)
        if args.write_pairs:
            print(flush=True)
            ratio = write_benchmark(workdir, args.write_pairs, args.rounds)
            print(f"write_ratio_vs_lance_add = {ratio:.2f}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
