"""Encoder throughput: images/s and texts/s of the local encoders on this machine (CPU, or CUDA if present).

SigLIP is measured at two sizes built from random weights, since pretrained ones cannot be
downloaded here: the architecture of google/siglip-base-patch16-224 (throughput depends on the
architecture, not on the weights) and the small demo configuration. e5 is the bundled
multilingual-e5-small. Prints a table and writes outputs/bench/encoder_bench.csv.

    python benchmarks/encoder_bench.py [--images 64] [--texts 256] [--batch 32] [--device cuda]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from assetlib.records import write_csv
from assetlib.train.init_model import BASE, SiglipSize, init_siglip, train_tokenizer

CAPTIONS = [
    f"a {c} {o} with {n} legs"
    for c in ("red", "blue", "green", "white")
    for o in ("chair", "table", "stool", "bench")
    for n in ("three", "four")
] + ["一把红色的椅子", "一张蓝色的桌子"]


def _rate(fn, items: int, repeats: int = 2) -> float:
    fn()  # warm-up (allocations, kernels, caches)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return items / best


def bench_siglip(label: str, size: SiglipSize, args: argparse.Namespace, workdir: Path) -> dict:
    """images/s and texts/s of a randomly initialised SigLIP of the given size."""
    from assetlib.encoders.siglip import SiglipEncoder

    tokenizer = train_tokenizer(CAPTIONS * 20, workdir / f"{label}-tok", max(size.vocab_size, 400))
    model_dir = init_siglip(workdir / label, tokenizer, size, name=f"bench-{label}")
    encoder = SiglipEncoder(str(model_dir), batch_size=args.batch, device=args.device)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(args.images)
    ]
    texts = [CAPTIONS[i % len(CAPTIONS)] + f" number {i}" for i in range(args.texts)]
    vectors = encoder.encode_images(images[:4])
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)
    return {
        "encoder": f"siglip {label} ({size.image_size}px, {size.vision_layers}+{size.text_layers} layers)",
        "device": encoder.device,
        "images_per_s": round(_rate(lambda: encoder.encode_images(images), len(images)), 1),
        "texts_per_s": round(_rate(lambda: encoder.encode_texts(texts, "en"), len(texts)), 1),
    }


def bench_e5(args: argparse.Namespace) -> dict:
    """texts/s of the bundled multilingual-e5-small."""
    from assetlib.encoders.e5 import E5Encoder

    encoder = E5Encoder(batch_size=args.batch)
    texts = [CAPTIONS[i % len(CAPTIONS)] + f" number {i}" for i in range(args.texts)]
    return {
        "encoder": "e5 multilingual-e5-small (4-bit)",
        "device": "cpu",
        "images_per_s": None,
        "texts_per_s": round(_rate(lambda: encoder.encode_texts(texts, "en"), len(texts)), 1),
    }


def main() -> None:
    """Run every local encoder and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--texts", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--skip-e5", action="store_true")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/encoder_bench.csv"))
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(bench_siglip("base", BASE, args, Path(tmp)))
        rows.append(bench_siglip("demo", SiglipSize(), args, Path(tmp)))
    if not args.skip_e5:
        rows.append(bench_e5(args))
    print(f"{'encoder':<48} {'device':<7} {'images/s':>9} {'texts/s':>9}")
    for r in rows:
        print(f"{r['encoder']:<48} {r['device']:<7} {r['images_per_s'] or '-':>9} {r['texts_per_s']:>9}")
    write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
