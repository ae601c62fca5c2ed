"""SigLIP and SigLIP 2 through transformers, run exactly as Google trained them.

Three checkpoint kinds: SigLIP (`SiglipModel`, `SiglipTokenizer`), SigLIP 2 FixRes
(`model_type: siglip`, a Gemma tokenizer) and SigLIP 2 NaFlex (`Siglip2Model`, whose image processor
also returns `pixel_attention_mask` and `spatial_shapes`). Text follows the conversion scripts
whatever a checkpoint's tokenizer config says: lowercased for SigLIP 2, right-padded to the model's
max length (64), input ids only, no attention mask (the text tower pools the last position, so
left padding or a mask give other vectors: cosine 0.026 measured). Images pass the image
processor's whole output to the model.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from assetlib.encoders.base import (
    EncoderInfo,
    EncoderUnavailable,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
    mean_of_views,
)
from assetlib.encoders.hub import ResolvedModel, resolve
from assetlib.encoders.pixels import ProcessorCall
from assetlib.media.images import as_rgb

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image
    from torch import Tensor

log = logging.getLogger(__name__)


class _DefaultTextConfigWarning(logging.Filter):
    """Drops transformers' warning about its own SiglipTextConfig defaults (bos 49406, eos 49407).

    transformers 5 builds a default `SiglipTextConfig()` (vocabulary 32,000, CLIP's bos/eos ids
    49406/49407) to diff any SigLIP config against when it logs or saves one, and validating that
    default warns "bos_token_id must be None or an integer within the vocabulary… got 49406". The
    ids are the library's, not the checkpoint's (ours have eos 1 and no bos, and SigLIP adds
    neither), so this one message is dropped; a checkpoint's own bad ids still warn.
    """

    _DEFAULTS = re.compile(r"(bos|eos)_token_id must be .*between 0 and 31999\), got 4940[67]\.")

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the default-config warning only."""
        return not self._DEFAULTS.search(record.getMessage())


logging.getLogger("transformers.configuration_utils").addFilter(_DefaultTextConfigWarning())

SIDECAR = "assetlib.json"  # written next to models trained by assetlib: display name, languages, card
SiglipKind = Literal["siglip", "siglip2", "siglip2-naflex"]
KIND_TITLES: dict[str, str] = {
    "siglip": "SigLIP",
    "siglip2": "SigLIP 2 (FixRes)",
    "siglip2-naflex": "SigLIP 2 (NaFlex)",
}
# How texts reach the model (`SiglipEncoder.tokenize`); models trained otherwise are retrained.
TEXT_CONVENTION = "google-ids-only-right-padded-v1"
MULTILINGUAL_VOCAB = 250_000  # SigLIP's i18n checkpoints and Gemma's tokenizer have ~250k pieces


def read_sidecar(source: str | Path) -> dict:
    """The assetlib.json of a local model directory ({} for hub ids and other directories)."""
    path = Path(source).expanduser() / SIDECAR
    if path.is_file():
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", path, exc)
    return {}


def encoder_name(source: str) -> str:
    """Stored name of a SigLIP model: 'siglip:<sidecar name | directory name | hub id>'."""
    sidecar = read_sidecar(source)
    if sidecar.get("name"):
        return f"siglip:{sidecar['name']}"
    path = Path(source).expanduser()
    return f"siglip:{path.name if path.is_dir() else source}"


def siglip_kind(config: dict | Any, tokenizer_class: str = "") -> SiglipKind:
    """Which of Google's kinds a checkpoint is, from its config (a dict or a transformers config)."""
    model_type = config.get("model_type") if isinstance(config, dict) else getattr(config, "model_type", "")
    if model_type == "siglip2":
        return "siglip2-naflex"
    if "gemma" in tokenizer_class.lower() or "siglip2" in tokenizer_class.lower():
        return "siglip2"
    return "siglip"


def text_settings(config: dict | Any) -> tuple[int | None, int]:
    """(output dimension, text length) from a config: text_config.projection_size and its positions."""
    text = config.get("text_config", {}) if isinstance(config, dict) else config.text_config
    get = text.get if isinstance(text, dict) else lambda key, default=None: getattr(text, key, default)
    dim = get("projection_size") or get("hidden_size")
    return (int(dim) if dim else None), int(get("max_position_embeddings", 64) or 64)


def languages_of(kind: SiglipKind, vocab_size: int, sidecar: dict) -> tuple[str, ...]:
    """The languages a checkpoint embeds: its assetlib card's, else multilingual for SigLIP 2 and i18n."""
    if sidecar.get("languages"):
        return tuple(sidecar["languages"])
    multilingual = kind != "siglip" or vocab_size >= MULTILINGUAL_VOCAB
    return ("en", "zh") if multilingual else ("en",)


def _pooled(output: Any) -> Tensor:
    # transformers 5 returns an output object from get_*_features; 4.x returned the tensor.
    return getattr(output, "pooler_output", output)


