"""A small demo library at 32 px, written and read back: what the embedding tests embed."""

from __future__ import annotations

from pathlib import Path

from assetlib.library.asset import Asset
from assetlib.library.demo.generator import write_demo_library
from assetlib.library.readers import LibrarySource, read_library
from assetlib.media.render import RenderSettings


def small_demo_library(root: Path, size: int, seed: int) -> list[Asset]:
    """Write a demo library of `size` assets (32 px renders) under root; its assets as read."""
    write_demo_library(
        root, size=size, seed=seed, render=RenderSettings(size=32, supersample=1), progress=False
    )
    return read_library(LibrarySource.at(root)).assets
