"""Qwen3-VL-Embedding's inputs without `Qwen3VLProcessor` (which needs torchvision): chat prompts as
token ids with each image's `<|image_pad|>` expanded, images resized and patchified, token budgets.

What QwenLM's embedder (`Qwen3VLEmbedder`) does, step by step: the instruction ends in punctuation
("." added otherwise); the chat is a system turn with the instruction, a user turn with the images
and then the text, and the generation prompt; images are composited onto white and resized to a
multiple of patch × merge (32 px on the published checkpoints) between 4 and 1,800 such cells
(bicubic, as qwen_vl_utils does), then patchified by the checkpoint's image processor without
resizing again; one `<|image_pad|>` per image becomes `image_grid_thw.prod() / merge_size²` of them.
The user's text is tokenised apart from the template, with special tokens split, so a query that
types `<|im_end|>` cannot end its turn early.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from assetlib.encoders.base import EncoderError, EncoderUnavailable

if TYPE_CHECKING:
    from PIL.Image import Image
    from torch import Tensor

# The model's default instruction (captions and views are embedded with it), and what a search
# query asks for.
DOCUMENT_INSTRUCTION = "Represent the user's input."
QUERY_INSTRUCTION = "Find 3D objects whose rendered views or descriptions match this query."
MAX_VIEWS = 8  # images fused into one input
MAX_TOKENS = 8192  # the embedder's context per input
MIN_CELLS, MAX_CELLS = 4, 1800  # an image's size in (patch × merge)² cells: the embedder's pixel limits
TEXT_RESERVE = 512  # tokens kept for the prompt and the text when images share the context
_TEXT_SLOT = "\ue000"  # a private-use character standing for the user's text in the rendered template

T = TypeVar("T")


def punctuated(instruction: str) -> str:
    """The instruction as the embedder sends it: stripped, with a full stop unless it ends in punctuation."""
    text = instruction.strip()
    return text if not text or unicodedata.category(text[-1]).startswith("P") else text + "."


def fit_pixels(height: int, width: int, factor: int, max_cells: int = MAX_CELLS) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, rescaled to between MIN_CELLS and `max_cells`
    cells of factor² pixels, aspect ratio kept as near as the grid allows."""
    if min(height, width) <= 0 or max(height, width) / min(height, width) > 200:
        raise EncoderError(f"cannot embed a {width}×{height} image (aspect ratio over 200 or empty)")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_cells * factor * factor:
        scale = math.sqrt(height * width / (max_cells * factor * factor))
        h = max(factor, math.floor(height / scale / factor) * factor)
        w = max(factor, math.floor(width / scale / factor) * factor)
    elif h * w < MIN_CELLS * factor * factor:
        scale = math.sqrt(MIN_CELLS * factor * factor / (height * width))
        h = math.ceil(height * scale / factor) * factor
        w = math.ceil(width * scale / factor) * factor
    return h, w


