"""Qwen multimodal embeddings through DashScope: one fused vector per asset from up to 8 views, text en/zh.

The dashscope SDK returns errors in `status_code` instead of raising and does not retry; this
module turns non-200 answers into typed exceptions, retries only 429 and 5xx (and time-outs,
malformed bodies) with jittered exponential backoff under a client-side rate limiter, logs every
request id, and never returns a zero vector. Images travel as data URIs (or configured public
URLs): local paths handed to the SDK would be uploaded to Alibaba storage behind the user's back.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from assetlib.encoders.base import (
    EncoderError,
    EncoderInfo,
    ImageInput,
    TextRole,
    check_texts,
    l2_normalize,
)
from assetlib.media.images import as_rgb, to_rgb_on_white

log = logging.getLogger(__name__)

MAX_MULTI_IMAGES = 8  # the tongyi-embedding-vision models fuse at most 8 images in one item
ITEMS_PER_REQUEST = 8  # texts or single images per request (each gets its own vector)
KNOWN_DIMS = {
    "tongyi-embedding-vision-plus": 1152,
    "tongyi-embedding-vision-flash": 768,
    "multimodal-embedding-v1": 1024,
}


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


def to_data_uri(image: Image.Image) -> str:
    """PNG data URI of an RGB image (RGBA composited onto white first)."""
    buffer = io.BytesIO()
    to_rgb_on_white(image).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _safe_text(text: str) -> str:
    # The SDK uploads any value that is a file:// URL or an existing local path, even under "text".
    if text.startswith(("file://", "oss://")) or os.path.exists(text):
        log.warning(
            "query text %r names a local file; sent with a trailing space so it is not uploaded", text
        )
        return text + " "
    return text


def spread(items: list[ImageInput], count: int) -> list[ImageInput]:
    """`count` items taken evenly from a list (all of them when it has no more)."""
    if len(items) <= count:
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


class QwenEncoder:
    """DashScope multimodal embeddings (tongyi-embedding-vision-*): text, single images, fused views."""

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
        num_images: int = MAX_MULTI_IMAGES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import dashscope

        if not api_key:
            raise EncoderError("DASHSCOPE_API_KEY is not set")
        if base_url:
            dashscope.base_http_api_url = base_url.rstrip("/")
        self._sdk = dashscope
        # The SDK logs every failed request with a traceback; our retry log already says what happened.
        logging.getLogger("dashscope").setLevel(logging.CRITICAL)
        self.model, self.api_key, self.dimension = model, api_key, dimension
        self.max_retries, self.backoff_base, self.backoff_max = max_retries, backoff_base, backoff_max
        self.timeout = timeout
        self.image_url_base = image_url_base
        self.image_root = image_root.expanduser().resolve() if image_root is not None else None
        if not 1 <= num_images <= MAX_MULTI_IMAGES:
            raise EncoderError(f"QWEN_NUM_IMAGES must be 1 to {MAX_MULTI_IMAGES}, got {num_images}")
        self.num_images = num_images
        self.limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self._sleep = sleep
        dim = dimension or KNOWN_DIMS.get(model)
        if dim is None:
            raise EncoderError(f"the output dimension of {model} is not known: set QWEN_DIMENSION")
        self.info = EncoderInfo(
            name=f"qwen:{model}" + (f"@{dimension}" if dimension else ""),
            algorithm="qwen",
            model=model,
            dim=dim,
            modalities=frozenset({"text", "image"}),
            languages=("en", "zh"),
            fused_views=True,
            description="Qwen multimodal embeddings through DashScope",
            # Fewer views per fused request give other asset vectors under the same name.
            version=f"{model}@{dim}" + (f"/{num_images}views" if num_images != MAX_MULTI_IMAGES else ""),
        )
        self.requests = 0
        self.retries = 0

    # -- requests ---------------------------------------------------------------------------------
    def _once(self, contents: list[dict]) -> np.ndarray:
        self.limiter.acquire()
        self.requests += 1
        kwargs: dict[str, Any] = {"dimension": self.dimension} if self.dimension else {}
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
            embeddings = sorted(response.output["embeddings"], key=lambda e: e["index"])
            vectors = [e["embedding"] for e in embeddings]
        except (TypeError, KeyError, AttributeError) as exc:
            raise QwenServerError(f"malformed response: {exc!r}", status, None, request_id) from exc
        if len(vectors) != len(contents) or any(len(v) != self.info.dim for v in vectors):
            got = sorted({len(v) for v in vectors})
            raise QwenServerError(
                f"malformed response: {len(vectors)} embeddings of {got} dims for {len(contents)} items "
                f"of {self.info.dim} dims",
                status,
                None,
                request_id,
            )
        log.debug("DashScope %s: %d items, request %s", self.model, len(contents), request_id)
        try:
            return l2_normalize(np.asarray(vectors, dtype=np.float32), f"qwen {self.model}")
        except EncoderError as exc:  # a zero or NaN vector from the provider is a server fault
            raise QwenServerError(str(exc), status, None, request_id) from exc

    def _call(self, contents: list[dict]) -> np.ndarray:
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(contents)
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

    # -- inputs -----------------------------------------------------------------------------------
    def image_ref(self, image: ImageInput) -> str:
        """A public URL (QWEN_IMAGE_URL_BASE, for a file under QWEN_IMAGE_ROOT) or a PNG data URI."""
        if isinstance(image, Path) and self.image_url_base and self.image_root:
            path = image.expanduser().resolve()
            if path.is_relative_to(self.image_root):
                return f"{self.image_url_base.rstrip('/')}/{path.relative_to(self.image_root).as_posix()}"
        return to_data_uri(as_rgb(image))

    def encode_texts(
        self, texts: Sequence[str], language: str = "en", role: TextRole = "document"
    ) -> np.ndarray:
        """Text vectors in the same space as the image vectors (English and Chinese alike)."""
        check_texts(texts, language, self.info)
        parts = [
            self._call([{"text": _safe_text(t)} for t in texts[i : i + ITEMS_PER_REQUEST]])
            for i in range(0, len(texts), ITEMS_PER_REQUEST)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.dim), np.float32)

    def encode_images(self, images: Sequence[ImageInput]) -> np.ndarray:
        """One vector per image."""
        refs = [self.image_ref(im) for im in images]
        parts = [
            self._call([{"image": r} for r in refs[i : i + ITEMS_PER_REQUEST]])
            for i in range(0, len(refs), ITEMS_PER_REQUEST)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.info.dim), np.float32)

    def encode_asset_views(self, views: Sequence[Sequence[ImageInput]]) -> np.ndarray:
        """One fused vector per asset: a single {"multi_images": [...]} item of QWEN_NUM_IMAGES views,
        spread evenly over the asset's views when it has more."""
        out = []
        for asset_views in views:
            if not asset_views:
                raise EncoderError("an asset with no views cannot be embedded")
            refs = [self.image_ref(v) for v in spread(list(asset_views), self.num_images)]
            out.append(self._call([{"multi_images": refs}]))
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), np.float32)
