"""GPU check of the SigLIP encoder: CUDA + float16 vectors agree with CPU float32 ones (run where a GPU is).

Prints the smallest cosine between the two devices' vectors for images and texts, and whether
they are unit length. Not a test: CI has no GPU.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from assetlib.encoders.siglip import SiglipEncoder
from assetlib.train.init_model import SiglipSize, init_siglip, train_tokenizer

CAPTIONS = ["a red chair with four legs", "a blue car", "一把红色的椅子", "一辆蓝色的汽车"] * 40


def main() -> None:
    """Encode the same inputs on CPU (float32) and CUDA (float16) and compare."""
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    with tempfile.TemporaryDirectory() as tmp:
        tok = train_tokenizer(CAPTIONS, Path(tmp) / "tok", 400)
        model = init_siglip(Path(tmp) / "m", tok, SiglipSize(), name="gpu-check")
        cpu = SiglipEncoder(str(model), device="cpu")
        gpu = SiglipEncoder(str(model), device="cuda")
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(16)]
        texts = CAPTIONS[:16]
        for what, a, b in [
            ("images", cpu.encode_images(images), gpu.encode_images(images)),
            ("texts", cpu.encode_texts(texts, "en"), gpu.encode_texts(texts, "en")),
        ]:
            cosine = (a * b).sum(axis=1)
            print(
                f"{what}: min cosine cpu-fp32 vs cuda-fp16 {cosine.min():.5f}; "
                f"norms {np.linalg.norm(b, axis=1).min():.4f}..{np.linalg.norm(b, axis=1).max():.4f}; "
                f"gpu dtype {next(gpu.model.parameters()).dtype}"
            )


if __name__ == "__main__":
    main()
