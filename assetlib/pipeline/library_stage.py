"""The library stage: build the demo library or read a real one, then record failures and a preview grid."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from assetlib.library.asset import Asset, Failure
from assetlib.library.demo.generator import DEFAULT_SIZE, write_demo_library
from assetlib.library.readers import LibrarySource, read_library, write_failures
from assetlib.media.preview import sample_assets, save_asset_grid
from assetlib.media.render import RenderSettings

log = logging.getLogger(__name__)


@dataclass
class LibraryStage:
    """Result of the library stage: the assets, what was skipped, where the pictures are, timings."""

    root: Path
    assets: list[Asset]
    failures: list[Failure]
    counts: dict[str, int]
    seconds: dict[str, float]
    preview: Path | None
    failures_csv: Path | None


def default_demo_root(home: Path) -> Path:
    """Where the demo library lives unless told otherwise."""
    return home / "libraries" / "demo"


def run_library_stage(
    source: Literal["demo", "real"],
    root: str | Path,
    run_dir: str | Path | None = None,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    max_assets: int | None = None,
    num_views: int = 8,
    image_size: int = 256,
    workers: int | None = None,
    verify_images: bool = True,
    progress: bool = True,
) -> LibraryStage:
    """Build (demo) or read (real) a library; write failures, a preview grid and counts to run_dir."""
    if source not in ("demo", "real"):
        raise ValueError(f"source must be 'demo' or 'real', got {source!r}")
    root = Path(root).expanduser()
    seconds: dict[str, float] = {}
    failures: list[Failure] = []
    started = time.perf_counter()
    if source == "demo":
        build = write_demo_library(
            root,
            size=size,
            seed=seed,
            render=RenderSettings(views=num_views, size=image_size),
            workers=workers,
            progress=progress,
        )
        failures += build.failures
        seconds.update({f"build_{k}": v for k, v in build.seconds.items()})
    elif not root.is_dir():
        raise FileNotFoundError(f"library folder not found: {root}")
    t = time.perf_counter()
    read = read_library(
        LibrarySource.at(root), max_assets=max_assets, num_views=num_views, verify_images=verify_images
    )
    seconds["read"] = time.perf_counter() - t
    failures += read.failures
    seconds["total"] = time.perf_counter() - started
    preview = failures_csv = None
    if run_dir is not None:
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        failures_csv = write_failures(failures, run_dir / "library_failures.csv")
        title = f"{source} library: {len(read.assets)} assets, 16 at random (seed {seed})"
        preview = save_asset_grid(
            sample_assets(read.assets, 16, seed), run_dir / "library_preview.png", title=title
        )
        (run_dir / "library_counts.json").write_text(
            json.dumps(
                {
                    "source": source,
                    "root": str(root),
                    "counts": read.counts,
                    "failures": len(failures),
                    "seconds": {k: round(v, 1) for k, v in seconds.items()},
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    log.info(
        "library stage (%s): %d assets, %d failures in %.1fs",
        source,
        len(read.assets),
        len(failures),
        seconds["total"],
    )
    return LibraryStage(root, read.assets, failures, read.counts, seconds, preview, failures_csv)
