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
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TokenAlignment:
    """For each target token position, the source position whose cross-attention it takes.

    ``alphas[j]`` is 1 where target token j has a source counterpart and 0 where the word exists
    only in the target (it keeps its own map; ``mapper[j]`` is then j and unused).
    """

    mapper: tuple[int, ...]
    alphas: tuple[float, ...]


def refinement_alignment(source_ids: Sequence[int], target_ids: Sequence[int], length: int = 77) -> TokenAlignment:
    """Align two token-id sequences (start/end tokens included) globally; pad the rest by offset.

    Needleman-Wunsch with match +1, mismatch -1, gap 0 (Prompt-to-Prompt's scores): a word swapped
    for another costs less as a deletion plus an insertion than as a mismatch, so a new word is
    target-only and the dropped word's map is not forced onto it. Identical prompts align to the
    identity. Positions after the target's end token map to the source's positions at the same
    distance after its end token (padding to padding).
    """
    x, y = list(source_ids)[:length], list(target_ids)[:length]
    if not x or not y:
        raise ValueError(f"cannot align empty token sequences: source {x!r}, target {y!r}")
    n, m = len(x), len(y)
    score = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diagonal = score[i - 1][j - 1] + (1 if x[i - 1] == y[j - 1] else -1)
            score[i][j] = max(diagonal, score[i - 1][j], score[i][j - 1])
    mapper, alphas = list(range(length)), [1.0] * length
    i, j = n, m
    while j > 0:
        if i > 0 and x[i - 1] == y[j - 1] and score[i][j] == score[i - 1][j - 1] + 1:
            mapper[j - 1], alphas[j - 1] = i - 1, 1.0
            i, j = i - 1, j - 1
        elif i > 0 and score[i][j] == score[i - 1][j]:
            i -= 1  # source token with no target counterpart: its map is dropped
        else:
            mapper[j - 1], alphas[j - 1] = j - 1, 0.0  # target-only token keeps its own map
            j -= 1
    for j in range(m, length):
        mapper[j] = min(n + (j - m), length - 1)
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


def replaced_steps(fraction: float, num_steps: int) -> int:
    """Prompt-to-Prompt's count of edited steps: the first floor(fraction * steps)."""
    return int(math.floor(fraction * num_steps + 1e-9))


class RefineController:
    """The edit policy shared by all processors of one generation call.

    The batch holds, per pair, the source prompt then the target prompt; with classifier-free
    guidance the unconditional half comes first and is left alone, as in Prompt-to-Prompt.
    ``step`` is advanced by ``on_step_end``, passed to the pipeline as ``callback_on_step_end``
    (one call per denoising-loop iteration: one per step for SDXL's first-order schedulers).
    Self-attention is replaced only in layers with at most ``self_max_tokens`` query positions
    (Prompt-to-Prompt's low-resolution layers); ``None`` means every layer.
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
        self.self_steps = replaced_steps(self_replace, num_steps)
        self.cross_steps = replaced_steps(cross_replace, num_steps)
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
