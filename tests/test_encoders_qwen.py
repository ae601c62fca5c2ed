"""The Qwen client against a local fake DashScope: wire format, retries, typed errors, no zero vectors,
requests in flight concurrently under an adaptive (AIMD) rate limiter."""

from __future__ import annotations

import numpy as np
import pytest
from fake_dashscope import FakeDashScopeServer, Scripted
from PIL import Image

from assetlib.encoders.qwen import (
    IMAGE_TOKENS,
    REQUEST_OVERHEAD_TOKENS,
    AdaptiveLimiter,
    QwenEncoder,
    QwenRequestError,
    QwenServerError,
    RateLimiter,
    estimate_tokens,
)

DIM = 64


@pytest.fixture
def fake():
    with FakeDashScopeServer(dim=DIM) as server:
        yield server


def _client(fake, **kw) -> QwenEncoder:
    options = {
        "dimension": DIM,
        "base_url": fake.base_url,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "requests_per_minute": 100_000,
        "max_retries": 3,
        "timeout": 2.0,
    }
    options.update(kw)
    return QwenEncoder("tongyi-embedding-vision-plus", "sk-test", **options)


def _views(n: int = 8) -> list[Image.Image]:
    return [Image.new("RGBA", (16, 16), (20 * i, 100, 200, 255)) for i in range(n)]


def test_eight_views_travel_as_one_multi_images_item(fake):
    client = _client(fake)
    fused = client.encode_asset_views([_views(8), _views(3)])
    assert fused.shape == (2, DIM) and fused.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fused, axis=1), 1.0, rtol=1e-5)
    # The two assets' requests travel concurrently: tell them apart by their views.
    first, second = sorted(fake.state.requests, key=lambda r: -len(r["input"]["contents"][0]["multi_images"]))
    assert first["model"] == "tongyi-embedding-vision-plus" and first["parameters"]["dimension"] == DIM
    contents = first["input"]["contents"]
    assert len(contents) == 1 and list(contents[0]) == ["multi_images"]
    assert len(contents[0]["multi_images"]) == 8
    assert all(uri.startswith("data:image/png;base64,") for uri in contents[0]["multi_images"])
    assert len(second["input"]["contents"][0]["multi_images"]) == 3
    assert fake.state.headers[0]["Authorization"] == "Bearer sk-test"


def test_texts_and_images_share_one_request_format(fake):
    client = _client(fake)
    texts = client.encode_texts(["a red chair", "一把红色的椅子"], "zh")
    images = client.encode_images(_views(2))
    assert texts.shape == images.shape == (2, DIM)
    assert fake.state.requests[0]["input"]["contents"] == [
        {"text": "a red chair"},
        {"text": "一把红色的椅子"},
    ]
    assert [list(c) for c in fake.state.requests[1]["input"]["contents"]] == [["image"], ["image"]]
    with pytest.raises(ValueError, match="not 'french'"):
        client.encode_texts(["bonjour"], "french")


def test_recovers_from_429_429_200(fake):
    fake.state.then(
        Scripted(429, "Throttling.RateQuota", "Requests rate limit exceeded"),
        Scripted(429, "Throttling.RateQuota", "Requests rate limit exceeded"),
    )
    client = _client(fake)
    vectors = client.encode_texts(["a lamp"], "en")
    assert vectors.shape == (1, DIM)
    assert len(fake.state.requests) == 3 and client.retries == 2


def test_stops_on_400_and_surfaces_the_provider_message(fake):
    fake.state.then(Scripted(400, "InvalidParameter", "The image format is not supported."))
    client = _client(fake)
    with pytest.raises(QwenRequestError) as caught:
        client.encode_images(_views(1))
    assert "The image format is not supported." in str(caught.value)
    assert caught.value.status == 400 and caught.value.code == "InvalidParameter"
    assert caught.value.request_id  # the provider's request id travels with the error
    assert len(fake.state.requests) == 1  # not retried


def test_repeated_500s_end_in_an_error_never_a_zero_vector(fake):
    fake.state.then(*[Scripted(500, "InternalError", "boom")] * 4)
    client = _client(fake, max_retries=3)
    with pytest.raises(QwenServerError, match="boom"):
        client.encode_asset_views([_views(4)])
    assert len(fake.state.requests) == 4


