"""GPU check of the SigLIP encoder: the GPU's half-precision vectors agree with float32 ones.

The encoder runs bf16 where the GPU has it (Ampere and later) and fp16 otherwise. For each of
Google's three checkpoint kinds (tiny random ones in their hub layouts, `tests/tiny_google.py`) and
the demo model's size, prints the smallest cosine between the GPU's default-precision vectors and
float32 vectors (on the GPU and on the CPU), for images and texts, and their norms. Not a test:
CI has no GPU.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CAPTIONS = ["a red chair with four legs", "a blue car", "一把红色的椅子", "一辆蓝色的汽车"] * 4


def _models(tmp: Path) -> dict[str, Path]:
    from tiny_google import BUILDERS

    from assetlib.train.init_model import SiglipSize, init_siglip, train_tokenizer

    models = {repo: build(tmp / repo.split("/")[1]) for repo, build in BUILDERS.items()}
    tokenizer = train_tokenizer(CAPTIONS * 10, tmp / "demo-tokenizer", 400)
    models["demo size (random)"] = init_siglip(tmp / "demo", tokenizer, SiglipSize(), name="gpu-check")
    return models


def main() -> None:
    """Encode the same inputs at the GPU's default precision, GPU float32 and CPU float32; compare."""
    from assetlib.encoders.siglip import SiglipEncoder, inference_dtype

    assert torch.cuda.is_available(), "no CUDA device"
    print(
        "device:",
        torch.cuda.get_device_name(0),
        "torch",
        torch.__version__,
        "default",
        inference_dtype("cuda"),
    )
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(16)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in _models(Path(tmp)).items():
            half = SiglipEncoder(str(folder), device="cuda")
            full = SiglipEncoder(str(folder), device="cuda", dtype=torch.float32)
            cpu = SiglipEncoder(str(folder), device="cpu")
            texts = CAPTIONS[:2]  # English: every kind embeds it
            for what in ("images", "texts"):
                a, b, c = (
                    e.encode_images(images) if what == "images" else e.encode_texts(texts, "en")
                    for e in (half, full, cpu)
                )
                print(
                    f"{name:<36} {what:<6} {str(half.dtype).removeprefix('torch.')}: min cos vs cuda-fp32 "
                    f"{(a * b).sum(1).min():.5f}, vs cpu-fp32 {(a * c).sum(1).min():.5f}; cuda-fp32 vs "
                    f"cpu {(b * c).sum(1).min():.6f}; norms {np.linalg.norm(a, axis=1).min():.4f}"
                )


if __name__ == "__main__":
    main()
