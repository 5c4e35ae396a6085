"""Throughput of the dig-render flow, and where the time goes.

Prints pairs/min for one run of N pairs and the share of wall time spent outside Blender's
renderer (Prefect orchestration, LanceDB writes, Python labelling). Prefect's ephemeral server
starts once per process; that start-up is measured separately with a warm-up flow and reported on
its own line, since a deployment on a long-lived worker pays it once, not per run.

A second table renders one scene with different settings to show what limits throughput:
samples per pixel, denoising and Cycles' persistent data.

    python benchmarks/render_throughput.py --pairs 20
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _warm_up_prefect() -> float:
    from prefect import flow

    @flow(name="benchmark-warm-up")
    def warm_up() -> int:
        return 1

    start = time.perf_counter()
    warm_up()
    return time.perf_counter() - start


def _render_settings_table(width: int, height: int, repeats: int) -> list[tuple[str, float]]:
    """Seconds per color render of one fixed scene under several settings."""
    import bpy
    import numpy as np

    from pairsmith.scenes.blender_render import BlenderRenderer, RenderSettings
    from pairsmith.scenes.scene_sampler import as_object_map, sample_scene

    scene = as_object_map(sample_scene(np.random.default_rng(0), 6, 6))
    rows = []
    for label, settings, persistent in [
        ("4 samples", RenderSettings(width=width, height=height, samples=4), True),
        ("8 samples (default)", RenderSettings(width=width, height=height, samples=8), True),
        ("16 samples", RenderSettings(width=width, height=height, samples=16), True),
        ("32 samples", RenderSettings(width=width, height=height, samples=32), True),
        ("8 samples + OIDN denoise", RenderSettings(width=width, height=height, samples=8, denoise=True), True),
        ("8 samples, no persistent data", RenderSettings(width=width, height=height, samples=8), False),
    ]:
        renderer = BlenderRenderer(settings)
        renderer.prepare()
        bpy.context.scene.render.use_persistent_data = persistent
        renderer.render_color(scene, seed=1)  # first render compiles kernels and builds the BVH
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            renderer.render_color(scene, seed=1)
            times.append(time.perf_counter() - start)
        rows.append((label, statistics.median(times)))
    index = BlenderRenderer(RenderSettings(width=width, height=height))
    index.render_index(scene)
    start = time.perf_counter()
    for _ in range(repeats):
        index.render_index(scene)
    rows.append(("id map (1 sample, emission override)", (time.perf_counter() - start) / repeats))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--db", default=None, help="LanceDB URI (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=3, help="renders per setting in the settings table")
    parser.add_argument("--skip-settings", action="store_true", help="only the flow run")
    args = parser.parse_args()

    from pairsmith.flows.dig_render import dig_render
    from pairsmith.flows.dig_render_config import DigRenderConfig

    db = args.db or os.path.join(tempfile.mkdtemp(prefix="pairsmith-bench-"), "bench.lance")
    config = DigRenderConfig(
        db=db, pairs=args.pairs, seed=int(time.time()) if args.db is None else 0,
        render={"samples": args.samples, "width": args.width, "height": args.height},
    )
    startup = _warm_up_prefect()
    start = time.perf_counter()
    summary = dig_render(config)
    wall = time.perf_counter() - start
    outside = wall - summary.blender_seconds
    print(f"dig-render: {args.pairs} pairs ({summary.pairs_kept} kept) at {args.width}x{args.height}, "
          f"{args.samples} samples, {config.render.device}, {os.cpu_count()} cores, db {db}")
    print(f"wall time of the flow run: {wall:.1f} s")
    print(f"time inside Blender's renderer: {summary.blender_seconds:.1f} s ({summary.blender_seconds / wall:.1%})")
    print(f"overhead outside Blender rendering (Prefect + storage + labelling): {outside:.1f} s ({outside / wall:.1%})")
    print(f"Prefect ephemeral server start-up, once per process: {startup:.1f} s "
          f"(with it: {outside + startup:.1f} s, {(outside + startup) / (wall + startup):.1%} of {wall + startup:.1f} s)")
    if not args.skip_settings:
        print("seconds per render of one 6-object scene, median:")
        for label, seconds in _render_settings_table(args.width, args.height, args.repeats):
            print(f"  {label:<40} {seconds:6.3f} s")
    print(f"pairs/min = {summary.pairs_kept / wall * 60:.1f}")


if __name__ == "__main__":
    main()
