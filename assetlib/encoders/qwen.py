"""Qwen multimodal embeddings through DashScope: one fused vector per asset from its views, text en/zh.

Each DashScope model fuses views its own way (`model_specs.QWEN_MODELS`): one `multi_images` item
(tongyi-embedding-vision-*), `enable_fusion` over image items (qwen3-vl-embedding), every request
fused (qwen2.5-vl-embedding), or not at all (multimodal-embedding-v1: the asset vector is the mean
of per-view vectors). The dashscope SDK returns errors in `status_code` instead of raising and does
not retry; this module turns non-200 answers into typed exceptions, retries only 429 and 5xx (and
time-outs, malformed bodies) with jittered exponential backoff under a client-side rate limiter,
logs every request id, and never returns a zero vector. Images travel as data URIs under the
model's byte limit (or configured public URLs); nothing a user types is taken for a file
(`dashscope_inputs`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assetlib.encoders.base import (
    EncoderError,
    EncoderInfo,
    EncoderUnavailable,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
    mean_of_views,
)
from assetlib.encoders.dashscope_inputs import check_reference, defuse_text, names_a_local_file, to_data_uri
from assetlib.media.images import as_rgb
from assetlib.model_specs import QwenModelSpec, qwen_model_spec

log = logging.getLogger(__name__)

# What a search query asks for, on models that take an instruction (qwen3-vl-embedding): captions
# and views are embedded without one, as documents.
QUERY_INSTRUCTION = "Find 3D objects whose rendered views or descriptions match this query."


class QwenError(EncoderError):
    """A DashScope request that failed, with the provider's status, code, message and request id."""

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None, request_id: str | None = None
    ) -> None:
        self.status, self.code, self.request_id = status, code, request_id
        detail = ", ".join(
            p
            for p in (
                f"HTTP {status}" if status else "",
                code or "",
                f"request {request_id}" if request_id else "",
            )
            if p
        )
        super().__init__(f"DashScope: {message}" + (f" ({detail})" if detail else ""))


class QwenRequestError(QwenError):
    """The request itself is wrong (4xx other than 429): retrying cannot help."""


class QwenThrottled(QwenError):
    """429: rate or quota limit; transient, retried with backoff."""


class QwenServerError(QwenError):
    """5xx, a time-out or a malformed answer: retried with backoff."""


class RateLimiter:
    """At most `per_minute` calls in any 60 s window, across threads."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def acquire(self) -> None:
        """Block until the next call is allowed."""
        with self._lock:
            now = self._clock()
            wait = self._next - now
            self._next = max(now, self._next) + self.interval
        if wait > 0:
            self._sleep(wait)


def spread(items: list[ImageInput], count: int) -> list[ImageInput]:
    """`count` items taken evenly from a list (all of them when it has no more)."""
    if len(items) <= count:
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


class QwenEncoder:
    """DashScope multimodal embeddings: texts, single images and assets' views, as each model allows."""

    def __init__(
        self,
        model: str,
        api_key: str,
        dimension: int | None = None,
        base_url: str | None = None,
        requests_per_minute: int = 120,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 60.0,
        image_url_base: str | None = None,
        image_root: Path | None = None,
        num_images: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import dashscope

        if not api_key:
            raise EncoderError("DASHSCOPE_API_KEY is not set")
        try:
            self.spec: QwenModelSpec = qwen_model_spec(model)
            dim = self.spec.check_dimension(dimension)
        except ValueError as exc:
            raise EncoderUnavailable(f"qwen: {exc}") from None
        self._sdk = dashscope
        # Per encoder, never process-wide: two encoders may talk to two endpoints.
        self.base_url = base_url.rstrip("/") if base_url else None
        # The SDK logs every failed request with a traceback; our retry log already says what happened.
        logging.getLogger("dashscope").setLevel(logging.CRITICAL)
        self.model, self.api_key, self.dimension = model, api_key, dimension
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self.timeout = timeout
        self.image_url_base = image_url_base
        self.image_root = image_root.expanduser().resolve() if image_root is not None else None
        self.num_images = min(num_images or self.spec.max_fused_images, self.spec.max_fused_images)
        if self.spec.fusion == "multi_images" and not 1 <= self.num_images <= self.spec.max_fused_images:
            raise EncoderError(f"QWEN_NUM_IMAGES must be 1 to {self.spec.max_fused_images} for {model}")
        self.limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self._sleep = sleep
        fused = self.spec.fusion != "none"
        views = f"/{self.num_images}views" if fused and self.num_images != self.spec.max_fused_images else ""
        self.info = EncoderInfo(
            name=f"qwen:{model}" + (f"@{dimension}" if dimension else ""),
            algorithm="qwen",
            model=model,
            dim=dim,
            modalities=frozenset({"text", "image"}),
            languages=("en", "zh"),
            fused_views=fused,
            description=f"Qwen {model} through DashScope: {self.spec.note}",
            # Fewer views per fused request give other asset vectors under the same name.
            version=f"{model}@{dim}{views}",
            local=False,
        )
        self.requests = 0
        self.retries = 0

    # -- requests ---------------------------------------------------------------------------------
    def _once(self, contents: list[dict], expected: int, parameters: dict[str, Any]) -> np.ndarray:
        self._check_nothing_is_a_file(contents)
        self.limiter.acquire()
        self.requests += 1
        kwargs: dict[str, Any] = dict(parameters)
        if self.dimension:
            kwargs["dimension"] = self.dimension
        if self.base_url:
            kwargs["base_address"] = self.base_url
        try:
            response = self._sdk.MultiModalEmbedding.call(
                model=self.model, input=contents, api_key=self.api_key, request_timeout=self.timeout, **kwargs
            )
        except Exception as exc:  # requests' time-outs and connection errors, JSON decode errors
            raise QwenServerError(f"request failed: {type(exc).__name__}: {exc}") from exc
        status = getattr(response, "status_code", None)
        request_id = getattr(response, "request_id", None)
        if status != 200:
            message = getattr(response, "message", "") or "no message"
            code = getattr(response, "code", None)
            cls = (
                QwenThrottled
                if status == 429
                else QwenServerError
                if (status or 500) >= 500
                else QwenRequestError
            )
            raise cls(message, status, code, request_id)
        try:
            embeddings = sorted(response.output["embeddings"], key=lambda e: e.get("index", 0))
            vectors = [e["embedding"] for e in embeddings]
        except (TypeError, KeyError, AttributeError) as exc:
            raise QwenServerError(f"malformed response: {exc!r}", status, None, request_id) from exc
        if len(vectors) != expected or any(len(v) != self.info.dim for v in vectors):
            got = sorted({len(v) for v in vectors})
            raise QwenServerError(
                f"malformed response: {len(vectors)} embeddings of {got} dims where {expected} of "
                f"{self.info.dim} dims were due",
                status,
                None,
                request_id,
            )
        log.debug("DashScope %s: %d items, request %s", self.model, len(contents), request_id)
        try:
            return l2_normalize(np.asarray(vectors, dtype=np.float32), f"qwen {self.model}")
        except EncoderError as exc:  # a zero or NaN vector from the provider is a server fault
            raise QwenServerError(str(exc), status, None, request_id) from exc

    @staticmethod
    def _check_nothing_is_a_file(contents: list[dict]) -> None:
        # The last guard before the SDK: every string it could upload was defused or refused before.
        for item in contents:
            for value in item.values():
                for string in value if isinstance(value, list) else [value]:
                    if isinstance(string, str) and names_a_local_file(string):
                        raise EncoderError("refusing to send a value the SDK would upload as a local file")

    def _call(
        self, contents: list[dict], expected: int, parameters: dict[str, Any] | None = None
    ) -> np.ndarray:
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(contents, expected, parameters or {})
            except QwenRequestError:
                raise  # the request itself is wrong: retrying cannot help
            except (QwenThrottled, QwenServerError) as exc:
                if attempt == self.max_retries:
                    raise
                delay = min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.5)
                self.retries += 1
                log.info("%s; retry %d/%d in %.2fs", exc, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    @property
    def _independent_items(self) -> int:
        """Items one request may carry when each is to get its own vector."""
        return 1 if self.spec.fusion == "always" else self.spec.max_items

    def _each(self, items: list[dict], parameters: dict[str, Any] | None = None) -> np.ndarray:
        """One vector per item, as many items per request as the model embeds separately."""
        step = self._independent_items
        parts = [
            self._call(items[i : i + step], len(items[i : i + step]), parameters)
            for i in range(0, len(items), step)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.dim), np.float32)

    # -- inputs -----------------------------------------------------------------------------------
    def image_ref(self, image: ImageInput) -> str:
        """A public URL (QWEN_IMAGE_URL_BASE, for a file under QWEN_IMAGE_ROOT) or a data URI that fits."""
        if isinstance(image, Path) and self.image_url_base and self.image_root:
            path = image.expanduser().resolve()
            if path.is_relative_to(self.image_root):
                url = f"{self.image_url_base.rstrip('/')}/{path.relative_to(self.image_root).as_posix()}"
                return check_reference(url)
        return check_reference(to_data_uri(as_rgb(image), self.spec.max_image_bytes))

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Text vectors in the same space as the image vectors (English and Chinese alike); queries
        carry QUERY_INSTRUCTION where the model takes one."""
        check_texts(texts, language, self.info)
        parameters = {"instruct": QUERY_INSTRUCTION} if role == "query" and self.spec.instruct else None
        return self._each([{"text": defuse_text(t)} for t in texts], parameters)

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """One vector per image."""
        return self._each([{"image": self.image_ref(im)} for im in images])

    def encode_asset_views(self, views: Sequence[Sequence[ImageInput]]) -> np.ndarray:
        """One vector per asset from QWEN_NUM_IMAGES of its views (spread evenly when it has more),
        fused the way the model fuses; for a model that cannot fuse, the mean of per-view vectors."""
        if any(not v for v in views):
            raise EncoderError("an asset with no views cannot be embedded")
        if self.spec.fusion == "none":
            flat = [im for asset in views for im in asset]
            return mean_of_views(self.encode_images(flat), [len(v) for v in views])
        out = []
        for asset_views in views:
            refs = [self.image_ref(v) for v in spread(list(asset_views), self.num_images)]
            if self.spec.fusion == "multi_images":
                out.append(self._call([{"multi_images": refs}], 1))
            elif self.spec.fusion == "enable_fusion":
                out.append(self._call([{"image": r} for r in refs], 1, {"enable_fusion": True}))
            else:  # "always": the model fuses whatever one request holds
                out.append(self._call([{"image": r} for r in refs], 1))
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), np.float32)