def inference_dtype(device: str) -> torch.dtype:
    """float32 on the CPU; on a GPU bfloat16 where it has it (Ampere and later), else float16."""
    import torch

    if not device.startswith("cuda"):
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class SiglipEncoder:
    """A transformers SigLIP / SigLIP 2 model on the CPU (float32) or a GPU (bf16 or fp16)."""

    def __init__(
        self,
        source: str,
        batch_size: int = 100,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        max_num_patches: int | None = None,
        allow_download: bool = True,
    ) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        started = time.perf_counter()
        resolved: ResolvedModel = resolve(source, allow_download=allow_download)
        self.source, self.path = source, resolved.path
        self.batch_size = batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or inference_dtype(self.device)
        try:
            self.model = AutoModel.from_pretrained(self.path, dtype=self.dtype).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            # The PIL-based processor: the "fast" one needs torchvision, which breaks this torch.
            self.image_processor = AutoImageProcessor.from_pretrained(self.path, backend="pil")
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(
                f"cannot load SigLIP weights from {source!r} ({self.path}): {str(exc).splitlines()[0]}"
            ) from exc
        config = self.model.config
        self.kind = siglip_kind(config, type(self.tokenizer).__name__)
        self.lowercase = self.kind != "siglip"
        # Google's convention, enforced whatever the tokenizer config says (see the module docstring).
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "right"
        dim, self.max_length = text_settings(config)
        if dim is None:
            raise EncoderUnavailable(f"{source}: its config has no text_config.projection_size")
        self.max_num_patches = max_num_patches if self.kind == "siglip2-naflex" else None
        sidecar = read_sidecar(self.path)
        self.info = EncoderInfo(
            name=encoder_name(source),
            algorithm="siglip",
            model=source,
            dim=dim,
            modalities=frozenset({"text", "image"}),
            languages=languages_of(self.kind, len(self.tokenizer), sidecar),
            fused_views=False,
            description=sidecar.get("description") or f"{KIND_TITLES[self.kind]} {source}",
            version=resolved.revision,
        )
        self._torch = torch
        log.info(
            "loaded %s (%s) from %s on %s/%s in %.1fs (%d-d, text %d tokens, %s)",
            self.info.name,
            KIND_TITLES[self.kind],
            self.path,
            self.device,
            str(self.dtype).removeprefix("torch."),
            time.perf_counter() - started,
            dim,
            self.max_length,
            "/".join(self.info.languages),
        )

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Token ids as Google trained them: lowercase for SigLIP 2, right padding to max length, ids only."""
        prepared = [t.lower() for t in texts] if self.lowercase else list(texts)
        encoded = self.tokenizer(
            prepared,
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_attention_mask=False,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"]}

    def pixel_preprocessor(self) -> ProcessorCall:
        """The image processor with this model's options (NaFlex: max_num_patches); picklable."""
        options: dict[str, Any] = {}
        if self.max_num_patches:
            options["max_num_patches"] = self.max_num_patches
        return ProcessorCall(self.image_processor, options)

    def preprocess(self, images: Sequence[Image]) -> dict[str, Tensor]:
        """The image processor's whole output (NaFlex adds pixel_attention_mask and spatial_shapes)."""
        return self.pixel_preprocessor()(images)

    def _run(self, fn: Callable[..., Any], batches: list[dict[str, Tensor]]) -> np.ndarray:
        torch = self._torch
        out = []
        # Pinned host memory lets the copy to the GPU overlap the next batch's preparation.
        pin = self.device.startswith("cuda")
        with torch.inference_mode():
            for batch in batches:
                inputs = {k: self._to_device(v, pin) for k, v in batch.items()}
                out.append(_pooled(fn(**inputs)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), dtype=np.float32)

    def _to_device(self, tensor: Tensor, pin: bool) -> Tensor:
        return (tensor.pin_memory() if pin else tensor).to(self.device, non_blocking=pin)

    def embed_pixels(self, batch: dict[str, Tensor]) -> np.ndarray:
        """Image vectors for one preprocessed batch, L2-normalised."""
        return l2_normalize(self._run(self.model.get_image_features, [batch]), f"{self.info.name} image")

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Caption or query vectors, L2-normalised (SigLIP embeds queries and captions alike)."""
        check_texts(texts, language, self.info)
        step = self.batch_size
        batches = [self.tokenize(texts[i : i + step]) for i in range(0, len(texts), step)]
        return l2_normalize(self._run(self.model.get_text_features, batches), f"{self.info.name} text")

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """One vector per image; RGBA is composited onto white first, as at index time."""
        rgb = [as_rgb(im) for im in images]
        step = self.batch_size
        parts = [self.embed_pixels(self.preprocess(rgb[i : i + step])) for i in range(0, len(rgb), step)]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.dim), dtype=np.float32)

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """Mean of the per-view vectors of each asset (SigLIP has no multi-image input)."""
        flat = [im for asset in views for im in asset]
        return mean_of_views(self.encode_images(flat), [len(v) for v in views])
