"""The grounding prompts of dig-render's samples, by name: the only copies the code uses.

* ``dig``: DiG's prompt verbatim (DiG supplementary §6, "Prompt for DiG Task": the task, the two
  rules and the "Important" line), text after the two image placeholders. The paper prints the
  format as ``[x_1, y_1, x_2, y_2]`` (its PDF's text layer reads ``$[x_{-1}, y_{-1}, x_{-2},
  y_{-2}]$``, a LaTeX rendering of the same underscores). Markdown emphasis (``**``) is part of the
  printed prompt and kept. For curriculum stages 1 and 2 "the model is additionally informed of the
  number of differences" (same section); the paper does not print that sentence, so its wording,
  :data:`DIG_COUNT_SENTENCE` appended on a line of its own, is pairsmith's (listed as an assumption
  in ``configs/papers/parameters.yaml``).
* ``pairsmith``: pairsmith's own prompt (the default): it names the image size, so the box frame is
  explicit (``pairsmith.storage.box_format`` rewrites that clause per export format), and asks for
  ``[]`` when nothing changed, which camera-jitter distractor pairs need; the count, when stated,
  is a sentence inside it.

``{width}`` and ``{height}`` are the before image's size in pixels.
"""

from __future__ import annotations

from typing import Literal

GroundingPromptName = Literal["pairsmith", "dig"]

DIG_GROUNDING_PROMPT = (
    "You will be given two separate images.\n"
    "- The first image is the 'before' version.\n"
    "- The second image is the 'after' version.\n"
    "Your task is to compare them and identify all 'changed regions'. Provide your answer as a JSON list of "
    "bounding boxes. All bounding boxes you provide must be on the '**before' (first) image**.\n"
    "\n"
    "Follow these rules:\n"
    "1. **Item is Missing or Changed:** If an item from the 'before' image is **missing** or **looks "
    "different** (e.g., color, shape, state) in the 'after' image, box the **original item on the 'before' "
    "image**.\n"
    "2. **Item is New:** If a **new item appears** in the 'after' image (in a previously empty spot), box "
    "the **corresponding empty area on the 'before' image**.\n"
    "\n"
    "Important: All coordinates must be relative to the **first ('before') image**. Use the format "
    "[x_1, y_1, x_2, y_2] with absolute pixel coordinates."
)
"""DiG supplementary §6, "Prompt for DiG Task", verbatim."""

DIG_COUNT_SENTENCE = "There {verb} exactly {n} {noun} between the two images."
"""Stages 1-2: the number of differences (DiG supp. §6 states the fact, not the words: pairsmith's wording)."""

PAIRSMITH_GROUNDING_PROMPT = (
    "The first image is the original scene and the second image is the same scene after some "
    "changes.{count} Find every region that differs between them. Answer with a JSON list of "
    "[x1, y1, x2, y2] boxes in absolute pixel coordinates of the first image ({width}x{height}). "
    "Box an object that changed or disappeared where it is in the first image, and a new object "
    "at the empty spot in the first image where it appears. Answer [] if nothing changed."
)
"""pairsmith's grounding prompt; ``{count}`` is empty or " There is exactly 1 difference." etc."""

GROUNDING_PROMPTS: dict[str, str] = {"dig": DIG_GROUNDING_PROMPT, "pairsmith": PAIRSMITH_GROUNDING_PROMPT}


def count_sentence(n: int) -> str:
    """'There is exactly 1 difference between the two images.' / '... are exactly 3 differences ...'."""
    return DIG_COUNT_SENTENCE.format(verb="is" if n == 1 else "are", n=n, noun="difference" if n == 1 else "differences")


def _pairsmith_count(n: int) -> str:
    return f" There {'is exactly 1 difference' if n == 1 else f'are exactly {n} differences'}."


def grounding_prompt(name: GroundingPromptName, n_changes: int | None, width: int, height: int) -> str:
    """The prompt text (after the image placeholders) of a grounding sample.

    ``n_changes``: the number of differences to state (curriculum stages 1-2), or None to state none.
    Raises KeyError for an unknown ``name``."""
    if name not in GROUNDING_PROMPTS:
        raise KeyError(f"unknown grounding prompt {name!r}; known: {', '.join(GROUNDING_PROMPTS)}")
    if name == "dig":
        return DIG_GROUNDING_PROMPT + ("" if n_changes is None else "\n" + count_sentence(n_changes))
    count = "" if n_changes is None else _pairsmith_count(n_changes)
    return PAIRSMITH_GROUNDING_PROMPT.format(count=count, width=width, height=height)
