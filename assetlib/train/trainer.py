"""Train (from scratch) or fine-tune a transformers SigLIP with the sigmoid loss on (view, caption) pairs.

Checkpoints every few steps and resumes from the last; validation recall on held-out assets is
logged and plotted as training runs; the result is saved with save_pretrained (model, tokenizer,
image processor) plus an assetlib.json card, so the `siglip` encoder loads it like any SigLIP.
Runs on CUDA with mixed precision when a GPU is present, on the CPU with bf16 autocast otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assetlib.encoders.siglip import TEXT_CONVENTION
from assetlib.library.asset import Asset
from assetlib.train.data import EncodedAssets, GroupBatches, encode_assets, group_key, split_by_asset
from assetlib.train.init_model import SiglipSize, init_siglip, train_tokenizer
from assetlib.train.validate import encoder_recall, retrieval_recall

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import SiglipModel

    from assetlib.encoders.siglip import SiglipEncoder

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved with the checkpoint and the model)."""

    name: str = "demo"
    # How texts reach the model (SiglipEncoder.tokenize); a model trained another way must be retrained.
    text_convention: str = TEXT_CONVENTION
    init: str | None = None  # hub id or directory to fine-tune; None = from scratch
    size: SiglipSize = field(default_factory=SiglipSize)
    languages: tuple[str, ...] = ("en", "zh")
    seed: int = 0
    val_fraction: float = 0.15
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 30
    max_steps: int = 300  # ≈ 300 s at batch 128 on a 2-core CPU; the LR schedule spans these steps
    max_seconds: float = 900.0  # a safety stop; runs that hit it end early with a shorter schedule
    short_phrase_rate: float = 0.3  # share of pairs captioned "a red chair" instead of the full caption
    eval_every: int = 50
    checkpoint_every: int = 50
    device: str | None = None
    threads: int | None = None


@dataclass
class TrainResult:
    """Where the model went, how training went, and the held-out recall of the saved model."""

    model_dir: Path
    steps: int
    seconds: float
    history: list[dict]
    metrics: dict[str, float]
    resumed_from: int = 0
    reused: bool = False


