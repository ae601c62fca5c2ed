"""What an encoder must compute for each asset: rows (captions per language, views, the asset vector)
with input hashes, so that a re-run can tell what changed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from assetlib.encoders.base import EncoderInfo
from assetlib.library.asset import Asset
from assetlib.vocab import VectorKind

RowKey = tuple[str, str, str | None, int | None]  # (kind, asset id, language, view index)


@dataclass
class Row:
    """One vector to compute: a caption (per language), a view, or a whole asset."""

    kind: VectorKind
    asset_id: str
    language: str | None = None
    view_index: int | None = None
    input_hash: str = ""
    text: str | None = None
    paths: tuple[Path, ...] = ()

    @property
    def key(self) -> RowKey:
        """Identity of the row within an encoder's output."""
        return (self.kind.value, self.asset_id, self.language, self.view_index)


def digest(*parts: bytes | str) -> str:
    """A short hash of several parts (kept apart, so ("ab", "c") and ("a", "bc") differ)."""
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def file_fingerprint(path: Path) -> str:
    """A file's identity for reuse: path, size and modification time, not content.

    Every re-run fingerprints all views, and reading millions of PNGs just to find them unchanged
    would cost as much as a fresh decode.
    """
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return digest(str(path), str(stat.st_size), str(stat.st_mtime_ns))


def plan_rows(asset: Asset, info: EncoderInfo, per_view: bool, languages: Sequence[str]) -> list[Row]:
    """The rows an encoder produces for one asset: captions per language, views, the asset vector."""
    rows = []
    for language in languages:
        text = asset.caption(language)
        if text and language in info.languages:
            rows.append(
                Row(
                    VectorKind.CAPTION,
                    asset.asset_id,
                    language=language,
                    text=text,
                    input_hash=digest(info.name, info.version, language, text),
                )
            )
    if info.embeds_images and asset.view_paths:
        view_hashes = [file_fingerprint(p) for p in asset.view_paths]
        if per_view:
            for index, (path, view_hash) in enumerate(zip(asset.view_paths, view_hashes, strict=True)):
                rows.append(
                    Row(
                        VectorKind.VIEW,
                        asset.asset_id,
                        view_index=index,
                        paths=(path,),
                        input_hash=digest(info.name, info.version, view_hash),
                    )
                )
        rows.append(
            Row(
                VectorKind.ASSET,
                asset.asset_id,
                paths=tuple(asset.view_paths),
                input_hash=digest(
                    info.name, info.version, "fused" if info.fused_views else "mean", *view_hashes
                ),
            )
        )
    return rows


def shard_fingerprint(rows: Sequence[Row]) -> str:
    """What a shard's vectors depend on: every row's key and input hash."""
    return digest(*(f"{r.key}{r.input_hash}" for r in rows))
