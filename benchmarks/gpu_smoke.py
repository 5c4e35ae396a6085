"""Every GPU code path of pairsmith, once each, on tiny random models: the check for the day a GPU is lent.

Each path runs the project's own adapter (built from a config and loaded back through the real
loader, as the tests do) on ``cuda``, or on the CPU with ``--cpu``, and prints one line:

    PATH ok|fail SECONDS PEAK_GPU_MEM_MB key=value ...

The key=value facts show where the work really ran: ``device`` and ``dtype`` are read from the output
tensors of the model's main module (forward hooks) or, where the adapter hides them, from its
parameters. Paths: ``dig-render`` (2 pairs, Cycles on the GPU: CUDA, else OptiX), ``p2p-bf16`` /
``p2p-fp16`` (SDXL + Prompt-to-Prompt pairs) with ``-identical`` (identical prompts must give plain
SDXL bit for bit), ``inpaint-bf16`` / ``inpaint-fp16`` (SDXL-turbo), ``fastsam``, ``clip``, ``blip``,
``vlm-caption``, ``vlm-adapter`` (a LoRA adapter merged on load, as evaluate does), ``caption-llm``,
``sft`` and ``grpo`` (2 LoRA steps each) and ``ray`` (a Ray task with ``num_gpus=1``; 0 with
``--cpu``). A failing path prints its error and never stops the others; the exit code is 1 if any
path failed (2: bad arguments, or no CUDA GPU without ``--cpu``).

    python benchmarks/gpu_smoke.py --out /tmp/smoke            # on the GPU machine (< 5 min)
    python benchmarks/gpu_smoke.py --out /tmp/smoke --cpu      # anywhere (CI runs this)

Everything is written under ``--out`` (tiny models, images, adapters, the Prefect and CUDA caches,
``results.jsonl`` and a traceback per failed path); each run replaces its own folders there, so it
is safe to run twice. Cycles ships no kernel for every GPU: without a matching cubin
(``cycles_kernel=ptx-jit``) the first GPU render compiles one, which can take minutes, so the render
runs in a child process beside the other paths and is cut off after ``--render-timeout`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

PATHS = (
    "dig-render", "p2p-bf16", "p2p-bf16-identical", "p2p-fp16", "p2p-fp16-identical", "inpaint-bf16",
    "inpaint-fp16", "fastsam", "clip", "blip", "vlm-caption", "vlm-adapter", "caption-llm", "sft", "grpo", "ray",
)
SOURCE, TARGET = "a cat on a sofa", "a big dog on a sofa"
SHORT = {"bfloat16": "bf16", "float16": "fp16"}


def _set_environment(out: Path, prefect_home: Path) -> None:
    """No network, and every cache this run writes inside ``out``; set before the libraries load."""
    defaults = {
        "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "TOKENIZERS_PARALLELISM": "false",
        "HF_HOME": out / "cache" / "hf", "YOLO_CONFIG_DIR": out / "cache" / "ultralytics",
        "MPLCONFIGDIR": out / "cache" / "matplotlib",
        # A Cycles kernel JIT-compiled from PTX is cached here, so a second run starts at once.
        "CUDA_CACHE_PATH": out / "cache" / "cuda", "CUDA_CACHE_MAXSIZE": str(4 << 30),
        "PREFECT_HOME": prefect_home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, str(value))
    Path(os.environ["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)  # sqlite makes no folders


class CheckFailed(Exception):
    """A path ran but its output is wrong (wrong device, dtype, non-finite values, ...)."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass
class PathResult:
    path: str
    ok: bool
    seconds: float
    peak_gpu_mem_mb: float
    facts: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        facts = " ".join(f"{k}={_show(v)}" for k, v in self.facts.items())
        status = "ok" if self.ok else "fail"
        return f"{self.path} {status} {self.seconds:.2f} {self.peak_gpu_mem_mb:.1f} {facts}".rstrip()


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    return json.dumps(text) if (" " in text or not text) else text


@dataclass
class Smoke:
    """Where the paths run and where they write; tiny models are built on first use."""

    out: Path
    device: str  # "cuda" or "cpu"
    dtype: str  # ModelRuntime dtype for paths without a fixed one ("auto": bf16/fp16 on GPU, fp32 on CPU)
    _built: dict[str, Any] = field(default_factory=dict)

    def runtime(self, dtype: str | None = None):
        from pairsmith.models.runtime import ModelRuntime

        return ModelRuntime(device=self.device, dtype=dtype or self.dtype)

    def folder(self, path: str) -> Path:
        folder = self.out / path
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def model(self, name: str):
        if name not in self._built:
            from pairsmith.models.tiny import builders, qwen2_vl, sdxl

            where = self.out / "models" / name
            shutil.rmtree(where, ignore_errors=True)
            build = {
                "sdxl": sdxl.build_tiny_sdxl, "sdxl-turbo": sdxl.build_tiny_sdxl_turbo,
                "clip": builders.build_tiny_clip, "blip": builders.build_tiny_blip_itm,
                "fastsam": lambda d: builders.build_tiny_fastsam(Path(d) / "tiny-fastsam.pt"),
                "qwen2-vl": qwen2_vl.build_tiny_qwen2_vl, "chat-llm": builders.build_tiny_chat_llm,
            }[name]
            self._built[name] = build(where)
        return self._built[name]


