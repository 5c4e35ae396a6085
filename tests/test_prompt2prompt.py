"""SDXL + Prompt2Prompt pairs on a tiny random SDXL loaded through ``from_pretrained``.

What a user relies on: identical prompts give plain SDXL bit for bit; with different prompts the
target's cross-attention is the source's, mapped through the token alignment, for exactly the
configured fraction of steps (self-attention likewise), and that edit reaches the after image;
the before image is plain SDXL of the source prompt; seeds are recorded; bad inputs raise a
one-line ValueError showing the value; the UNet gets its own processors back.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from pairsmith.models.lazy import clear_loaded
from pairsmith.models.p2p_attention import (
    P2PAttnProcessor,
    RefineController,
    TokenAlignment,
    p2p_processors,
    refinement_alignment,
)
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.sdxl_p2p import ImagePair, PairRequest, SdxlP2PConfig, SdxlP2PGenerator, generate_pairs
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


def test_refine_alignment_maps_shared_words_and_leaves_new_words_their_own_maps():
    from open_clip.tokenizer import SimpleTokenizer  # CLIP's BPE; the SDXL tokenizers give the same ids

    tok = SimpleTokenizer()
    src, tgt = ([tok.sot_token_id, *tok.encode(p), tok.eot_token_id] for p in (SOURCE, TARGET))
    # [bos a cat on a sofa eos] and [bos a big dog on a sofa eos]
    assert len(src) == 7 and len(tgt) == 8
    alignment = refinement_alignment(src, tgt)
    assert alignment.mapper[:8] == (0, 1, 2, 3, 3, 4, 5, 6)
    assert alignment.alphas[:8] == (1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0)  # "big", "dog" are target-only
    assert alignment.mapper[8:12] == (7, 8, 9, 10)  # padding after the end token, by offset
    assert alignment.mapper[76] == 75 and alignment.alphas[8:] == (1.0,) * 69


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


@pytest.mark.slow
def test_cross_attention_is_the_sources_through_the_mapper_for_the_replaced_steps(edited_run, pipe):
    _, edits = edited_run
    alignment = refinement_alignment(pipe.tokenizer(SOURCE).input_ids, pipe.tokenizer(TARGET).input_ids)
    mapper, alphas = torch.tensor(alignment.mapper), torch.tensor(alignment.alphas)
    cross = [e for e in edits if e.is_cross]
    assert {e.step for e in cross} == set(range(STEPS))
    n_layers = len([name for name in pipe.unet.attn_processors if name.endswith("attn2.processor")])
    assert len(cross) == STEPS * n_layers

    for e in cross:
        assert e.used.shape[-1] == 77
        if e.step < 2:  # cross_replace 0.5 of 4 steps
            assert e.replaced
            shared, new = alphas == 1, alphas == 0
            assert torch.equal(e.used[..., shared], e.source[..., mapper[shared]])
            assert torch.equal(e.used[..., new], e.target[..., new])  # "big", "dog" keep their own maps
        else:
            assert not e.replaced and torch.equal(e.used, e.target)
    # Not vacuous: the target's own maps differ from the source's it was given.
    first = cross[0]
    assert not torch.equal(first.target[..., alphas == 1], first.used[..., alphas == 1])


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
