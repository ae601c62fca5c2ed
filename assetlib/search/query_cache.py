"""Recently encoded query vectors, so a query asked again (another mode, layout, page, or by the
evaluation's every configuration) is not encoded again.

Keyed by everything that makes the vector: the encoder's stored name and version (new weights,
new vectors), the query kind, language and role, and the text or the image's pixels.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np
from PIL import Image

from assetlib.encoders.base import EncoderInfo

MAX_ENTRIES = 4096  # at most ~18 MB of 1152-d float32 vectors


def text_key(info: EncoderInfo, text: str, language: str, role: str) -> tuple[str, ...]:
    """The cache key of a text query."""
    return (info.name, info.version, "text", language, role, text)


def image_key(info: EncoderInfo, image: Image.Image) -> tuple[str, ...]:
    """The cache key of an image query: a digest of its pixels, size and mode."""
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    return (info.name, info.version, "image", digest.hexdigest())


class QueryCache:
    """A thread-safe LRU of query vectors; `hits` and `misses` count lookups since the start."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._vectors: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple[str, ...]) -> np.ndarray | None:
        """The vector stored under key (now the most recent), or None."""
        with self._lock:
            vector = self._vectors.get(key)
            if vector is None:
                self.misses += 1
                return None
            self._vectors.move_to_end(key)
            self.hits += 1
            return vector

    def put(self, key: tuple[str, ...], vector: np.ndarray) -> None:
        """Remember a vector (read-only, so no caller can change what another gets)."""
        frozen = np.array(vector, copy=True)
        frozen.setflags(write=False)
        with self._lock:
            self._vectors[key] = frozen
            self._vectors.move_to_end(key)
            while len(self._vectors) > self.max_entries:
                self._vectors.popitem(last=False)
