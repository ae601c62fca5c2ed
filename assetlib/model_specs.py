"""What the providers say about the remote models assetlib can call: one entry per DashScope model.

Read from Alibaba Cloud Model Studio's multimodal-embedding pages (2026): dimensions, how each
model fuses several images into one vector, request and image limits, instruction support.
Standard library only: the settings validate QWEN_DIMENSION against this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MB = 1024 * 1024

# How a model turns an asset's views into one vector:
#   multi_images   one {"multi_images": [...]} content item fuses up to max_fused_images images
#   enable_fusion  parameters.enable_fusion = true fuses every content item of the request
#   always         the model fuses every content item of a request, always (so one text per request)
#   none           no fusion at all: the asset vector is the mean of per-view vectors, computed here
Fusion = Literal["multi_images", "enable_fusion", "always", "none"]


@dataclass(frozen=True)
class QwenModelSpec:
    """One DashScope multimodal embedding model, as the provider documents it."""

    name: str
    default_dim: int
    dims: tuple[int, ...]  # the output dimensions the `dimension` parameter accepts
    fusion: Fusion
    max_fused_images: int  # images one fused vector can take
    max_items: int  # content items one request may hold
    max_image_bytes: int  # per image; data URIs are kept under it
    instruct: bool  # takes an `instruct` parameter (query intent)
    note: str

    def check_dimension(self, dimension: int | None) -> int:
        """The dimension a request asks for (the default when None); ValueError when the model has no such."""
        if dimension is None:
            return self.default_dim
        if dimension not in self.dims:
            raise ValueError(
                f"{self.name} gives {', '.join(map(str, self.dims))}-dimensional vectors, not {dimension}"
            )
        return dimension


QWEN_MODELS: dict[str, QwenModelSpec] = {
    spec.name: spec
    for spec in (
        QwenModelSpec(
            "tongyi-embedding-vision-plus",
            1152,
            (1152, 1024, 512, 256, 128, 64),
            "multi_images",
            max_fused_images=8,
            max_items=8,
            max_image_bytes=3 * MB,
            instruct=False,
            note="8 views fused in one multi_images item",
        ),
        QwenModelSpec(
            "tongyi-embedding-vision-flash",
            768,
            (768, 512, 256, 128, 64),
            "multi_images",
            max_fused_images=8,
            max_items=8,
            max_image_bytes=3 * MB,
            instruct=False,
            note="8 views fused in one multi_images item",
        ),
        QwenModelSpec(
            "qwen3-vl-embedding",
            2560,
            (2560, 2048, 1536, 1024, 768, 512, 256),
            "enable_fusion",
            max_fused_images=20,
            max_items=20,
            max_image_bytes=5 * MB,
            instruct=True,
            note="views fused with enable_fusion; queries carry an instruction; Beijing region only",
        ),
        QwenModelSpec(
            "qwen2.5-vl-embedding",
            2048,
            (2048, 1024, 768, 512),
            "always",
            max_fused_images=20,
            max_items=20,
            max_image_bytes=5 * MB,
            instruct=False,
            note="fuses every request, so one text or image per request; Beijing region only",
        ),
        QwenModelSpec(
            "multimodal-embedding-v1",
            1024,
            (1024,),
            "none",
            max_fused_images=1,
            max_items=1,
            max_image_bytes=3 * MB,
            instruct=False,
            note="no multi-image fusion: an asset is the mean of its per-view vectors",
        ),
    )
}


def qwen_model_spec(name: str) -> QwenModelSpec:
    """The table entry of a DashScope model; ValueError naming the known ones for any other."""
    if name not in QWEN_MODELS:
        raise ValueError(f"unknown DashScope embedding model {name!r}; known: {', '.join(QWEN_MODELS)}")
    return QWEN_MODELS[name]
