"""The Qwen client against a local fake DashScope: wire format, retries, typed errors, no zero vectors."""

from __future__ import annotations

import numpy as np
import pytest
from fake_dashscope import FakeDashScopeServer, Scripted
from PIL import Image

from assetlib.encoders.qwen import QwenEncoder, QwenRequestError, QwenServerError, RateLimiter

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
    first, second = fake.state.requests
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
    return QwenEncoder(
        model,
        "sk-test",
        dimension=dimension,
        base_url=fake.base_url,
        backoff_base=0.01,
        requests_per_minute=100_000,
        max_retries=1,
        **kw,
    )


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