def cosine_lr(step: int, peak: float, warmup: int, total: int) -> float:
    """Linear warmup to `peak`, then a cosine decay to 0 at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def write_checkpoint(
    path: Path, config_text: str, weights: dict, step: int, history: list[dict], seconds: float, rng: Any
) -> None:
    """Save weights and progress (step, curve, seconds, both random generators) atomically, with the
    configuration they belong to beside them (`<path>.json`)."""
    import torch

    tmp = path.with_suffix(".tmp")
    state = {"step": step, "history": history, "seconds": seconds, "torch_rng": torch.get_rng_state()}
    torch.save({**weights, **state, "batch_rng": rng.bit_generator.state}, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(config_text)


def read_checkpoint(path: Path, config_text: str, device: str, rng: Any) -> dict | None:
    """The state `write_checkpoint` saved for this configuration, both generators restored; else None."""
    import torch

    config = path.with_suffix(".json")
    if not path.exists() or not config.is_file() or config.read_text() != config_text:
        return None
    state = torch.load(path, map_location=device, weights_only=False)
    rng.bit_generator.state = state["batch_rng"]
    torch.set_rng_state(state["torch_rng"])
    return dict(state)


def _sigmoid_loss(text: Tensor, image: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    import torch
    import torch.nn.functional as F

    logits = text @ image.T * scale.exp() + bias
    labels = 2 * torch.eye(len(text), device=logits.device) - 1
    return -F.logsigmoid(labels * logits).sum() / len(text)


def _features(
    model: SiglipModel, pixels: dict[str, Tensor], tokens: dict[str, Tensor]
) -> tuple[Tensor, Tensor]:
    return _image_only(model, pixels), _text_only(model, tokens)


def _prepare_model(cfg: TrainConfig, assets: Sequence[Asset], work: Path) -> str:
    """What to start from: the fine-tuning source (hub id or directory), or a fresh small SigLIP."""
    if cfg.init:
        return cfg.init
    captions = [c for a in assets for c in (a.caption_en, a.caption_cn) if c]
    words = sorted(
        {str(a.attributes.get(k)) for a in assets for k in ("category", "colour") if a.attributes.get(k)}
    )
    # Colour and object words as their own lines keep them separate pieces (see HANDBOOK).
    tokenizer = train_tokenizer(captions, work / "tokenizer", cfg.size.vocab_size, extra_lines=words * 20)
    return str(
        init_siglip(work / "init", tokenizer, cfg.size, name=cfg.name, languages=cfg.languages, seed=cfg.seed)
    )


def train_siglip(
    assets: Sequence[Asset], out_dir: str | Path, cfg: TrainConfig, progress: bool = True
) -> TrainResult:
    """Train or fine-tune SigLIP on assets; resume from out_dir/checkpoint when one is there."""
    import torch

    from assetlib.encoders.siglip import SiglipEncoder
    from assetlib.logs import progress as tqdm

    out_dir = Path(out_dir)
    work = out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train_assets, val_assets = split_by_asset(assets, cfg.val_fraction, cfg.seed)
    (out_dir / "split.json").write_text(
        json.dumps(
            {"train": [a.asset_id for a in train_assets], "validation": [a.asset_id for a in val_assets]},
            indent=1,
        )
    )
    checkpoint = work / "checkpoint.pt"
    checkpoint_config = work / "checkpoint.json"
    config_now = json.dumps(asdict(cfg), sort_keys=True, default=str)
    if checkpoint.exists() and (
        not checkpoint_config.exists() or checkpoint_config.read_text() != config_now
    ):
        log.warning("the checkpoint in %s is from another configuration: starting afresh", work)
        shutil.rmtree(work)
        work.mkdir(parents=True)
    # On resume the fresh model (and its tokenizer) is already in work/init; the checkpoint goes on top.
    resuming_scratch = checkpoint.exists() and not cfg.init
    start = str(work / "init") if resuming_scratch else _prepare_model(cfg, train_assets, work)
    base = SiglipEncoder(start, device=cfg.device)  # the serving code loads and preprocesses
    model, device = base.model.float().train(), base.device
    train_data = encode_assets(train_assets, base.preprocess, base.tokenize, cfg.languages)
    val_data = encode_assets(val_assets, base.preprocess, base.tokenize, cfg.languages)
    log.info(
        "training on %d assets (%d views), validating on %d held-out assets",
        len(train_data.assets),
        len(train_data.view_owner),
        len(val_data.assets),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)

    step, history, resumed_from, elapsed_before = 0, [], 0, 0.0
    batches = GroupBatches(train_data, cfg.batch_size, cfg.languages, cfg.seed, cfg.short_phrase_rate)
    state = read_checkpoint(checkpoint, config_now, device, batches.rng)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, elapsed_before = state["step"], state["history"], state["seconds"]
        resumed_from = step
        log.info("resumed from step %d (%.0fs trained)", step, elapsed_before)
    autocast = torch.autocast(
        device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16
    )
    started = time.perf_counter()
    bar = tqdm(total=cfg.max_steps, initial=step, desc=f"train {cfg.name}", unit="step", disable=not progress)
    batch_iter = iter(batches)

    def seconds() -> float:
        return elapsed_before + time.perf_counter() - started

    def save_checkpoint() -> None:
        weights = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": asdict(cfg)}
        write_checkpoint(checkpoint, config_now, weights, step, history, seconds(), batches.rng)

    while step < cfg.max_steps and seconds() < cfg.max_seconds:
        views, owners, languages = next(batch_iter)
        pixels = {key: value[views].to(device) for key, value in train_data.pixels.items()}
        tokens = {}
        for key in train_data.tokens[cfg.languages[0]]:
            rows = [train_data.tokens[lang][key][a] for a, lang in zip(owners, languages, strict=True)]
            tokens[key] = torch.stack(rows).to(device)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        with autocast:
            image, text = _features(model, pixels, tokens)
            loss = _sigmoid_loss(text, image, model.logit_scale, model.logit_bias)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        optimizer.step()
        step += 1
        record = {
            "step": step,
            "loss": loss.item(),
            "grad_norm": grad_norm,
            "lr": lr_at(step - 1),
            "seconds": round(seconds(), 1),
        }
        if step % cfg.eval_every == 0:
            record.update(_validate(model, val_data, device, cfg))
            log.info(
                "step %d loss %.3f grad %.2f val %s",
                step,
                record["loss"],
                grad_norm,
                {k: round(v, 3) for k, v in record.items() if "r@" in k and "view" in k},
            )
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        if step % cfg.checkpoint_every == 0:
            save_checkpoint()
    bar.close()
    save_checkpoint()
    model_dir = _save_model(model, base, start, out_dir)
    metrics = evaluate_saved(model_dir, val_assets, cfg.languages, device=cfg.device)
    _write_card(model_dir, cfg, step, seconds(), metrics, len(train_assets), len(val_assets))
    plot_history(history, out_dir / "training_curves.png")
    (out_dir / "history.json").write_text(json.dumps(history))
    log.info(
        "trained %s: %d steps in %.0fs; held-out %s",
        cfg.name,
        step,
        seconds(),
        {k: round(v, 3) for k, v in metrics.items()},
    )
    return TrainResult(model_dir, step, seconds(), history, metrics, resumed_from)


def _validate(model: SiglipModel, data: EncodedAssets, device: str, cfg: TrainConfig) -> dict[str, float]:
    import torch

    was_training = model.training
    model.eval()
    with torch.inference_mode():
        rows = len(data.view_owner)
        images = [
            _image_only(model, {k: v[i : i + 256].to(device) for k, v in data.pixels.items()})
            for i in range(0, rows, 256)
        ]
        view_vectors = torch.cat(images).cpu().numpy()
        texts = {}
        for language in cfg.languages:
            tokens = {k: v.to(device) for k, v in data.tokens[language].items()}
            texts[language] = _text_only(model, tokens).cpu().numpy()
    model.train(was_training)
    groups = [group_key(a) for a in data.assets]
    return retrieval_recall(view_vectors, data.view_owner, texts, data.has_caption, groups)


def _image_only(model: SiglipModel, pixels: dict[str, Tensor]) -> Tensor:
    import torch.nn.functional as F

    return F.normalize(model.get_image_features(**pixels).pooler_output.float(), dim=-1)


def _text_only(model: SiglipModel, tokens: dict[str, Tensor]) -> Tensor:
    import torch.nn.functional as F

    return F.normalize(model.get_text_features(**tokens).pooler_output.float(), dim=-1)


def _save_model(model: SiglipModel, base: SiglipEncoder, start: str, out_dir: Path) -> Path:
    model_dir = out_dir / "model"
    tmp = out_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    model.save_pretrained(tmp)
    base.tokenizer.save_pretrained(tmp)
    base.image_processor.save_pretrained(tmp)
    if Path(start, "assetlib.json").exists():
        shutil.copy(Path(start, "assetlib.json"), tmp / "assetlib.json")
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.replace(model_dir)
    return model_dir


def evaluate_saved(
    model_dir: Path, assets: Sequence[Asset], languages: Sequence[str], device: str | None = None
) -> dict[str, float]:
    """Held-out recall of a saved model, computed through the `siglip` encoder's own serving path."""
    from assetlib.encoders.siglip import SiglipEncoder

    return encoder_recall(SiglipEncoder(str(model_dir), device=device), assets, languages)


