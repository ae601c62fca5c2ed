"""SigLIP from scratch: a SentencePiece tokenizer on captions and a small config, saved like any SigLIP."""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from assetlib.encoders.siglip import SIDECAR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiglipSize:
    """Architecture of a SigLIP built from scratch (the defaults are the demo model's)."""

    image_size: int = 64
    patch_size: int = 8
    vision_hidden: int = 192
    vision_layers: int = 4
    vision_heads: int = 4
    text_hidden: int = 192
    text_layers: int = 3
    text_heads: int = 4
    max_text_tokens: int = 32
    vocab_size: int = 600
    intermediate: int | None = None  # MLP width of both towers; None = 4 × hidden


# Google's geometries (random weights: throughput depends on the architecture, not the weights).
BASE = SiglipSize(  # google/siglip-base-patch16-224
    image_size=224,
    patch_size=16,
    vision_hidden=768,
    vision_layers=12,
    vision_heads=12,
    text_hidden=768,
    text_layers=12,
    text_heads=12,
    max_text_tokens=64,
    vocab_size=2000,
)
SO400M = SiglipSize(  # google/siglip-so400m-patch14-384 (and SigLIP 2's FixRes so400m at 384)
    image_size=384,
    patch_size=14,
    vision_hidden=1152,
    vision_layers=27,
    vision_heads=16,
    text_hidden=1152,
    text_layers=27,
    text_heads=16,
    max_text_tokens=64,
    vocab_size=2000,
    intermediate=4304,
)


TINY = SiglipSize(
    image_size=30,
    patch_size=2,
    vision_hidden=32,
    vision_layers=2,
    vision_heads=2,
    text_hidden=32,
    text_layers=2,
    text_heads=2,
    max_text_tokens=16,
    vocab_size=320,
)


def train_tokenizer(
    texts: Iterable[str], out_dir: Path, vocab_size: int, extra_lines: Sequence[str] = ()
) -> Path:
    """Train a unigram SentencePiece model (pad=0, eos=1, unk=2, byte fallback) on texts; return its path."""
    import sentencepiece as spm

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as fh:
        for line in [*texts, *extra_lines]:
            line = line.strip().lower()
            if line:
                fh.write(line + "\n")
        corpus = fh.name
    prefix = out_dir / "spiece"
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=0.9995,
        byte_fallback=True,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        hard_vocab_limit=False,
        num_threads=2,
        minloglevel=2,
    )
    Path(corpus).unlink(missing_ok=True)
    return prefix.with_suffix(".model")


def init_siglip(
    out_dir: str | Path,
    tokenizer_model: Path,
    size: SiglipSize = SiglipSize(),
    name: str = "scratch",
    languages: Sequence[str] = ("en", "zh"),
    description: str = "",
    seed: int = 0,
) -> Path:
    """Save a randomly initialised SigLIP (model, tokenizer, image processor, assetlib.json) to out_dir."""
    import torch
    import transformers
    from transformers import SiglipConfig, SiglipModel, SiglipTokenizer

    # transformers >= 5.x names the PIL-based processor explicitly (it needs no torchvision).
    ImageProcessor = (
        getattr(transformers, "SiglipImageProcessorPil", None) or transformers.SiglipImageProcessor
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = SiglipTokenizer(vocab_file=str(tokenizer_model), model_max_length=size.max_text_tokens)
    config = SiglipConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": size.text_hidden,
            "intermediate_size": size.intermediate or size.text_hidden * 4,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "max_position_embeddings": size.max_text_tokens,
            "pad_token_id": 0,
            "eos_token_id": 1,
            "bos_token_id": None,
        },
        vision_config={
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.intermediate or size.vision_hidden * 4,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.vision_heads,
            "image_size": size.image_size,
            "patch_size": size.patch_size,
        },
    )
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():  # a fresh config starts both at 0; the paper starts at log(10) and -10
        model.logit_scale.fill_(math.log(10.0))
        model.logit_bias.fill_(-10.0)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    ImageProcessor(
        size={"height": size.image_size, "width": size.image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(out_dir)
    (out_dir / SIDECAR).write_text(
        json.dumps(
            {"name": name, "languages": list(languages), "description": description, "size": asdict(size)},
            ensure_ascii=False,
            indent=2,
        ),
        encoding="utf-8",
    )
    log.info(
        "initialised SigLIP %s in %s (%.2fM parameters)",
        name,
        out_dir,
        sum(p.numel() for p in model.parameters()) / 1e6,
    )
    return out_dir
