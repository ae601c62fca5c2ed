"""SearchService directly: fusion depth and ties, language resolution, layout choice, top_k bounds."""

from __future__ import annotations

import pytest

import assetlib.search.service as service_module
from assetlib.search.fusion import FUSION_DEPTH, RRF_K, rrf_fuse
from assetlib.search.service import AlgorithmUnavailable, SearchError, SearchService
from assetlib.store.knn import StoreHit
from assetlib.vocab import MAX_TOP_K, ImageLayout


def _hit(asset_id: str, score: float) -> StoreHit:
    return StoreHit(asset_id, score, None, None, None, None, None, None, 8, False)


def test_fusion_sums_reciprocal_ranks_and_breaks_ties_by_asset_id():
    rankings = {
        "text_to_text": [_hit("b", 0.9), _hit("a", 0.8), _hit("c", 0.7)],
        "text_to_image": [_hit("a", 0.6), _hit("b", 0.95), _hit("d", 0.5)],
    }
    fused = rrf_fuse(rankings, top_k=4)
    # a and b: one first place and one second place each, so equal scores; the tie goes by id.
    assert [h.asset_id for h, _, _ in fused] == ["a", "b", "c", "d"]
    scores = {h.asset_id: s for h, s, _ in fused}
    assert scores["a"] == scores["b"] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert scores["c"] == pytest.approx(1 / (RRF_K + 3)) and scores["c"] == scores["d"]
    best_b = next(h for h, _, _ in fused if h.asset_id == "b")
    assert best_b.score == 0.95  # the hit kept is the asset's best-scoring one
    assert dict((h.asset_id, src) for h, _, src in fused)["a"] == ("text_to_text", "text_to_image")
    assert len(rrf_fuse(rankings, top_k=2)) == 2


@pytest.fixture(scope="module")
def service(demo_world):
    with SearchService(demo_world.settings) as svc:
        yield svc