# --- observing where tensors live ---------------------------------------------------------------


def _first_tensor(output):
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    elif hasattr(output, "sample"):
        output = [output.sample]
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@contextlib.contextmanager
def watch(module) -> Iterator[dict[str, Any]]:
    """Record the device and dtype of ``module``'s output, and whether every output was finite."""
    import torch

    seen: dict[str, Any] = {}

    def hook(_module, _args, output):
        tensor = _first_tensor(output)
        if tensor is None:
            return
        seen.setdefault("device", str(tensor.device))
        seen.setdefault("dtype", str(tensor.dtype).removeprefix("torch."))
        seen["calls"] = seen.get("calls", 0) + 1
        finite = bool(torch.isfinite(tensor.float()).all()) if tensor.is_floating_point() else True
        seen["finite"] = seen.get("finite", True) and finite

    handle = module.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def expect_placed(smoke: Smoke, seen: dict[str, Any], what: str, dtype: str | None = None) -> None:
    expect(bool(seen.get("calls")), f"{what} never ran")
    expect(seen["device"].split(":")[0] == smoke.device, f"{what} output on {seen['device']}, not {smoke.device}")
    expect(dtype is None or seen["dtype"] == dtype, f"{what} output is {seen['dtype']}, not {dtype}")
    expect(seen["finite"], f"{what} output has NaN or inf")


def _dtype_name(runtime) -> str:
    return str(runtime.torch_dtype()).removeprefix("torch.")


def _param(module):
    return next(p for p in module.parameters())


def _noise(seed: int, size=(80, 60)):
    import numpy as np
    from PIL import Image

    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --- the paths ----------------------------------------------------------------------------------


def _p2p_generator(smoke: Smoke, dtype: str):
    from pairsmith.models.adapters.sdxl_p2p import SdxlP2PConfig, SdxlP2PGenerator

    return SdxlP2PGenerator(SdxlP2PConfig(
        model_id=str(smoke.model("sdxl")), runtime=smoke.runtime(dtype), steps=4, guidance_scale=5.0,
        height=64, width=64, self_replace=0.5, cross_replace=1.0, self_replace_min_downscale=1,
    ))


def p2p_pair(smoke: Smoke, dtype: str) -> dict[str, Any]:
    import numpy as np

    from pairsmith.models.adapters.sdxl_p2p import generate_pairs

    generator = _p2p_generator(smoke, dtype)
    pipe = generator.loaded()
    maps: dict[str, str] = {}
    with watch(pipe.unet) as unet, watch(pipe.vae.decoder) as vae:
        pairs = generate_pairs(pipe, [SOURCE, "a red car on a road"], [TARGET, "a blue car on a road"], [1, 2],
                               generator.config, observer=lambda e: maps.setdefault("device", str(e.used.device)))
    expect_placed(smoke, unet, "UNet", dtype)
    expect_placed(smoke, vae, "VAE decoder")  # fp16: diffusers decodes in fp32 (the SDXL VAE overflows in fp16)
    folder = smoke.folder(f"p2p-{SHORT[dtype]}")
    differs = []
    for k, pair in enumerate(pairs):
        pair.before.save(folder / f"pair{k}-before.png")
        pair.after.save(folder / f"pair{k}-after.png")
        differs.append(bool((np.asarray(pair.before) != np.asarray(pair.after)).any()))
    expect(maps.get("device", "").split(":")[0] == smoke.device, f"attention maps on {maps.get('device')}")
    expect(all(differs), "a target image equals its source image: the edit did not reach the after image")
    return {"device": unet["device"], "dtype": unet["dtype"], "vae_decode_dtype": vae["dtype"],
            "attn_maps_device": maps["device"], "pairs": len(pairs), "after_differs": all(differs)}


def p2p_identical(smoke: Smoke, dtype: str) -> dict[str, Any]:
    import numpy as np
    import torch

    from pairsmith.models.adapters.sdxl_p2p import generate_pairs

    generator = _p2p_generator(smoke, dtype)
    pipe, config = generator.loaded(), generator.config
    with watch(pipe.unet) as unet:
        pair = generate_pairs(pipe, [SOURCE], [SOURCE], [7], config)[0]
    def plain() -> list:  # SDXL with its own attention processors, the same batch and seeds
        return pipe(
            prompt=[SOURCE, SOURCE], num_inference_steps=config.steps, guidance_scale=config.guidance_scale,
            height=config.height, width=config.width,
            generator=[torch.Generator("cpu").manual_seed(7) for _ in range(2)],
        ).images

    def max_diff(a: list, b: list) -> int:
        return max(int(np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max()) for x, y in zip(a, b))

    first = plain()
    diff, rerun = max_diff([pair.before, pair.after], first), max_diff(plain(), first)
    expect_placed(smoke, unet, "UNet", dtype)
    expect(diff == 0, f"identical prompts differ from plain SDXL by up to {diff} levels "
                      f"(plain SDXL run twice differs by {rerun})")
    return {"device": unet["device"], "dtype": unet["dtype"], "max_pixel_diff": diff, "plain_rerun_diff": rerun}


