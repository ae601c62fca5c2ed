"""Qwen3-VL-Embedding on the CPU: seconds per asset (its views fused in one input) and per text query.

Pretrained weights cannot be downloaded here, so checkpoints are built from random weights
(throughput depends on the architecture, not on the weights): the tests' tiny geometry
(`tests/tiny_models.py`) and the real 2B's (Qwen3-VL-Embedding-2B: text 2048 hidden, 28 layers, 16
heads of 128 with 8 key/value heads, MLP 6144, vocabulary 151,936; vision 24 blocks of 1024, MLP
4096, 16 heads, patch 16, merge 2, DeepStack at 5/11/17, output 2048). Each is saved in the
published files and loaded by the encoder as a local directory; the 2B is written in bfloat16
(4.3 GB on disk, the published checkpoint's size to the byte) and run in float32, as the encoder
runs on a CPU (about 9 GB of memory; `peak_rss_gb` says).
Assets are `--views` random 512-px RGBA renders, resized as the embedder resizes them (512 px stays
512 px on the real geometry: 16 × 16 cells, 256 tokens per view). CPU seconds are the process's
(every torch thread), wall seconds beside them. Prints a table, writes
outputs/bench/qwen3vl_bench.csv.

    python benchmarks/qwen3vl_bench.py [--geometry tiny 2b] [--assets 2] [--queries 4] [--views 8]
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import QWEN3VL_TINY, tiny_qwen3vl  # noqa: E402

from assetlib.records import write_csv  # noqa: E402
from assetlib.vocab import detect_language  # noqa: E402

# Qwen3-VL-2B (the Embedding-2B's backbone): the LLM is Qwen3-1.7B's, the vision tower the 4B's.
REAL_2B = {
    "hidden": 2048,
    "layers": 28,
    "heads": 16,
    "kv_heads": 8,
    "head_dim": 128,
    "intermediate": 6144,
    "vocab_size": 151_936,
    "mrope_section": [24, 20, 20],
    "vision_hidden": 1024,
    "vision_depth": 24,
    "vision_intermediate": 4096,
    "vision_heads": 16,
    "patch": 16,
    "positions": 2304,
    "deepstack": [5, 11, 17],
}
GEOMETRIES = {"tiny": QWEN3VL_TINY, "2b": REAL_2B}
QUERIES = ["a red chair with four legs", "一把红色的椅子", "something to sit on", "a blue van"]


def _renders(count: int, views: int, size: int) -> list[list[Image.Image]]:
    """`count` assets of `views` RGBA renders: a coloured disc on a transparent background, plus noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    out = []
    for _ in range(count):
        asset = []
        for _ in range(views):
            pixels = rng.integers(0, 255, (size, size, 4), dtype=np.uint8)
            pixels[..., 3] = np.where(disc, 255, 0)
            asset.append(Image.fromarray(pixels, "RGBA"))
        out.append(asset)
    return out


def _timed(fn) -> tuple[float, float]:
    """(CPU seconds of the process, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def bench(label: str, args: argparse.Namespace, workdir: Path) -> dict:
    """CPU and wall seconds per asset and per text query of one geometry."""
    import torch

    from assetlib.encoders.qwen3vl import Qwen3VLEncoder
    from assetlib.encoders.qwen3vl_inputs import DOCUMENT_INSTRUCTION

    geometry = GEOMETRIES[label]
    started = time.perf_counter()
    dtype = torch.bfloat16 if label != "tiny" else torch.float32
    folder = tiny_qwen3vl(workdir / label, geometry=geometry, dtype=dtype)
    built = time.perf_counter() - started
    gc.collect()
    started = time.perf_counter()
    encoder = Qwen3VLEncoder(str(folder), device="cpu")
    loaded = time.perf_counter() - started
    params = sum(p.numel() for p in encoder.model.parameters())
    assets = _renders(args.assets, args.views, args.size)
    tokens = len(encoder.prompts.build(DOCUMENT_INSTRUCTION, [a.convert("RGB") for a in assets[0]]).ids)
    encoder.encode_texts(QUERIES[:1], "en", role="query")  # warm-up
    text_cpu = text_wall = 0.0
    queries = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(args.queries)]
    for query in queries:  # one at a time, as searches arrive
        language = detect_language(query).value
        cpu, wall = _timed(lambda q=query, lang=language: encoder.encode_texts([q], lang, role="query"))
        text_cpu, text_wall = text_cpu + cpu, text_wall + wall
    vectors: list[np.ndarray] = []
    asset_cpu, asset_wall = _timed(lambda: vectors.append(encoder.encode_asset_views(assets)))
    assert vectors[0].shape == (args.assets, encoder.info.dim) and np.isfinite(vectors[0]).all()
    row = {
        "geometry": label,
        "params_m": round(params / 1e6, 1),
        "dim": encoder.info.dim,
        "threads": torch.get_num_threads(),
        "views": args.views,
        "tokens_per_asset": tokens,
        "assets": args.assets,
        "cpu_s_per_asset": round(asset_cpu / args.assets, 3),
        "wall_s_per_asset": round(asset_wall / args.assets, 3),
        "queries": args.queries,
        "cpu_s_per_query": round(text_cpu / args.queries, 4),
        "wall_s_per_query": round(text_wall / args.queries, 4),
        "build_s": round(built, 1),
        "load_s": round(loaded, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1),  # so far
    }
    return row


def main() -> None:
    """Run each geometry and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--geometry", nargs="+", choices=list(GEOMETRIES), default=["tiny", "2b"])
    p.add_argument("--assets", type=int, default=2)
    p.add_argument("--queries", type=int, default=4)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--size", type=int, default=512, help="render size in pixels")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/qwen3vl_bench.csv"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.geometry:
            rows.append(bench(label, args, Path(tmp)))
            gc.collect()  # the encoder of the geometry before
            print(rows[-1], flush=True)
    print(
        f"{'geometry':<8} {'params':>8} {'dim':>5} {'tokens/asset':>12} {'cpu s/asset':>11} "
        f"{'wall s/asset':>12} {'cpu s/query':>11} {'wall s/query':>12} {'peak RSS':>8}"
    )
    for r in rows:
        print(
            f"{r['geometry']:<8} {r['params_m']:>7}M {r['dim']:>5} {r['tokens_per_asset']:>12} "
            f"{r['cpu_s_per_asset']:>11} {r['wall_s_per_asset']:>12} {r['cpu_s_per_query']:>11} "
            f"{r['wall_s_per_query']:>12} {r['peak_rss_gb']:>6}GB"
        )
    write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
