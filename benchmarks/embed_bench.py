"""Embedding throughput per step (read, decode, preprocess, model, write) for loader workers 0/1/2…
and both engines, on renders like G-Objaverse's (512 px RGBA PNGs), with Google's SigLIP geometries
built from random weights (throughput depends on the architecture, not on the weights).

Prints, per run: wall views/s and each step's views/s per process, and what bounds the run; then
the CPU preparation rate one loader worker sustains and the hours 1M assets × 8 views would take at
the measured rate (and, for a GPU, how many workers it needs to be fed). Writes
outputs/bench/embed_bench.csv.

    python benchmarks/embed_bench.py [--model base|so400m|demo] [--assets 32] [--workers 0,1,2]
                                     [--engines local,ray] [--batch 32] [--device cuda]
"""

from __future__ import annotations

import argparse
import functools
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from assetlib.library.asset import Asset
from assetlib.records import write_csv
from assetlib.train.init_model import BASE, SO400M, SiglipSize, init_siglip, train_tokenizer

SIZES = {"base": BASE, "so400m": SO400M, "demo": SiglipSize()}
VIEWS = 8
MILLION_VIEWS = 1_000_000 * VIEWS
GPU_TARGET = 740.0  # so400m views/s one H200 should reach at 50 % utilisation (issue 19's estimate)


def write_renders(folder: Path, assets: int, size: int, seed: int = 0) -> list[Asset]:
    """Assets with 8 RGBA renders each: an object of a few shaded shapes on a transparent ground."""
    rng = np.random.default_rng(seed)
    out = []
    for a in range(assets):
        paths = []
        for v in range(VIEWS):
            image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
            draw = ImageDraw.Draw(image)
            for _ in range(6):
                x, y = rng.integers(0, size // 2, 2)
                w, h = rng.integers(size // 8, size // 2, 2)
                colour = (*(int(c) for c in rng.integers(0, 255, 3)), 255)
                draw.ellipse((int(x), int(y), int(x + w), int(y + h)), fill=colour)
            # Shading noise, as renders have: it makes PNG decoding cost what real views cost.
            pixels = np.asarray(image).copy()
            noise = rng.integers(-12, 12, (*pixels.shape[:2], 3))
            pixels[..., :3] = np.clip(pixels[..., :3].astype(int) + noise, 0, 255).astype(np.uint8)
            path = folder / f"{a:05d}" / f"{v:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "RGBA").save(path)
            paths.append(path)
        out.append(
            Asset(
                asset_id=f"bench/{a:05d}",
                objaverse_uid=f"{a:032x}",
                caption_en=f"a bench object number {a}",
                caption_cn=f"第{a}个物体",
                view_paths=tuple(paths),
            )
        )
    return out


def run(engine: str, workers: int, assets: list[Asset], model: Path, args: argparse.Namespace, out: Path):
    """One embedding run into a fresh folder; its summary."""
    from assetlib.embedding.local import embed_assets
    from assetlib.encoders.siglip import SiglipEncoder

    factory = functools.partial(SiglipEncoder, str(model), batch_size=args.batch, device=args.device)
    if engine == "ray":
        from assetlib.embedding.ray_engine import embed_assets_ray

        return embed_assets_ray(
            assets, factory, out, shard_size=args.shard, languages=("en",), workers=workers, progress=False
        )
    return embed_assets(
        assets, factory(), out, shard_size=args.shard, languages=("en",), workers=workers, progress=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=sorted(SIZES), default="base")
    parser.add_argument("--assets", type=int, default=32)
    parser.add_argument("--render-size", type=int, default=512)
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--shard", type=int, default=8, help="assets per shard")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp_name:
        tmp = Path(tmp_name)
        started = time.perf_counter()
        assets = write_renders(tmp / "views", args.assets, args.render_size)
        print(
            f"{args.assets} assets × {VIEWS} views of {args.render_size} px written in "
            f"{time.perf_counter() - started:.1f}s; model: SigLIP {args.model} geometry, random weights, "
            f"on {name}, batch {args.batch}"
        )
        size = SIZES[args.model]
        tokenizer = train_tokenizer(
            [a.caption_en for a in assets] * 40, tmp / "tok", max(size.vocab_size, 400)
        )
        model = init_siglip(tmp / "model", tokenizer, size, name=f"bench-{args.model}")
        header = (
            f"{'engine':6} {'workers':>7} {'start s':>7} {'wall views/s':>12}  "
            "per-step views/s (one process each)"
        )
        print(header)
        for engine in args.engines.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                summary = run(engine, workers, assets, model, args, tmp / f"{engine}-{workers}")
                rates = summary.steps.rates()
                views = summary.steps.views.get("model", 0)
                wall = summary.views_per_second  # after start-up (workers, cluster, models)
                steps = ", ".join(f"{k} {v:,.0f}" for k, v in rates.items() if k != "text")
                print(
                    f"{engine:6} {workers:>7} {summary.startup_seconds:>7.1f} {wall:>12.1f}  {steps}; "
                    f"bound by {summary.steps.bound()}"
                )
                prep = summary.steps.seconds
                prep_rate = views / (prep["read"] + prep["decode"] + prep["preprocess"])
                rows.append(
                    {
                        "engine": engine,
                        "workers": workers,
                        "model": args.model,
                        "device": name,
                        "views": views,
                        "seconds": round(summary.seconds, 2),
                        "startup_seconds": round(summary.startup_seconds, 2),
                        "wall_views_per_second": round(wall, 1),
                        "prepare_views_per_second_per_worker": round(prep_rate, 1),
                        **{f"{k}_views_per_second": v for k, v in rates.items()},
                        "bound_by": summary.steps.bound(),
                    }
                )
    best = max(rows, key=lambda r: r["wall_views_per_second"])
    prepare = float(np.median([r["prepare_views_per_second_per_worker"] for r in rows]))
    model_rate = float(np.median([r.get("model_views_per_second", 0) for r in rows]))
    print()
    print(f"one loader worker prepares (read + decode + composite + preprocess) {prepare:,.0f} views/s")
    print(f"the model alone runs at {model_rate:,.1f} views/s on {name}")
    rate = best["wall_views_per_second"]
    print(
        f"1M assets × {VIEWS} views at the best measured wall rate ({rate:.1f} views/s, {best['engine']} "
        f"with {best['workers']} workers): {MILLION_VIEWS / rate / 3600:,.1f} hours on this machine"
    )
    print(
        f"a GPU at {GPU_TARGET:.0f} so400m views/s (projected, not measured) needs "
        f"{int(np.ceil(GPU_TARGET / prepare))} such loader workers; 1M × {VIEWS} views then take "
        f"{MILLION_VIEWS / GPU_TARGET / 3600:.1f} hours"
    )
    path = write_csv(rows, Path("outputs/bench/embed_bench.csv"))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
