"""e5 + an aligned image tower (LiT-style): frozen multilingual-e5-small text, images trained into its space.

The text side is the packaged multilingual-e5-small (`e5.py`), never trained here, so queries
phrased in ways the library's captions never use ("a seat for one person", "能在天上飞的东西")
land where e5 puts their meaning. The image side is a small ViT (transformers' `SiglipVisionModel`)
plus a linear projection into e5's 384-d space, trained by `assetlib.train.lit` so that each
render lands next to its captions' e5 vectors. A model directory holds:

    config.json, model.safetensors   the vision tower (SiglipVisionModel.save_pretrained)
    projection.safetensors           the linear map into e5's space
    preprocessor_config.json         the PIL image processor (size, mean, std)
    assetlib.json, README.md         the card: name, what it was trained on, held-out metrics
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assetlib.encoders.base import (
    EncoderInfo,
    EncoderUnavailable,
    ImageInput,
    TextRole,
    l2_normalize,
    mean_of_views,
)
from assetlib.encoders.e5 import E5_MODEL, E5Encoder
from assetlib.encoders.hub import content_hash
from assetlib.encoders.pixels import ProcessorCall
from assetlib.media.images import as_rgb

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor

log = logging.getLogger(__name__)

CARD = "assetlib.json"
PROJECTION = "projection.safetensors"


def build_tower(vision: Any, dim: int) -> Any:
    """The image tower: a SigLIP vision transformer, its pooled output projected to `dim`, L2-normalised."""
    import torch
    import torch.nn.functional as F

    class ImageTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision = vision
            self.projection = torch.nn.Linear(vision.config.hidden_size, dim)

        def forward(self, pixel_values: Tensor) -> Tensor:
            pooled = self.vision(pixel_values=pixel_values).pooler_output
            return F.normalize(self.projection(pooled).float(), dim=-1)

    return ImageTower()


def save_tower(tower: Any, image_processor: Any, out_dir: Path, card: dict) -> None:
    """Write a tower in the layout above (the card is written as given)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    tower.vision.save_pretrained(out_dir)
    projection = tower.projection
    save_file(
        {"weight": projection.weight.detach().contiguous(), "bias": projection.bias.detach().contiguous()},
        str(out_dir / PROJECTION),
    )
    image_processor.save_pretrained(out_dir)
    (out_dir / CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")


def load_tower(model_dir: Path, device: str = "cpu") -> tuple[Any, Any, dict]:
    """The tower, its PIL image processor and its card, from a directory written by `save_tower`."""
    from safetensors.torch import load_file
    from transformers import AutoImageProcessor, SiglipVisionModel

    card = json.loads((model_dir / CARD).read_text(encoding="utf-8"))
    vision = SiglipVisionModel.from_pretrained(model_dir)
    weights = load_file(str(model_dir / PROJECTION))
    tower = build_tower(vision, int(weights["weight"].shape[0]))
    tower.projection.load_state_dict(weights)
    processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    return tower.to(device).eval(), processor, card


class E5LitEncoder:
    """Text through frozen e5 (query/passage prefixes), images through the tower trained into e5's space."""

    def __init__(
        self,
        model_dir: str | Path,
        batch_size: int = 128,
        device: str | None = None,
        text: E5Encoder | None = None,
    ) -> None:
        import torch

        started = time.perf_counter()
        path = Path(model_dir).expanduser()
        if not (path / CARD).is_file() or not (path / PROJECTION).is_file():
            raise EncoderUnavailable(
                f"no trained e5-aligned image tower in {path}: run `assetlib train --algorithm e5lit` "
                "(the demo pipeline trains one)"
            )
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tower, self.image_processor, card = load_tower(path, self.device)
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderUnavailable(f"cannot load the image tower in {path}: {exc}") from exc
        if card.get("text_model") != E5_MODEL:
            raise EncoderUnavailable(f"{path} was aligned to {card.get('text_model')!r}, not {E5_MODEL}")
        self.text = text or E5Encoder()
        self.batch_size = batch_size
        self.path = path
        self._torch = torch
        self.info = EncoderInfo(
            name=f"e5lit:{card.get('name', path.name)}",
            algorithm="e5lit",
            model=str(path),
            dim=self.text.info.dim,
            modalities=frozenset({"text", "image"}),
            languages=self.text.info.languages,
            description=card.get("description", ""),
            # New weights give new vectors: the embedding stage and the evaluation key reuse on this.
            version=content_hash(path),
        )
        log.info("loaded %s from %s in %.1fs", self.info.name, path, time.perf_counter() - started)

    def pixel_preprocessor(self) -> ProcessorCall:
        """The tower's image processor (pixel values only); picklable."""
        return ProcessorCall(self.image_processor, keys=("pixel_values",))

    def preprocess(self, images: Sequence[Image]) -> Tensor:
        """Pixel values as the tower was trained on them."""
        return self.pixel_preprocessor()(images)["pixel_values"]

    def embed_pixels(self, batch: dict[str, Tensor]) -> np.ndarray:
        """Image vectors for one preprocessed batch, L2-normalised."""
        pin = self.device.startswith("cuda")
        pixels = batch["pixel_values"]
        with self._torch.inference_mode():
            vectors = self.tower((pixels.pin_memory() if pin else pixels).to(self.device, non_blocking=pin))
        return l2_normalize(vectors.float().cpu().numpy(), f"{self.info.name} image")

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """e5's vectors: "query: " for queries, "passage: " for captions (what the tower was trained on)."""
        return self.text.encode_texts(texts, language, role=role)

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """One vector per image (RGBA composited onto white, as at index time)."""
        rgb = [as_rgb(im) for im in images]
        step = self.batch_size
        parts = [
            self.embed_pixels({"pixel_values": self.preprocess(rgb[i : i + step])})
            for i in range(0, len(rgb), step)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.dim), np.float32)

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """Mean of the per-view vectors of each asset."""
        flat = [im for asset in views for im in asset]
        return mean_of_views(self.encode_images(flat), [len(v) for v in views])
