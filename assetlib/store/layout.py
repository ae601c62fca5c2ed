"""THE image-layout rule: which tables a layout searches and indexes, and which layout serves a query.

Loading (which ANN indexes to build), search (which table a mode reads, which layout to use when
none is asked for), evaluation (which layouts to compare) and the memory guard (what to suggest)
all ask this module; none of them decides on its own.
"""

from __future__ import annotations

from collections.abc import Collection

from assetlib.config import setting_default
from assetlib.vocab import ImageLayout, Mode, VectorKind, searches_captions

# What each layout reads for an image search (besides the caption tables every layout keeps).
_IMAGE_TABLES: dict[ImageLayout, tuple[VectorKind, ...]] = {
    ImageLayout.VIEWS: (VectorKind.VIEW,),
    # Candidates from the per-asset index, then each candidate's views read through the primary key.
    ImageLayout.POOLED: (VectorKind.ASSET, VectorKind.VIEW),
    ImageLayout.ASSET: (VectorKind.ASSET,),
}
# Which of those need an ANN index: the pooled re-rank reads views by key, so no per-view index.
_INDEXED: dict[ImageLayout, tuple[VectorKind, ...]] = {
    ImageLayout.VIEWS: (VectorKind.CAPTION, VectorKind.VIEW, VectorKind.ASSET),
    ImageLayout.POOLED: (VectorKind.CAPTION, VectorKind.ASSET),
    ImageLayout.ASSET: (VectorKind.CAPTION, VectorKind.ASSET),
}


class LayoutError(ValueError):
    """A layout that the encoder's vectors cannot serve (per-view layouts of a fused encoder)."""


def index_kinds(layout: ImageLayout) -> tuple[VectorKind, ...]:
    """The tables that get an ANN index when `layout` is the configured one (IMAGE_LAYOUT)."""
    return _INDEXED[layout]


def target_kind(mode: Mode, layout: ImageLayout) -> VectorKind:
    """The table whose ANN index answers a single-modality mode under a layout."""
    if mode is Mode.FUSED:
        raise ValueError("a fused search runs two modes; ask for each of them")
    if searches_captions(mode):
        return VectorKind.CAPTION
    return _IMAGE_TABLES[layout][0]


def reranks_by_view(layout: ImageLayout) -> bool:
    """Whether the layout re-ranks per-asset candidates by their best view (the pooled layout)."""
    return layout is ImageLayout.POOLED


def choose_layout(
    indexed: Collection[VectorKind], preferred: ImageLayout = setting_default("image_layout")
) -> ImageLayout:
    """The layout for a per-view encoder: the preferred one when its table is indexed, else the indexed one.

    Nothing indexed means `views`: an exact per-view scan, slow at scale but still right.
    """
    pooled = VectorKind.ASSET in indexed and (
        preferred is ImageLayout.POOLED or VectorKind.VIEW not in indexed
    )
    return ImageLayout.POOLED if pooled else ImageLayout.VIEWS


def serving_layout(
    fused_views: bool,
    indexed: Collection[VectorKind],
    preferred: ImageLayout,
    requested: ImageLayout | str | None = None,
) -> ImageLayout:
    """The layout one search uses: as requested (if the vectors allow it), the fused vector of a fused
    encoder, else `choose_layout` over what is indexed."""
    if requested is not None:
        try:
            layout = ImageLayout(requested)
        except ValueError:
            raise LayoutError(f"unknown layout {requested!r}; valid: {', '.join(ImageLayout)}") from None
        if fused_views and layout is not ImageLayout.ASSET:
            raise LayoutError(
                f"layout {layout.value} needs per-view vectors; this encoder stores one fused vector "
                "per asset (layout asset)"
            )
        return layout
    if fused_views:
        return ImageLayout.ASSET
    return choose_layout(indexed, preferred)


def layouts_to_compare(fused_views: bool) -> tuple[ImageLayout, ...]:
    """The layouts an evaluation scores for an encoder (every one its vectors can serve)."""
    return (ImageLayout.ASSET,) if fused_views else (ImageLayout.VIEWS, ImageLayout.POOLED, ImageLayout.ASSET)


def layout_label(layout: ImageLayout | str, fused_views: bool) -> str:
    """What a layout means for an encoder, in words for tables and legends."""
    layout = ImageLayout(layout)
    if layout is ImageLayout.ASSET:
        return "fused views" if fused_views else "mean of views only"
    if layout is ImageLayout.POOLED:
        return "pooled: mean candidates, best-view re-rank"
    return "per-view max"


def guard_alternatives(kind: VectorKind) -> list[str]:
    """The layout the memory guard names when an index on `kind` would not fit (empty if none helps)."""
    if kind is VectorKind.VIEW:
        return [
            "IMAGE_LAYOUT=pooled (the default): no per-view index; the per-asset table (one mean "
            "vector per asset, 1/8 of the rows) gives candidates, re-ranked exactly by view"
        ]
    return []
