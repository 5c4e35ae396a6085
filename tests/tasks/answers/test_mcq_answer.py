"""The multiple-choice answer parser names one option or none: it never guesses."""

from __future__ import annotations

import pytest

from pairsmith.tasks.answers.mcq_answer import option_text, parse_choice

OPTIONS = ["A. The cat is gone.", "B. The car turned red.", "C. A tree was added.", "D. The sky is darker."]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("B", "B"),
        ("B.", "B"),
        ("(C)", "C"),
        ("**D**", "D"),
        ("D. The sky is darker.", "D"),
        ("The answer is C.", "C"),
        ("Answer: a", "A"),
        ("I think the correct option is B because the car changed colour.", "B"),
        ("<think>maybe A or B</think><answer>B</answer>", "B"),
        ("The car turned red.", "B"),  # repeats exactly one option's text
        ("", None),
        ("   ", None),
        ("I am not sure.", None),
        ("The answer is A or B.", None),  # two letters named as the answer
        ("A or B", None),
        ("A/B", None),
        ("(A), (C)", None),
        ("A and the car are both red.", "A"),
        ("E", None),  # not an option
        ("Answer: E", None),
        ("Both the cat and the car changed.", None),
    ],
)
def test_parse_choice(answer, expected):
    assert parse_choice(answer, OPTIONS) == expected


def test_option_text_strips_the_letter():
    assert option_text("B. The car turned red.") == "The car turned red."
    assert option_text("no letter here") == "no letter here"
