"""The one layout rule: what each layout indexes and searches, which serves a query, how it is named."""

from __future__ import annotations

import pytest

from assetlib.store.layout import (
    LayoutError,
    index_kinds,
    layout_label,
    layouts_to_compare,
    serving_layout,
    target_kind,
)
from assetlib.vocab import ImageLayout, Mode, VectorKind

BOTH = {VectorKind.VIEW, VectorKind.ASSET}


def test_each_layout_indexes_what_it_searches():
    assert index_kinds(ImageLayout.VIEWS) == (VectorKind.CAPTION, VectorKind.VIEW, VectorKind.ASSET)
    assert VectorKind.VIEW not in index_kinds(ImageLayout.POOLED)  # the re-rank reads views by key
    for layout in ImageLayout:
        for mode in (Mode.TEXT_TO_IMAGE, Mode.IMAGE_TO_IMAGE, Mode.TEXT_TO_TEXT, Mode.IMAGE_TO_TEXT):
            assert target_kind(mode, layout) in index_kinds(layout)
    assert target_kind(Mode.TEXT_TO_TEXT, ImageLayout.VIEWS) is VectorKind.CAPTION
    assert target_kind(Mode.IMAGE_TO_IMAGE, ImageLayout.POOLED) is VectorKind.ASSET
    with pytest.raises(ValueError):
        target_kind(Mode.FUSED, ImageLayout.VIEWS)


def test_the_serving_layout_follows_the_setting_what_is_indexed_and_the_encoder():
    assert serving_layout(False, BOTH, ImageLayout.POOLED) is ImageLayout.POOLED
    assert serving_layout(False, BOTH, ImageLayout.VIEWS) is ImageLayout.VIEWS
    assert serving_layout(False, {VectorKind.ASSET}, ImageLayout.VIEWS) is ImageLayout.POOLED  # refused
    assert serving_layout(False, set(), ImageLayout.POOLED) is ImageLayout.VIEWS  # exact, still right
    assert serving_layout(True, BOTH, ImageLayout.POOLED) is ImageLayout.ASSET  # one fused vector
    assert serving_layout(False, BOTH, ImageLayout.POOLED, "asset") is ImageLayout.ASSET
    with pytest.raises(LayoutError, match="fused vector"):
        serving_layout(True, BOTH, ImageLayout.POOLED, "views")
    with pytest.raises(LayoutError, match="valid: views, pooled, asset"):
        serving_layout(False, BOTH, ImageLayout.POOLED, "mean")


def test_evaluations_compare_every_servable_layout_under_an_honest_name():
    assert layouts_to_compare(False) == (ImageLayout.VIEWS, ImageLayout.POOLED, ImageLayout.ASSET)
    assert layouts_to_compare(True) == (ImageLayout.ASSET,)
    assert layout_label(ImageLayout.ASSET, fused_views=False) == "mean of views only"
    assert layout_label(ImageLayout.ASSET, fused_views=True) == "fused views"
    assert "re-rank" in layout_label("pooled", fused_views=False)
