"""SDXL + Prompt2Prompt pairs on a tiny random SDXL loaded through ``from_pretrained``.

What a user relies on: identical prompts give plain SDXL bit for bit; with different prompts the
target's cross-attention is the source's, mapped position by position exactly as Img-Diff's
reference generator maps it (checked against a re-statement of google/prompt-to-prompt's
``seq_aligner.get_mapper`` written here), for the reference's step counts (self-attention likewise),
and that edit reaches the after image; the before image is plain SDXL of the source prompt; seeds
are recorded; ``dtype: float16`` with a replacement VAE loads both in half precision; bad inputs
raise a one-line ValueError showing the value; the UNet gets its own processors back.
"""

from __future__ import annotations

import functools
import pickle

import numpy as np
import pytest
import torch

from pairsmith.models.lazy import clear_loaded
from pairsmith.models.adapters.p2p_attention import (
    AttentionEdit,
    P2PAttnProcessor,
    RefineController,
    TokenAlignment,
    p2p_processors,
    refinement_alignment,
)
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.adapters.sdxl_p2p import ImagePair, PairRequest, SdxlP2PConfig, SdxlP2PGenerator, generate_pairs
from pairsmith.models.tiny.sdxl import build_tiny_sdxl, hub_cache_copy

SOURCE, TARGET = "a cat on a sofa", "a big dog on a sofa"  # target is one token longer
STEPS, SIZE, GUIDANCE = 4, 64, 5.0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_sdxl_dir(tmp_path_factory):
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


