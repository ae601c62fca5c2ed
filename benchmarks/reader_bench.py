"""How fast the G-Objaverse reader reads a big render tree: cold index vs warm, by worker count.

Generates N assets × 40 views in the 280k layout (`<dir>/<inst>/campos_512_v4/<vvvvv>/<vvvvv>.png` +
a real-format camera JSON per view; one small PNG's bytes in every image file) under a temporary
folder, or reuses a tree `--root` holds already, then reads it with `read_library` for each worker
count: first with no view index (every folder listed, every camera JSON parsed), then again with
the index the first read wrote (one stat per folder). The decode check (`verify`) is measured on
the first `--verify-assets` assets. Prints figures; asserts only that every read gives the same
result. "Cold" means a cold index, not a cold page cache (that is not dropped here).

    .venv/bin/python benchmarks/reader_bench.py --assets 20000 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from assetlib.library.readers import LibraryRead, LibrarySource, ViewChoice, read_library
from assetlib.library.view_index import index_path, scan_tree
from assetlib.media.views import CAMPOS_DIR, camera_json

PER_DIR = 1000  # assets per top-level folder, as G-Objaverse groups them ("0/10002")


def cameras(count: int) -> list[bytes]:
    """Camera JSONs shaped like G-Objaverse's: an orbit at 20° elevation, then top and bottom views."""
    out = []
    for i in range(count):
        azimuth = math.radians(360.0 * i / max(1, count - 2))
        elevation = math.radians(20.0 if i < count - 2 else (89.0 if i == count - 2 else -89.0))
        position = 1.6 * np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        out.append(json.dumps(camera_json(position, np.zeros(3), 40.0)).encode())
    return out


def asset_ids(n: int) -> list[str]:
    """G-Objaverse-style ids: `<dir>/<inst>`."""
    return [f"{i // PER_DIR}/{i:06d}" for i in range(n)]


def generate(root: Path, n: int, views: int, image_size: int) -> float:
    """Write the tree (captions JSON + renders) unless `root` already holds one this size; seconds taken."""
    marker = root / "bench.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"assets": n, "views": views}:
        return 0.0
    started = time.perf_counter()
    buffer = io.BytesIO()
    pixels = np.zeros((image_size, image_size, 4), dtype=np.uint8)
    pixels[image_size // 4 : 3 * image_size // 4, image_size // 4 : 3 * image_size // 4] = (200, 30, 30, 255)
    Image.fromarray(pixels, "RGBA").save(buffer, format="PNG")
    png, jsons = buffer.getvalue(), cameras(views)
    ids = asset_ids(n)
    for k, asset_id in enumerate(ids):
        folder = root / "renders" / asset_id / CAMPOS_DIR
        for v in range(views):
            name = f"{v:05d}"
            os.makedirs(folder / name, exist_ok=True)
            with open(folder / name / f"{name}.png", "wb") as f:
                f.write(png)
            with open(folder / name / f"{name}.json", "wb") as f:
                f.write(jsons[v])
        if (k + 1) % 5000 == 0:
            print(f"  generated {k + 1}/{n} assets", file=sys.stderr, flush=True)
    (root / "text_captions_cap3d.json").write_text(json.dumps({i: f"asset {i}" for i in ids}))
    marker.write_text(json.dumps({"assets": n, "views": views}))
    return time.perf_counter() - started


def timed_read(
    source: LibrarySource, index: Path, workers: int, verify: bool, max_assets: int | None
) -> tuple[float, LibraryRead]:
    """Seconds one read takes, and what it read."""
    started = time.perf_counter()
    read = read_library(
        source, max_assets=max_assets, num_views=8, verify_images=verify, workers=workers, index_file=index
    )
    return time.perf_counter() - started, read


def same(a: LibraryRead, b: LibraryRead) -> bool:
    """Same assets in the same order, same views, same failures."""
    return a.assets == b.assets and a.failures == b.failures


def main() -> None:
    """Generate (or reuse) a tree and print reads/s by worker count, cold and warm index, verify or not."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=20_000)
    parser.add_argument("--views", type=int, default=40)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--verify-assets", type=int, default=2000, help="assets read with verify on")
    parser.add_argument("--root", help="tree folder (kept); default: a temporary folder, deleted after")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="reader-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="reader-bench-home-"))
    try:
        print(f"cpus: {os.cpu_count()}; tree: {root}")
        seconds = generate(root, args.assets, args.views, args.image_size)
        files = args.assets * args.views * 2
        print(
            f"tree: {args.assets} assets x {args.views} views = {files} files"
            + (f", generated in {seconds:.0f}s" if seconds else ", reused")
        )
        source = LibrarySource.at(root)
        assert source.renders is not None
        index = index_path(home, source.renders)
        reference: dict[bool, LibraryRead] = {}
        sizes: dict[bool, int] = {}
        columns = ("verify", 6), ("assets", 7), ("workers", 7), ("cold s", 8), ("cold/s", 8), ("warm s", 7)
        print(" ".join(f"{name:>{width}}" for name, width in (*columns, ("warm/s", 9))))
        for verify in (False, True):
            n = args.verify_assets if verify else args.assets
            for w in workers:
                index.unlink(missing_ok=True)
                cold, first = timed_read(source, index, w, verify, n)
                warm, second = timed_read(source, index, w, verify, n)
                reference.setdefault(verify, first)
                sizes[verify] = index.stat().st_size
                assert same(first, second) and same(first, reference[verify]), "reads differ"
                assert second.counts["folders_scanned"] == 0, second.counts
                print(
                    f"{verify!s:>6} {n:>7} {w:>7} {cold:>8.1f} {n / cold:>8.0f} {warm:>7.2f} {n / warm:>9.0f}"
                )
        print(
            f"index file: {sizes[False] / 1e6:.1f} MB for {args.assets} assets, "
            f"{sizes[True] / 1e6:.1f} MB for {args.verify_assets} with decode checks"
        )
        # The pool type, measured: scans of the first --verify-assets folders with threads vs processes.
        ids = asset_ids(args.assets)[: args.verify_assets]
        pools: tuple[Literal["thread", "process"], ...] = ("thread", "process")
        for verify in (False, True):
            for pool in pools:
                for w in workers[1:]:
                    started = time.perf_counter()
                    scan_tree(source.renders, ids, ViewChoice(8, verify), workers=w, pool=pool)
                    rate = len(ids) / (time.perf_counter() - started)
                    print(f"scan, no index, verify={verify}, {pool} pool, {w} workers: {rate:.0f} assets/s")
        print("all reads identical: True")
    finally:
        shutil.rmtree(home, ignore_errors=True)
        if not args.root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
