"""Tiny randomly initialised SigLIP models, built in the test run and loaded like real weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assetlib.train.init_model import TINY, init_siglip, train_tokenizer

CAPTIONS = [
    "a red chair with four legs",
    "a blue car shaped like a van",
    "a green tree with a round crown",
    "一把红色的椅子，有四条腿",
    "一辆蓝色的汽车",
    "一棵绿色的树",
    "a white mug with a handle",
    "一个白色的马克杯",
]


def tiny_siglip(folder: Path, name: str = "tiny-test", seed: int = 0) -> Path:
    """Save a tiny bilingual SigLIP (hidden 32, 2 layers, 30 px images, patch 2) to folder; return it."""
    if (folder / "config.json").exists():
        return folder
    tokenizer = train_tokenizer(CAPTIONS * 10, folder.parent / f"{folder.name}-tokenizer", TINY.vocab_size)
    return init_siglip(folder, tokenizer, TINY, name=name, languages=("en", "zh"), seed=seed)


def tiny_e5lit(folder: Path, assets: list) -> Path:
    """Train a tiny e5-aligned image tower (TINY vision size, 2 steps) on assets in folder; its model."""
    from assetlib.train.lit import LitConfig, train_lit

    if (folder / "model" / "projection.safetensors").exists():
        return folder / "model"
    cfg = LitConfig(name="tiny-lit", size=TINY, batch_size=8, max_steps=2, eval_every=2, warmup_steps=1)
    return train_lit(assets, folder, cfg, progress=False).model_dir


# -- Qwen3-VL-Embedding -------------------------------------------------------------------------------
QWEN3VL_SPECIAL = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# A Qwen-style chat template (system and user turns of text and image items, the generation prompt),
# kept in chat_template.json as the published checkpoints keep theirs.
QWEN3VL_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)
QWEN3VL_TINY = {"hidden": 128, "layers": 2, "heads": 2, "vision_hidden": 32, "vision_depth": 2, "patch": 4}


def qwen3vl_tokenizer(folder: Path) -> dict[str, int]:
    """Train a small byte-level BPE (Qwen's special tokens first) into folder; the special tokens' ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=list(QWEN3VL_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = ["system", "user", "assistant", "Represent the user's input.", "Find 3D objects"]
    tokenizer.train_from_iterator((CAPTIONS + words) * 5, trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "pad_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "model_max_length": 32768,
        "padding_side": "right",
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN3VL_TEMPLATE}))
    return {token: int(tokenizer.token_to_id(token)) for token in QWEN3VL_SPECIAL} | {
        "vocab_size": tokenizer.get_vocab_size()
    }


def qwen3vl_config(ids: dict[str, int], geometry: dict | None = None) -> Any:
    """A Qwen3VLConfig of a geometry (QWEN3VL_TINY's keys; the real 2B's in benchmarks/qwen3vl_bench.py)
    whose special token ids are the tokenizer's."""
    from transformers import Qwen3VLConfig

    g = {**QWEN3VL_TINY, **(geometry or {})}
    head_dim = g.get("head_dim", g["hidden"] // g["heads"])
    half = head_dim // 2  # M-RoPE splits the rotary half of each head between t, h and w
    section = g.get("mrope_section", [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8])
    return Qwen3VLConfig(
        text_config={
            "vocab_size": g.get("vocab_size", ids["vocab_size"]),
            "hidden_size": g["hidden"],
            "intermediate_size": g.get("intermediate", 2 * g["hidden"]),
            "num_hidden_layers": g["layers"],
            "num_attention_heads": g["heads"],
            "num_key_value_heads": g.get("kv_heads", 1),
            "head_dim": head_dim,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": section,
                "mrope_interleaved": True,
            },
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": g["vision_depth"],
            "hidden_size": g["vision_hidden"],
            "intermediate_size": g.get("vision_intermediate", 2 * g["vision_hidden"]),
            "num_heads": g.get("vision_heads", 2),
            "patch_size": g["patch"],
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": g["hidden"],
            "num_position_embeddings": g.get("positions", 64),
            "deepstack_visual_indexes": g.get("deepstack", [0]),
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def tiny_qwen3vl(folder: Path, seed: int = 0, geometry: dict | None = None, dtype: Any = None) -> Path:
    """Save a random Qwen3-VL-Embedding checkpoint in the published files (config.json, model.safetensors
    with the `model.` prefix a full model saves, tokenizer files with a chat template,
    preprocessor_config.json) to folder; return it. Tiny unless `geometry` says otherwise."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    if (folder / "config.json").exists():
        return folder
    ids = qwen3vl_tokenizer(folder)
    config = qwen3vl_config(ids, geometry)
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.float32)  # a big geometry is built in bf16, not copied to it
    try:
        model = Qwen3VLForConditionalGeneration(config).eval()
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(folder)
    del model
    patch = config.vision_config.patch_size
    processor = {
        "size": {"longest_edge": 16_777_216, "shortest_edge": 4 * (2 * patch) ** 2},
        "patch_size": patch,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "processor_class": "Qwen3VLProcessor",
        "image_processor_type": "Qwen2VLImageProcessorFast",
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder
