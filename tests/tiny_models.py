"""Tiny randomly initialised SigLIP models, built in the test run and loaded like real weights."""

from __future__ import annotations

from pathlib import Path

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