def test_timeouts_and_malformed_bodies_are_retried(fake):
    fake.state.then(Scripted(delay=3.0), Scripted(malformed=True), Scripted(zero=True))
    client = _client(fake, timeout=1.0)
    vectors = client.encode_texts(["a boat"], "en")
    assert vectors.shape == (1, DIM) and np.linalg.norm(vectors) > 0.99
    assert len(fake.state.requests) == 4 and client.retries == 3


def test_local_paths_are_never_handed_to_the_sdk(fake, tmp_path):
    image = tmp_path / "view.png"
    _views(1)[0].save(image)
    client = _client(fake)
    client.encode_images([image])
    sent = fake.state.requests[0]["input"]["contents"][0]["image"]
    assert sent.startswith("data:image/png;base64,")  # a path would have been uploaded to OSS
    client.encode_texts([str(image)], "en")
    assert fake.state.requests[1]["input"]["contents"][0]["text"] == f" {image}"  # a text, not a file
    assert fake.state.uploads == []
    assert not any("uploads" in str(h) for h in fake.state.headers)


def test_public_urls_are_used_when_configured(fake, tmp_path):
    image = tmp_path / "renders" / "0" / "1" / "00000.png"
    image.parent.mkdir(parents=True)
    _views(1)[0].save(image)
    client = _client(fake, image_url_base="https://cdn.example.com/renders", image_root=tmp_path / "renders")
    client.encode_asset_views([[image]])
    assert fake.state.requests[0]["input"]["contents"][0]["multi_images"] == [
        "https://cdn.example.com/renders/0/1/00000.png"
    ]


def test_rate_limiter_spaces_calls():
    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)
    for _ in range(4):
        limiter.acquire()
    assert slept == pytest.approx([0.5, 0.5, 0.5])


def test_the_settings_reach_the_encoder_image_urls_and_views_per_request(fake, tmp_path):
    """QWEN_IMAGE_URL_BASE + QWEN_IMAGE_ROOT and QWEN_NUM_IMAGES, set as a user sets them."""
    from assetlib.config import load_settings
    from assetlib.encoders.registry import clear_cache, get_encoder

    root = tmp_path / "renders"
    views = []
    for i, image in enumerate(_views(8)):
        path = root / "0" / "7" / f"{i:05d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True)
        image.save(path)
        views.append(path)
    settings = load_settings(
        environ={
            "DASHSCOPE_API_KEY": "sk-test",
            "DASHSCOPE_BASE_URL": fake.base_url,
            "QWEN_DIMENSION": str(DIM),
            "QWEN_IMAGE_URL_BASE": "https://cdn.example.com/r",
            "QWEN_IMAGE_ROOT": str(root),
            "QWEN_NUM_IMAGES": "4",
        }
    )
    clear_cache()
    encoder = get_encoder("qwen", settings)
    assert encoder.encode_asset_views([views]).shape == (1, DIM)
    sent = fake.state.requests[-1]["input"]["contents"]
    assert sent == [
        {"multi_images": [f"https://cdn.example.com/r/0/7/{i:05d}/{i:05d}.png" for i in (0, 2, 4, 6)]}
    ]  # 4 of the 8 views, spread evenly, each by URL
    outside = tmp_path / "elsewhere.png"
    _views(1)[0].save(outside)
    encoder.encode_images([outside])
    assert fake.state.requests[-1]["input"]["contents"][0]["image"].startswith("data:image/png;base64,")
    assert "/4views" in encoder.info.version  # other views per request: other vectors, never reused
    clear_cache()


MODEL_DIMS = {"qwen3-vl-embedding": 256, "qwen2.5-vl-embedding": 512, "multimodal-embedding-v1": None}


def _model_client(fake, model: str, **kw) -> QwenEncoder:
    """A client of one DashScope model at a dimension it offers, the fake answering in that size."""
    dimension = MODEL_DIMS.get(model, DIM)
    fake.state.dim = dimension or 1024
    options = {"backoff_base": 0.01, "requests_per_minute": 100_000, "max_retries": 1} | kw
    return QwenEncoder(model, "sk-test", dimension=dimension, base_url=fake.base_url, **options)


@pytest.mark.parametrize(
    ("model", "fused_contents", "parameters"),
    [
        ("tongyi-embedding-vision-plus", [["multi_images"]], {}),
        ("tongyi-embedding-vision-flash", [["multi_images"]], {}),
        ("qwen3-vl-embedding", [["image"]] * 8, {"enable_fusion": True}),
        ("qwen2.5-vl-embedding", [["image"]] * 8, {}),
    ],
)
def test_each_model_fuses_the_views_its_own_way(fake, model, fused_contents, parameters):
    client = _model_client(fake, model)
    vectors = client.encode_asset_views([_views(8)])
    assert vectors.shape == (1, client.info.dim) and client.info.fused_views
    [request] = fake.state.requests  # one request, one fused vector (the fake refuses what its model would)
    assert request["model"] == model
    assert [list(item) for item in request["input"]["contents"]] == fused_contents
    assert {k: v for k, v in request["parameters"].items() if k != "dimension"} == parameters


def test_a_model_that_cannot_fuse_gets_the_mean_of_its_views(fake):
    client = _model_client(fake, "multimodal-embedding-v1")
    assert not client.info.fused_views and "mean" in client.info.description
    vector = client.encode_asset_views([_views(3)])
    singles = client.encode_images(_views(3))
    expected = singles.mean(axis=0) / np.linalg.norm(singles.mean(axis=0))
    np.testing.assert_allclose(vector[0], expected, rtol=1e-5)
    assert all(len(r["input"]["contents"]) == 1 for r in fake.state.requests)  # one item per request


def test_queries_carry_an_instruction_where_the_model_takes_one(fake):
    qwen3 = _model_client(fake, "qwen3-vl-embedding")
    qwen3.encode_texts(["a chair to sit on"], "en", role="query")
    qwen3.encode_texts(["a red chair"], "en", role="document")
    query, document = fake.state.requests
    assert "instruct" in query["parameters"] and "instruct" not in document["parameters"]
    fake.state.requests.clear()
    fake.state.dim = DIM
    _client(fake).encode_texts(["a chair"], "en", role="query")  # tongyi: no instruct parameter
    assert "instruct" not in fake.state.requests[0]["parameters"]
    fake.state.requests.clear()
    qwen3 = _model_client(fake, "qwen3-vl-embedding")  # the fake answers in its size again
    qwen3.encode_images(_views(1), role="query")  # an image searched with is a query too
    qwen3.encode_asset_views([_views(2)], role="query")
    qwen3.encode_images(_views(1))  # a render is a document
    qwen3.encode_asset_views([_views(2)])
    asked = [("instruct" in r["parameters"]) for r in fake.state.requests]
    assert asked == [True, True, False, False]
    assert fake.state.requests[1]["parameters"].get("enable_fusion") is True  # still fused


def test_a_fused_only_model_embeds_one_text_per_request(fake):
    client = _model_client(fake, "qwen2.5-vl-embedding")
    vectors = client.encode_texts(["a red chair", "a blue car", "一棵树"], "zh")
    assert vectors.shape == (3, 512) and len(fake.state.requests) == 3
    assert not np.allclose(vectors[0], vectors[1])


@pytest.mark.parametrize(
    ("model", "dimension"),
    [("tongyi-embedding-vision-plus", 768), ("qwen3-vl-embedding", 1152), ("qwen2.5-vl-embedding", 256)],
)
def test_a_wrong_dimension_is_refused_before_any_request(fake, model, dimension):
    from assetlib.config import ConfigError, load_settings
    from assetlib.encoders.base import EncoderUnavailable

    with pytest.raises(EncoderUnavailable, match="not " + str(dimension)):
        QwenEncoder(model, "sk-test", dimension=dimension, base_url=fake.base_url)
    with pytest.raises(ConfigError, match="QWEN_DIMENSION"):
        load_settings(environ={"QWEN_MODEL": model, "QWEN_DIMENSION": str(dimension)})
    assert fake.state.requests == []


def test_an_oversized_view_is_re_encoded_under_the_models_limit(fake):
    from assetlib.model_specs import QWEN_MODELS

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8))
    limit = QWEN_MODELS["tongyi-embedding-vision-plus"].max_image_bytes
    client = _client(fake)
    client.encode_images([noise])
    sent = fake.state.requests[0]["input"]["contents"][0]["image"]
    assert len(sent) <= limit and sent.startswith("data:image/jpeg;base64,")  # the PNG was ~5.9 MB
    from assetlib.encoders.dashscope_inputs import to_data_uri

    assert len(to_data_uri(noise)) > limit  # without the limit it would not have fitted


@pytest.mark.parametrize("model", ["tongyi-embedding-vision-plus", "qwen3-vl-embedding"])
def test_nothing_a_user_types_is_uploaded_under_any_key(fake, tmp_path, monkeypatch, model):
    """Through the SDK's own upload trigger: ~ paths, file:// and oss:// URLs, relative and absolute paths."""
    home = tmp_path / "home"
    (home / "notes.txt").parent.mkdir(parents=True)
    (home / "notes.txt").write_text("private")
    (tmp_path / "cwd").mkdir()
    (tmp_path / "cwd" / "draft.png").write_bytes(b"not really")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path / "cwd")
    queries = [
        "~/notes.txt",
        f"file://{home}/notes.txt",
        "file:///no/such/file",
        "FILE://~/notes.txt",
        "oss://bucket/object",
        "draft.png",
        str(home / "notes.txt"),
    ]
    client = _model_client(fake, model)
    client.encode_texts(queries, "en", role="query")
    sent = [c["text"] for r in fake.state.requests for c in r["input"]["contents"]]
    assert [s.strip() for s in sent] == queries  # every query went, as text
    assert fake.state.uploads == []  # and the fake's upload endpoint saw nothing
    assert not any(h.get("X-DashScope-OssResourceResolve") for h in fake.state.headers)