def _config(model_dir, **overrides) -> SdxlP2PConfig:
    fields = dict(
        model_id=str(model_dir), runtime=ModelRuntime(device="cpu"), steps=STEPS, guidance_scale=GUIDANCE,
        height=SIZE, width=SIZE, self_replace=0.5, cross_replace=0.5, self_replace_min_downscale=1,
    )
    return SdxlP2PConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def generator(tiny_sdxl_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        adapter = SdxlP2PGenerator(_config(tiny_sdxl_dir))
        adapter.loaded()  # the hub loader path, offline, on the saved folder
    yield adapter
    clear_loaded()


@pytest.fixture(scope="module")
def pipe(generator):
    return generator.loaded()


def _plain(pipe, prompts: list[str], seed: int) -> list[np.ndarray]:
    """SDXL without our processors; one generator per image, as the pair generator seeds them."""
    images = pipe(
        prompt=prompts, num_inference_steps=STEPS, guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
        generator=[torch.Generator("cpu").manual_seed(seed) for _ in prompts],
    ).images
    return [_px(im) for im in images]


def _px(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# --- token alignment (refinement mapper) ------------------------------------------------------

def test_alignment_of_identical_prompts_is_the_identity():
    ids = [49406, 320, 2368, 525, 320, 15723, 49407]
    alignment = refinement_alignment(ids, ids)
    assert alignment.mapper == tuple(range(77)) and set(alignment.alphas) == {1.0}


@functools.cache
def _clip_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer  # CLIP's BPE; the SDXL tokenizers give the same ids

    return SimpleTokenizer()


def _clip_ids(prompt: str) -> list[int]:
    tok = _clip_tokenizer()
    return [tok.sot_token_id, *tok.encode(prompt), tok.eot_token_id]


def test_refine_alignment_maps_shared_words_and_leaves_new_words_their_own_maps():
    src, tgt = _clip_ids(SOURCE), _clip_ids(TARGET)
    # [bos a cat on a sofa eos] and [bos a big dog on a sofa eos]
    assert len(src) == 7 and len(tgt) == 8
    alignment = refinement_alignment(src, tgt)
    assert alignment.mapper[:8] == (0, 1, 2, 3, 3, 4, 5, 6)
    assert alignment.alphas[:8] == (1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)  # "big", "dog" are target-only
    # After the target's end token, position j takes the source's position j (the reference's rule),
    # not the source's padding at the same distance after its end token (j - 1 here).
    assert alignment.mapper[8:] == tuple(range(8, 77)) and alignment.alphas[8:] == (1.0,) * 69
    shorter = refinement_alignment(tgt, src)  # target shorter: its padding takes the source's last words
    assert shorter.mapper[5:9] == (6, 7, 7, 8) and shorter.alphas[:9] == (1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize("target, first_copy", [("a cat on on a sofa", 3), ("a cat cat on a sofa", 2)])
def test_a_repeated_neighbouring_word_aligns_its_first_copy_as_the_reference_does(target, first_copy):
    src, tgt = _clip_ids(SOURCE), _clip_ids(target)
    assert tgt[first_copy] == tgt[first_copy + 1] == src[first_copy]
    alignment = refinement_alignment(src, tgt)
    # google/prompt-to-prompt global_align prefers the gap from the left on ties, so walking back the
    # later copy becomes target-only and the first copy takes the source word's map.
    assert alignment.mapper[first_copy] == first_copy and alignment.alphas[first_copy] == 1.0
    assert alignment.alphas[first_copy + 1] == 0.0
    assert alignment.alphas[:len(tgt)].count(0.0) == 1
    assert alignment.mapper[first_copy + 2:len(tgt)] == tuple(range(first_copy + 1, len(src)))


def test_prompts_over_77_tokens_are_truncated_not_a_crash():
    long_source = [49406] + [320 + (i % 5) for i in range(100)] + [49407]
    alignment = refinement_alignment(long_source, long_source[:50] + [999] + long_source[50:])
    assert len(alignment.mapper) == 77 and alignment.alphas[50] == 0.0
    assert alignment.mapper[51:] == tuple(range(50, 76))


def _reference_replaced_steps(fraction: float, steps: int) -> tuple[set[int], set[int]]:
    """google/prompt-to-prompt's step rules, re-stated: (cross steps, self steps).

    Cross (ptp_utils.get_time_words_attention_alpha): a table of steps + 1 rows whose first
    int(fraction * rows) rows are 1, row ``cur_step`` used at each step. Self (AttentionControlEdit):
    the steps in [int(steps * 0), int(steps * fraction)).
    """
    rows = [1 if r < int(fraction * (steps + 1)) else 0 for r in range(steps + 1)]
    cross = {step for step in range(steps) if rows[step]}
    self_window = range(int(steps * 0.0), int(steps * fraction))
    return cross, {step for step in range(steps) if step in self_window}


@pytest.mark.parametrize("steps", [1, 4, 5, 10, 50])
@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.29, 0.4, 0.5, 0.8, 1.0])
def test_replaced_steps_follow_the_reference_rules(steps, fraction):
    identity = refinement_alignment([1, 2], [1, 2])
    controller = RefineController([identity], steps, self_replace=fraction, cross_replace=fraction)
    cross, self_ = set(), set()
    for step in range(steps):
        controller.step = step
        cross |= {step} if controller.replaces(is_cross=True, n_query=16) else set()
        self_ |= {step} if controller.replaces(is_cross=False, n_query=16) else set()
    assert (cross, self_) == _reference_replaced_steps(fraction, steps)


def test_at_5_steps_half_replaced_cross_attention_gets_3_steps_and_self_attention_2():
    controller = RefineController([refinement_alignment([1], [1])], 5, self_replace=0.5, cross_replace=0.5)
    assert (controller.cross_steps, controller.self_steps) == (3, 2)
    assert RefineController([refinement_alignment([1], [1])], 50, 0.4, 1.0).self_steps == 20


# --- exact reproduction ----------------------------------------------------------------------

@pytest.mark.slow
def test_identical_prompts_reproduce_plain_sdxl_exactly(pipe, tiny_sdxl_dir):
    edits = []
    pair = generate_pairs(pipe, [SOURCE], [SOURCE], [7], _config(tiny_sdxl_dir, cross_replace=1.0), edits.append)[0]
    assert any(e.replaced and e.is_cross for e in edits) and any(e.replaced and not e.is_cross for e in edits)

    plain_same_batch = _plain(pipe, [SOURCE, SOURCE], seed=7)
    assert np.array_equal(_px(pair.after), plain_same_batch[1])
    assert np.array_equal(_px(pair.before), plain_same_batch[0])
    # A lone generation runs a batch of 2 instead of 4: CPU kernels may round differently (~1e-6).
    (plain_alone,) = _plain(pipe, [SOURCE], seed=7)
    assert np.abs(_px(pair.after) - plain_alone).max() <= 1


# --- the edit: maps and images ---------------------------------------------------------------

@pytest.fixture(scope="module")
def edited_run(pipe, tiny_sdxl_dir):
    edits = []
    pair = generate_pairs(pipe, [SOURCE], [TARGET], [7], _config(tiny_sdxl_dir), edits.append)[0]
    return pair, edits


def _reference_refinement_mapper(tokenizer, source: str, target: str, max_len: int = 77):
    """google/prompt-to-prompt ``seq_aligner.get_mapper``, re-stated independently of pairsmith's code.

    Img-Diff's generator (modelscope/data-juicer ``ops/common/prompt2prompt_pipeline.py``) and the
    diffusers community ``pipeline_prompt2prompt.py`` carry the same function. Scores: match 1,
    mismatch -1, gap 0; each cell records 1 (left) if the best score equals the left one, else 2 (up)
    if it equals the upper one, else 3 (diagonal). Walking back from the end, 3 maps target j-1 to
    source i-1, 1 makes target j-1 target-only (-1, alpha 0), 2 skips a source token. Positions
    from the target's length on map j -> j with alpha 1. Returns (mapper, alphas) of length 77.
    """
    x, y = tokenizer.encode(source), tokenizer.encode(target)
    score = np.zeros((len(x) + 1, len(y) + 1), dtype=int)
    trace = np.zeros((len(x) + 1, len(y) + 1), dtype=int)
    trace[0, 1:], trace[1:, 0] = 1, 2
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            left, up = score[i, j - 1], score[i - 1, j]
            diag = score[i - 1, j - 1] + (1 if x[i - 1] == y[j - 1] else -1)
            score[i, j] = max(left, up, diag)
            trace[i, j] = 1 if score[i, j] == left else 2 if score[i, j] == up else 3
    pairs, i, j = [], len(x), len(y)
    while i > 0 or j > 0:
        if trace[i, j] == 3:
            i, j = i - 1, j - 1
            pairs.append((j, i))
        elif trace[i, j] == 1:
            j -= 1
            pairs.append((j, -1))
        else:
            i -= 1
    pairs.reverse()
    mapper = [source_pos for _, source_pos in pairs] + list(range(len(y), max_len))
    alphas = [0.0 if source_pos == -1 else 1.0 for source_pos in mapper]
    return torch.tensor(mapper), torch.tensor(alphas)


# Different token counts both ways, and a repeated word: "fluffy white cat" adds two tokens, the
# shorter target's padding takes the source's last words, "on on" tests the tie-break.
REFERENCE_PAIRS = [(SOURCE, "a fluffy white cat on a sofa"), ("a fluffy white cat on a sofa", SOURCE),
                   (SOURCE, "a cat on on a sofa")]


@pytest.mark.slow
def test_cross_attention_maps_every_target_position_as_img_diffs_reference_does(pipe, tiny_sdxl_dir):
    edits: list[AttentionEdit] = []
    config = _config(tiny_sdxl_dir, steps=5, self_replace=0.5, cross_replace=0.5)
    sources, targets = zip(*REFERENCE_PAIRS)
    generate_pairs(pipe, list(sources), list(targets), [7, 8, 9], config, edits.append)
    reference = [_reference_refinement_mapper(pipe.tokenizer, s, t) for s, t in REFERENCE_PAIRS]
    token_counts = [(len(pipe.tokenizer.encode(s)), len(pipe.tokenizer.encode(t))) for s, t in REFERENCE_PAIRS]
    assert token_counts == [(7, 9), (9, 7), (7, 8)]

    cross = [e for e in edits if e.is_cross]
    n_layers = len([name for name in pipe.unet.attn_processors if name.endswith("attn2.processor")])
    assert len(cross) == 5 * n_layers and cross[0].used.shape[:1] == (3,) and cross[0].used.shape[-1] == 77
    # The reference's step counts at 5 steps / 0.5: cross-attention int(0.5 * 6) = 3, self int(5 * 0.5) = 2.
    assert {e.step for e in cross if e.replaced} == {0, 1, 2}
    assert {e.step for e in edits if not e.is_cross and e.replaced} == {0, 1}

    for e in cross:
        for k, (mapper, alphas) in enumerate(reference):
            if not e.replaced:
                assert torch.equal(e.used[k], e.target[k])
                continue
            for j in range(77):  # every target position, start and padding included
                expected = e.source[k][..., int(mapper[j])] if alphas[j] == 1 else e.target[k][..., j]
                assert torch.equal(e.used[k][..., j], expected), (REFERENCE_PAIRS[k], e.place, e.step, j)
    # Not vacuous: the shorter target's padding (positions 7, 8) gets the source's last word and end
    # token ("sofa", eos), whose maps differ from the source's padding the former shifted rule gave it.
    first = cross[0]
    assert reference[1][0][7:9].tolist() == [7, 8]
    assert not torch.equal(first.used[1][..., 7:9], first.source[1][..., 9:11])
    assert not torch.equal(first.target[0][..., reference[0][1] == 1], first.used[0][..., reference[0][1] == 1])


@pytest.mark.slow
def test_self_attention_is_the_sources_for_the_replaced_fraction_only(edited_run):
    _, edits = edited_run
    selfs = [e for e in edits if not e.is_cross]
    assert {e.step for e in selfs} == set(range(STEPS))
    for e in selfs:
        if e.step < 2:  # self_replace 0.5 of 4 steps
            assert e.replaced and torch.equal(e.used, e.source)
        else:
            assert not e.replaced and torch.equal(e.used, e.target)
    assert not torch.equal(selfs[-1].source, selfs[-1].target)


@pytest.mark.slow
def test_self_attention_is_kept_in_layers_finer_than_the_downscale(pipe, tiny_sdxl_dir):
    edits = []
    # P2P-SDXL's 1/32 rule: a 64 px image has 2x2 maps at most there; the tiny UNet's are 16x16.
    generate_pairs(pipe, [SOURCE], [TARGET], [7], _config(tiny_sdxl_dir, self_replace=1.0,
                                                          self_replace_min_downscale=32), edits.append)
    assert not any(e.replaced for e in edits if not e.is_cross)
    assert all(e.replaced for e in edits if e.is_cross and e.step < 2)


@pytest.mark.slow
def test_before_is_plain_sdxl_of_the_source_and_the_edit_reaches_the_after_image(edited_run, pipe, tiny_sdxl_dir):
    pair, _ = edited_run
    plain_src, plain_tgt = _plain(pipe, [SOURCE, TARGET], seed=7)
    assert np.array_equal(_px(pair.before), plain_src)
    (plain_alone,) = _plain(pipe, [SOURCE], seed=7)
    assert np.abs(_px(pair.before) - plain_alone).max() <= 1
    assert not np.array_equal(_px(pair.after), _px(pair.before))
    assert not np.array_equal(_px(pair.after), plain_tgt)  # the replaced maps changed the target

    unedited = generate_pairs(pipe, [SOURCE], [TARGET], [7], _config(tiny_sdxl_dir, self_replace=0.0,
                                                                     cross_replace=0.0))[0]
    assert np.array_equal(_px(unedited.after), plain_tgt)


def test_processor_computes_the_target_output_from_the_edited_maps():
    """On one attention layer: target output == to_out(used @ v); source output untouched."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    hidden, text = torch.randn(2, 5, 8), torch.randn(2, 4, 6)
    alignment = TokenAlignment(mapper=(0, 2, 2, 3), alphas=(1.0, 1.0, 0.0, 1.0))
    edits = []
    controller = RefineController([alignment], num_steps=1, cross_replace=1.0, observer=edits.append)
    attn.set_processor(P2PAttnProcessor(controller, "probe.attn2"))
    out = attn(hidden, encoder_hidden_states=text)
    attn.set_processor(AttnProcessor2_0())
    plain = attn(hidden, encoder_hidden_states=text)

    (edit,) = edits
    assert edit.replaced and edit.place == "probe.attn2"
    v_target = attn.to_v(text[1:]).view(1, 4, 2, 4).transpose(1, 2)
    expected = (edit.used @ v_target).transpose(1, 2).reshape(1, 5, 8)
    expected = attn.to_out[0](expected)
    assert torch.allclose(out[1:], expected, atol=1e-6)
    assert not torch.allclose(out[1:], plain[1:], atol=1e-4)
    assert torch.equal(out[:1], plain[:1])


# --- batching, seeds, adapter ----------------------------------------------------------------

@pytest.mark.slow
def test_generate_batch_records_seeds_and_reproduces_from_them(generator):
    requests = [PairRequest(SOURCE, TARGET, 11), PairRequest("a red car", "a blue car", None),
                PairRequest("a tree", "a tall tree", 13)]
    pairs = generator.generate_batch(requests)  # pairs_per_call 2: calls of 2 and 1 pairs
    assert [type(p) for p in pairs] == [ImagePair] * 3
    assert [(p.source_prompt, p.target_prompt) for p in pairs] == [(r.source, r.target) for r in requests]
    assert pairs[0].seed == 11 and pairs[2].seed == 13
    assert isinstance(pairs[1].seed, int) and 0 <= pairs[1].seed < 2**31
    assert all(p.before.size == (SIZE, SIZE) == p.after.size for p in pairs)

    again = generator.generate("a tree", "a tall tree", seed=13)
    assert np.array_equal(_px(again.before), _px(pairs[2].before))
    assert np.array_equal(_px(again.after), _px(pairs[2].after))
    alone = generator.generate("a red car", "a blue car", seed=pairs[1].seed)  # was batched with pair 0
    assert np.abs(_px(alone.after) - _px(pairs[1].after)).max() <= 1
    other_seed = generator.generate("a tree", "a tall tree", seed=14)
    assert not np.array_equal(_px(other_seed.before), _px(pairs[2].before))


@pytest.mark.slow
def test_the_default_hub_id_loads_offline_from_a_models_cache(tiny_sdxl_dir, tmp_path):
    hub_cache_copy(tmp_path / "hub", "stabilityai/stable-diffusion-xl-base-1.0", tiny_sdxl_dir)
    runtime = ModelRuntime(device="cpu", cache_dir=str(tmp_path / "hub"), offline=True)
    adapter = SdxlP2PGenerator(SdxlP2PConfig(runtime=runtime, steps=1, height=SIZE, width=SIZE))
    pair = adapter.generate(SOURCE, TARGET, seed=5)
    assert pair.after.size == (SIZE, SIZE) and pair.seed == 5


def test_config_defaults_are_img_diffs_and_the_adapter_pickles_without_weights():
    config = SdxlP2PConfig()
    assert config.model_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (config.steps, config.guidance_scale, config.self_replace, config.cross_replace) == (50, 7.5, 0.4, 1.0)
    assert config.self_max_tokens() == 32 * 32
    restored = pickle.loads(pickle.dumps(SdxlP2PGenerator(config)))
    assert vars(restored) == {"config": config}


def test_dtype_overrides_the_runtimes_for_the_generator_only():
    runtime = ModelRuntime(device="cpu", dtype="bfloat16")
    assert SdxlP2PConfig(runtime=runtime).torch_dtype() == torch.bfloat16
    assert SdxlP2PConfig(runtime=runtime, dtype="float16").torch_dtype() == torch.float16
    assert SdxlP2PConfig(runtime=ModelRuntime(device="cpu")).torch_dtype() == torch.float32
    with pytest.raises(ValueError, match=r"float8"):
        SdxlP2PConfig(dtype="float8")


@pytest.mark.slow
def test_float16_with_a_replacement_vae_loads_both_in_half_precision(tiny_sdxl_dir, tmp_path, generator):
    """The loading path of ``dtype: float16`` + ``vae_id`` (e.g. madebyollin/sdxl-vae-fp16-fix) on the CPU.

    No GPU here, so nothing is generated in float16; the check is what gets loaded, in which dtype.
    """
    from diffusers import AutoencoderKL

    torch.manual_seed(3)  # weights unlike the pipeline's own VAE, and no upcast, like the fp16-fix VAE
    fix = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=32, force_upcast=False)
    fix.save_pretrained(tmp_path / "vae-fp16-fix")

    adapter = SdxlP2PGenerator(_config(tiny_sdxl_dir, dtype="float16", vae_id=str(tmp_path / "vae-fp16-fix")))
    half = adapter.loaded()
    assert {half.unet.dtype, half.vae.dtype, half.text_encoder.dtype, half.text_encoder_2.dtype} == {torch.float16}
    assert half.vae.config.force_upcast is False
    assert torch.equal(half.vae.decoder.conv_out.weight, fix.decoder.conv_out.weight.half())

    full = generator.loaded()  # no dtype, no vae_id: the runtime's float32 and the pipeline's own VAE
    assert full.unet.dtype == torch.float32 and full.vae.config.force_upcast is True
    assert not torch.equal(full.vae.decoder.conv_out.weight.half(), half.vae.decoder.conv_out.weight)


# --- bad inputs ------------------------------------------------------------------------------

def test_bad_inputs_raise_a_value_error_showing_the_value():
    config = _config("never-loaded")
    # Inputs are checked before the pipeline is touched, so no pipeline is needed here.
    with pytest.raises(ValueError, match=r"pair 0: empty source prompt ''"):
        generate_pairs(None, [""], [TARGET], [1], config)
    with pytest.raises(ValueError, match=r"pair 1: empty target prompt '   '"):
        generate_pairs(None, [SOURCE, SOURCE], [TARGET, "   "], [1, 2], config)
    with pytest.raises(ValueError, match=r"mismatched batch: 2 sources, 1 targets, 2 seeds"):
        generate_pairs(None, [SOURCE, SOURCE], [TARGET], [1, 2], config)
    with pytest.raises(ValueError, match=r"pair 0: seed .* got -3"):
        generate_pairs(None, [SOURCE], [TARGET], [-3], config)
    with pytest.raises(ValueError, match=r"no prompt pairs"):
        generate_pairs(None, [], [], [], config)

    with pytest.raises(ValueError, match=r"1\.5"):
        SdxlP2PConfig(self_replace=1.5)
    with pytest.raises(ValueError, match=r"-0\.1"):
        SdxlP2PConfig(cross_replace=-0.1)
    with pytest.raises(ValueError, match=r"multiple of 8.*got 70"):
        SdxlP2PConfig(height=70)
    with pytest.raises(ValueError, match=r"extra"):
        SdxlP2PConfig(self_replace_steps=0.4)

    identity = refinement_alignment([1, 2], [1, 2])
    with pytest.raises(ValueError, match=r"self_replace .* got 2\.0"):
        RefineController([identity], num_steps=4, self_replace=2.0)
    with pytest.raises(ValueError, match=r"cross_replace .* got -1"):
        RefineController([identity], num_steps=4, cross_replace=-1)
    with pytest.raises(ValueError, match=r"attention batch of 3 rows does not match 1 pairs"):
        RefineController([identity], num_steps=4).rows(3)


# --- processors restored ---------------------------------------------------------------------

@pytest.mark.slow
def test_processors_are_restored_after_a_run_and_after_an_error(pipe, tiny_sdxl_dir):
    originals = dict(pipe.unet.attn_processors)
    generate_pairs(pipe, [SOURCE], [TARGET], [3], _config(tiny_sdxl_dir, steps=1))
    assert all(pipe.unet.attn_processors[name] is proc for name, proc in originals.items())

    def explode(edit):
        raise RuntimeError("observer failed")

    with pytest.raises(RuntimeError, match="observer failed"):
        generate_pairs(pipe, [SOURCE], [TARGET], [3], _config(tiny_sdxl_dir, steps=1), explode)
    assert all(pipe.unet.attn_processors[name] is proc for name, proc in originals.items())

    controller = RefineController([refinement_alignment([1], [1])], num_steps=1)
    with p2p_processors(pipe.unet, controller):
        installed = pipe.unet.attn_processors
        assert all(isinstance(p, P2PAttnProcessor) and p.controller is controller for p in installed.values())
        assert {p.place for p in installed.values()} == {name.removesuffix(".processor") for name in originals}
    assert all(pipe.unet.attn_processors[name] is proc for name, proc in originals.items())


@pytest.mark.slow
def test_tiny_sdxl_tokenizers_are_clips_real_bpe(pipe):
    import open_clip

    prompts = [SOURCE, "Two dogs, 1 frisbee & a red-haired man!"]
    ours = pipe.tokenizer(prompts, padding="max_length", max_length=77, return_tensors="pt").input_ids
    theirs = open_clip.get_tokenizer("ViT-B-32")(prompts)  # pads with 0
    for row_ours, row_theirs in zip(ours, theirs):
        n = int((row_theirs != 0).sum())
        assert row_ours[:n].tolist() == row_theirs[:n].tolist()
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.model_max_length == 77
