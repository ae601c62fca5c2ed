"""Text vectors kept on disk, so the same captions are embedded once by a frozen text encoder.

The demo embeds its captions with e5 three times over (the image tower's training targets, the e5
baseline, e5lit's caption rows); with this cache the first pays and the others read. Each write
is one new file (`<random>.npz`: texts and vectors), written atomically, so processes that share the
folder never see half a file; a reader loads every file once.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class TextVectorCache:
    """Vectors by (role, text) for one model version, in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._vectors: dict[str, np.ndarray] = {}
        self._seen: set[str] = set()

    def _key(self, role: str, text: str) -> str:
        return f"{role}\t{text}"

    def _refresh(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.npz")):
            if path.name in self._seen:
                continue
            try:
                with np.load(path, allow_pickle=False) as data:
                    self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
            except (OSError, ValueError, KeyError) as exc:  # a damaged file only costs re-embedding
                log.warning("text vector cache: ignoring %s: %s", path, exc)
            self._seen.add(path.name)

    def embed(
        self, texts: Sequence[str], role: str, compute: Callable[[list[str]], np.ndarray]
    ) -> np.ndarray:
        """Vectors of texts: cached ones read, the rest computed with `compute` and stored."""
        self._refresh()
        keys = [self._key(role, t) for t in texts]
        missing = sorted({t for t, k in zip(texts, keys, strict=True) if k not in self._vectors})
        if missing:
            computed = np.asarray(compute(missing), dtype=np.float32)
            fresh = [self._key(role, t) for t in missing]
            self._vectors.update(zip(fresh, computed, strict=True))
            self._write(fresh, computed)
        if not keys:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def _write(self, keys: list[str], vectors: np.ndarray) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = f"{uuid.uuid4().hex}.npz"
            tmp = self.folder / f".{name}.tmp"
            with tmp.open("wb") as fh:
                np.savez(fh, keys=np.array(keys), vectors=vectors)
            os.replace(tmp, self.folder / name)
            self._seen.add(name)
        except OSError as exc:  # a read-only or full disk only costs re-embedding next time
            log.warning("text vector cache: not saved (%s)", exc)
