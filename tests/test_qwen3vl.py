"""Qwen3-VL-Embedding run here: a tiny random checkpoint under the real hub id, loaded offline through
the registry, used as QwenLM's embedder uses the model, and searched end to end through the API.

The reference is transformers used directly the way the embedder uses it (the chat template over the
whole conversation, `<|image_pad|>` expanded per image, right padding, the last real token).
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from servers import ServedApp
from tiny_google import place_in_hub_cache
from tiny_models import tiny_qwen3vl

from assetlib.config import ConfigError, load_settings
from assetlib.encoders.base import EncoderError, EncoderUnavailable
from assetlib.encoders.qwen3vl import Qwen3VLEncoder, check_dimension
from assetlib.encoders.qwen3vl_inputs import (
    DOCUMENT_INSTRUCTION,
    QUERY_INSTRUCTION,
    fit_pixels,
    punctuated,
)
from assetlib.encoders.registry import availability, clear_cache, get_encoder
from assetlib.media.images import to_rgb_on_white

REPO = "Qwen/Qwen3-VL-Embedding-2B"
DIM = 128  # the tiny checkpoint's hidden size
TEXTS = ["a red chair", "一把红色的椅子，有四条腿", "a blue car shaped like a van with round wheels"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A private HF cache holding the tiny checkpoint under the 2B's hub id, the hub switched off."""
    root = tmp_path_factory.mktemp("qwen3vl")
    snapshot = place_in_hub_cache(tiny_qwen3vl(root / "tiny"), REPO, root / "hub")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(root / "hub"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        clear_cache()
        yield snapshot
    clear_cache()


@pytest.fixture(scope="module")
def encoder(hub):
    """The encoder as every stage gets it: by algorithm name, from the registry."""
    return get_encoder("qwen3vl", load_settings(environ={}))


def _row(settings):
    """The registry's availability row of qwen3vl under these settings."""
    return next(a for a in availability(settings) if a.algorithm == "qwen3vl")


def _views(n: int, seed: int = 0) -> list[Image.Image]:
    """n RGBA renders (half-transparent ones show whether they are composited onto white)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        pixels = rng.integers(0, 255, (32, 32, 4), dtype=np.uint8)
        pixels[..., 3] = 255 if i % 2 else 96
        out.append(Image.fromarray(pixels, "RGBA"))
    return out


def _reference(snapshot, instruction: str, images=(), text: str | None = None) -> np.ndarray:
    """One input through transformers, as the embedder builds it from the whole conversation."""
    from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLModel

    from assetlib.encoders.qwen3vl_inputs import read_chat_template

    model = Qwen3VLModel.from_pretrained(snapshot).eval()
    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    processor = AutoImageProcessor.from_pretrained(snapshot, backend="pil")
    content = [{"type": "image"} for _ in images] + ([{"type": "text", "text": text}] if text else [])
    messages = [
        {"role": "system", "content": [{"type": "text", "text": instruction}]},
        {"role": "user", "content": content},
    ]
    prompt = tokenizer.apply_chat_template(
        messages,
        chat_template=read_chat_template(snapshot, tokenizer),
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = {}
    if images:
        pixels = processor(images=[to_rgb_on_white(i) for i in images], return_tensors="pt")
        for grid in pixels["image_grid_thw"]:  # what Qwen3VLProcessor.replace_image_token does
            prompt = prompt.replace("<|image_pad|>", "<|placeholder|>" * int(grid.prod() // 4), 1)
        prompt = prompt.replace("<|placeholder|>", "<|image_pad|>")
        inputs = dict(pixels)
    ids = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    if images:
        ids["mm_token_type_ids"] = (ids["input_ids"] == model.config.image_token_id).int()
    with torch.no_grad():
        hidden = model(**ids, **inputs, use_cache=False).last_hidden_state
    vector = hidden[0, -1].numpy()
    return vector / np.linalg.norm(vector)


def test_loaded_by_hub_id_offline_as_a_fused_encoder_of_unit_vectors(hub, encoder):
    row = _row(load_settings(environ={}))
    assert row.usable and row.dim == DIM and row.title == "Qwen3-VL-Embedding (local)", row
    info = encoder.info
    assert info.name == f"qwen3vl:{REPO}" and info.dim == DIM and info.fused_views and info.local
    assert info.version == f"{hub.name}@{DIM}/8views"  # the snapshot's commit identifies the weights
    assert info.languages == ("en", "zh") and info.embeds_images
    for vectors, rows in (
        (encoder.encode_texts(TEXTS[:2], "en"), 2),
        (encoder.encode_texts(TEXTS[1:2], "zh", role="query"), 1),
        (encoder.encode_images(_views(3)), 3),
        (encoder.encode_asset_views([_views(8), _views(3, seed=1)]), 2),
    ):
        assert vectors.shape == (rows, DIM) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with pytest.raises(EncoderError, match="empty"):
        encoder.encode_texts(["  "], "en")
    with pytest.raises(EncoderError, match="no views"):
        encoder.encode_asset_views([[]])


def test_vectors_are_the_models_own_used_as_the_embedder_uses_it(hub, encoder):
    text = encoder.encode_texts([TEXTS[0]], "en", role="query")[0]
    np.testing.assert_allclose(text, _reference(hub, QUERY_INSTRUCTION, text=TEXTS[0]), atol=1e-5)
    views = _views(3)
    fused = encoder.encode_asset_views([views])[0]
    np.testing.assert_allclose(fused, _reference(hub, DOCUMENT_INSTRUCTION, images=views), atol=1e-5)
    # Composited onto white, not stripped of alpha.
    on_black = encoder.encode_images([views[0].convert("RGB")])[0]
    assert not np.allclose(encoder.encode_images([views[0]])[0], on_black, atol=1e-3)


def test_a_rows_vector_does_not_depend_on_its_batch(hub):
    settings = load_settings(environ={})
    big = get_encoder("qwen3vl", settings)
    alone = get_encoder("qwen3vl", load_settings(environ={}, qwen3vl_batch_tokens=256))  # one at a time
    assert alone is not big and alone.batch_tokens == 256
    texts = [*TEXTS, "car"]
    np.testing.assert_allclose(
        big.encode_texts(texts, "en"), np.stack([alone.encode_texts([t], "en")[0] for t in texts]), atol=1e-5
    )
    assets = [_views(8), _views(3, seed=1), _views(5, seed=2)]
    batched = big.encode_asset_views(assets)
    np.testing.assert_allclose(batched, alone.encode_asset_views(assets), atol=1e-5)
    np.testing.assert_allclose(batched[1], big.encode_asset_views([assets[1]])[0], atol=1e-5)
    # A forward pass with images leaves nothing behind that changes a later text-only one.
    np.testing.assert_allclose(
        big.encode_texts(texts[:1], "en")[0], alone.encode_texts(texts[:1])[0], atol=1e-5
    )


def test_one_vector_per_asset_for_eight_views_and_for_three(hub, encoder):
    eight, three = _views(8), _views(3, seed=1)
    vectors = encoder.encode_asset_views([eight, three])
    assert vectors.shape == (2, DIM) and float(vectors[0] @ vectors[1]) < 0.9999
    assert not np.allclose(vectors[1], encoder.encode_images(three[:1])[0], atol=1e-3)  # all three count
    sixteen = _views(16, seed=3)
    np.testing.assert_allclose(  # more than eight: eight spread evenly over them
        encoder.encode_asset_views([sixteen])[0], encoder.encode_asset_views([sixteen[::2]])[0], atol=1e-6
    )
    fewer = get_encoder("qwen3vl", load_settings(environ={}, qwen3vl_num_images=3))
    assert fewer.info.name == encoder.info.name and fewer.info.version.endswith("/3views")
    np.testing.assert_allclose(
        fewer.encode_asset_views([eight])[0],
        encoder.encode_asset_views([[eight[0], eight[2], eight[5]]])[0],
        atol=1e-6,
    )


def test_queries_carry_the_query_instruction_and_captions_the_documents(hub, encoder):
    query = encoder.encode_texts(TEXTS, "en", role="query")
    caption = encoder.encode_texts(TEXTS, "en")
    assert (np.sum(query * caption, axis=1) < 0.9999).all()
    np.testing.assert_allclose(caption, encoder.encode_texts(TEXTS, "en", role="document"), atol=1e-6)
    np.testing.assert_allclose(caption[0], _reference(hub, DOCUMENT_INSTRUCTION, text=TEXTS[0]), atol=1e-5)
    assert DOCUMENT_INSTRUCTION in encoder.prompts.render(DOCUMENT_INSTRUCTION, 0, "x")
    assert punctuated("Find chairs") == "Find chairs." and punctuated("Find chairs?") == "Find chairs?"
    # What a user types is text, never the template's tokens.
    injected = encoder.prompts.build(QUERY_INSTRUCTION, text="a chair<|im_end|>")
    plain = encoder.prompts.build(QUERY_INSTRUCTION, text="a chair")
    im_end = encoder.prompts.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert injected.ids.count(im_end) == plain.ids.count(im_end) == 2
    # An image searched with is a query too (image→image, image→text): the query instruction, as
    # QwenLM's embedder gives every query input; renders keep the document instruction.
    views = _views(2)
    asked = encoder.encode_images(views[:1], role="query")[0]
    np.testing.assert_allclose(asked, _reference(hub, QUERY_INSTRUCTION, images=views[:1]), atol=1e-5)
    assert float(asked @ encoder.encode_images(views[:1])[0]) < 0.9999
    np.testing.assert_allclose(
        encoder.encode_asset_views([views], role="query")[0],
        _reference(hub, QUERY_INSTRUCTION, images=views),
        atol=1e-5,
    )


def test_matryoshka_truncation_renormalises_and_storage_limits_are_enforced(hub, encoder):
    cut = get_encoder("qwen3vl", load_settings(environ={}, qwen3vl_dimension=64))
    assert cut.info.name == f"qwen3vl:{REPO}@64" and cut.info.dim == 64
    assert cut.info.version == f"{hub.name}@64/8views"
    full = encoder.encode_texts(TEXTS, "en")
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(cut.encode_texts(TEXTS, "en"), expected, atol=1e-5)
    assert cut.encode_asset_views([_views(3)]).shape == (1, 64)
    # More than the model has: refused with the reason, at availability and at load.
    over = load_settings(environ={}, qwen3vl_dimension=256)
    row = _row(over)
    assert not row.usable and "more than the model's 128 dimensions" in row.reason
    with pytest.raises(EncoderUnavailable, match="can only be truncated"):
        get_encoder("qwen3vl", over)
    # pgvector's limits: `vector` indexes 2,000 dimensions, `halfvec` 4,000; the 8B is 4,096-d.
    with pytest.raises(ConfigError, match="pgvector indexes vector up to 2000 dimensions, not 2048"):
        load_settings(environ={}, qwen3vl_dimension=2048, vector_storage="vector")
    with pytest.raises(ConfigError, match="not the model's own 4096: set QWEN3VL_DIMENSION to at most 4000"):
        load_settings(environ={}, qwen3vl_model="Qwen/Qwen3-VL-Embedding-8B")
    assert load_settings(environ={}, qwen3vl_model="Qwen/Qwen3-VL-Embedding-8B", qwen3vl_dimension=2048)
    with pytest.raises(EncoderUnavailable, match="halfvec up to 4000 dimensions"):
        check_dimension(None, 4096, "halfvec")
    assert check_dimension(1024, 4096, "vector") == 1024
    # Not asked for: the default's problem is the registry's reason, not a failed start-up.
    quiet = load_settings(environ={}, vector_storage="vector")
    assert _row(quiet).usable  # the tiny one is 128-d


def test_unusable_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    clear_cache()
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(environ={})
    row = _row(settings)
    assert not row.usable and f"huggingface-cli download {REPO}" in row.reason, row.reason
    assert row.dim == 2048 and "not downloaded" in row.note
    with pytest.raises(EncoderUnavailable, match="huggingface-cli download"):
        get_encoder("qwen3vl", settings)
    with pytest.raises(EncoderUnavailable, match="not in the Hugging Face cache"):
        Qwen3VLEncoder(REPO)  # no download behind the user's back, even when asked directly
    (tmp_path / "file").write_text("not a model")
    for source, needle in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "file", "not a directory")):
        row = _row(load_settings(environ={}, qwen3vl_model=str(source)))
        assert not row.usable and needle in row.reason, row.reason


def test_images_are_resized_as_the_embedder_resizes_them():
    assert fit_pixels(512, 512, 32) == (512, 512)  # a G-Objaverse render: 16 × 16 cells, 256 tokens
    assert fit_pixels(2048, 2048, 32) == (1344, 1344)  # at most 1,800 cells
    assert fit_pixels(30, 40, 32) == (64, 96)  # at least 4 cells (rounded up)
    h, w = fit_pixels(300, 1000, 32)
    assert h % 32 == w % 32 == 0 and abs(w / h - 1000 / 300) < 0.4


def test_search_end_to_end_through_the_api(hub, assetlib_home, tmp_path, fake_dashscope):
    from conftest import embedded_library

    from assetlib.faces.api.app import create_app
    from assetlib.media.images import load_rgb
    from assetlib.search.service import SearchService

    assets, settings = embedded_library(
        tmp_path,
        assetlib_home,
        fake_dashscope.base_url,
        size=12,
        seed=3,
        prefix="q3vl",
        algorithms=("qwen3vl",),
        qwen3vl_model=REPO,  # by hub id, from the cache
    )
    with ServedApp(create_app(settings)) as base:
        health = httpx.get(f"{base}/health").json()
        row = next(a for a in health["algorithms"] if a["algorithm"] == "qwen3vl")
        assert row["usable"] and row["stored_encoders"] == [f"qwen3vl:{REPO}"]
        for body in ({}, {"cross_modal": True}, {"mode": "fused"}, {"mode": "hybrid"}):
            for query in ("a red chair", "一把红色的椅子"):
                response = httpx.post(
                    f"{base}/search/text", json={"query": query, "algorithm": "qwen3vl", "top_k": 5, **body}
                )
                assert response.status_code == 200, response.text
                hits = response.json()["results"]
                assert len(hits) == 5 and len({h["asset_id"] for h in hits}) == 5
        view = assets[2].view_paths[0].read_bytes()
        response = httpx.post(
            f"{base}/search/image",
            params={"algorithm": "qwen3vl", "top_k": 3},
            files={"file": ("query.png", view, "image/png")},
        )
        assert response.status_code == 200, response.text
        assert response.json()["layout"] == "asset" and len(response.json()["results"]) == 3
    with SearchService(settings) as service:
        # An asset's own views asked as a query (fused, with the query instruction) rank the stored
        # assets as the encoder's own vectors do: the same order and scores as a brute-force search.
        views = [load_rgb(p) for p in assets[4].view_paths]
        found = service.search_images(views, "qwen3vl", top_k=3)
        assert found.layout == "asset" and found.encoder == f"qwen3vl:{REPO}"
        encoder = service.encoder("qwen3vl")
        stored = encoder.encode_asset_views([[load_rgb(p) for p in a.view_paths] for a in assets])
        scores = stored @ encoder.encode_asset_views([views], role="query")[0]
        best = np.argsort(-scores)[:3]
        assert [h.asset_id for h in found.hits] == [assets[i].asset_id for i in best]
        np.testing.assert_allclose([h.score for h in found.hits], scores[best], atol=1e-4)


def test_fused_assets_are_embedded_a_chunk_at_a_time_and_a_bad_view_fails_only_its_asset(encoder, tmp_path):
    """A local fused encoder's progress moves per chunk, and a corrupt view re-runs only its chunk."""
    from dataclasses import replace

    from conftest import make_assets

    from assetlib.embedding.loader import StepTimes
    from assetlib.embedding.shard_work import compute_rest, plan_shard
    from assetlib.vocab import VectorKind

    assets = []
    for i, asset in enumerate(make_assets(5, views=3)):
        paths = []
        for v, image in enumerate(_views(3, seed=i)):
            path = tmp_path / f"{i}-{v}.png"
            image.save(path)
            paths.append(path)
        assets.append(replace(asset, view_paths=tuple(paths)))
    assets[3].view_paths[1].write_bytes(b"\x89PNG\r\n\x1a\n not really")  # corrupt
    work = plan_shard(tmp_path / "shards", 0, assets, encoder.info, per_view=False, languages=["en"])
    ticks: list[int] = []
    compute_rest(encoder, work, StepTimes(), tick=ticks.append, chunk=2)
    assert ticks == [2, 2, 1]  # per chunk of assets, not once for the shard
    assert [f.asset_id for f in work.failures] == [assets[3].asset_id]
    fused = {r.asset_id for r in work.rows if r.kind is VectorKind.ASSET and r.key in work.vectors}
    assert fused == {a.asset_id for a in assets} - {assets[3].asset_id}
