"""Tiny random checkpoints of Google's three SigLIP kinds, in the files and classes their hub repos hold,
placed in a Hugging Face cache under the real hub ids (blobs, snapshots/<commit>, refs/main).

- google/siglip-base-patch16-224: SiglipModel + SiglipTokenizer (spiece.model) + SiglipImageProcessor
- google/siglip2-so400m-patch14-384 (FixRes): model_type siglip + GemmaTokenizer (tokenizer.json)
- google/siglip2-base-patch16-naflex: Siglip2Model + Siglip2Tokenizer + Siglip2ImageProcessor
Each text tower projects to 24 dimensions from a hidden size of 32, so a dimension read from the
wrong field shows. The tokenizer configs say what Google's converted ones say (right padding,
input ids only); `resave_like_a_finetune` drops those keys, as a re-saved copy does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from tiny_models import CAPTIONS

SIGLIP = "google/siglip-base-patch16-224"
SIGLIP2 = "google/siglip2-so400m-patch14-384"
NAFLEX = "google/siglip2-base-patch16-naflex"
PROJECTION, TEXT_HIDDEN, TEXT_LENGTH = 24, 32, 64
GOOGLE_TOKENIZER_KEYS = {"padding_side": "right", "model_input_names": ["input_ids"]}


def _text_config(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": TEXT_LENGTH,
        "projection_size": PROJECTION,
        "pad_token_id": 1,
        "eos_token_id": 1,
        "bos_token_id": None,
    }


def _vision_config(**extra: int) -> dict:
    return {
        "hidden_size": PROJECTION,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        **extra,
    }


def _bpe_vocab() -> dict[str, int]:
    """A byte-fallback vocabulary of single characters, in Gemma's special-token order."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    chars = sorted({c for caption in CAPTIONS for c in caption.lower() if c != " "})
    for piece in ["▁", *chars, *(f"▁{c}" for c in chars)]:
        vocab.setdefault(piece, len(vocab))
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    return vocab


def _set_tokenizer_config(folder: Path, **keys: object) -> None:
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    config.update(keys)
    path.write_text(json.dumps(config, indent=2))


def build_siglip(folder: Path, seed: int = 0) -> Path:
    """SigLIP (v1): SiglipModel, SiglipTokenizer over a SentencePiece model, SiglipImageProcessor."""
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipTokenizer

    from assetlib.train.init_model import train_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    spm = train_tokenizer(CAPTIONS * 10, folder.parent / f"{folder.name}-spm", 320)
    tokenizer = SiglipTokenizer(vocab_file=str(spm), model_max_length=TEXT_LENGTH)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=_text_config(len(tokenizer)), vision_config=_vision_config(image_size=32, patch_size=8)
    )
    SiglipModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    _set_tokenizer_config(folder, **GOOGLE_TOKENIZER_KEYS, processor_class="SiglipProcessor")
    return folder


def build_siglip2_fixres(folder: Path, seed: int = 0) -> Path:
    """SigLIP 2 FixRes: a SiglipModel graph (model_type siglip) with a Gemma tokenizer."""
    import torch
    from transformers import GemmaTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = GemmaTokenizer(vocab=_bpe_vocab(), merges=[], model_max_length=TEXT_LENGTH)
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config=_text_config(len(tokenizer)), vision_config=_vision_config(image_size=28, patch_size=7)
    )
    SiglipModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 28, "width": 28}).save_pretrained(folder)
    _set_tokenizer_config(
        folder,
        **GOOGLE_TOKENIZER_KEYS,
        add_bos_token=False,
        add_eos_token=True,
        processor_class="SiglipProcessor",
    )
    return folder


def build_siglip2_naflex(folder: Path, seed: int = 0) -> Path:
    """SigLIP 2 NaFlex: Siglip2Model, Siglip2Tokenizer, and an image processor giving patch sequences."""
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessorPil, Siglip2Model, Siglip2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Siglip2Tokenizer(vocab=_bpe_vocab(), merges=[], model_max_length=TEXT_LENGTH)
    torch.manual_seed(seed)
    config = Siglip2Config(
        text_config=_text_config(len(tokenizer)), vision_config=_vision_config(patch_size=4, num_patches=16)
    )
    Siglip2Model(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Siglip2ImageProcessorPil(patch_size=4, max_num_patches=16).save_pretrained(folder)
    _set_tokenizer_config(folder, **GOOGLE_TOKENIZER_KEYS, processor_class="Siglip2Processor")
    return folder


BUILDERS = {SIGLIP: build_siglip, SIGLIP2: build_siglip2_fixres, NAFLEX: build_siglip2_naflex}


def resave_like_a_finetune(folder: Path) -> None:
    """What a re-saved copy's tokenizer config says: transformers 5's defaults, left padding and a mask."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    for key in GOOGLE_TOKENIZER_KEYS:
        config.pop(key, None)
    config["padding_side"] = "left"
    path.write_text(json.dumps(config, indent=2))


def place_in_hub_cache(folder: Path, repo_id: str, cache_dir: Path) -> Path:
    """Lay a model folder out as the hub cache does; return the snapshot folder.

    models--<org>--<name>/blobs/<content hash>, snapshots/<commit>/<file> → ../../blobs/<hash>, refs/main.
    """
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    commit = hashlib.sha1(
        repo_id.encode() + b"".join(hashlib.sha256(p.read_bytes()).digest() for p in files)
    ).hexdigest()
    snapshot = repo / "snapshots" / commit
    for path in files:
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, blob)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        # From snapshots/<commit>/<relative path> back up to the repo folder, then into blobs/.
        up = "../" * (len(path.relative_to(folder).parts) + 1)
        link.symlink_to(f"{up}blobs/{blob.name}")
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot
