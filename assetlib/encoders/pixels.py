"""The CPU half of an image encoder, picklable so that loader workers can run it: PIL images →
the tensors the model takes. Encoders that offer it (`PixelEncoder`) let the embedding engines
decode and preprocess in worker processes while the model runs in the main one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from assetlib.encoders.base import Encoder

if TYPE_CHECKING:
    from PIL.Image import Image

PixelBatch = dict[str, Any]  # the image processor's tensors: pixel_values (+ NaFlex's mask, shapes)


@dataclass
class ProcessorCall:
    """An image processor with the options the model was trained with; called on a list of images."""

    processor: Any
    options: dict[str, Any] = field(default_factory=dict)
    keys: tuple[str, ...] | None = None  # keep only these outputs (None: all of them)

    def __call__(self, images: Sequence[Image]) -> PixelBatch:
        """The processor's tensors for `images` (RGB, composited onto white by the caller)."""
        out = dict(self.processor(images=list(images), return_tensors="pt", **self.options))
        return {k: v for k, v in out.items() if self.keys is None or k in self.keys}


@runtime_checkable
class PixelEncoder(Encoder, Protocol):
    """An encoder whose image path splits into a picklable preprocessor and a model forward pass."""

    batch_size: int

    def pixel_preprocessor(self) -> ProcessorCall:
        """What turns decoded RGB images into this model's input tensors."""
        ...

    def embed_pixels(self, batch: PixelBatch) -> np.ndarray:
        """L2-normalised vectors for one preprocessed batch."""
        ...


def batch_rows(batch: PixelBatch) -> int:
    """How many images a preprocessed batch holds."""
    return len(next(iter(batch.values()))) if batch else 0


def slice_batch(batch: PixelBatch, index: int) -> PixelBatch:
    """The one-image batch at `index` (to isolate a row the model fails on)."""
    return {k: v[index : index + 1] for k, v in batch.items()}
