"""Qwen multimodal embeddings through DashScope: one fused vector per asset from its views, text en/zh.

Each DashScope model fuses views its own way (`model_specs.QWEN_MODELS`): one `multi_images` item
(tongyi-embedding-vision-*), `enable_fusion` over image items (qwen3-vl-embedding), every request
fused (qwen2.5-vl-embedding), or not at all (multimodal-embedding-v1: the asset vector is the mean
of per-view vectors). The dashscope SDK returns errors in `status_code` instead of raising and does
not retry; this module turns non-200 answers into typed exceptions, retries only 429 and 5xx (and
time-outs, malformed bodies) with jittered exponential backoff, logs every request id, and never
returns a zero vector. Images travel as data URIs under the model's byte limit (or configured
public URLs); nothing a user types is taken for a file (`dashscope_inputs`).

Throughput: a batch's requests go out from a thread pool (`QWEN_CONCURRENCY` in flight) under one
`AdaptiveLimiter` per encoder that paces request starts to the account's requests per minute
(`QWEN_REQUESTS_PER_MINUTE`) and, when set, its tokens per minute (`QWEN_TOKENS_PER_MINUTE`, from a
conservative estimate settled against the usage the provider reports). A 429 halves the allowed
rate (AIMD, never below a floor); a run of successes adds it back step by step up to the configured
limit. Results keep input order; if one request finally fails the whole call raises, as before.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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

# Token estimates for QWEN_TOKENS_PER_MINUTE, made before a request goes out and settled against the
# `usage` its answer reports. Text: one token per character, an upper bound (DashScope counts about
# 1.5 Chinese characters or 0.7 English words per token). Images: the Qwen-VL family spends one token
# per 28x28-pixel patch and caps an image at 1280 tokens by default (1280*28*28 pixels), so the cap
# is the estimate (a 512 px view costs about 335): the budget is overrun only by an image dearer
# than the cap, and under-used only until the answer's usage settles the difference. The overhead
# covers the prompt around the items.
TEXT_TOKENS_PER_CHAR = 1
IMAGE_TOKENS = 1280
REQUEST_OVERHEAD_TOKENS = 16

T = TypeVar("T")


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


def estimate_tokens(contents: list[dict]) -> int:
    """A conservative token count of one request's contents (see IMAGE_TOKENS)."""
    total = REQUEST_OVERHEAD_TOKENS
    for item in contents:
        for key, value in item.items():
            if key == "text":
                total += len(value) * TEXT_TOKENS_PER_CHAR
            elif key in ("image", "multi_images"):
                total += IMAGE_TOKENS * (len(value) if isinstance(value, list) else 1)
    return total


