"""Prompt-to-Prompt "refine" edits as diffusers attention processors.

Prompt-to-Prompt (Hertz et al., 2022) generates a source and a target image from the same noise
in one batch and makes the target copy the source's attention: self-attention maps for the first
part of the denoising (the layout), cross-attention maps for the words both prompts share (what
goes where). The "refine" edit aligns the two prompts' tokens, so the target may add or swap
words: a token that exists only in the target keeps its own cross-attention (its alpha is 0).

Layout of the pieces:
- ``refinement_alignment``: the token alignment (mapper + alphas), pure Python.
- ``RefineController``: the edit policy (which step, which layer, which rows) and the map edit.
- ``P2PAttnProcessor``: a tiny callable with the diffusers processor signature; it holds only the
  controller and its place in the UNet.
- ``p2p_processors``: installs the processors with ``unet.set_attn_processor`` and restores the
  originals afterwards.

The processor computes attention exactly as diffusers' ``AttnProcessor2_0`` does (fused scaled
dot-product attention), and adds the edit as a correction to the target rows:
``out_t = sdpa_t + (edited_t - probs_t) @ v_t``, which equals ``edited_t @ v_t``. An edit that
changes no map (identical prompts) therefore changes no bit of the output, and source rows are
never touched, so the "before" image is the plain SDXL image of the source prompt.

What the paper's data depends on follows the reference exactly: the token alignment with its
tie-breaks and padding rule (google/prompt-to-prompt ``seq_aligner.py``), the two step counts
(``ptp_utils.py`` and the notebooks' ``AttentionControlEdit``), the edited layers and rows. The same
code is in the diffusers community pipeline ``examples/community/pipeline_prompt2prompt.py`` and in
Img-Diff's SDXL generator (modelscope/data-juicer ``data_juicer/ops/common/prompt2prompt_pipeline.py``,
run by ``sdxl_prompt2prompt_mapper`` with refine, self 0.4, cross 1.0). pairsmith deliberately differs
in three places, each documented where it happens: the self-attention size limit uses height and
width (``RefineController``), prompts over 77 tokens are truncated (``refinement_alignment``), and
each pair has its own recorded seed (``pairsmith.models.adapters.sdxl_p2p``).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TokenAlignment:
    """For each of the 77 target token positions, the source position whose cross-attention it takes.

    ``alphas[j]`` is 1 where target token j takes the source's map ``mapper[j]`` and 0 where the word
    exists only in the target: it keeps its own map, and ``mapper[j]`` (then j) is unused. The
    reference writes -1 there and multiplies the map it picks by 0, which is the same edit.
    """

    mapper: tuple[int, ...]
    alphas: tuple[float, ...]


# Moves of the global alignment, named after what the target token gets.
_TARGET_ONLY, _SOURCE_ONLY, _MATCH = 1, 2, 3


def _alignment_moves(x: Sequence[int], y: Sequence[int]) -> list[list[int]]:
    """Needleman-Wunsch moves (match +1, mismatch -1, gap 0), ties broken as Prompt-to-Prompt does.

    In each cell the move is "target-only" (from the left) if that reaches the best score, else
    "source-only" (from above), else the diagonal, which is therefore taken only for a match that
    beats both gaps. Walking back from the end, a repeated neighbouring word ("on on") thus makes
    the *later* copy target-only and aligns the *first* one. Source: google/prompt-to-prompt,
    ``seq_aligner.py`` (``global_align``, ``get_aligned_sequences``), copied unchanged into the
    diffusers community pipeline ``examples/community/pipeline_prompt2prompt.py`` and Img-Diff's
    generator (modelscope/data-juicer ``data_juicer/ops/common/prompt2prompt_pipeline.py``).
    """
    score = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    moves = [[_TARGET_ONLY] * (len(y) + 1)] + [[_SOURCE_ONLY] * (len(y) + 1) for _ in x]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            from_left, from_above = score[i][j - 1], score[i - 1][j]
            diagonal = score[i - 1][j - 1] + (1 if x[i - 1] == y[j - 1] else -1)
            best = score[i][j] = max(from_left, from_above, diagonal)
            moves[i][j] = _TARGET_ONLY if best == from_left else _SOURCE_ONLY if best == from_above else _MATCH
    return moves


def refinement_alignment(source_ids: Sequence[int], target_ids: Sequence[int], length: int = 77) -> TokenAlignment:
    """Prompt-to-Prompt's refinement mapper of two token-id sequences (start/end tokens included).

    Tokens are aligned globally (``_alignment_moves``): a shared word takes the source word's map, a
    word only in the target keeps its own (alpha 0), a word only in the source is dropped. Identical
    prompts align to the identity. Every position after the target's end token takes the source's
    map at the same position (j -> j), as the reference's ``get_mapper`` does, whatever the source's
    length: when the target is shorter, its padding takes the maps of the source's last words.
    Source: google/prompt-to-prompt ``seq_aligner.py`` (``get_mapper``, ``get_refinement_mapper``).

    pairsmith's one difference: sequences longer than ``length`` (CLIP's 77) are truncated as the
    text encoders truncate them, where the reference fails on a shape mismatch.
    """
    x, y = list(source_ids)[:length], list(target_ids)[:length]
    if not x or not y:
        raise ValueError(f"cannot align empty token sequences: source {x!r}, target {y!r}")
    moves = _alignment_moves(x, y)
    mapper, alphas = list(range(length)), [1.0] * length
    i, j = len(x), len(y)
    while j > 0:  # the walk back; what follows j = 0 drops source tokens only
        move = moves[i][j]
        if move == _MATCH:
            mapper[j - 1] = i - 1
            i, j = i - 1, j - 1
        elif move == _TARGET_ONLY:
            alphas[j - 1] = 0.0
            j -= 1
        else:
            i -= 1
    return TokenAlignment(tuple(mapper), tuple(alphas))


@dataclass(frozen=True)
class AttentionEdit:
    """What one attention layer saw and used at one step, for the conditional rows of all pairs.

    Maps are (pairs, heads, query positions, key positions). ``used`` is what the target rows'
    output was computed from: the edited maps where ``replaced``, else the target's own maps.
    """

    step: int
    place: str
    is_cross: bool
    replaced: bool
    source: "torch.Tensor"
    target: "torch.Tensor"
    used: "torch.Tensor"


def cross_replaced_steps(fraction: float, num_steps: int) -> int:
    """Steps whose cross-attention the target copies: the first ``int(fraction * (num_steps + 1))``.

    The reference builds one row of word alphas per step plus one (``num_steps + 1`` rows) and sets
    the first ``int(fraction * rows)`` to 1, with Python's float product and truncation: 1.0 of 50
    steps is all 50, 0.5 of 5 steps is 3. Source: google/prompt-to-prompt ``ptp_utils.py``
    (``get_time_words_attention_alpha``, ``update_alpha_time_word``), unchanged in the diffusers
    community pipeline and Img-Diff's generator.
    """
    return int(fraction * (num_steps + 1))


def self_replaced_steps(fraction: float, num_steps: int) -> int:
    """Steps whose self-attention the target copies: the first ``int(num_steps * fraction)``.

    0.4 of 50 steps is 20, 0.5 of 5 steps is 2. Source: google/prompt-to-prompt's
    ``AttentionControlEdit`` (``num_self_replace``), unchanged in the diffusers community pipeline and
    Img-Diff's generator.
    """
    return int(num_steps * fraction)


class RefineController:
    """The edit policy shared by all processors of one generation call.

    The batch holds, per pair, the source prompt then the target prompt; with classifier-free
    guidance the unconditional half comes first and is left alone, as in Prompt-to-Prompt.
    ``step`` is advanced by ``on_step_end``, passed to the pipeline as ``callback_on_step_end``
    (one call per denoising-loop iteration: one per step for SDXL's first-order schedulers).
    Cross-attention is replaced in the first ``cross_replaced_steps`` steps and self-attention in
    the first ``self_replaced_steps``: two different rules, both the reference's.

    Self-attention is replaced only in layers with at most ``self_max_tokens`` query positions
    (Prompt-to-Prompt's low-resolution layers); ``None`` means every layer. pairsmith computes that
    limit from the image's height and width (``SdxlP2PConfig.self_max_tokens``); Img-Diff's SDXL
    controller (``replace_self_attention`` with ``attn_res`` = (ceil(w/32), ceil(h/32))) compares
    with ``attn_res[0] ** 2``, the width twice, so a portrait image's 1/32 layer exceeds it and gets
    no self-attention replacement at all. pairsmith keeps its own rule there on purpose.
    """

    def __init__(
        self,
        alignments: Sequence[TokenAlignment],
        num_steps: int,
        self_replace: float = 0.4,
        cross_replace: float = 1.0,
        self_max_tokens: int | None = None,
        observer: Callable[[AttentionEdit], None] | None = None,
    ):
        if not alignments:
            raise ValueError("a controller needs at least one (source, target) alignment, got 0")
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        for name, value in (("self_replace", self_replace), ("cross_replace", cross_replace)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a fraction of steps in [0, 1], got {value}")
        lengths = {len(a.mapper) for a in alignments}
        if len(lengths) != 1:
            raise ValueError(f"alignments have different token lengths: {sorted(lengths)}")
        self.alignments = list(alignments)
        self.num_steps = num_steps
        self.self_steps = self_replaced_steps(self_replace, num_steps)
        self.cross_steps = cross_replaced_steps(cross_replace, num_steps)
        self.self_max_tokens = self_max_tokens
        self.observer = observer
        self.step = 0
        self._tables: dict[Any, tuple["torch.Tensor", "torch.Tensor"]] = {}

    @property
    def n_pairs(self) -> int:
        return len(self.alignments)

    def on_step_end(self, pipe, step_index: int, timestep, callback_kwargs: dict) -> dict:
        self.step = step_index + 1
        return {}

    def replaces(self, is_cross: bool, n_query: int) -> bool:
        if is_cross:
            return self.step < self.cross_steps
        small_enough = self.self_max_tokens is None or n_query <= self.self_max_tokens
        return self.step < self.self_steps and small_enough

    def rows(self, batch_size: int) -> tuple[list[int], list[int]]:
        """Batch rows of the conditional source and target images, pair by pair."""
        n_prompts = 2 * self.n_pairs
        if batch_size not in (n_prompts, 2 * n_prompts):
            raise ValueError(
                f"attention batch of {batch_size} rows does not match {self.n_pairs} pairs "
                f"(expected {n_prompts} or {2 * n_prompts} with guidance)"
            )
        first = batch_size - n_prompts
        return [first + 2 * k for k in range(self.n_pairs)], [first + 2 * k + 1 for k in range(self.n_pairs)]

    def wants_maps(self, is_cross: bool, n_query: int) -> bool:
        return self.observer is not None or self.replaces(is_cross, n_query)

    def edit(self, place: str, is_cross: bool, source: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
        """The maps the target rows use: the source's (mapped to target tokens) where replaced."""
        replaced = self.replaces(is_cross, source.shape[-2])
        used = target
        if replaced and not is_cross:
            used = source
        elif replaced:
            mapper, alphas = self._table(source)
            if source.shape[-1] != mapper.shape[-1]:
                raise ValueError(f"cross-attention over {source.shape[-1]} tokens, alignment has {mapper.shape[-1]}")
            index = mapper[:, None, None, :].expand_as(source)
            used = source.gather(-1, index) * alphas + target * (1 - alphas)
        if self.observer is not None:
            self.observer(AttentionEdit(self.step, place, is_cross, replaced, source, target, used))
        return used

    def _table(self, like: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        key = (like.device, like.dtype)
        if key not in self._tables:
            mapper = torch.tensor([a.mapper for a in self.alignments], device=like.device)
            alphas = torch.tensor([a.alphas for a in self.alignments], device=like.device, dtype=like.dtype)
            self._tables[key] = (mapper, alphas[:, None, None, :])
        return self._tables[key]


class P2PAttnProcessor:
    """``AttnProcessor2_0``'s computation plus the controller's edit of the target rows."""

    def __init__(self, controller: RefineController, place: str):
        self.controller = controller
        self.place = place

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        import torch.nn.functional as F

        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0,
                                             is_causal=False)
        if self.controller.wants_maps(is_cross, query.shape[-2]):
            out = self._edit_targets(attn, is_cross, query, key, value, attention_mask, out)

        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[0](out)
        out = attn.to_out[1](out)
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _edit_targets(self, attn, is_cross, query, key, value, attention_mask, out):
        """Add (used - own maps) @ v to the target rows: exact zero when the maps are unchanged."""
        src, tgt = self.controller.rows(query.shape[0])
        mask = None if attention_mask is None else attention_mask.expand(query.shape[0], -1, query.shape[-2], -1)
        own = _probs(query[tgt], key[tgt], None if mask is None else mask[tgt], attn.scale)
        source = _probs(query[src], key[src], None if mask is None else mask[src], attn.scale)
        used = self.controller.edit(self.place, is_cross, source, own)
        correction = (used - own) @ value[tgt].float()
        out = out.clone()
        out[tgt] = out[tgt] + correction.to(out.dtype)
        return out


def _probs(query, key, mask, scale: float):
    """Softmax attention maps in float32 (half-precision softmax loses small weights)."""
    scores = (query.float() @ key.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask.float()
    return scores.softmax(dim=-1)


@contextmanager
def p2p_processors(unet, controller: RefineController) -> Iterator[RefineController]:
    """Route every attention layer of ``unet`` through the controller, then restore the originals."""
    originals = dict(unet.attn_processors)
    places = {name: name.removesuffix(".processor") for name in originals}
    unet.set_attn_processor({name: P2PAttnProcessor(controller, place) for name, place in places.items()})
    try:
        yield controller
    finally:
        unet.set_attn_processor(dict(originals))  # set_attn_processor pops from the dict it gets
