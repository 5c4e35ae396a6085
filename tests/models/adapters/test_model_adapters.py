"""CLIP, BLIP-ITM and FastSAM adapters, run for real on tiny random models loaded through the same
loaders a hub id takes (open_clip, transformers from_pretrained, ultralytics FastSAM)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from pairsmith.models.adapters.blip_itm import BlipItmConfig, BlipItmScorer, ItmScores
from pairsmith.models.adapters.clip_scorer import ClipScorer, ClipScorerConfig, _resolve_weights
from pairsmith.models.adapters.fastsam_proposer import FastSamConfig, FastSamProposer, proposals_from_result
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.tiny.builders import (
    build_tiny_blip_itm,
    build_tiny_clip,
    build_tiny_fastsam,
    hf_cache_snapshot,
)
from tests.network_guard import block_network

CPU = ModelRuntime(device="cpu")


def _noise(seed: int, size=(96, 64)) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def images():
    return [_noise(i, (96 + 8 * i, 64 + 4 * i)) for i in range(5)]


# ---------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


def _clip(tiny_clip, **kw) -> ClipScorer:
    return ClipScorer(ClipScorerConfig(model_name=tiny_clip.model_name, pretrained=str(tiny_clip.weights),
                                       model_config_file=str(tiny_clip.config_file), runtime=CPU, **kw))


def test_clip_embeddings_are_unit_rows_and_batching_changes_nothing(tiny_clip, images):
    batched = _clip(tiny_clip, batch_size=2).image_embeddings_batch(images)
    single = np.concatenate([_clip(tiny_clip, batch_size=1).image_embeddings_batch([im]) for im in images])
    assert batched.shape == (5, 16) and batched.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, single, atol=1e-5)
    texts = ["a dog on a sofa", "a red car", "two apples in a bowl"]
    text_emb = _clip(tiny_clip, batch_size=2).text_embeddings_batch(texts)
    assert text_emb.shape == (3, 16)
    np.testing.assert_allclose(text_emb[1], _clip(tiny_clip).text_embeddings_batch(texts[1:2])[0], atol=1e-5)


def test_clip_cosines_pair_rows_up_in_order(tiny_clip, images):
    scorer = _clip(tiny_clip, batch_size=3)
    sims = scorer.image_similarity_batch([(images[0], images[0]), (images[0], images[1]), (images[2], images[2].copy())])
    assert sims.shape == (3,)
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[2] == pytest.approx(1.0, abs=1e-5)
    emb = scorer.image_embeddings_batch(images[:2])
    assert sims[1] == pytest.approx(float(emb[0] @ emb[1]), abs=1e-5) and sims[1] < 0.99999
    text_sims = scorer.text_similarity_batch([("a dog", "a dog"), ("a dog", "a red car")])
    assert text_sims[0] == pytest.approx(1.0, abs=1e-5) and text_sims[1] < 0.99999
    cross = scorer.image_text_similarity_batch([(images[0], "a dog"), (images[1], "a red car")])
    expected = [float(scorer.image_embeddings_batch([im])[0] @ scorer.text_embeddings_batch([t])[0])
                for im, t in [(images[0], "a dog"), (images[1], "a red car")]]
    np.testing.assert_allclose(cross, expected, atol=1e-5)
    assert scorer.image_similarity_batch([]).shape == (0,)


def test_clip_uses_the_real_clip_bpe_and_fp32_on_cpu(tiny_clip):
    loaded = _clip(tiny_clip).loaded()
    ids = loaded.tokenizer(["a photo of a dog"])[0, :7].tolist()
    assert ids == [49406, 320, 1125, 539, 320, 1929, 49407]  # CLIP's start, a, photo, of, a, dog, end
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_clip_hub_repo_loads_from_the_cache_folder_offline(tiny_clip, images, tmp_path, monkeypatch):
    attempts = block_network(monkeypatch)
    hf_cache_snapshot(tmp_path / "cache", "pairsmith-test/tiny-clip", tiny_clip.folder)
    hub = ClipScorer(ClipScorerConfig(model_name="hf-hub:pairsmith-test/tiny-clip",
                                      runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "cache"), offline=True)))
    np.testing.assert_allclose(hub.image_embeddings_batch(images[:2]), _clip(tiny_clip).image_embeddings_batch(images[:2]),
                               atol=1e-6)
    empty = ClipScorer(ClipScorerConfig(model_name="hf-hub:pairsmith-test/tiny-clip",
                                        runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "empty"), offline=True)))
    with pytest.raises(FileNotFoundError, match="pairsmith-test/tiny-clip.*offline"):
        empty.loaded()
    assert attempts == []


def test_clip_pretrained_tags_resolve_through_the_cache_with_their_preprocessing(tmp_path, monkeypatch):
    """The default ViT-B-32/openai resolves to the cached hub file, with OpenAI's QuickGELU."""
    assert ClipScorerConfig().model_name == "ViT-B-32" and ClipScorerConfig().pretrained == "openai"
    weights = tmp_path / "open_clip_model.safetensors"
    weights.write_bytes(b"stand-in: only the file lookup is exercised here")
    attempts = block_network(monkeypatch)
    hf_cache_snapshot(tmp_path / "cache", "timm/vit_base_patch32_clip_224.openai", weights)
    offline = ModelRuntime(device="cpu", cache_dir=str(tmp_path / "cache"), offline=True)
    name, path, extra = _resolve_weights("ViT-B-32", "openai", offline)
    assert name == "ViT-B-32" and path.endswith("open_clip_model.safetensors") and str(tmp_path / "cache") in path
    assert extra["force_quick_gelu"] is True and extra["image_interpolation"] == "bicubic"
    with pytest.raises(FileNotFoundError, match="CLIP-ViT-B-32-laion2B-s34B-b79K.*offline"):
        _resolve_weights("ViT-B-32", "laion2b_s34b_b79k", offline)
    with pytest.raises(ValueError, match="unknown open_clip pretrained 'nonsense'"):
        _resolve_weights("ViT-B-32", "nonsense", offline)
    assert attempts == []