def inpaint(smoke: Smoke, dtype: str) -> dict[str, Any]:
    import numpy as np
    from PIL import Image, ImageDraw

    from pairsmith.models.adapters.sdxl_inpaint import InpaintConfig, InpaintRequest, SdxlInpainter

    inpainter = SdxlInpainter(InpaintConfig(
        model_id=str(smoke.model("sdxl-turbo")), runtime=smoke.runtime(dtype), steps=2, resolution=64, batch_size=2,
    ))
    requests = []
    for seed in (1, 2):
        mask = Image.new("L", (80, 60), 0)
        ImageDraw.Draw(mask).rectangle((20, 10, 50, 40), fill=255)
        requests.append(InpaintRequest(_noise(seed), mask, seed=seed))
    pipe = inpainter.loaded()
    with watch(pipe.unet) as unet, watch(pipe.vae.encoder) as encoder, watch(pipe.vae.decoder) as decoder:
        images = inpainter.inpaint_batch(requests)
    expect_placed(smoke, unet, "UNet", dtype)
    expect_placed(smoke, encoder, "VAE encoder")
    expect_placed(smoke, decoder, "VAE decoder")
    folder = smoke.folder(f"inpaint-{SHORT[dtype]}")
    changed = []
    for k, (request, image) in enumerate(zip(requests, images)):
        image.save(folder / f"inpainted{k}.png")
        inside = np.asarray(request.mask) > 0
        moved = (np.asarray(image, np.int16) != np.asarray(request.image, np.int16)).any(-1)
        changed.append(float(moved[inside].mean()))
        expect(image.size == request.image.size and not moved[~inside].any(), f"item {k}: pixels outside the mask")
    expect(min(changed) > 0.5, f"the mask was hardly repainted: {changed}")
    return {"device": unet["device"], "dtype": unet["dtype"], "vae_encode_dtype": encoder["dtype"],
            "vae_decode_dtype": decoder["dtype"], "repainted": round(min(changed), 3)}


def fastsam(smoke: Smoke) -> dict[str, Any]:
    import torch

    from pairsmith.models.adapters.fastsam_proposer import FastSamConfig, FastSamProposer

    runtime = smoke.runtime()
    proposer = FastSamProposer(FastSamConfig(weights=str(smoke.model("fastsam")), runtime=runtime, imgsz=128,
                                             batch_size=4))
    proposer.propose_batch([_noise(0, (96, 64))])  # builds ultralytics' predictor and its AutoBackend
    backend = proposer.loaded().model.predictor.model
    with watch(backend.model) as head:  # the torch model inside the AutoBackend
        proposals = proposer.propose_batch([_noise(i, (96, 64)) for i in range(4)])
    param = _param(backend.model)
    half = smoke.device == "cuda" and runtime.torch_dtype() != torch.float32  # ultralytics: fp16, never bf16
    expect_placed(smoke, head, "FastSAM", "float16" if half else "float32")
    expect(param.device.type == smoke.device, f"FastSAM weights on {param.device}")
    expect(len(proposals) == 4 and all(p.masks.shape[1:] == (64, 96) for p in proposals), "proposals do not fit")
    return {"device": head["device"], "dtype": head["dtype"], "predictor_fp16": bool(backend.fp16),
            "boxes": sum(len(p) for p in proposals)}


def clip(smoke: Smoke) -> dict[str, Any]:
    from pairsmith.models.adapters.clip_scorer import ClipScorer, ClipScorerConfig

    tiny = smoke.model("clip")
    runtime = smoke.runtime()
    scorer = ClipScorer(ClipScorerConfig(model_name=tiny.model_name, pretrained=str(tiny.weights),
                                         model_config_file=str(tiny.config_file), runtime=runtime, batch_size=4))
    model = scorer.loaded().model
    images = [_noise(i) for i in range(3)]
    with watch(model.visual) as visual, watch(model.transformer) as text:
        image_sims = scorer.image_similarity_batch([(images[0], images[0]), (images[0], images[1]),
                                                    (images[1], images[2])])
        text_sims = scorer.text_similarity_batch([("a dog", "a dog"), ("a dog", "a red car")])
    expect_placed(smoke, visual, "CLIP image tower", _dtype_name(runtime))
    expect_placed(smoke, text, "CLIP text tower", _dtype_name(runtime))
    expect(abs(image_sims[0] - 1) < 1e-2 and abs(text_sims[0] - 1) < 1e-2, f"self-similarity {image_sims[0]}")
    return {"device": visual["device"], "dtype": visual["dtype"], "text_dtype": text["dtype"],
            "image_sims": [round(float(s), 3) for s in image_sims]}


