"""Shared model plumbing: the tiny Qwen2-VL builder, device/dtype choice, lazy per-process loading."""

from __future__ import annotations

import pickle

import pytest
import torch
from PIL import Image

from pairsmith.models.lazy import LazyModel, clear_loaded
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory):
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


def test_tiny_qwen2_vl_reloads_through_the_auto_classes_and_sees_two_images(tiny_vlm_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    processor = AutoProcessor.from_pretrained(tiny_vlm_dir)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 500_000
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "What changed?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.count("<|image_pad|>") == 2 and text.endswith("<|im_start|>assistant\n")
    images = [Image.new("RGB", (320, 240), "red"), Image.new("RGB", (320, 240), "blue")]
    inputs = processor(text=[text], images=images, return_tensors="pt")
    assert inputs["image_grid_thw"].shape == (2, 3)
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4 or out[0, -1] == model.generation_config.eos_token_id


def test_runtime_picks_fp32_on_cpu_and_refuses_a_missing_gpu():
    cpu = ModelRuntime(device="cpu")
    assert cpu.torch_device().type == "cpu" and cpu.torch_dtype() == torch.float32
    assert ModelRuntime(device="cpu", dtype="bfloat16").torch_dtype() == torch.bfloat16
    if not torch.cuda.is_available():
        assert ModelRuntime().torch_device().type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            ModelRuntime(device="cuda").torch_device()


def test_runtime_honours_offline_mode_and_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert ModelRuntime(cache_dir=str(tmp_path)).hf_kwargs() == {"cache_dir": str(tmp_path), "local_files_only": True}
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert ModelRuntime().hf_kwargs() == {}
    assert ModelRuntime(offline=True).hf_kwargs() == {"local_files_only": True}


class _Counting(LazyModel[ModelRuntime]):
    loads = 0

    def _load(self):
        type(self).loads += 1
        return object()


def test_lazy_models_load_once_per_process_and_pickle_without_weights():
    clear_loaded()
    a, b = _Counting(ModelRuntime()), _Counting(ModelRuntime())
    assert a.loaded() is b.loaded() and _Counting.loads == 1
    restored = pickle.loads(pickle.dumps(a))
    assert restored.config == a.config and restored.loaded() is a.loaded()
    assert _Counting(ModelRuntime(dtype="float16")).loaded() is not a.loaded()
    clear_loaded()


class _Unreachable(LazyModel[ModelRuntime]):
    tries = 0

    def _load(self):
        type(self).tries += 1
        raise OSError(f"cannot reach the hub (try {self.tries})")


def test_a_failed_load_is_not_paid_again_by_every_batch_of_the_run(monkeypatch):
    """Offline without HF_HUB_OFFLINE one from_pretrained spends minutes in retries: the next
    batches get the same error at once, and after FAILED_LOAD_SECONDS the load is tried again."""
    clear_loaded()
    clock = [1000.0]
    monkeypatch.setattr("pairsmith.models.lazy.time.monotonic", lambda: clock[0])
    for _ in range(3):
        with pytest.raises(OSError, match=r"try 1\)$"):
            _Unreachable(ModelRuntime()).loaded()
    assert _Unreachable.tries == 1
    with pytest.raises(OSError, match=r"try 2\)$"):
        _Unreachable(ModelRuntime(dtype="float16")).loaded()  # another config is its own load
    clock[0] += 601
    with pytest.raises(OSError, match=r"try 3\)$"):
        _Unreachable(ModelRuntime()).loaded()
    clear_loaded()
    with pytest.raises(OSError, match=r"try 4\)$"):
        _Unreachable(ModelRuntime()).loaded()
    clear_loaded()


def test_vlm_chat_answers_batches_in_order_with_any_number_of_images(tiny_vlm_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig, VlmRequest

    chat = VlmChat(VlmConfig(model_id=str(tiny_vlm_dir), max_new_tokens=6, batch_size=2,
                             runtime=ModelRuntime(device="cpu")))
    red, blue = Image.new("RGB", (320, 240), "red"), Image.new("RGB", (200, 150), "blue")
    requests = [
        VlmRequest((red, blue), "What changed?"),
        VlmRequest((red,), "Describe the object within the red box."),
        VlmRequest((blue, red), "What changed?"),
    ]
    batched = chat.generate_batch(requests)
    one_by_one = [chat.generate(list(r.images), r.prompt) for r in requests]
    assert len(batched) == 3 and all(isinstance(a, str) for a in batched)
    assert batched == one_by_one  # greedy decoding: left padding must not change answers
    assert pickle.loads(pickle.dumps(chat)).loaded() is chat.loaded()


def test_vlm_option_scoring_picks_one_option_per_request_consistently(tiny_vlm_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig, VlmRequest

    chat = VlmChat(VlmConfig(model_id=str(tiny_vlm_dir), batch_size=3, runtime=ModelRuntime(device="cpu")))
    img = Image.new("RGB", (160, 120), "green")
    requests = [VlmRequest((img,), "Is this photo editable? Answer yes or no."),
                VlmRequest((img, img), "Which category? Object, Attribute, Scene or Counting?")]
    options = [["yes", "no"], ["Object", "Attribute", "Scene", "Counting"]]
    scored = chat.score_options_batch(requests, options)
    assert [len(s.scores) for s in scored] == [2, 4]
    assert all(all(v < 0 for v in s.scores) for s in scored)  # log-likelihoods
    alone = VlmChat(VlmConfig(model_id=str(tiny_vlm_dir), batch_size=1, runtime=ModelRuntime(device="cpu")))
    again = alone.score_options_batch(requests, options)
    for a, b in zip(scored, again):  # padding and batching must not change the scores
        assert a.best == b.best
        assert all(abs(x - y) < 1e-4 for x, y in zip(a.scores, b.scores))
    with pytest.raises(ValueError, match="2 requests but 1 option lists"):
        chat.score_options_batch(requests, options[:1])
