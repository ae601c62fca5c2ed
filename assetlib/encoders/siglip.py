"""SigLIP and SigLIP 2 through transformers: per-view image vectors and caption text vectors.

Weights come from a hub id or a local directory (SIGLIP_MODEL); tests and the demo use local
directories saved with `save_pretrained`, loaded through exactly this code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assetlib.encoders.base import (
    EncoderInfo,
    EncoderUnavailable,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
    mean_of_views,
)
from assetlib.media.images import as_rgb

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger(__name__)

SIDECAR = "assetlib.json"  # written next to models trained by assetlib: display name, languages, card
MULTILINGUAL_HINTS = ("siglip2", "i18n", "multilingual")


def read_sidecar(source: str) -> dict:
    """The assetlib.json of a local model directory ({} for hub ids and other directories)."""
    path = Path(source).expanduser() / SIDECAR
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
    return {}


def encoder_name(source: str) -> str:
    """Stored name of a SigLIP model: 'siglip:<sidecar name | directory name | hub id>'."""
    sidecar = read_sidecar(source)
    if sidecar.get("name"):
        return f"siglip:{sidecar['name']}"
    path = Path(source).expanduser()
    return f"siglip:{path.name if path.is_dir() else source}"


def weights_version(source: str) -> str:
    """Identity of the weights behind a model source: weight files' names, sizes and mtimes, or the hub id."""
    import hashlib

    path = Path(source).expanduser()
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) if path.is_dir() else []
    if not files:
        return source
    digest = hashlib.blake2b(digest_size=8)
    for f in files:
        stat = f.stat()
        digest.update(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _pooled(output: Any) -> Tensor:
    # transformers 5 returns an output object from get_*_features; 4.x returned the tensor.
    return getattr(output, "pooler_output", output)


class SiglipEncoder:
    """A transformers SigLIP model on CPU (float32) or CUDA (float16)."""

    def __init__(self, source: str, batch_size: int = 100, device: str | None = None) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        started = time.perf_counter()
        self.source = source
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        try:
            self.model = AutoModel.from_pretrained(source, dtype=dtype).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(source)
            # The PIL-based processor: the "fast" one needs torchvision, which breaks this torch.
            self.image_processor = AutoImageProcessor.from_pretrained(source, backend="pil")
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(
                f"cannot load SigLIP weights from {source!r}: {str(exc).splitlines()[0]} "
                "(set SIGLIP_MODEL to a local directory or a hub id whose weights are in the cache)"
            ) from exc
        config = self.model.config
        text_config = getattr(config, "text_config", config)
        self.max_length = int(getattr(text_config, "max_position_embeddings", 64))
        self.lowercase = config.model_type == "siglip2" or "gemma" in type(self.tokenizer).__name__.lower()
        sidecar = read_sidecar(source)
        languages = tuple(
            sidecar.get("languages")
            or (("en", "zh") if any(h in source.lower() for h in MULTILINGUAL_HINTS) else ("en",))
        )
        dim = int(getattr(config, "projection_dim", None) or text_config.hidden_size)
        self.info = EncoderInfo(
            name=encoder_name(source),
            algorithm="siglip",
            model=source,
            dim=dim,
            modalities=frozenset({"text", "image"}),
            languages=languages,
            fused_views=False,
            description=sidecar.get("description", "transformers SigLIP"),
            version=weights_version(source),
        )
        self._torch = torch
        log.info(
            "loaded %s from %s on %s in %.1fs (%d-d, text max %d tokens)",
            self.info.name,
            source,
            self.device,
            time.perf_counter() - started,
            dim,
            self.max_length,
        )

    def tokenize(self, texts: Sequence[str]) -> dict:
        """Tokenise exactly as SigLIP was trained: fixed max-length padding (and lowercase for SigLIP 2)."""
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        return self.tokenizer(
            texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )

    def _run(self, fn: Callable[..., Any], batches: list[dict[str, Any]]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for batch in batches:
                inputs = {k: v.to(self.device) for k, v in batch.items()}
                out.append(_pooled(fn(**inputs)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), dtype=np.float32)

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Caption or query vectors, L2-normalised (SigLIP embeds queries and captions alike)."""
        check_texts(texts, language, self.info)
        step = self.batch_size
        batches = [dict(self.tokenize(texts[i : i + step])) for i in range(0, len(texts), step)]
        return l2_normalize(self._run(self.model.get_text_features, batches), f"{self.info.name} text")

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """One vector per image; RGBA is composited onto white first, as at index time."""
        rgb = [as_rgb(im) for im in images]
        step = self.batch_size
        batches = [
            {
                "pixel_values": self.image_processor(images=rgb[i : i + step], return_tensors="pt")[
                    "pixel_values"
                ]
            }
            for i in range(0, len(rgb), step)
        ]
        return l2_normalize(self._run(self.model.get_image_features, batches), f"{self.info.name} image")

    def encode_asset_views(self, views: Sequence[Sequence[ImageInput]]) -> np.ndarray:
        """Mean of the per-view vectors of each asset (SigLIP has no multi-image input)."""
        flat = [im for asset in views for im in asset]
        return mean_of_views(self.encode_images(flat), [len(v) for v in views])
