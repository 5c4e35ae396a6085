"""Train a small byte-level BPE vocabulary for tiny test models.

No tokenizer can be downloaded here, so tiny LLMs and VLMs get one trained in about a second by
the ``tokenizers`` library on the words this project actually says (scene vocabulary, prompts,
JSON boxes). Byte-level BPE encodes any text, so an unseen word costs tokens, never an error.
"""

from __future__ import annotations

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SIZES = ("small", "medium", "large")
COLORS = ("blue", "brown", "cyan", "gray", "green", "purple", "red", "yellow")
MATERIALS = ("metal", "matte")
SHAPES = ("cube", "sphere", "cylinder")
TEXT = (
    "The first image is the original scene and the second image is the same scene after some changes.",
    "Find every region that differs between them. Answer with a JSON list of [x1, y1, x2, y2] boxes",
    "in absolute pixel coordinates of the first image. There are exactly 2 differences.",
    "What changed between the first image and the second image? Describe every difference.",
    "What is the primary difference between the two images? In the second image the dog is gone.",
    "Answer with the letter of the correct option. A. B. C. D. yes no",
    "A photo of a person riding a bicycle on a street next to a red car and a tree.",
    "Describe the object within the red box. The object is a cat sitting on a sofa.",
    "Replace the word with another object of the same category and output the new caption.",
    "[[12, 40, 96, 120], [200, 31, 260, 88]] <answer></answer> <think></think>",
)


def corpus() -> list[str]:
    """A few hundred lines of the text tiny models will see in tests."""
    lines = list(TEXT)
    for size, color, material, shape in itertools.product(SIZES, COLORS, MATERIALS, SHAPES):
        lines.append(f"The {size} {color} {material} {shape} was removed. A {size} {color} {shape} was added.")
    lines += [" ".join(str(n) for n in range(k, k + 40)) for k in range(0, 400, 40)]
    return lines


def train_tiny_bpe(special_tokens: list[str], vocab_size: int = 512) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    return tokenizer