class AdaptiveLimiter:
    """Request starts paced to a rate per minute and an optional token budget, across threads; a 429
    cuts the rate multiplicatively, runs of successes restore it additively (AIMD)."""

    DECREASE = 0.5  # factor on the allowed rate per 429
    FLOOR = 0.05  # fraction of the configured rate below which cuts stop
    STEP = 0.1  # fraction of the configured rate given back per run of successes
    RUN = 5  # successes in a row that earn one step

    def __init__(
        self,
        per_minute: float,
        tokens_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("per_minute must be positive")
        self.limit = float(per_minute)
        self.tokens_per_minute = tokens_per_minute
        self.rate = self.limit
        self.floor = min(self.limit, max(1.0, self.limit * self.FLOOR))
        self.cuts = 0
        # Starts are spaced evenly rather than let through in bursts: DashScope may enforce its
        # per-minute limits per second (RPM/60), so a minute's quota spent at once is throttled too.
        self._next_request = float("-inf")
        self._next_token = float("-inf")
        self._epoch = 0  # bumped by every cut
        self._passed = True  # a request started in this epoch was answered
        self._streak = 0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def _token_rate(self) -> float:
        # The token budget is cut and restored with the request rate.
        assert self.tokens_per_minute
        return self.tokens_per_minute * self.rate / self.limit

    def acquire(self, tokens: int = 0) -> int:
        """Block until a request of `tokens` (estimated) may start; return the epoch it starts in."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next_request, self._next_token)
            # Each caller reserves its own slot under the lock and sleeps outside it, so threads
            # queue in order without holding each other up.
            self._next_request = start + 60.0 / self.rate
            if self.tokens_per_minute:
                self._next_token = start + tokens * 60.0 / self._token_rate()
            epoch = self._epoch
        if start > now:
            self._sleep(start - now)
        return epoch

    def settle(self, estimated: int, actual: int | None) -> None:
        """Charge the token budget what the provider reported instead of the estimate."""
        if actual is None or not self.tokens_per_minute:
            return
        with self._lock:
            self._next_token += (actual - estimated) * 60.0 / self._token_rate()

    def throttled(self, epoch: int) -> bool:
        """A request started in `epoch` got a 429: cut the rate, unless the 429 may still be the
        echo of an earlier, faster rate; True if cut."""
        with self._lock:
            self._streak = 0
            # Requests sent before the last cut come back throttled together: one cut answers them.
            # And the provider's window (a minute, or a second) still holds what was sent before
            # the cut, so 429s go on for a while whatever the new rate: cut again only once a
            # request sent at the new rate was let through, or one overshoot cuts down to the floor.
            if epoch != self._epoch or not self._passed or self.rate <= self.floor:
                return False
            self.rate = max(self.floor, self.rate * self.DECREASE)
            self._epoch += 1
            self._passed = False
            self.cuts += 1
            self._next_request = max(self._next_request, self._clock() + 60.0 / self.rate)
            return True

    def succeeded(self, epoch: int) -> None:
        """A request started in `epoch` was answered: after a run of them, step the rate back up."""
        with self._lock:
            self._passed = self._passed or epoch == self._epoch
            self._streak += 1
            if self._streak >= self.RUN and self.rate < self.limit:
                self.rate = min(self.limit, self.rate + self.limit * self.STEP)
                self._streak = 0


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
        tokens_per_minute: int | None = None,
        concurrency: int = 8,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        timeout: float = 60.0,
        image_url_base: str | None = None,
        image_root: Path | None = None,
        num_images: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
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
        self.limiter = AdaptiveLimiter(requests_per_minute, tokens_per_minute, clock=clock, sleep=sleep)
        self.concurrency = max(1, concurrency)
        self._sleep, self._clock = sleep, clock
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
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
        self._counts_lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.throttled = 0
        self._first_request: float | None = None

    def _count(self, name: str) -> None:
        # `+=` on an attribute is not atomic across threads.
        with self._counts_lock:
            setattr(self, name, getattr(self, name) + 1)
            if name == "requests" and self._first_request is None:
                self._first_request = self._clock()

    def stats(self) -> dict[str, float | int]:
        """Requests, retries, 429s, the allowed and the achieved rate per minute (since the first request)."""
        with self._counts_lock:
            requests, retries, throttled, first = (
                self.requests,
                self.retries,
                self.throttled,
                self._first_request,
            )
        elapsed = self._clock() - first if first is not None else 0.0
        return {
            "requests": requests,
            "retries": retries,
            "throttled": throttled,
            "allowed_per_minute": round(self.limiter.rate, 1),
            "achieved_per_minute": round(requests * 60.0 / elapsed, 1) if elapsed > 0 else 0.0,
        }

    def close(self) -> None:
        """Stop the request threads (a later call starts new ones)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- requests ---------------------------------------------------------------------------------
    def _once(self, contents: list[dict], expected: int, parameters: dict[str, Any]) -> np.ndarray:
        self._check_nothing_is_a_file(contents)
        estimate = estimate_tokens(contents)
        epoch = self.limiter.acquire(estimate)
        self._count("requests")
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
            if status == 429:
                self._count("throttled")
                if self.limiter.throttled(epoch):
                    log.warning(
                        "DashScope throttled %s (request %s): allowed rate cut to %.1f/min",
                        self.model,
                        request_id,
                        self.limiter.rate,
                    )
            raise cls(message, status, code, request_id)
        self.limiter.succeeded(epoch)
        self.limiter.settle(estimate, self._reported_tokens(response))
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
    def _reported_tokens(response: Any) -> int | None:
        """The input tokens an answer's usage reports (multimodal: input_tokens; text: total_tokens)."""
        usage = getattr(response, "usage", None)
        if not isinstance(usage, dict):  # the SDK's usage is a dict (DictMixin), when there is one
            return None
        tokens = usage.get("input_tokens") or usage.get("total_tokens")
        return tokens if isinstance(tokens, int) and tokens >= 0 else None

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
                self._count("retries")
                log.info("%s; retry %d/%d in %.2fs", exc, attempt + 1, self.max_retries, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    @property
    def _independent_items(self) -> int:
        """Items one request may carry when each is to get its own vector."""
        return 1 if self.spec.fusion == "always" else self.spec.max_items

    def _executor(self) -> ThreadPoolExecutor:
        # One pool per encoder, so concurrent callers share QWEN_CONCURRENCY requests in flight.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="qwen")
            return self._pool

    def _map(self, tasks: list[Callable[[], np.ndarray]]) -> list[np.ndarray]:
        """Run tasks (one request each, retries included), `concurrency` at a time; results in order.
        If any fails, the ones not started are dropped, those in flight finish, and the first
        failure in input order is raised."""
        if len(tasks) <= 1 or self.concurrency == 1:
            return [task() for task in tasks]
        pool = self._executor()
        futures: list[Future[np.ndarray]] = [pool.submit(task) for task in tasks]
        wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.done() and not f.cancelled() and f.exception() is not None for f in futures):
            for future in futures:
                future.cancel()
            wait(futures)  # no request of this call outlives it
            for future in futures:
                error = None if future.cancelled() else future.exception()
                if error is not None:
                    raise error
        return [f.result() for f in futures]

    def _each(
        self, values: Sequence[T], to_item: Callable[[T], dict], parameters: dict[str, Any] | None = None
    ) -> np.ndarray:
        """One vector per value, as many per request as the model embeds separately; each request
        builds its own items (image encoding runs in the request threads)."""
        step = self._independent_items

        def request(chunk: Sequence[T]) -> np.ndarray:
            return self._call([to_item(v) for v in chunk], len(chunk), parameters)

        parts = self._map([partial(request, values[i : i + step]) for i in range(0, len(values), step)])
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
        return self._each(list(texts), lambda t: {"text": defuse_text(t)}, self._instruct(role))

    def _instruct(self, role: TextRole) -> dict[str, Any] | None:
        """The request parameters that carry the query instruction, for a query to a model that has one."""
        return {"instruct": QUERY_INSTRUCTION} if role == "query" and self.spec.instruct else None

    def encode_images(self, images: Sequence[ImageInput], role: TextRole = "document") -> np.ndarray:
        """One vector per image; an image query carries QUERY_INSTRUCTION where the model takes one."""
        return self._each(list(images), lambda im: {"image": self.image_ref(im)}, self._instruct(role))

    def encode_asset_views(
        self, views: Sequence[Sequence[ImageInput]], role: TextRole = "document"
    ) -> np.ndarray:
        """One vector per asset from QWEN_NUM_IMAGES of its views (spread evenly when it has more),
        fused the way the model fuses; for a model that cannot fuse, the mean of per-view vectors."""
        if any(not v for v in views):
            raise EncoderError("an asset with no views cannot be embedded")
        if self.spec.fusion == "none":
            flat = [im for asset in views for im in asset]
            return mean_of_views(self.encode_images(flat, role), [len(v) for v in views])
        out = self._map([partial(self._fused, list(asset_views), role) for asset_views in views])
        return np.concatenate(out) if out else np.zeros((0, self.info.dim), np.float32)

    def _fused(self, asset_views: list[ImageInput], role: TextRole = "document") -> np.ndarray:
        """One request, one fused vector, for one asset's views."""
        refs = [self.image_ref(v) for v in spread(asset_views, self.num_images)]
        parameters = self._instruct(role) or {}
        if self.spec.fusion == "multi_images":
            return self._call([{"multi_images": refs}], 1, parameters)
        if self.spec.fusion == "enable_fusion":
            return self._call([{"image": r} for r in refs], 1, {**parameters, "enable_fusion": True})
        # "always": the model fuses the images of one request
        return self._call([{"image": r} for r in refs], 1, parameters)
