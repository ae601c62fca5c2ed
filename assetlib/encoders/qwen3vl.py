"""Qwen3-VL-Embedding (2B, 8B) on this machine through transformers, used as QwenLM's embedder uses it.

An input is one chat (`qwen3vl_inputs`): a system turn with the instruction (the model's default,
"Represent the user's input.", for captions and views; QUERY_INSTRUCTION for search queries), a
user turn with the images then the text, and the generation prompt. Inputs are right-padded and
the vector is the last layer's hidden state at each input's last non-padding token. Matryoshka:
its first `dimension` values, renormalised (the 8B's 4,096 must be cut to fit pgvector's halfvec).
An asset's views (up to 8, spread evenly when it has more) go into one input: one fused vector per
asset, stored in the per-asset table (`fused_views`). Single images are one input each, so per-view
vectors can be had too. Weights come through `hub` (a cached hub id, offline, or a directory); the
snapshot revision (or the folder's content hash) is their identity. bfloat16 on a GPU, float32 on
the CPU; inputs go to the model in batches of at most QWEN3VL_BATCH_TOKENS padded tokens.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assetlib.config import qwen3vl_dimension_problem
from assetlib.encoders.base import (
    EncoderError,
    EncoderInfo,
    EncoderUnavailable,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
)
from assetlib.encoders.hub import ResolvedModel, resolve
from assetlib.encoders.qwen import spread
from assetlib.encoders.qwen3vl_inputs import (
    DOCUMENT_INSTRUCTION,
    MAX_VIEWS,
    QUERY_INSTRUCTION,
    Prompt,
    PromptBuilder,
    budget_batches,
    read_chat_template,
)
from assetlib.media.images import as_rgb
from assetlib.vocab import Language, VectorStorage

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

SETTING = "QWEN3VL_MODEL"


def model_dim(config: dict | Any) -> int | None:
    """The full output dimension of a Qwen3-VL config (a dict or a transformers config): its text
    hidden size."""
    text = config.get("text_config", {}) if isinstance(config, dict) else getattr(config, "text_config", None)
    size = text.get("hidden_size") if isinstance(text, dict) else getattr(text, "hidden_size", None)
    return int(size) if size else None


def check_dimension(dimension: int | None, full: int, storage: VectorStorage | str) -> int:
    """The dimension vectors are stored at: `dimension` (a Matryoshka cut) or the model's own, if
    pgvector indexes it for the storage type; else EncoderUnavailable saying what to set."""
    problem = qwen3vl_dimension_problem(dimension, full, storage)
    if problem:
        raise EncoderUnavailable(f"qwen3vl: {problem}")
    return dimension or full


def encoder_name(source: str, dim: int, full: int) -> str:
    """Stored name: 'qwen3vl:<hub id | directory name>', '@<dim>' when truncated."""
    path = Path(source).expanduser()
    label = path.name if path.is_dir() else source
    return f"qwen3vl:{label}" + (f"@{dim}" if dim != full else "")


class Qwen3VLEncoder:
    """Qwen3-VL-Embedding: texts, single images and assets' fused views in one space (en and zh)."""

    def __init__(
        self,
        source: str,
        dimension: int | None = None,
        storage: VectorStorage | str = VectorStorage.HALFVEC,
        num_images: int = MAX_VIEWS,
        batch_tokens: int = 16_384,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        allow_download: bool = False,
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLModel

        from assetlib.encoders.siglip import inference_dtype

        started = time.perf_counter()
        if not 1 <= num_images <= MAX_VIEWS:
            raise EncoderUnavailable(
                f"qwen3vl: QWEN3VL_NUM_IMAGES must be 1 to {MAX_VIEWS}, got {num_images}"
            )
        resolved: ResolvedModel = resolve(source, allow_download=allow_download, setting=SETTING)
        self.source, self.path = source, resolved.path
        config = json.loads((self.path / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "qwen3_vl" or model_dim(config) is None:
            raise EncoderUnavailable(
                f"qwen3vl: {source} is not a Qwen3-VL checkpoint (model_type {config.get('model_type')!r})"
            )
        full = int(model_dim(config) or 0)
        self.dim = check_dimension(dimension, full, storage)
        self.num_images, self.batch_tokens = num_images, batch_tokens
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or inference_dtype(self.device)
        try:
            model: Any = Qwen3VLModel.from_pretrained(self.path, dtype=self.dtype)
            self.model = model.to(self.device).eval()
            tokenizer: Any = AutoTokenizer.from_pretrained(self.path)
            # The PIL processor: the default (torchvision) one cannot be built here.
            image_processor = AutoImageProcessor.from_pretrained(self.path, backend="pil")
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(
                f"cannot load Qwen3-VL-Embedding from {source!r} ({self.path}): {str(exc).splitlines()[0]}"
            ) from exc
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.convert_tokens_to_ids("<|endoftext|>"))
        self.image_token_id = int(self.model.config.image_token_id)
        self.prompts = PromptBuilder(
            tokenizer, image_processor, read_chat_template(self.path, tokenizer), self.image_token_id
        )
        # transformers 5 needs the image tokens marked for the multimodal rotary positions.
        self._token_types = "mm_token_type_ids" in inspect.signature(self.model.forward).parameters
        self._torch = torch
        truncated = f", Matryoshka-truncated from {full}" if self.dim != full else ""
        self.info = EncoderInfo(
            name=encoder_name(source, self.dim, full),
            algorithm="qwen3vl",
            model=source,
            dim=self.dim,
            modalities=frozenset({"text", "image"}),
            languages=(Language.EN.value, Language.ZH.value),
            fused_views=True,
            description=f"Qwen3-VL-Embedding {source} on this machine: {num_images} views fused per asset"
            + truncated,
            # Other weights, another cut or another number of fused views give other vectors.
            version=f"{resolved.revision}@{self.dim}/{num_images}views",
        )
        log.info(
            "loaded %s from %s on %s/%s in %.1fs (%d-d of %d, %d views per asset)",
            self.info.name,
            self.path,
            self.device,
            str(self.dtype).removeprefix("torch."),
            time.perf_counter() - started,
            self.dim,
            full,
            num_images,
        )

    # -- the model ----------------------------------------------------------------------------------
    def forward(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Vectors of one batch: right-padded, last non-padding token, truncated, L2-normalised."""
        torch = self._torch
        longest = max(len(p.ids) for p in prompts)
        ids = torch.full((len(prompts), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, : len(prompt.ids)] = torch.tensor(prompt.ids, dtype=torch.long)
            mask[row, : len(prompt.ids)] = 1
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        with_images = [p for p in prompts if p.grid is not None]
        if with_images:
            inputs["pixel_values"] = torch.cat([p.pixels for p in with_images if p.pixels is not None])
            inputs["image_grid_thw"] = torch.cat([p.grid for p in with_images if p.grid is not None])
            if self._token_types:
                inputs["mm_token_type_ids"] = (ids == self.image_token_id).to(torch.int)
        with torch.inference_mode():
            hidden = self.model(
                **{k: v.to(self.device) for k, v in inputs.items()}, use_cache=False
            ).last_hidden_state
            last = (mask.sum(dim=1) - 1).to(self.device)
            pooled = hidden[torch.arange(len(prompts), device=self.device), last, : self.dim]
        return l2_normalize(pooled.float().cpu().numpy(), f"{self.info.name} vectors")

    def _encode(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """Vectors of prepared prompts in their order, batched by token budget (longest first)."""
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i].ids))
        out = np.zeros((len(prompts), self.dim), dtype=np.float32)
        for batch in budget_batches(order, lambda i: len(prompts[i].ids), self.batch_tokens):
            out[batch] = self.forward([prompts[i] for i in batch])
        return out

    def _encode_streamed(self, inputs: Sequence[list[ImageInput]], instruction: str) -> np.ndarray:
        """Vectors of image inputs (each a list of images) in their order, decoded and prepared one
        batch at a time so that only one batch's pixels are held."""
        prompts = (self.prompts.build(instruction, [as_rgb(im) for im in images]) for images in inputs)
        parts = [
            self.forward(batch) for batch in budget_batches(prompts, lambda p: len(p.ids), self.batch_tokens)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    # -- the Encoder protocol -----------------------------------------------------------------------
    def instruction(self, role: TextRole) -> str:
        """The system turn's instruction for an input of this role (text or images alike)."""
        return QUERY_INSTRUCTION if role == "query" else DOCUMENT_INSTRUCTION

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Query vectors (with QUERY_INSTRUCTION) or caption vectors (the document instruction)."""
        check_texts(texts, language, self.info)
        instruction = self.instruction(role)
        return self._encode([self.prompts.build(instruction, text=text) for text in texts])

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """One vector per image, each its own input (RGBA composited onto white); an image query
        carries the query instruction, as a text query does."""
        return self._encode_streamed([[image] for image in images], self.instruction(role))

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """One fused vector per asset: up to QWEN3VL_NUM_IMAGES of its views (spread evenly) in one input."""
        if any(not asset for asset in views):
            raise EncoderError("an asset with no views cannot be embedded")
        inputs = [spread(list(asset), self.num_images) for asset in views]
        return self._encode_streamed(inputs, self.instruction(role))
