"""SDXL-turbo inpainting on a tiny random sdxl-turbo-shaped pipeline, loaded the way users load it.

What a user relies on: the folder loads through ``AutoPipelineForInpainting``; each result has
its input's size; pixels change inside the (dilated) mask and nowhere else; batches of mixed
sizes come back in order; bad items raise a one-line ValueError naming the item.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pairsmith.models.lazy import clear_loaded
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.adapters.sdxl_inpaint import InpaintConfig, InpaintRequest, SdxlInpainter, working_size
from pairsmith.models.tiny.sdxl import build_tiny_sdxl_turbo, hub_cache_copy

BOX = (20, 10, 50, 40)  # x1, y1, x2, y2 (inclusive) in an 80x60 image


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_turbo_dir(tmp_path_factory):
    return build_tiny_sdxl_turbo(tmp_path_factory.mktemp("tiny-sdxl-turbo"))


def _inpainter(model_dir, **overrides) -> SdxlInpainter:
    fields = dict(model_id=str(model_dir), runtime=ModelRuntime(device="cpu"), resolution=64, batch_size=2)
    return SdxlInpainter(InpaintConfig(**{**fields, **overrides}))


@pytest.fixture(scope="module")
def inpainter(tiny_turbo_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        adapter = _inpainter(tiny_turbo_dir)
        adapter.loaded()
    yield adapter
    clear_loaded()


def _scene(size=(80, 60), seed=0) -> Image.Image:
    rng = np.random.RandomState(seed)
    return Image.fromarray((rng.rand(size[1], size[0], 3) * 255).astype("uint8"))


def _mask(size=(80, 60), box=BOX) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def _changed(before: Image.Image, after: Image.Image) -> np.ndarray:
    return (np.abs(np.asarray(before, np.int16) - np.asarray(after, np.int16)).sum(-1) > 0)


@pytest.mark.slow
def test_turbo_folder_loads_as_the_sdxl_inpainting_pipeline(inpainter):
    pipe = inpainter.loaded()
    assert type(pipe).__name__ == "StableDiffusionXLInpaintPipeline"
    assert pipe.unet.config.in_channels == 4  # sdxl-turbo's text-to-image UNet, as on the hub


@pytest.mark.slow
def test_inpainting_changes_the_mask_region_only_and_keeps_the_size(inpainter):
    image, mask = _scene(), _mask()
    (out,) = inpainter.inpaint_batch([InpaintRequest(image, mask, seed=1)])
    assert out.size == image.size and out.mode == "RGB"
    changed, inside = _changed(image, out), np.asarray(mask) > 0
    assert changed[inside].mean() > 0.9
    assert not changed[~inside].any()


@pytest.mark.slow
def test_a_dilated_mask_also_repaints_the_objects_edge_and_nothing_further(tiny_turbo_dir):
    image, mask = _scene(), _mask()
    out = _inpainter(tiny_turbo_dir, mask_dilation=3).inpaint(image, mask, seed=1)
    changed = _changed(image, out)
    x1, y1, x2, y2 = BOX
    ring = np.zeros_like(changed)
    ring[y1 - 3:y2 + 4, x1 - 3:x2 + 4] = True
    ring[y1:y2 + 1, x1:x2 + 1] = False
    far = np.ones_like(changed)
    far[y1 - 3:y2 + 4, x1 - 3:x2 + 4] = False
    assert changed[ring].mean() > 0.5 and not changed[far].any()


@pytest.mark.slow
def test_batches_of_mixed_sizes_come_back_in_order_each_with_its_seed(inpainter):
    requests = [
        InpaintRequest(_scene(), _mask(), seed=1),
        InpaintRequest(_scene((64, 64), seed=1), _mask((64, 64), (5, 5, 30, 30)), seed=2),
        InpaintRequest(_scene(seed=2), _mask(box=(0, 0, 10, 59)), seed=3),
    ]
    out = inpainter.inpaint_batch(requests)
    assert [o.size for o in out] == [(80, 60), (64, 64), (80, 60)]
    for request, result in zip(requests, out):
        inside = np.asarray(request.mask) > 0
        changed = _changed(request.image, result)
        assert changed[inside].mean() > 0.9 and not changed[~inside].any()
    # Item 0 ran in a batch of 2 (with item 2); alone it gives the same picture, up to CPU rounding.
    alone = inpainter.inpaint(requests[0].image, requests[0].mask, seed=1)
    assert np.abs(np.asarray(alone, np.int16) - np.asarray(out[0], np.int16)).max() <= 2
    other_seed = inpainter.inpaint(requests[0].image, requests[0].mask, seed=9)
    assert not np.array_equal(np.asarray(other_seed), np.asarray(alone))


def test_working_size_keeps_the_aspect_in_multiples_of_8():
    assert working_size((1024, 768), 512) == (512, 384)
    assert working_size((80, 60), 64) == (64, 48)
    assert working_size((300, 1000), 512) == (152, 512)


def test_bad_items_raise_a_value_error_naming_the_item():
    inpainter = _inpainter("never-loaded")  # items are checked before the model loads
    good = InpaintRequest(_scene(), _mask())
    with pytest.raises(ValueError, match=r"item 1: mask size \(64, 64\) != image size \(80, 60\)"):
        inpainter.inpaint_batch([good, InpaintRequest(_scene(), _mask((64, 64)))])
    with pytest.raises(ValueError, match=r"item 0: mask is empty"):
        inpainter.inpaint_batch([InpaintRequest(_scene(), Image.new("L", (80, 60), 0))])
    with pytest.raises(ValueError, match=r"item 0: seed .* got -1"):
        inpainter.inpaint_batch([InpaintRequest(_scene(), _mask(), seed=-1)])
    with pytest.raises(ValueError, match=r"steps \* strength must reach 1 step, got 4 \* 0\.2"):
        InpaintConfig(strength=0.2)
    with pytest.raises(ValueError, match=r"extra"):
        InpaintConfig(num_steps=4)


@pytest.mark.slow
def test_the_default_hub_id_loads_offline_from_a_models_cache(tiny_turbo_dir, tmp_path):
    hub_cache_copy(tmp_path / "hub", "stabilityai/sdxl-turbo", tiny_turbo_dir)
    runtime = ModelRuntime(device="cpu", cache_dir=str(tmp_path / "hub"), offline=True)
    out = SdxlInpainter(InpaintConfig(runtime=runtime, resolution=64)).inpaint(_scene(), _mask(), seed=1)
    assert out.size == (80, 60)


def test_config_defaults_are_img_diffs_and_the_adapter_pickles_without_weights():
    config = InpaintConfig()
    assert config.model_id == "stabilityai/sdxl-turbo"
    assert (config.prompt, config.steps, config.guidance_scale) == ("background, nothing, 8k", 4, 0.0)
    restored = pickle.loads(pickle.dumps(SdxlInpainter(config)))
    assert vars(restored) == {"config": config}
