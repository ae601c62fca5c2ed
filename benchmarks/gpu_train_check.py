"""GPU check of SigLIP training: the trainer on CUDA with bf16 autocast, on a synthetic 2D library.

Draws coloured shapes with PIL (no renderer needed), trains the demo-size SigLIP for a few steps
and prints steps/s and held-out recall. Run where a GPU is; on a CPU it runs too (slower).

    python benchmarks/gpu_train_check.py [--steps 120] [--assets 400]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from assetlib.library.asset import Asset
from assetlib.train.trainer import TrainConfig, train_siglip

COLOURS = {
    "red": (200, 30, 30),
    "green": (40, 150, 50),
    "blue": (30, 80, 210),
    "yellow": (235, 200, 30),
    "purple": (125, 50, 175),
    "orange": (240, 125, 20),
    "black": (28, 28, 28),
    "pink": (245, 130, 185),
}
COLOURS_ZH = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "purple": "紫色",
    "orange": "橙色",
    "black": "黑色",
    "pink": "粉色",
}
SHAPES = {
    "circle": "圆形",
    "square": "方块",
    "triangle": "三角形",
    "cross": "十字",
    "ring": "圆环",
    "bar": "横条",
}


def _draw(shape: str, colour: tuple[int, int, int], rng: np.random.Generator, size: int = 96) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    c, r = size / 2 + rng.uniform(-8, 8, 2), size * rng.uniform(0.25, 0.38)
    box = [c[0] - r, c[1] - r, c[0] + r, c[1] + r]
    if shape == "circle":
        draw.ellipse(box, fill=(*colour, 255))
    elif shape == "square":
        draw.rectangle(box, fill=(*colour, 255))
    elif shape == "triangle":
        draw.polygon([(c[0], c[1] - r), (c[0] - r, c[1] + r), (c[0] + r, c[1] + r)], fill=(*colour, 255))
    elif shape == "cross":
        draw.rectangle([c[0] - r / 4, c[1] - r, c[0] + r / 4, c[1] + r], fill=(*colour, 255))
        draw.rectangle([c[0] - r, c[1] - r / 4, c[0] + r, c[1] + r / 4], fill=(*colour, 255))
    elif shape == "ring":
        draw.ellipse(box, outline=(*colour, 255), width=int(r / 3))
    else:
        draw.rectangle([c[0] - r, c[1] - r / 3, c[0] + r, c[1] + r / 3], fill=(*colour, 255))
    return image


def synthetic_library(folder: Path, count: int, views: int = 4, seed: int = 0) -> list[Asset]:
    """Assets of coloured 2D shapes with English and Chinese captions and category/colour attributes."""
    rng = np.random.default_rng(seed)
    assets = []
    for i in range(count):
        shape = list(SHAPES)[i % len(SHAPES)]
        colour = list(COLOURS)[(i // len(SHAPES)) % len(COLOURS)]
        paths = []
        for v in range(views):
            path = folder / f"a{i:04d}_{v}.png"
            _draw(shape, COLOURS[colour], rng).save(path)
            paths.append(path)
        assets.append(
            Asset(
                f"syn/{i:04d}",
                caption_en=f"a {colour} {shape}",
                caption_cn=f"一个{COLOURS_ZH[colour]}的{SHAPES[shape]}",
                view_paths=tuple(paths),
                attributes={"category": shape, "colour": colour},
            )
        )
    return assets


def main() -> None:
    """Train briefly and print speed and held-out recall."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--assets", type=int, default=400)
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print("device:", torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "torch", torch.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        assets = synthetic_library(Path(tmp), args.assets)
        cfg = TrainConfig(
            name="gpu-check",
            batch_size=48,
            max_steps=args.steps,
            eval_every=max(1, args.steps // 4),
            checkpoint_every=args.steps,
            warmup_steps=10,
            device=device,
        )
        started = time.perf_counter()
        result = train_siglip(assets, Path(tmp) / "out", cfg, progress=False)
        print(
            f"{result.steps} steps in {result.seconds:.1f}s ({result.steps / result.seconds:.2f} steps/s, "
            f"batch {cfg.batch_size}); wall with evaluation {time.perf_counter() - started:.1f}s"
        )
        print("autocast dtype: bfloat16 on", device)
        for key, value in sorted(result.metrics.items()):
            print(f"  {key:<34} {value:.3f}")


if __name__ == "__main__":
    main()
