"""Training data: (view, caption) pairs from a library, split by asset, batched without false negatives."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from assetlib.library.asset import Asset
from assetlib.media.images import ImageError, load_rgb

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)


def group_key(asset: Asset) -> str:
    """What makes two assets interchangeable for a caption: category + colour, else the caption itself.

    Two different assets with the same caption in one batch would be false negatives for the
    sigmoid loss, so a batch never holds two assets of one group.
    """
    attrs = asset.attributes or {}
    if "category" in attrs and "colour" in attrs:
        return f"{attrs['category']}/{attrs['colour']}"
    return (asset.caption_en or asset.asset_id).strip().lower()


def split_by_asset(
    assets: Sequence[Asset], val_fraction: float, seed: int
) -> tuple[list[Asset], list[Asset]]:
    """Train and validation assets; held-out assets are never trained on (no view, no caption)."""
    ordered = sorted(assets, key=lambda a: a.asset_id)
    rng = random.Random(seed)
    shuffled = ordered[:]
    rng.shuffle(shuffled)
    n_val = max(1, round(len(shuffled) * val_fraction)) if val_fraction > 0 else 0
    val = sorted(shuffled[:n_val], key=lambda a: a.asset_id)
    train = sorted(shuffled[n_val:], key=lambda a: a.asset_id)
    return train, val


@dataclass
class EncodedAssets:
    """Preprocessed tensors of a set of assets: pixel values per view and token ids per caption."""

    assets: list[Asset]
    pixels: dict[str, Tensor]  # image-processor outputs, one row per view (pixel_values, …)
    view_owner: np.ndarray  # asset index of each view row
    # language → tokenizer output for every asset (rows aligned with assets)
    tokens: dict[str, dict[str, Tensor]]
    has_caption: dict[str, np.ndarray]  # language → bool per asset


def decode_views(assets: Sequence[Asset]) -> tuple[list[Image.Image], list[int], list[Asset]]:
    """Every view decoded onto white, the index (in the kept list) of its asset, and the assets with
    at least one view (an unreadable view is skipped with a warning)."""
    images: list[Image.Image] = []
    owners: list[int] = []
    kept: list[Asset] = []
    for asset in assets:
        views = []
        for path in asset.view_paths:
            try:
                views.append(load_rgb(path))
            except ImageError as exc:
                log.warning("training: skipping a view of %s: %s", asset.asset_id, exc)
        if views:
            owners.extend([len(kept)] * len(views))
            images.extend(views)
            kept.append(asset)
    return images, owners, kept


def encode_assets(
    assets: Sequence[Asset],
    preprocess: Callable[[Sequence[Image.Image]], Mapping[str, Tensor]],
    tokenize: Callable[[Sequence[str]], Mapping[str, Tensor]],
    languages: Sequence[str] = ("en", "zh"),
) -> EncodedAssets:
    """Decode every view once and preprocess it, and tokenise every caption, as the encoder serves them.

    `preprocess` and `tokenize` are the encoder's own (`SiglipEncoder.preprocess`, `.tokenize`), so
    training sees exactly what serving sends: every image-processor output (NaFlex's patch mask and
    spatial shapes too) and Google's text convention.
    """
    import torch

    images, owners, kept = decode_views(assets)
    chunks = [preprocess(images[i : i + 256]) for i in range(0, len(images), 256)]
    pixels = {key: torch.cat([c[key] for c in chunks]) for key in chunks[0]} if chunks else {}
    tokens: dict[str, dict[str, Tensor]] = {}
    has: dict[str, np.ndarray] = {}
    for language in languages:
        texts = [a.caption(language) for a in kept]
        has[language] = np.array([bool(t) for t in texts])
        tokens[language] = dict(tokenize([t or "" for t in texts]))
        # Short attribute phrases ("a red chair"), as people type queries, where attributes exist.
        shorts = [_short_phrase(a, language) for a in kept]
        has[f"{language}_short"] = np.array([bool(t) for t in shorts])
        tokens[f"{language}_short"] = dict(tokenize([t or "" for t in shorts]))
    return EncodedAssets(kept, pixels, np.array(owners), tokens, has)


def category_phrase(asset: Asset, language: str) -> str | None:
    """The asset's category alone, as a phrase ("a chair" / "一把椅子"), where its attributes name one."""
    category = (asset.attributes or {}).get("category")
    if not category:
        return None
    try:  # the demo vocabulary knows both languages; other attribute sets give English only
        from assetlib.library.demo.objects import CATEGORIES
    except ImportError:
        CATEGORIES = []
    demo = next((c for c in CATEGORIES if c.name == category), None)
    if demo is not None:
        article = "an" if demo.noun_en[0] in "aeiou" else "a"
        return f"{article} {demo.noun_en}" if language == "en" else f"一{demo.measure_zh}{demo.noun_zh}"
    return f"a {category}" if language == "en" else None


def _short_phrase(asset: Asset, language: str) -> str | None:
    attrs = asset.attributes or {}
    if "category" not in attrs or "colour" not in attrs:
        return None
    try:  # the demo vocabulary (needs the mesh libraries); other attribute sets have no phrases
        from assetlib.library.demo.generator import COLOURS, short_phrases
        from assetlib.library.demo.objects import CATEGORIES
    except ImportError:
        return None

    if attrs["colour"] not in COLOURS or attrs["category"] not in {c.name for c in CATEGORIES}:
        return None
    en, zh = short_phrases(attrs["category"], attrs["colour"])
    return en if language == "en" else zh if language == "zh" else None


class GroupBatches:
    """Endless batches of (view row, asset index, language) with distinct groups, reproducible by seed."""

    def __init__(
        self,
        data: EncodedAssets,
        batch_size: int,
        languages: Sequence[str],
        seed: int,
        short_rate: float = 0.0,
    ) -> None:
        self.data = data
        self.short_rate = short_rate
        self.languages = list(languages)
        self.rng = np.random.default_rng(seed)
        self.groups: dict[str, list[int]] = {}
        for index, asset in enumerate(data.assets):
            self.groups.setdefault(group_key(asset), []).append(index)
        self.group_names = sorted(self.groups)
        self.batch_size = min(batch_size, len(self.group_names))
        self.views_of = [np.flatnonzero(data.view_owner == i) for i in range(len(data.assets))]
        if self.batch_size < batch_size:
            log.info("batch size %d capped at %d: one asset per caption group", batch_size, self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        while True:
            chosen = self.rng.choice(len(self.group_names), self.batch_size, replace=False)
            assets = np.array([self.rng.choice(self.groups[self.group_names[g]]) for g in chosen])
            views = np.array([self.rng.choice(self.views_of[a]) for a in assets])
            languages = []
            for a in assets:
                options = [lang for lang in self.languages if self.data.has_caption[lang][a]]
                language = str(self.rng.choice(options))
                # Sometimes train on the short phrase instead of the caption (a tokens key like "en_short").
                if (
                    self.short_rate
                    and self.data.has_caption[f"{language}_short"][a]
                    and (self.rng.random() < self.short_rate)
                ):
                    language = f"{language}_short"
                languages.append(language)
            yield views, assets, languages
