"""Pictures of a library: a grid of sample assets with their English and Chinese captions."""

from __future__ import annotations

import logging
import random
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assetlib.media.images import ImageError, load_rgb

if TYPE_CHECKING:  # the pictures are of assets; the record itself lives one room up
    from assetlib.library.asset import Asset

log = logging.getLogger(__name__)

CJK_FONTS = ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC")


def use_cjk_font() -> str | None:
    """Make matplotlib draw Chinese: put the first installed CJK font first; return its name."""
    from matplotlib import font_manager, rcParams

    installed = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONTS:
        if name in installed:
            rcParams["font.sans-serif"] = [name, *rcParams["font.sans-serif"]]
            rcParams["font.family"] = "sans-serif"
            return name
    log.warning("no CJK font installed (fonts-wqy-microhei): Chinese text will show as boxes")
    return None


def sample_assets(assets: Sequence[Asset], count: int, seed: int = 0) -> list[Asset]:
    """A reproducible random sample of assets that have at least one view."""
    with_views = [a for a in assets if a.view_paths]
    return random.Random(seed).sample(with_views, min(count, len(with_views)))


def save_asset_grid(
    assets: Sequence[Asset], path: str | Path, columns: int = 4, title: str | None = None, view: int = 0
) -> Path:
    """Save a grid of assets (one view each, captions below) as a PNG; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_cjk_font()
    rows = max(1, -(-len(assets) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 3.2, rows * 4.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, asset in zip(axes.flat, assets, strict=False):
        try:
            ax.imshow(load_rgb(asset.view_paths[min(view, len(asset.view_paths) - 1)]))
        except (ImageError, IndexError) as exc:
            ax.text(0.5, 0.5, f"no image\n{exc}", ha="center", va="center", fontsize=7, wrap=True)
        caption = "\n".join(textwrap.wrap(asset.caption_en or "", 38)[:3])
        caption_cn = "\n".join(textwrap.wrap(asset.caption_cn or "", 19)[:2])
        ax.set_title(asset.asset_id, fontsize=8, color="#555555")
        ax.text(
            0.5,
            -0.02,
            f"{caption}\n{caption_cn}",
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=7.5,
        )
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)  # notebooks and long runs must not accumulate open figures
    return path
