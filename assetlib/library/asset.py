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
    # What Objaverse's annotations, LVIS and G-Objaverse's categories say (or the demo's own).
    name: str | None = None
    license: str | None = None
    categories: tuple[str, ...] = ()
    lvis: tuple[str, ...] = ()
    face_count: int | None = None
    vertex_count: int | None = None
    like_count: int | None = None
    public_views: int | None = None  # page views of the source model, not rendered views
    glb_relpath: str | None = None  # `<shard>/<uid>.glb` as the index map has it: the remote model's path

    def caption(self, language: str) -> str | None:
        """The caption in one language ('en' or 'zh'; None when the asset has none in it)."""
        return {"en": self.caption_en, "zh": self.caption_cn}.get(language)

    @property
    def view_count(self) -> int:
        """Number of rendered views known for this asset."""
        return len(self.view_paths)
