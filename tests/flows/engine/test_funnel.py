"""The funnel sums every batch's stage stats in pipeline order, also across an upgrade that added a stage."""

from __future__ import annotations

from pairsmith.flows.engine.funnel import dropoff_table, format_funnel, funnel_from_rows


def _row(batch: str, order: int, stage: str, n_in: int, kept: int, reasons: dict[str, int] | None = None) -> dict:
    return {"batch": batch, "stage_order": order, "stage": stage, "n_in": n_in, "n_kept": kept,
            "n_dropped": n_in - kept, "drop_reasons": [{"reason": r, "count": c} for r, c in (reasons or {}).items()],
            "seconds": 0.5}


def test_a_stage_added_mid_run_is_listed_where_it_runs_and_counts_add_up():
    before_upgrade = [_row("a", 0, "generate", 8, 8), _row("a", 1, "box_area", 30, 20, {"box_too_small": 10}),
                      _row("a", 2, "crop_filter", 20, 5, {"crop_sim_too_close": 15})]
    after_upgrade = [_row("b", 0, "generate", 8, 8), _row("b", 1, "box_area", 30, 22, {"box_too_small": 8}),
                     _row("b", 2, "box_aspect", 22, 21, {"box_aspect_too_extreme": 1}),
                     _row("b", 3, "crop_filter", 21, 6, {"crop_sim_too_close": 15})]
    funnel = funnel_from_rows(before_upgrade + after_upgrade)
    assert [s.stage for s in funnel] == ["generate", "box_area", "box_aspect", "crop_filter"]
    by = {s.stage: s for s in funnel}
    assert (by["box_area"].n_in, by["box_area"].n_kept, by["box_area"].reasons["box_too_small"]) == (60, 42, 18)
    assert (by["crop_filter"].n_in, by["crop_filter"].n_dropped) == (41, 30)
    assert all(s.n_in == s.n_kept + s.n_dropped for s in funnel)


def test_the_ui_table_says_none_where_the_terminal_says_a_dash():
    funnel = funnel_from_rows([_row("a", 0, "plan", 3, 3), _row("a", 1, "render", 3, 2, {"render_error": 1})])
    table = dropoff_table(funnel)
    assert [r["top reasons"] for r in table] == ["none", "render_error (1)"]  # a lone "-" is a Markdown bullet
    assert format_funnel(funnel).splitlines()[1].rstrip().endswith("-")
