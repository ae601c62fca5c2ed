"""Encoder protocol and EncoderInfo: what every algorithm offers and how its vectors look."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from assetlib.vocab import language_code

# An image handed to an encoder: decoded already, or a file (decoded safely by the encoder, or sent
# by URL by a remote encoder that may use one).
ImageInput = Image.Image | Path
TextRole = Literal["query", "document"]


class EncoderError(RuntimeError):
    """An encoder failed to produce vectors; never answered with a zero vector."""


class EncoderUnavailable(EncoderError):
    """An encoder that cannot be used here (no weights, no API key, package missing), with the reason."""


@dataclass(frozen=True)
class EncoderInfo:
    """Name, dimension, modalities and languages of an encoder, and how it embeds an asset's views."""

    name: str  # "<algorithm>:<model>", the name its vectors are stored under
    algorithm: str
    model: str
    dim: int
    modalities: frozenset[str]  # {"text"} or {"text", "image"}
    languages: tuple[str, ...]  # ISO codes of caption/query languages it was trained for
    fused_views: bool = False  # True: one vector per asset from several views (Qwen multi_images)
    description: str = ""
    # Changes whenever the same name would give other vectors (retrained weights, another API
    # dimension); the embedding stage keys its reuse on it, so stale vectors are never kept.
    version: str = ""
    local: bool = True  # computed on this machine (False: a remote API, whose calls wait on the network)

    @property
    def embeds_images(self) -> bool:
        """Whether the encoder takes images at all."""
        return "image" in self.modalities


@runtime_checkable
class Encoder(Protocol):
    """Outputs are float32, L2-normalised, shaped (n, info.dim); failures raise."""

    info: EncoderInfo

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Embed texts in one language; role is "query" for search queries, "document" for captions."""
        ...

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """Embed images or image files (RGBA composited onto white), one vector each; role "query" for
        an image searched with (a model with a query instruction uses it), "document" for renders."""
        ...

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """One vector per asset from its views (fused by the model, or the mean of per-view vectors)."""
        ...


def l2_normalize(vectors: np.ndarray, what: str = "vectors") -> np.ndarray:
    """Row-wise L2 normalisation to float32; raise EncoderError on NaN/Inf or zero rows."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if not np.isfinite(vectors).all():
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1)).tolist()
        raise EncoderError(f"{what}: NaN or Inf in rows {bad[:10]}")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if (norms < 1e-12).any():
        bad = np.flatnonzero(norms[:, 0] < 1e-12).tolist()
        raise EncoderError(f"{what}: zero vectors in rows {bad[:10]}")
    return vectors / norms


def mean_of_views(per_view: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Normalised mean of consecutive per-view vectors, `counts[i]` of them for asset i."""
    out, start = [], 0
    for count in counts:
        if count <= 0:
            raise EncoderError("an asset with no views cannot be embedded")
        out.append(per_view[start : start + count].mean(axis=0))
        start += count
    return l2_normalize(np.stack(out), "mean of views")


class UnsupportedLanguage(EncoderError, ValueError):
    """Text in a language the encoder was not trained for."""


def check_texts(texts: Sequence[str], language: str, info: EncoderInfo) -> str:
    """What every encoder checks before embedding texts: the language it knows, no empty text."""
    code = check_language(language, info)
    if any(not t or not t.strip() for t in texts):
        raise EncoderError("cannot embed an empty text")
    return code


def check_language(language: str, info: EncoderInfo) -> str:
    """The language code ('english' → 'en') if the encoder embeds that language, else UnsupportedLanguage."""
    code = language_code(language)
    if code not in info.languages:
        raise UnsupportedLanguage(f"{info.name} embeds {', '.join(info.languages)} text, not {language!r}")
    return code