def test_clip_refuses_an_empty_crop_by_index(tiny_clip, images):
    with pytest.raises(ValueError, match="image 1 is empty"):
        _clip(tiny_clip).image_embeddings_batch([images[0], images[0].crop((10, 10, 10, 30))])


# ---------------------------------------------------------------- BLIP ITM


@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory):
    return build_tiny_blip_itm(tmp_path_factory.mktemp("tiny-blip"))


PAIRS_TEXT = ["a dog", "a red car next to a tree", "two apples in a bowl", "cat", "a man riding a bicycle"]


def test_blip_scores_equal_the_models_own_forward_and_batching_changes_nothing(tiny_blip, images, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scorer = BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), batch_size=2, runtime=CPU))
    pairs = list(zip(images, PAIRS_TEXT))
    scores = scorer.score_batch(pairs)
    assert isinstance(scores, ItmScores) and len(scores) == 5
    assert ((scores.itm >= 0) & (scores.itm <= 1)).all() and ((scores.cosine >= -1) & (scores.cosine <= 1)).all()
    single = [BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), batch_size=1, runtime=CPU)).score_batch([p])
              for p in pairs]
    np.testing.assert_allclose(scores.itm, [s.itm[0] for s in single], atol=1e-5)
    np.testing.assert_allclose(scores.cosine, [s.cosine[0] for s in single], atol=1e-5)
    loaded = scorer.loaded()
    inputs = loaded.processor(images=[images[1]], text=[PAIRS_TEXT[1]], return_tensors="pt")
    with torch.no_grad():
        itm = loaded.model(**inputs, use_itm_head=True).itm_score.softmax(dim=-1)[0, 1].item()
        cosine = loaded.model(**inputs, use_itm_head=False).itm_score[0, 0].item()
    assert scores.itm[1] == pytest.approx(itm, abs=1e-5) and scores.cosine[1] == pytest.approx(cosine, abs=1e-5)
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_blip_config_picks_the_score_filters_read(tiny_blip, images):
    pairs = [(images[0], "a dog"), (images[1], "a red car")]
    itm = BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), runtime=CPU))
    cos = BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), runtime=CPU, score="cosine"))
    both = itm.score_batch(pairs)
    np.testing.assert_array_equal(itm.selected_batch(pairs), both.itm)
    np.testing.assert_array_equal(cos.selected_batch(pairs), both.cosine)
    with pytest.raises(ValidationError):
        BlipItmConfig(score="probability")
    assert BlipItmConfig().model_id == "Salesforce/blip-itm-large-coco"
    assert len(itm.score_batch([])) == 0


def test_blip_loads_the_default_hub_id_from_a_cache_folder_offline(tiny_blip, images, tmp_path, monkeypatch):
    attempts = block_network(monkeypatch)
    hf_cache_snapshot(tmp_path / "cache", "Salesforce/blip-itm-large-coco", tiny_blip)
    cached = BlipItmScorer(BlipItmConfig(runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "cache"),
                                                              offline=True)))
    direct = BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), runtime=CPU))
    pairs = [(images[0], "a dog")]
    np.testing.assert_allclose(cached.score_batch(pairs).itm, direct.score_batch(pairs).itm, atol=1e-6)
    missing = BlipItmScorer(BlipItmConfig(runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "none"),
                                                               offline=True)))
    with pytest.raises(OSError):
        missing.loaded()
    assert attempts == []


def test_blip_refuses_bad_pairs_by_index(tiny_blip, images):
    scorer = BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), runtime=CPU))
    with pytest.raises(ValueError, match="pair 1: text is empty"):
        scorer.score_batch([(images[0], "a dog"), (images[1], "  ")])


# ---------------------------------------------------------------- FastSAM


