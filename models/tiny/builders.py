"""Tiny random stand-ins for the Img-Diff models, written in the formats their real loaders read.

No weights can be downloaded here, so tests build each model from a small config, save it the way
the hub ships it, and load it back through the adapter's own loader: open_clip's
``create_model_and_transforms`` (with CLIP's real BPE tokenizer, which ships inside open_clip),
transformers' ``from_pretrained`` for BLIP and the chat LLM, and ultralytics' ``FastSAM(path)``.
Only sizes and vocabularies are small; architectures, processors and file layouts are the real ones.

``hf_cache_snapshot`` lays a folder out as the Hugging Face hub cache does, so a test can load a
tiny model under a real hub id from a ``cache_dir`` in offline mode, exactly as a GPU worker with
cached weights would.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pairsmith.models.tiny.tokenizer import corpus, train_tiny_bpe

TINY_CLIP_NAME = "pairsmith-tiny-clip"
CHAT_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BLIP_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]


@dataclass(frozen=True)
class TinyClip:
    """Where a tiny open_clip model was written: use ``model_name`` + ``config_file`` + ``weights``,
    or the whole ``folder`` as ``local-dir:``/hub snapshot (it holds ``open_clip_config.json``)."""

    folder: Path
    model_name: str
    config_file: Path
    weights: Path


def build_tiny_clip(out_dir: str | Path, width: int = 32, embed_dim: int = 16, seed: int = 0) -> TinyClip:
    import open_clip
    import torch
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # vocab_size and context_length stay CLIP's: the real BPE tokenizer emits ids up to 49407.
    model_cfg = {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": width, "patch_size": 8, "head_width": width // 2},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": 2, "layers": 1},
    }
    config_file = out_dir / f"{TINY_CLIP_NAME}.json"
    config_file.write_text(json.dumps(model_cfg, indent=2))
    (out_dir / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }, indent=2))
    open_clip.add_model_config(config_file)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_CLIP_NAME)
    weights = out_dir / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return TinyClip(out_dir, TINY_CLIP_NAME, config_file, weights)


def build_tiny_blip_itm(out_dir: str | Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """A ~40k-parameter ``BlipForImageTextRetrieval`` + ``BlipProcessor`` (WordPiece vocabulary
    trained here on the project's test text and the lexicon nouns)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor, BlipProcessor

    out_dir = Path(out_dir)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(
        corpus() + _lexicon_lines(),
        trainers.WordPieceTrainer(vocab_size=600, special_tokens=BLIP_SPECIAL_TOKENS, show_progress=False),
    )
    # BLIP's checkpoints use a BERT tokenizer with [DEC] as bos ([ENC] is in their vocabulary too).
    tokenizer = BertTokenizer(vocab=wordpiece.get_vocab(), bos_token="[DEC]", model_max_length=64)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in BLIP_SPECIAL_TOKENS}
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
            num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=hidden_size,
            max_position_embeddings=64, pad_token_id=ids["[PAD]"], bos_token_id=ids["[DEC]"],
            sep_token_id=ids["[SEP]"],
        ),
        vision_config=dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=16, image_text_hidden_size=16,
    )
    torch.manual_seed(seed)
    model = BlipForImageTextRetrieval(config)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def build_tiny_fastsam(out_path: str | Path, seed: int = 0) -> Path:
    """A random YOLOv8n-seg saved as a ``.pt``: ``FastSAM(path)`` refuses ``.yaml`` configs, and
    FastSAM checkpoints are YOLOv8-seg models, so this runs the real FastSAM predictor."""
    import torch

    from pairsmith.models.adapters.ultralytics_import import import_ultralytics

    import_ultralytics(offline=True)  # no settings sync / network probe on import
    from ultralytics import YOLO

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    YOLO("yolov8n-seg.yaml").save(out_path)
    return out_path


def build_tiny_chat_llm(out_dir: str | Path, hidden_size: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A ~40k-parameter Qwen2 causal LM with Qwen2.5-Instruct's chat template and special tokens,
    loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

    out_dir = Path(out_dir)
    bpe = train_tiny_bpe(CHAT_SPECIAL_TOKENS)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe.to_str())["model"]["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe.get_vocab(), merges=merges, unk_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", bos_token=None, model_max_length=2048,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": CHAT_SPECIAL_TOKENS[1:]})
    tokenizer.chat_template = _qwen_chat_template()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in CHAT_SPECIAL_TOKENS}
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,  # tied, a random model just repeats the prompt's last token
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def hf_cache_snapshot(cache_dir: str | Path, repo_id: str, source: str | Path, revision: str = "main") -> Path:
    """Copy the files of ``source`` (a folder, or one file) into the hub cache layout
    (``models--org--name/snapshots/<hash>/`` + ``refs/<revision>``) under ``cache_dir``; returns the
    snapshot folder. ``from_pretrained(repo_id, cache_dir=..., local_files_only=True)`` and
    ``hf_hub_download`` then find them as if they had been downloaded."""
    source = Path(source)
    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    files = [source] if source.is_file() else [p for p in source.iterdir() if p.is_file()]
    for file in files:
        shutil.copy2(file, snapshot / file.name)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / revision).write_text(commit)
    return snapshot


def _qwen_chat_template() -> str:
    """TRL ships Qwen2.5's chat template, the one Qwen2.5-Instruct's tokenizer carries."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()


def _lexicon_lines() -> list[str]:
    lexicon = Path(__file__).parents[1] / "lexicon" / "wordnet_lexicon.json"
    if not lexicon.exists():
        return []
    categories = json.loads(lexicon.read_text())["categories"]
    return [" ".join(nouns) for nouns in categories.values()]
