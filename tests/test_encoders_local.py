"""Local encoders: a tiny SigLIP loaded through the real-weights path, and the bundled e5."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_siglip

from assetlib.config import load_settings
from assetlib.encoders.base import EncoderError, EncoderUnavailable
from assetlib.encoders.e5 import E5Encoder
from assetlib.encoders.registry import availability, clear_cache, get_encoder, parse_spec
from assetlib.encoders.siglip import SiglipEncoder
from assetlib.faces.serve import free_port


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    return tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip")


@pytest.fixture(scope="module")
def siglip(siglip_dir):
    return SiglipEncoder(str(siglip_dir), batch_size=3)


def test_tiny_siglip_gives_unit_vectors_of_its_dimension(siglip):
    assert siglip.info.name == "siglip:tiny-test" and siglip.info.dim == 32
    texts = siglip.encode_texts(["a red chair", "a blue car", "a tree", "a mug"], "en")
    images = siglip.encode_images([Image.new("RGB", (48, 40), (i * 60, 20, 90)) for i in range(5)])
    assert texts.shape == (4, 32) and images.shape == (5, 32)
    assert texts.dtype == images.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, rtol=1e-5)
    assert siglip.encode_texts(["一把红色的椅子"], "chinese").shape == (1, 32)


def test_tokenizer_is_called_with_fixed_max_length_padding(siglip, monkeypatch):
    calls = []
    original = siglip.tokenizer.__call__

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(type(siglip.tokenizer), "__call__", lambda self, *a, **k: spy(*a, **k))
    siglip.encode_texts(["a red chair", "a much longer caption about a blue car with four wheels"], "en")
    assert calls and all(c["padding"] == "max_length" and c["max_length"] == siglip.max_length for c in calls)
    tokens = siglip.tokenize(["a", "a much longer caption"])["input_ids"]
    assert tokens.shape == (2, siglip.max_length)  # both padded to the same fixed length


def test_rgba_render_and_its_white_background_rgb_embed_alike(siglip):
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[10:30, 10:30] = (200, 30, 30, 255)
    render = Image.fromarray(rgba, "RGBA")
    on_white = Image.new("RGB", (40, 40), (255, 255, 255))
    on_white.paste(render, mask=render.split()[3])
    a, b = siglip.encode_images([render, on_white])
    np.testing.assert_allclose(a, b, atol=1e-6)
    on_black = render.convert("RGB")  # what dropping the alpha channel would give
    assert not np.allclose(a, siglip.encode_images([on_black])[0], atol=1e-3)


def test_asset_vector_is_the_normalised_mean_of_its_views(siglip):
    views = [Image.new("RGB", (30, 30), (i * 40, 80, 120)) for i in range(4)]
    per_view = siglip.encode_images(views)
    pooled = siglip.encode_asset_views([views])[0]
    expected = per_view.mean(axis=0)
    np.testing.assert_allclose(pooled, expected / np.linalg.norm(expected), rtol=1e-5)


def test_empty_texts_and_unsupported_languages_are_refused(siglip):
    with pytest.raises(EncoderError, match="empty"):
        siglip.encode_texts(["  "], "en")
    with pytest.raises(ValueError, match="not 'de'"):
        siglip.encode_texts(["ein Stuhl"], "de")


def test_e5_ranks_the_english_paraphrase_of_a_chinese_query_first():
    e5 = E5Encoder()
    query = e5.encode_texts(["一把红色的木椅子"], "zh", role="query")[0]
    passages = e5.encode_texts(
        ["a red wooden chair", "the stock market fell sharply today", "a blue car parked on the street"], "en"
    )
    scores = passages @ query
    assert scores.argmax() == 0 and scores[0] > scores[1] + 0.05
    assert e5.info.dim == 384 and e5.info.modalities == frozenset({"text"})
    with pytest.raises(EncoderError, match="text only"):
        e5.encode_images([Image.new("RGB", (8, 8))])


def test_registry_reports_availability_with_reasons(siglip_dir, tmp_path, monkeypatch):
    settings = load_settings(environ={}, siglip_model=str(siglip_dir))
    status = {a.algorithm: a for a in availability(settings)}
    assert status["siglip"].usable and status["e5"].usable
    assert not status["qwen"].usable and "DASHSCOPE_API_KEY" in status["qwen"].reason
    offline = load_settings(environ={}, siglip_model="google/siglip-base-patch16-224")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    siglip = {a.algorithm: a for a in availability(offline)}["siglip"]
    assert not siglip.usable and "not in the Hugging Face cache" in siglip.reason
    assert "assetlib models fetch google/siglip-base-patch16-224" in siglip.reason
    with pytest.raises(EncoderUnavailable, match="not in the Hugging Face cache"):
        get_encoder("siglip", offline)
    # No offline flag, no hub answering: usable by downloading, and refused at once when tried.
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    siglip = {a.algorithm: a for a in availability(offline)}["siglip"]
    assert siglip.usable and "downloads on first use" in siglip.reason
    with pytest.raises(EncoderUnavailable, match="not reachable"):
        get_encoder("siglip", offline)
    missing = load_settings(environ={}, siglip_model=str(tmp_path / "nowhere"))
    assert "does not exist" in {a.algorithm: a for a in availability(missing)}["siglip"].reason
    with pytest.raises(ValueError, match="valid: siglip, qwen, e5"):
        parse_spec("clip", settings)
    clear_cache()
    assert get_encoder("siglip", settings) is get_encoder(f"siglip:{siglip_dir}", settings)


def test_e5_caption_vectors_are_embedded_once_and_read_back_by_another_process_alike(tmp_path):
    from assetlib.encoders.e5 import E5Encoder

    first = E5Encoder(cache_dir=tmp_path)
    captions = ["a red chair with four legs", "一把红色的椅子", "a red chair with four legs"]
    computed = first.encode_texts(captions, "en")
    again = E5Encoder(cache_dir=tmp_path)  # a later stage: reads the file the first one wrote

    def refuse(*args, **kwargs):
        raise AssertionError("a cached caption was embedded again")

    again._embed = refuse  # type: ignore[method-assign]
    np.testing.assert_array_equal(again.encode_texts(captions, "en"), computed)
    assert np.allclose(computed[0], computed[2])
    with pytest.raises(AssertionError, match="embedded again"):
        again.encode_texts(["a seat for one person"], "en", role="query")  # queries are never cached
    uncached = E5Encoder()
    np.testing.assert_allclose(uncached.encode_texts(captions, "en"), computed, atol=1e-6)