def blip(smoke: Smoke) -> dict[str, Any]:
    from pairsmith.models.adapters.blip_itm import BlipItmConfig, BlipItmScorer

    runtime = smoke.runtime()
    scorer = BlipItmScorer(BlipItmConfig(model_id=str(smoke.model("blip")), runtime=runtime, batch_size=4))
    model = scorer.loaded().model
    pairs = [(_noise(i), text) for i, text in enumerate(["a dog", "a red car", "two apples", "a cat", "a sofa"])]
    with watch(model.vision_model) as vision, watch(model.text_encoder) as text:
        scores = scorer.score_batch(pairs)
    expect_placed(smoke, vision, "BLIP vision tower", _dtype_name(runtime))
    expect_placed(smoke, text, "BLIP text encoder", _dtype_name(runtime))
    expect(len(scores) == 5 and ((scores.itm >= 0) & (scores.itm <= 1)).all(), f"ITM out of [0, 1]: {scores.itm}")
    return {"device": vision["device"], "dtype": vision["dtype"], "pairs": len(scores),
            "itm": [round(float(s), 3) for s in scores.itm]}


def vlm_caption(smoke: Smoke) -> dict[str, Any]:
    import math

    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig, VlmRequest

    runtime = smoke.runtime()
    chat = VlmChat(VlmConfig(model_id=str(smoke.model("qwen2-vl")), runtime=runtime, max_new_tokens=8, batch_size=4))
    model = chat.loaded().model
    requests = [VlmRequest((_noise(i, (64, 64)), _noise(i + 1, (64, 64)))[: 1 + i % 2], f"Describe region {i}.")
                for i in range(4)]
    with watch(model.get_output_embeddings()) as logits:
        answers = chat.generate_batch(requests)
        options = chat.score_options_batch(requests[:2], [["yes", "no"], ["yes", "no"]])
    expect_placed(smoke, logits, "VLM lm_head", _dtype_name(runtime))
    expect(len(answers) == 4 and all(isinstance(a, str) for a in answers), f"answers: {answers}")
    expect(all(math.isfinite(s) for o in options for s in o.scores), "option log-likelihoods not finite")
    return {"device": logits["device"], "dtype": logits["dtype"], "answers": len(answers),
            "param_device": str(_param(model).device)}


def vlm_adapter(smoke: Smoke) -> dict[str, Any]:
    """How evaluate / bench ask a fine-tuned model: a LoRA adapter merged into the base on load."""
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from pairsmith.models.adapters.adapted_vlm_chat import AdaptedVlmChat, AdaptedVlmConfig, adapter_fingerprint
    from pairsmith.models.adapters.vlm_chat import VlmRequest
    from pairsmith.models.training.vlm_training import LoraSettings

    base, adapter = smoke.model("qwen2-vl"), smoke.folder("vlm-adapter") / "adapter"
    lora = LoraSettings().peft_config()
    lora.init_lora_weights = False  # random LoRA B: merging really changes the weights
    get_peft_model(AutoModelForImageTextToText.from_pretrained(base), lora).save_pretrained(adapter)
    runtime = smoke.runtime()
    chat = AdaptedVlmChat(AdaptedVlmConfig(model_id=str(base), adapter_path=str(adapter), runtime=runtime,
                                           adapter_fingerprint=adapter_fingerprint(adapter), max_new_tokens=8))
    model = chat.loaded().model
    with watch(model.get_output_embeddings()) as logits:
        answers = chat.generate_batch([VlmRequest((_noise(i, (64, 64)),), "What changed?") for i in range(2)])
    names = [name for name, _ in model.named_parameters()]
    expect_placed(smoke, logits, "VLM lm_head", _dtype_name(runtime))
    expect(not any("lora_" in name for name in names), "the adapter was not merged into the weights")
    expect(len(answers) == 2, f"answers: {answers}")
    return {"device": logits["device"], "dtype": logits["dtype"], "merged": True, "answers": len(answers)}


def caption_llm(smoke: Smoke) -> dict[str, Any]:
    from pairsmith.models.adapters.caption_rewriter import CaptionRewriter, CaptionRewriterConfig

    runtime = smoke.runtime()
    rewriter = CaptionRewriter(CaptionRewriterConfig(model_id=str(smoke.model("chat-llm")), runtime=runtime,
                                                     max_new_tokens=8, batch_size=2))
    with watch(rewriter.loaded().model.get_output_embeddings()) as logits:
        answers = rewriter.generate_answers(["a cat on a sofa", "a red car on a road"])
    expect_placed(smoke, logits, "LLM lm_head", _dtype_name(runtime))
    expect(len(answers) == 2, f"answers: {answers}")
    return {"device": logits["device"], "dtype": logits["dtype"], "answers": len(answers)}