def _spy_fetches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record how many rows each store search asks for (knn's k is its 5th argument, knn_pooled's 4th)."""
    fetched: list[int] = []
    knn, knn_pooled = service_module.knn, service_module.knn_pooled

    def knn_spy(conn, tables, kind, vector, k, *args, **kwargs):
        fetched.append(k)
        return knn(conn, tables, kind, vector, k, *args, **kwargs)

    def pooled_spy(conn, tables, vector, k, *args, **kwargs):
        fetched.append(k)
        return knn_pooled(conn, tables, vector, k, *args, **kwargs)

    monkeypatch.setattr(service_module, "knn", knn_spy)
    monkeypatch.setattr(service_module, "knn_pooled", pooled_spy)
    return fetched


def test_fused_searches_fetch_beyond_the_final_k_and_single_ones_do_not(service, monkeypatch):
    fetched = _spy_fetches(monkeypatch)
    single = service.search_text("a red chair", "siglip", "text_to_image", top_k=5)
    assert fetched == [5] and len(single.hits) == 5
    fetched.clear()
    fused = service.search_text("a red chair", "siglip", "fused", top_k=5)
    assert fetched == [5 * FUSION_DEPTH, 5 * FUSION_DEPTH] and len(fused.hits) == 5
    assert all(h.sources for h in fused.hits) and fused.mode == "fused"


@pytest.mark.parametrize(
    ("query", "language", "expected"),
    [
        ("a red chair", "auto", "en"),
        ("一把红色的椅子", "auto", "zh"),
        ("红色 chair", "auto", "zh"),  # any Han ideograph makes a query Chinese
        ("a red chair", "english", "en"),
        ("a red chair", "chinese", "zh"),  # asked for explicitly: not second-guessed
        ("一把椅子", "en", "en"),
    ],
)
def test_language_is_detected_or_taken_as_asked(service, query, language, expected):
    result = service.search_text(query, "e5", language=language, top_k=3)
    assert result.language == expected and len(result.hits) == 3


def test_unknown_languages_modes_algorithms_and_bounds_are_client_errors(service):
    with pytest.raises(SearchError, match="valid: auto, english, chinese"):
        service.search_text("a chair", "e5", language="french")
    with pytest.raises(SearchError, match="needs an image query"):
        service.search_text("a chair", "siglip", "image_to_image")
    with pytest.raises(SearchError, match="needs an image query"):
        service.search_text("a chair", "siglip", "image_to_text")
    with pytest.raises(SearchError, match="no image"):
        service.search_images([], "siglip")
    with pytest.raises(SearchError, match="valid: siglip, qwen, e5"):
        service.search_text("a chair", "clip")
    with pytest.raises(SearchError, match="embeds text only"):
        service.search_text("a chair", "e5", "text_to_image")
    for k in (0, -1, MAX_TOP_K + 1):
        with pytest.raises(SearchError, match=f"between 1 and {MAX_TOP_K}"):
            service.search_text("a chair", "e5", top_k=k)
    with pytest.raises(SearchError, match="the query is empty"):
        service.search_text("  \n ", "e5")


def test_top_k_defaults_to_the_setting_and_reaches_the_maximum(service, demo_world):
    assert len(service.search_text("a chair", "e5").hits) == demo_world.settings.default_top_k
    # The library has 24 assets: asking for the maximum returns every one, each once.
    hits = service.search_text("a chair", "e5", top_k=MAX_TOP_K).hits
    assert len(hits) == len({h.asset_id for h in hits}) == len(demo_world.assets)


def test_the_layout_follows_the_rule_and_requests_it_cannot_serve_are_refused(service):
    # IMAGE_LAYOUT=pooled (the default) and no per-view index: per-asset candidates, re-ranked by view.
    result = service.search_text("a red chair", "siglip", "text_to_image", top_k=4)
    assert result.layout == ImageLayout.POOLED and all(h.matched_view is not None for h in result.hits)
    views = service.search_text("a red chair", "siglip", "text_to_image", top_k=4, layout="views")
    assert views.layout == ImageLayout.VIEWS and all(h.matched_view is not None for h in views.hits)
    means = service.search_text("a red chair", "siglip", "text_to_image", top_k=4, layout="asset")
    assert means.layout == ImageLayout.ASSET and all(h.matched_view is None for h in means.hits)
    # Pooled re-ranks its candidates exactly by view, so its scores are the per-view (views) ones.
    exact = {h.asset_id: h.score for h in views.hits}
    assert all(abs(exact[h.asset_id] - h.score) < 1e-3 for h in result.hits if h.asset_id in exact)
    assert service.search_text("a red chair", "siglip", top_k=4).layout is None  # captions only
    fused_encoder = service.search_text("a red chair", "qwen", "text_to_image", top_k=4)
    assert fused_encoder.layout == ImageLayout.ASSET
    with pytest.raises(SearchError, match="one fused vector per asset"):
        service.search_text("a red chair", "qwen", "text_to_image", layout="pooled")
    with pytest.raises(SearchError, match="unknown layout 'sideways'; valid: views, pooled, asset"):
        service.search_text("a red chair", "siglip", "text_to_image", layout="sideways")


def test_an_algorithm_without_a_key_is_unavailable_not_a_client_error(demo_world):
    keyless = demo_world.settings.model_copy(update={"dashscope_api_key": None})
    with SearchService(keyless) as svc, pytest.raises(AlgorithmUnavailable, match="DASHSCOPE_API_KEY"):
        svc.search_text("a chair", "qwen")


def test_a_query_asked_again_is_served_from_the_cache_with_the_same_vector(demo_world):
    from PIL import Image

    with SearchService(demo_world.settings) as svc:
        encoder = svc.encoder("siglip")
        calls = {"texts": 0, "images": 0}
        original_texts, original_images = encoder.encode_texts, encoder.encode_images

        def count_texts(*args, **kwargs):
            calls["texts"] += 1
            return original_texts(*args, **kwargs)

        def count_images(*args, **kwargs):
            calls["images"] += 1
            return original_images(*args, **kwargs)

        encoder.encode_texts, encoder.encode_images = count_texts, count_images  # type: ignore[method-assign]
        try:
            first = svc.search_text("a small red chair", "siglip", "text_to_text", top_k=5)
            again = svc.search_text("a small red chair", "siglip", "text_to_image", top_k=5)
            other = svc.search_text("a small red chair", "siglip", "text_to_text", "en")
            assert calls["texts"] == 1 and first.timings_ms["cached"] == 0
            assert again.timings_ms["cached"] == 1 and again.timings_ms["encode_ms"] == 0
            assert [h.asset_id for h in other.hits][:5] == [h.asset_id for h in first.hits]
            svc.search_text("a small blue chair", "siglip", "text_to_text")
            assert calls["texts"] == 2  # another text is encoded
            view = Image.open(demo_world.assets[0].view_paths[0]).convert("RGB")
            svc.search_images([view], "siglip", "image_to_image")
            svc.search_images([view.copy()], "siglip", "image_to_text")  # same pixels, another object
            assert calls["images"] == 1
            svc.search_images([view.rotate(90)], "siglip", "image_to_image")
            assert calls["images"] == 2 and svc.query_cache.hits == 3  # two texts and one image
        finally:
            encoder.encode_texts, encoder.encode_images = original_texts, original_images  # type: ignore[method-assign]


def test_the_query_cache_forgets_the_oldest_and_keys_on_the_encoder_version():
    import numpy as np

    from assetlib.encoders.base import EncoderInfo
    from assetlib.search.query_cache import QueryCache, text_key

    cache = QueryCache(max_entries=2)
    v1 = EncoderInfo("siglip:a", "siglip", "a", 2, frozenset({"text"}), ("en",), version="1")
    v2 = EncoderInfo("siglip:a", "siglip", "a", 2, frozenset({"text"}), ("en",), version="2")
    cache.put(text_key(v1, "one", "en", "query"), np.ones(2))
    cache.put(text_key(v1, "two", "en", "query"), np.zeros(2))
    assert cache.get(text_key(v2, "one", "en", "query")) is None  # retrained weights: not the same vector
    assert cache.get(text_key(v1, "one", "en", "query")) is not None  # now the most recent
    cache.put(text_key(v1, "three", "en", "query"), np.ones(2))
    assert cache.get(text_key(v1, "two", "en", "query")) is None  # the oldest went
    vector = cache.get(text_key(v1, "three", "en", "query"))
    assert vector is not None and not vector.flags.writeable


def test_an_encoder_dropped_under_a_running_service_is_unavailable_not_a_crash(
    assetlib_home, tmp_path, fake_dashscope
):
    from conftest import embedded_library

    from assetlib.store.schema import drop_encoder

    _, settings = embedded_library(
        tmp_path, assetlib_home, fake_dashscope.base_url, size=6, seed=9, prefix="drop", algorithms=("e5",)
    )
    with SearchService(settings) as svc:
        assert svc.search_text("a red chair", "e5", top_k=3).hits  # its tables are now remembered
        with svc.db.connection() as conn:
            assert drop_encoder(conn, "e5:multilingual-e5-small")
        with pytest.raises(AlgorithmUnavailable, match="no vectors"):
            svc.search_text("a blue car", "e5", top_k=3)