@pytest.fixture(scope="module")
def fastsam_cache(tmp_path_factory):
    """A tiny FastSAM saved under the default weights name in a models cache folder."""
    cache = tmp_path_factory.mktemp("fastsam-cache")
    build_tiny_fastsam(cache / "FastSAM-x.pt")
    return cache


def _fastsam(cache, **kw) -> FastSamProposer:
    runtime = ModelRuntime(device="cpu", cache_dir=str(cache), offline=True)
    return FastSamProposer(FastSamConfig(runtime=runtime, imgsz=128, **kw))


def _assert_well_formed(proposals, width, height):
    boxes = proposals.boxes
    assert boxes.shape == (len(proposals), 4) and proposals.masks.shape == (len(proposals), height, width)
    assert proposals.masks.dtype == bool and proposals.scores.shape == (len(proposals),)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert (np.diff(proposals.scores) <= 0).all()


@pytest.mark.slow
def test_fastsam_proposes_well_formed_regions_per_image_in_batches(fastsam_cache):
    pictures = [_noise(10 + i, (150, 100)) for i in range(3)]
    # conf 0 makes the random model return segments, so there is something to check.
    batched = _fastsam(fastsam_cache, conf=0.0, batch_size=2, max_det=20).propose_batch(pictures)
    assert len(batched) == 3 and all(len(p) > 0 for p in batched)
    for proposals in batched:
        _assert_well_formed(proposals, 150, 100)
        assert len(proposals) <= 20 and len(proposals.box_list()[0]) == 4
    single = [_fastsam(fastsam_cache, conf=0.0, batch_size=1, max_det=20).propose_batch([p])[0] for p in pictures]
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        assert (a.masks == b.masks).all()
    default_conf = _fastsam(fastsam_cache).propose_batch(pictures[:1])[0]  # Img-Diff's conf 0.05
    _assert_well_formed(default_conf, 150, 100)


def test_fastsam_post_processing_clips_drops_resizes_and_sorts():
    from ultralytics.engine.results import Results

    width, height = 80, 60
    boxes = torch.tensor([
        [10.0, 5.0, 30.0, 25.0, 0.30, 0],    # inside
        [-5.0, 40.0, 95.0, 70.0, 0.90, 0],   # spills over three edges: clipped
        [50.0, 20.0, 50.0, 40.0, 0.80, 0],   # zero width: dropped
    ])
    masks = torch.zeros(3, 30, 40)  # half resolution, as without retina masks
    masks[0, 2:13, 5:15] = 1
    masks[1, 20:30, :] = 1
    result = Results(np.zeros((height, width, 3), np.uint8), "synthetic.png", {0: "object"}, boxes=boxes, masks=masks)
    proposals = proposals_from_result(result, width, height)
    assert len(proposals) == 2
    np.testing.assert_allclose(proposals.boxes, [[0, 40, 80, 60], [10, 5, 30, 25]])
    np.testing.assert_allclose(proposals.scores, [0.9, 0.3], atol=1e-6)
    assert proposals.masks.shape == (2, 60, 80)
    assert proposals.masks[1, 4:26, 10:30].all() and proposals.masks[1].sum() == 22 * 20
    assert proposals.masks[0, 40:60].all() and not proposals.masks[0, :40].any()
    empty = proposals_from_result(Results(np.zeros((height, width, 3), np.uint8), "x", {0: "object"},
                                          boxes=torch.zeros(0, 6)), width, height)
    assert len(empty) == 0 and empty.masks.shape == (0, 60, 80)


def test_fastsam_weights_come_from_the_cache_and_offline_never_downloads(fastsam_cache, tmp_path, monkeypatch):
    attempts = block_network(monkeypatch)
    assert FastSamConfig().weights == "FastSAM-x.pt" and (FastSamConfig().conf, FastSamConfig().iou) == (0.05, 0.5)
    assert type(_fastsam(fastsam_cache).loaded().model).__name__ == "FastSAM"
    missing = FastSamProposer(FastSamConfig(runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path), offline=True)))
    with pytest.raises(FileNotFoundError, match="FastSAM-x.pt.*offline"):
        missing.loaded()
    assert attempts == []


# ---------------------------------------------------------------- shared adapter behaviour


def test_adapters_pickle_without_weights_and_load_once_per_process(tiny_clip, tiny_blip, fastsam_cache):
    adapters = [
        _clip(tiny_clip),
        BlipItmScorer(BlipItmConfig(model_id=str(tiny_blip), runtime=CPU)),
        _fastsam(fastsam_cache),
    ]
    for adapter in adapters:
        loaded = adapter.loaded()
        payload = pickle.dumps(adapter)
        assert len(payload) < 4000  # the config only, never the weights
        restored = pickle.loads(payload)
        assert restored.config == adapter.config and restored.loaded() is loaded
        assert type(adapter)(adapter.config).loaded() is loaded