def _write_card(
    model_dir: Path,
    cfg: TrainConfig,
    steps: int,
    seconds: float,
    metrics: dict[str, float],
    n_train: int,
    n_val: int,
) -> None:
    card = (
        json.loads((model_dir / "assetlib.json").read_text())
        if (model_dir / "assetlib.json").exists()
        else {}
    )
    origin = f"fine-tuned from {cfg.init}" if cfg.init else "trained from scratch (random initialisation)"
    card.update(
        {
            "name": cfg.name,
            "languages": list(cfg.languages),
            "description": f"assetlib SigLIP {cfg.name}: {origin} on {n_train} assets; NOT Google's weights",
            "training": {
                "steps": steps,
                "seconds": round(seconds, 1),
                "train_assets": n_train,
                "validation_assets": n_val,
                "config": {k: v for k, v in asdict(cfg).items() if k != "size"},
            },
            "heldout_metrics": {k: round(v, 4) for k, v in metrics.items()},
        }
    )
    (model_dir / "assetlib.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
    lines = [
        f"# assetlib SigLIP `{cfg.name}`",
        "",
        f"**Not Google's SigLIP.** A small SigLIP {origin} by assetlib on {n_train} assets of an asset "
        f"library (renders + English and Chinese captions), for offline demos and tests.",
        "",
        f"- training: {steps} steps, {seconds:.0f} s, batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}",
        f"- held-out assets: {n_val} (never trained on); relevant = same category and colour",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v:.3f} |" for k, v in sorted(metrics.items())],
    ]
    (model_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_history(history: list[dict], path: Path) -> Path | None:
    """Loss and held-out recall against step, saved as a PNG."""
    if not history:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_recall) = plt.subplots(1, 2, figsize=(11, 4))
    ax_loss.plot([h["step"] for h in history], [h["loss"] for h in history], lw=0.8)
    ax_loss.set(xlabel="step", ylabel="sigmoid loss", title="training loss")
    evals = [h for h in history if any("r@" in k for k in h)]
    for key in sorted({k for h in evals for k in h if "r@" in k and "chance" not in k}):  # one line per task
        ax_recall.plot([h["step"] for h in evals], [h[key] for h in evals], marker="o", ms=3, label=key)
    chance = [h["chance_object_r@10"] for h in evals if "chance_object_r@10" in h]
    if chance:
        ax_recall.axhline(chance[-1], color="grey", ls="--", lw=1, label="chance (per object)")
    ax_recall.set(xlabel="step", ylabel="recall@10", title="held-out recall", ylim=(0, 1))
    if evals:
        ax_recall.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_fingerprint(assets: Sequence[Asset], cfg: Any) -> str:
    """What a trained model depends on: the config and the assets' ids, captions and view files."""
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps(asdict(cfg), sort_keys=True, default=str).encode())
    for asset in sorted(assets, key=lambda a: a.asset_id):
        digest.update(
            f"{asset.asset_id}|{asset.caption_en}|{asset.caption_cn}|{len(asset.view_paths)}".encode()
        )
    return digest.hexdigest()


