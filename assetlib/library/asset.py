"""Asset record: one id for an asset's captions, views and mesh alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Asset:
    """One 3D asset of a library: captions in English and Chinese, rendered views, mesh, tags."""

    asset_id: str
    objaverse_uid: str | None = None
    caption_en: str | None = None
    caption_cn: str | None = None
    view_paths: tuple[Path, ...] = ()
    glb_path: Path | None = None
    high_quality: bool = False
    tags: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)

    def caption(self, language: str) -> str | None:
        """The caption in one language ('en' or 'zh'; None when the asset has none in it)."""
        return {"en": self.caption_en, "zh": self.caption_cn}.get(language)

    @property
    def view_count(self) -> int:
        """Number of rendered views known for this asset."""
        return len(self.view_paths)