# -- concurrency and the adaptive limiter ------------------------------------------------------------
def _assets(n: int, views: int = 2) -> list[list[Image.Image]]:
    """n assets whose views differ, so each fused vector is its own."""
    return [
        [Image.new("RGB", (8, 8), (i % 256, (i // 256) * 40 + v, 7)) for v in range(views)] for i in range(n)
    ]


def test_requests_overlap_up_to_the_concurrency_and_keep_input_order(fake):
    fake.state.latency = 0.05  # long enough for requests to meet in flight
    assets = _assets(16)
    client = _client(fake, concurrency=4)
    vectors = client.encode_asset_views(assets)
    assert 1 < fake.state.max_in_flight <= 4
    fake.state.latency = 0.0
    serial = _client(fake, concurrency=1).encode_asset_views(assets)
    np.testing.assert_array_equal(vectors, serial)  # the same vector for the same asset, in input order
    assert client.requests == 16 and client.stats()["requests"] == 16


def test_texts_spread_over_many_requests_come_back_in_order(fake):
    texts = [f"object number {i}" for i in range(12)]
    concurrent = _model_client(fake, "qwen2.5-vl-embedding", concurrency=6)  # one text per request
    serial = _model_client(fake, "qwen2.5-vl-embedding", concurrency=1)
    np.testing.assert_array_equal(concurrent.encode_texts(texts, "en"), serial.encode_texts(texts, "en"))
    assert len(fake.state.requests) == 24


def test_one_request_that_finally_fails_fails_the_call(fake):
    fake.state.poison = "number 7"
    client = _model_client(fake, "qwen2.5-vl-embedding", concurrency=4)
    with pytest.raises(QwenServerError, match="poisoned"):
        client.encode_texts([f"number {i}" for i in range(10)], "en")
    assert client.stats()["requests"] == fake.state.received  # counted under threads, none missed


def test_a_burst_of_429s_cuts_the_rate_then_successes_restore_it(fake):
    fake.state.then(*[Scripted(429, "Throttling.RateQuota", "Requests rate limit exceeded")] * 6)
    client = _client(fake, concurrency=4, requests_per_minute=60_000, max_retries=8)
    first = client.encode_asset_views(_assets(4))  # 4 successes: fewer than a run that earns a step back
    stats = client.stats()
    assert stats["throttled"] == 6 and stats["retries"] == 6 and stats["requests"] == 10
    assert client.limiter.cuts >= 1 and stats["allowed_per_minute"] < 60_000
    more = client.encode_asset_views(_assets(60)[4:])
    assert client.stats()["allowed_per_minute"] == 60_000  # recovered, additively
    everything = np.concatenate([first, more])
    assert everything.shape == (60, DIM) and (np.linalg.norm(everything, axis=1) > 0.99).all()  # none lost
    np.testing.assert_array_equal(everything, _client(fake, concurrency=1).encode_asset_views(_assets(60)))


def test_a_sliding_window_limit_on_the_server_loses_nothing(fake):
    fake.state.limit(5, window=0.5)  # 600 a minute, while the client asks for twice that
    client = _model_client(
        fake,
        "qwen2.5-vl-embedding",
        concurrency=4,
        requests_per_minute=1200,
        max_retries=8,
        backoff_base=0.1,
        backoff_max=0.5,
    )
    texts = [f"lamp {i}" for i in range(12)]
    vectors = client.encode_texts(texts, "en")
    assert vectors.shape == (12, 512) and fake.state.answered == 12  # every item got its vector
    assert fake.state.received == 12 + fake.state.throttled == client.stats()["requests"]
    assert client.stats()["throttled"] == fake.state.throttled


class _FrozenClock:
    """A clock that stands still while the limiter reserves slots: the sleeps say when each starts."""

    def __init__(self) -> None:
        self.now = 100.0
        self.starts: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.starts.append(self.now + seconds)


def _most_in_a_window(starts: list[float], window: float = 60.0, weights: list[int] | None = None) -> int:
    weights = weights or [1] * len(starts)
    pairs = sorted(zip(starts, weights, strict=True))
    return max(sum(w for t, w in pairs if a <= t < a + window) for a, _ in pairs)


def test_the_limiter_keeps_any_minute_within_the_rate_across_threads():
    import threading

    clock = _FrozenClock()
    limiter = AdaptiveLimiter(120, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(25)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    starts = [clock.now, *clock.starts]  # the first request waited for nothing
    assert len(starts) == 200
    assert _most_in_a_window(starts) == 120  # never more than the limit in any minute
    assert np.diff(sorted(starts)) == pytest.approx(0.5)  # evenly spaced, no bursts


def test_the_token_budget_paces_requests_and_settles_on_reported_usage():
    clock = _FrozenClock()
    limiter = AdaptiveLimiter(100_000, tokens_per_minute=6000, clock=clock, sleep=clock.sleep)
    for _ in range(12):
        limiter.acquire(1000)
    starts = [clock.now, *clock.starts]
    assert _most_in_a_window(starts, weights=[1000] * 12) == 6000  # 10 s apart
    limiter.settle(1000, 100)  # the last one cost 100 tokens, not 1000: 9 s of budget back
    clock.starts.clear()
    limiter.acquire(1000)
    assert clock.starts == pytest.approx([starts[-1] + 1.0])


def test_aimd_halves_once_per_burst_down_to_a_floor_and_climbs_back():
    limiter = AdaptiveLimiter(600)
    epoch = limiter.acquire()
    assert limiter.throttled(epoch) and limiter.rate == 300
    assert not limiter.throttled(epoch) and limiter.rate == 300  # same burst: requests sent before the cut
    later = limiter.acquire()
    assert not limiter.throttled(later) and limiter.rate == 300  # the window may still hold the old rate
    limiter.succeeded(epoch)  # an answer to a request sent before the cut says nothing of the new rate
    assert not limiter.throttled(later) and limiter.rate == 300
    limiter.succeeded(later)  # one sent at the new rate got through, and yet another was throttled
    assert limiter.throttled(later) and limiter.rate == 150
    for _ in range(10):
        limiter.succeeded(limiter._epoch)
        limiter.throttled(limiter._epoch)
    assert limiter.rate == limiter.floor == 30
    for _ in range(4):
        limiter.succeeded(limiter._epoch)
    assert limiter.rate == 30
    limiter.succeeded(limiter._epoch)
    assert limiter.rate == 90  # + a tenth of the limit per run of 5 successes
    for _ in range(100):
        limiter.succeeded(limiter._epoch)
    assert limiter.rate == 600  # never above the configured limit


def test_token_estimates_are_conservative():
    assert estimate_tokens([{"text": "一把红色的椅子"}]) == REQUEST_OVERHEAD_TOKENS + 7
    assert estimate_tokens([{"multi_images": ["a"] * 8}]) == REQUEST_OVERHEAD_TOKENS + 8 * IMAGE_TOKENS
    assert estimate_tokens([{"image": "a"}, {"image": "b"}]) == REQUEST_OVERHEAD_TOKENS + 2 * IMAGE_TOKENS


def test_concurrency_and_token_budget_settings_reach_the_encoder(fake):
    from assetlib.config import load_settings
    from assetlib.encoders.registry import clear_cache, get_encoder

    settings = load_settings(
        environ={
            "DASHSCOPE_API_KEY": "sk-test",
            "DASHSCOPE_BASE_URL": fake.base_url,
            "QWEN_DIMENSION": str(DIM),
            "QWEN_CONCURRENCY": "3",
            "QWEN_TOKENS_PER_MINUTE": "500000",
        }
    )
    assert load_settings(environ={}).qwen_tokens_per_minute is None  # no token budget unless set
    clear_cache()
    encoder = get_encoder("qwen", settings)
    assert isinstance(encoder, QwenEncoder)
    assert encoder.concurrency == 3 and encoder.limiter.tokens_per_minute == 500_000
    assert encoder.limiter.limit == settings.qwen_requests_per_minute
    clear_cache()