def ensure_trained(
    assets: Sequence[Asset],
    out_dir: str | Path,
    cfg: Any,
    progress: bool = True,
    train: Callable[..., TrainResult] | None = None,
) -> TrainResult:
    """Reuse the model in out_dir when it was trained on the same assets with the same config; else train.

    `train` is the trainer for `cfg` (default: `train_siglip`; the image tower passes `train_lit`).
    """
    out_dir = Path(out_dir)
    fingerprint = training_fingerprint(assets, cfg)
    card_path = out_dir / "model" / "assetlib.json"
    if card_path.exists():
        card = json.loads(card_path.read_text())
        if card.get("fingerprint") == fingerprint:
            log.info("reusing the trained model in %s (same assets and config)", out_dir / "model")
            history = (
                json.loads((out_dir / "history.json").read_text())
                if (out_dir / "history.json").exists()
                else []
            )
            training = card.get("training", {})
            return TrainResult(
                out_dir / "model",
                training.get("steps", 0),
                0.0,
                history,
                card.get("heldout_metrics", {}),
                reused=True,
            )
        log.info("the model in %s was trained on other assets or settings: training again", out_dir)
        shutil.rmtree(out_dir / "work", ignore_errors=True)  # its checkpoint belongs to the old run
    result = (train or train_siglip)(assets, out_dir, cfg, progress=progress)
    card = json.loads(card_path.read_text())
    card["fingerprint"] = fingerprint
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False))
    return result