def _training_set(n_rows: int, grpo: bool):
    """Grounding samples with two images each in TRL's conversational form (string contents: TRL puts
    the image blocks in front of the user turn), built here so these paths need neither LanceDB nor
    Prefect: GRPO rows carry ``gt_boxes`` for the DiG reward, SFT rows the answer as ``completion``."""
    import datasets

    question = "Find every region that differs. Answer with a JSON list of [x1, y1, x2, y2] boxes."
    rows = []
    for i in range(n_rows):
        row = {"prompt": [{"role": "user", "content": question}],
               "images": [_noise(i, (64, 64)), _noise(i + 100, (64, 64))]}
        if grpo:
            row["gt_boxes"] = [[4.0, 4.0, 30.0, 30.0]]
        else:
            row["completion"] = [{"role": "assistant", "content": "[[4, 4, 30, 30]]"}]
        rows.append(row)
    return datasets.Dataset.from_list(rows)


def _train(smoke: Smoke, name: str, n_rows: int, train: Callable) -> dict[str, Any]:
    """Load the tiny VLM to train, run ``train(model, processor, dataset, runtime, work_dir)`` (2 steps),
    save the adapter, and report what shows training ran on the device: the text decoder's outputs
    (TRL's SFT computes the log-probabilities from ``lm_head.weight`` directly, so the decoder is the
    last module that runs), where the base and LoRA weights live, and the trainer's precision flags."""
    from pairsmith.models.training.vlm_training import load_trainable_vlm, precision_args, save_adapter

    runtime, folder, grpo = smoke.runtime(), smoke.folder(name), name == "grpo"
    model, processor = load_trainable_vlm(str(smoke.model("qwen2-vl")), runtime)
    dataset = _training_set(n_rows, grpo)
    with watch(model.get_decoder()) as hidden:
        model, log = train(model, processor, dataset, runtime, folder / "trainer")
    save_adapter(model, processor, folder / "adapter")
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    base = [p for n, p in model.named_parameters() if "lora_" not in n]
    key = "reward" if grpo else "loss"
    expect(bool(lora) and all(p.device.type == smoke.device for p in lora), "LoRA weights not on the device")
    expect(base[0].device.type == smoke.device and base[0].dtype == runtime.torch_dtype(),
           f"base weights {base[0].device} {base[0].dtype}")
    expect_placed(smoke, hidden, "VLM text decoder")
    expect(log.steps == 2 and log.all_finite(key), f"{log.steps} steps, {key}: {log.values(key)}")
    flags = precision_args(runtime)
    return {"device": hidden["device"], "dtype": hidden["dtype"],
            "base_dtype": str(base[0].dtype).removeprefix("torch."),
            "lora_dtype": str(lora[0].dtype).removeprefix("torch."), "bf16": flags["bf16"], "fp16": flags["fp16"],
            "steps": log.steps, key: round(log.last(key), 4)}


def sft(smoke: Smoke) -> dict[str, Any]:
    from pairsmith.models.training.vlm_sft import SftSettings, run_sft
    from pairsmith.models.training.vlm_training import LoraSettings

    settings = SftSettings(max_steps=2, per_device_batch_size=2, gradient_accumulation_steps=1)
    return _train(smoke, "sft", 4, lambda model, processor, dataset, runtime, work: run_sft(
        model, processor, dataset, settings, LoraSettings(), runtime, work))


def grpo(smoke: Smoke) -> dict[str, Any]:
    from pairsmith.models.training.vlm_grpo import GrpoSettings, run_grpo_stage
    from pairsmith.models.training.vlm_training import LoraSettings
    from pairsmith.tasks.training.dig_reward import DigReward

    settings = GrpoSettings(num_generations=2, per_device_batch_size=2, max_completion_length=8)
    return _train(smoke, "grpo", 2, lambda model, processor, dataset, runtime, work: run_grpo_stage(
        model, processor, dataset, [DigReward()], settings, 2, runtime, work, lora=LoraSettings()))


def ray_task(smoke: Smoke) -> tuple[dict[str, Any], float]:
    from pairsmith.flows.engine.task_runners import RunnerSettings

    tiny = smoke.model("clip")
    clip_config = {"model_name": tiny.model_name, "pretrained": str(tiny.weights),
                   "model_config_file": str(tiny.config_file), "runtime": smoke.runtime().model_dump()}
    on_gpu = smoke.device == "cuda"
    settings = RunnerSettings(kind="ray", ray_num_cpus=1, gpus_per_task=1.0)  # one worker: the probe needs one
    try:
        facts = _ray_flow(settings, clip_config, on_gpu)
    except Exception as err:  # noqa: BLE001 - Ray gives its raylet a fixed 30 s to start: once more if it missed
        if "timed out during startup" not in str(err):
            raise
        import ray as ray_api

        ray_api.shutdown()
        facts = {**_ray_flow(settings, clip_config, on_gpu), "ray_start_retried": True}
    expect(facts["device"].split(":")[0] == smoke.device, f"Ray worker ran CLIP on {facts['device']}")
    expect(bool(facts["ray_gpu_ids"]) == on_gpu, f"Ray gave the task GPUs {facts['ray_gpu_ids']}")
    return facts, facts.pop("worker_peak_gpu_mem_mb")  # the work ran in the worker, not here


