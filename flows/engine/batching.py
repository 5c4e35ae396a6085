"""Fixed batches of a run's items, named by their index range.

A batch's name is part of its stage-stats key and says which items it counted (``start-stop``), which
is what lets a re-run recognise the items it already committed, whatever batch size it uses now
(``pairsmith.flows.engine.resume`` cuts new batches only where no stored one reaches).
"""

from __future__ import annotations


def batch_ranges(n_items: int, batch_size: int) -> list[range]:
    return [range(s, min(s + batch_size, n_items)) for s in range(0, n_items, batch_size)]


def batch_name(indices: range) -> str:
    return f"{indices.start:07d}-{indices.stop:07d}"