def read_chat_template(folder: Path, tokenizer: Any) -> str:
    """The checkpoint's chat template: the tokenizer's, else chat_template.jinja or chat_template.json."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.chat_template)
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").is_file():
        try:
            return str(
                json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))["chat_template"]
            )
        except (OSError, ValueError, KeyError) as exc:
            raise EncoderUnavailable(f"{folder}/chat_template.json is unreadable: {exc}") from exc
    raise EncoderUnavailable(f"{folder} has no chat template (tokenizer_config.json, chat_template.*)")


@dataclass
class Prompt:
    """One model input: token ids and, when it holds images, their patches and grids."""

    ids: list[int]
    pixels: Tensor | None = None  # (patches, channels × temporal × patch²), every image's in order
    grid: Tensor | None = None  # (images, 3): t, h, w in patches


class PromptBuilder:
    """Builds prompts for one checkpoint: its tokenizer, chat template and PIL image processor."""

    def __init__(self, tokenizer: Any, image_processor: Any, template: str, image_token_id: int) -> None:
        self.tokenizer, self.image_processor, self.template = tokenizer, image_processor, template
        self.image_token_id = image_token_id
        self.merge = int(image_processor.merge_size)
        self.factor = int(image_processor.patch_size) * self.merge

    def _ids(self, text: str, split_special: bool = False) -> list[int]:
        options = {"split_special_tokens": True} if split_special else {}
        return list(self.tokenizer(text, add_special_tokens=False, **options)["input_ids"])

    def render(self, instruction: str, images: int, text: str | None) -> str:
        """The chat template's text for `images` images then the text (its slot marked), with the
        generation prompt."""
        content: list[dict[str, str]] = [{"type": "image"} for _ in range(images)]
        if text is not None or not images:
            content.append({"type": "text", "text": _TEXT_SLOT if text is not None else "NULL"})
        messages = [
            {"role": "system", "content": [{"type": "text", "text": punctuated(instruction)}]},
            {"role": "user", "content": content},
        ]
        return str(
            self.tokenizer.apply_chat_template(
                messages, chat_template=self.template, add_generation_prompt=True, tokenize=False
            )
        )

    def pixels(self, images: Sequence[Image]) -> tuple[Tensor, Tensor]:
        """Patches and grids of RGB images, resized as the embedder resizes them (see the docstring)."""
        from PIL import Image as PILImage

        max_cells = min(MAX_CELLS, max(MIN_CELLS, (MAX_TOKENS - TEXT_RESERVE) // len(images)))
        resized = []
        for image in images:
            h, w = fit_pixels(image.height, image.width, self.factor, max_cells)
            same = (w, h) == image.size
            resized.append(image if same else image.resize((w, h), PILImage.Resampling.BICUBIC))
        out = self.image_processor(images=resized, do_resize=False, return_tensors="pt")
        return out["pixel_values"], out["image_grid_thw"]

    def build(self, instruction: str, images: Sequence[Image] = (), text: str | None = None) -> Prompt:
        """One input: instruction, images (RGB, composited already) then text, as token ids and pixels."""
        rendered = self.render(instruction, len(images), text)
        if text is not None:
            head, found, tail = rendered.partition(_TEXT_SLOT)
            if not found:
                raise EncoderUnavailable("the chat template does not render the user's text")
            head_ids, tail_ids = self._ids(head), self._ids(tail)
            text_ids = self._ids(text, split_special=True)
            room = MAX_TOKENS - len(head_ids) - len(tail_ids)
            ids = head_ids + text_ids[: max(0, room)] + tail_ids  # an over-long text loses its end
        else:
            ids = self._ids(rendered)
        if not images:
            if self.image_token_id in ids:
                raise EncoderError("a text input holds the image placeholder token")
            return Prompt(ids)
        pixels, grid = self.pixels(images)
        counts = (grid.prod(dim=-1) // (self.merge * self.merge)).tolist()
        slots = [i for i, token in enumerate(ids) if token == self.image_token_id]
        if len(slots) != len(images):
            raise EncoderUnavailable(
                f"the chat template rendered {len(slots)} image placeholders for {len(images)} images"
            )
        expanded: list[int] = []
        start = 0
        for slot, count in zip(slots, counts, strict=True):
            expanded += ids[start:slot] + [self.image_token_id] * int(count)
            start = slot + 1
        return Prompt(expanded + ids[start:], pixels, grid)


def budget_batches(items: Iterable[T], length: Any, budget: int) -> Iterator[list[T]]:
    """Consecutive groups whose padded size (members × the longest `length(member)`) stays within
    `budget` tokens; an item longer than the budget goes alone."""
    batch: list[T] = []
    longest = 0
    for item in items:
        size = int(length(item))
        if batch and (len(batch) + 1) * max(longest, size) > budget:
            yield batch
            batch, longest = [], 0
        batch.append(item)
        longest = max(longest, size)
    if batch:
        yield batch