def _ray_flow(settings, clip_config: dict, on_gpu: bool) -> dict[str, Any]:
    """A one-task flow on a local Ray, submitted the way the flows submit GPU batches."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    from pairsmith.flows.engine.task_runners import open_task_runner, submit_batch

    @task(name="gpu-smoke-ray-probe", cache_policy=NO_CACHE)
    def probe(clip_config: dict) -> dict[str, Any]:
        import os

        import ray as ray_api
        import torch

        from pairsmith.models.adapters.clip_scorer import ClipScorer, ClipScorerConfig

        scorer = ClipScorer(ClipScorerConfig(**clip_config))
        on_cuda = torch.cuda.is_available()
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()
        scorer.image_embeddings_batch([_noise(0), _noise(1)])
        param = _param(scorer.loaded().model)
        return {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch."),
                "ray_gpu_ids": [str(i) for i in ray_api.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
                "worker_peak_gpu_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if on_cuda else 0.0}

    @flow(name="gpu-smoke-ray", validate_parameters=False)
    def ray_smoke() -> dict[str, Any]:
        import ray as ray_api

        with open_task_runner(settings) as runner:
            gpus = ray_api.cluster_resources().get("GPU", 0)
            expect(gpus >= 1 or not on_gpu, "the local Ray sees no GPU: a num_gpus=1 task would never start")
            future = submit_batch(runner, probe, {"clip_config": clip_config}, settings, on_gpu=on_gpu)
            try:
                facts = future.result(timeout=180)
            except TimeoutError as err:
                raise CheckFailed(f"the task was not run within 180 s; Ray sees {gpus} GPU(s)") from err
        return {**facts, "num_gpus": settings.gpus_per_task if on_gpu else 0, "ray_cluster_gpus": gpus}

    return ray_smoke()


# --- dig-render in a child process --------------------------------------------------------------


def _cycles_kernel() -> str:
    """'cubin sm_XY' when this bpy ships a kernel for the GPU, 'ptx-jit' when the driver must compile one."""
    import importlib.util

    try:
        import pynvml

        pynvml.nvmlInit()
        major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(pynvml.nvmlDeviceGetHandleByIndex(0))
    except Exception as err:  # noqa: BLE001 - a fact, never a failure
        return f"unknown ({type(err).__name__})"
    spec = importlib.util.find_spec("cycles")
    lib = Path(spec.origin).parent / "lib" if spec and spec.origin else None
    found = lib is not None and (lib / f"kernel_sm_{major}{minor}.cubin.zst").exists()
    return f"cubin sm_{major}{minor}" if found else f"ptx-jit (no sm_{major}{minor} cubin)"


def _gpu_mem_used_mb() -> tuple[float, str]:
    """GPU memory this process holds after rendering (NVML; Cycles keeps its persistent data), or, where
    NVML cannot name the process (a container's PID namespace), what the whole device holds."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                return proc.usedGpuMemory / 2**20, "process"
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20, "device"
    except Exception as err:  # noqa: BLE001 - a figure, never a failure
        return 0.0, f"unknown ({type(err).__name__})"


def dig_render(smoke: Smoke, size: tuple[int, int], samples: int) -> tuple[dict[str, Any], float]:
    import bpy

    from pairsmith.flows.dig_render import dig_render as dig_render_flow
    from pairsmith.flows.dig_render_config import DigRenderConfig
    from pairsmith.scenes.blender_render import cycles_gpu_devices

    render: dict[str, Any] = {"width": size[0], "height": size[1], "samples": samples, "device": "cpu"}
    facts: dict[str, Any] = {}
    if smoke.device == "cuda":
        found = {backend: cycles_gpu_devices(backend) for backend in ("CUDA", "OPTIX")}
        print(f"# dig-render: Cycles devices: {found}", flush=True)
        backend = next((b for b, names in found.items() if names), None)
        if backend is None:
            print("# dig-render: Cycles sees no CUDA or OptiX GPU; rendering on the CPU to check the flow", flush=True)
        else:
            if backend != "CUDA":
                print(f"# dig-render: no CUDA device in Cycles; falling back to {backend}", flush=True)
            render.update(device="gpu", gpu_backend=backend)
            facts["cycles_kernel"] = _cycles_kernel()
            print(f"# dig-render: rendering with {backend}; Cycles kernel: {facts['cycles_kernel']}", flush=True)
    folder = smoke.folder("dig-render")
    summary = dig_render_flow(DigRenderConfig(db=str(folder / "pairsmith.lance"), pairs=2, batch_size=2, render=render))
    prefs = bpy.context.preferences.addons["cycles"].preferences
    used = [d.name for d in prefs.devices if d.use] if render["device"] == "gpu" else ["CPU"]
    facts = {"device": render["device"], "cycles_device": bpy.context.scene.cycles.device,
             "backend": render.get("gpu_backend", "none"), "devices": used, **facts,
             "pairs_kept": summary.pairs_kept, "pairs_dropped": summary.pairs_dropped,
             "pairs_failed": summary.pairs_failed, "blender_seconds": summary.blender_seconds}
    memory, facts["gpu_mem_source"] = _gpu_mem_used_mb() if smoke.device == "cuda" else (0.0, "none")
    if render["device"] == "gpu":  # pair ids leave the device out: how far are GPU pixels from CPU ones?
        dig_render_flow(DigRenderConfig(db=str(folder / "cpu.lance"), pairs=2, batch_size=2,
                                        render={**render, "device": "cpu"}))
        facts["cpu_vs_gpu_max_pixel_diff"] = _max_pixel_diff(folder / "pairsmith.lance", folder / "cpu.lance")
    expect(summary.pairs_failed == 0 and summary.pairs_kept >= 1, f"render errors: {facts}")
    expect(render["device"] == ("gpu" if smoke.device == "cuda" else "cpu"), "no Cycles GPU: rendered on the CPU")
    expect(facts["cycles_device"] == render["device"].upper(), f"Cycles rendered on {facts['cycles_device']}")
    return facts, memory


def _max_pixel_diff(db_a: Path, db_b: Path) -> int | None:
    """Largest 0-255 difference between the two databases' images of the same pair ids."""
    import numpy as np

    from pairsmith.storage.pair_images import open_image
    from pairsmith.storage.store import PairStore

    def images(db: Path) -> dict[str, np.ndarray]:
        rows = PairStore(str(db)).read("pairs", columns=["pair_id", "image_before", "image_after"]).to_pylist()
        return {f"{r['pair_id']}/{side}": np.asarray(open_image(r[f"image_{side}"]), np.int16)
                for r in rows for side in ("before", "after") if r[f"image_{side}"]}

    a, b = images(db_a), images(db_b)
    shared = sorted(set(a) & set(b))
    return max((int(np.abs(a[k] - b[k]).max()) for k in shared), default=None)


def _start_render_child(args, out: Path) -> subprocess.Popen:
    command = [sys.executable, __file__, "--out", str(out), "--only", "dig-render", "--render-child",
               "--render-size", args.render_size, "--render-samples", str(args.render_samples)]
    if args.cpu:
        command.append("--cpu")
    with open(out / "dig-render.log", "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _finish_render_child(child: subprocess.Popen, out: Path, started: float, timeout: float) -> PathResult:
    """Wait for the render process until ``timeout`` after ``started``; relay its ``#`` notes."""
    log, result_file = out / "dig-render.log", out / "dig-render.json"
    error = None
    try:
        child.wait(timeout=max(1.0, started + timeout - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        error = (f"timed out after {timeout:.0f} s (a Cycles kernel still compiling? rerun with --only dig-render "
                 f"--render-timeout 600); see {log}")
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("# dig-render:"):
            print(line, flush=True)
    if error is None and not result_file.exists():
        error = f"the render process exited {child.returncode} without a result; see {log}"
    if error is not None:
        return PathResult("dig-render", False, round(time.monotonic() - started, 2), 0.0, {"error": error})
    return PathResult(**json.loads(result_file.read_text()))


# --- running --------------------------------------------------------------------------------------


def run_path(smoke: Smoke, name: str, work: Callable[[], Any], torch_memory: bool = True) -> PathResult:
    """Run one path; any exception becomes a failed line and a traceback file, never a stop.

    The peak is torch's allocator peak during the path, unless the path returns its own figure
    (``torch_memory=False`` keeps torch from opening a CUDA context at all)."""
    import torch

    from pairsmith.models.lazy import clear_loaded

    on_cuda = smoke.device == "cuda" and torch_memory
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    peak = None
    try:
        facts = work()
        if isinstance(facts, tuple):
            facts, peak = facts
        if on_cuda:
            torch.cuda.synchronize()
        ok = True
    except Exception as err:  # noqa: BLE001 - one path's failure is a line, not the end of the run
        ok = False
        facts = {"error": f"{type(err).__name__}: {err}".splitlines()[0][:400]}
        (smoke.out / "errors").mkdir(exist_ok=True)
        (smoke.out / "errors" / f"{name}.txt").write_text(traceback.format_exc())
    seconds = time.perf_counter() - start
    if peak is None:
        peak = torch.cuda.max_memory_allocated() / 2**20 if on_cuda else 0.0
    clear_loaded()  # the next path loads its own models: each peak is one path's alone
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
    return PathResult(name, ok, round(seconds, 2), round(peak, 1), facts)


def _path_work(smoke: Smoke, name: str) -> Callable[[], Any]:
    for dtype, short in SHORT.items():
        if name == f"p2p-{short}":
            return lambda: p2p_pair(smoke, dtype)
        if name == f"p2p-{short}-identical":
            return lambda: p2p_identical(smoke, dtype)
        if name == f"inpaint-{short}":
            return lambda: inpaint(smoke, dtype)
    work = {"fastsam": fastsam, "clip": clip, "blip": blip, "vlm-caption": vlm_caption, "vlm-adapter": vlm_adapter,
            "caption-llm": caption_llm, "sft": sft, "grpo": grpo, "ray": ray_task}[name]
    return lambda: work(smoke)


def _versions() -> str:
    """The libraries the paths need, with their versions; a missing one fails only its paths."""
    from importlib.metadata import PackageNotFoundError, version

    names = ("diffusers", "transformers", "trl", "peft", "accelerate", "datasets", "ultralytics", "open_clip_torch",
             "prefect", "prefect-ray", "ray", "lancedb", "bpy", "nvidia-ml-py")
    found = []
    for name in names:
        try:
            found.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            found.append(f"{name}=missing")
    return " ".join(found)


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for everything this run writes")
    parser.add_argument("--cpu", action="store_true", help="run every path on the CPU (CI)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                        help="dtype of the paths without a fixed one (auto: bf16 or fp16 on GPU, fp32 on CPU)")
    parser.add_argument("--only", nargs="+", choices=PATHS, metavar="PATH", help=f"run only these: {', '.join(PATHS)}")
    parser.add_argument("--skip", nargs="+", choices=PATHS, default=[], metavar="PATH", help="skip these paths")
    parser.add_argument("--render-timeout", type=float, default=240.0, help="seconds the dig-render path may take")
    parser.add_argument("--render-size", default="160x120", help="WIDTHxHEIGHT of the rendered pairs")
    parser.add_argument("--render-samples", type=int, default=8, help="Cycles samples per pixel")
    parser.add_argument("--render-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        size = _parse_size(args.render_size)
        if min(size) < 32:
            raise ValueError
    except ValueError:
        parser.error(f"--render-size must be WIDTHxHEIGHT, each >= 32, got {args.render_size!r}")
    import torch

    device = "cpu" if args.cpu else "cuda"
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_smoke: error: torch sees no CUDA GPU; run with --cpu to check the paths on the CPU", file=sys.stderr)
        return 2
    from pairsmith.storage.work_folder import claim_work_folder

    try:  # it deletes and rewrites fixed names inside --out: only in a folder it made
        out = claim_work_folder(args.out, ".pairsmith-gpu-smoke", "--out").resolve()
    except ValueError as err:
        print(f"gpu_smoke: error: {err}", file=sys.stderr)
        return 2
    _set_environment(out, out / "cache" / ("prefect-render" if args.render_child else "prefect"))
    smoke = Smoke(out, device, args.dtype)

    if args.render_child:  # the dig-render path, alone in this process; the parent reads the result file
        result = run_path(smoke, "dig-render", lambda: dig_render(smoke, size, args.render_samples), torch_memory=False)
        (out / "dig-render.json").write_text(json.dumps(result.__dict__, default=str))
        return 0

    selected = [p for p in (args.only or PATHS) if p not in args.skip]
    where = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    print(f"# gpu_smoke: device={device} ({where}) torch={torch.__version__} cuda={torch.version.cuda} out={out}",
          flush=True)
    print(f"# packages: {_versions()}", flush=True)
    start = time.monotonic()
    for name in selected:  # what an earlier run left for these paths
        (out / "errors" / f"{name}.txt").unlink(missing_ok=True)
    (out / "dig-render.json").unlink(missing_ok=True)
    child = _start_render_child(args, out) if "dig-render" in selected else None
    results = []
    try:
        with (out / "results.jsonl").open("w") as log:
            for name in selected:
                if name == "dig-render":
                    continue
                results.append(run_path(smoke, name, _path_work(smoke, name)))
                print(results[-1].line(), flush=True)
                log.write(json.dumps(results[-1].__dict__, default=str) + "\n")
            if child is not None:
                results.append(_finish_render_child(child, out, start, args.render_timeout))
                print(results[-1].line(), flush=True)
                log.write(json.dumps(results[-1].__dict__, default=str) + "\n")
    finally:  # interrupted: the render process goes too
        if child is not None and child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    failed = [r.path for r in results if not r.ok]
    print(f"# {len(results)} paths, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
          f"{time.monotonic() - start:.0f} s; details in {out}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
