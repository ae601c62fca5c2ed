"""The e5-aligned image tower: trained on a library into frozen e5's space, saved, loaded by the registry,
reused when unchanged, and searched end to end like any algorithm."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from assetlib.config import load_settings
from assetlib.encoders.e5 import E5Encoder
from assetlib.encoders.registry import availability, clear_cache, get_encoder
from assetlib.library.demo.generator import write_demo_library
from assetlib.library.readers import LibrarySource, read_library
from assetlib.media.images import load_rgb
from assetlib.media.render import RenderSettings
from assetlib.train.init_model import TINY
from assetlib.train.lit import LitConfig, ensure_lit, train_lit

CFG = LitConfig(
    name="tiny-lit",
    size=TINY,
    batch_size=8,
    max_steps=6,
    eval_every=3,
    checkpoint_every=3,
    warmup_steps=2,
    val_fraction=0.25,
    seed=4,
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    write_demo_library(root, size=24, seed=6, render=RenderSettings(size=32, supersample=1), progress=False)
    return read_library(LibrarySource.at(root)).assets


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("lit")
    return out, train_lit(assets, out, CFG, progress=False)


def test_the_tower_is_saved_in_its_layout_with_a_card_that_says_what_it_is(trained):
    out, result = trained
    model = result.model_dir
    for name in ("config.json", "model.safetensors", "projection.safetensors", "preprocessor_config.json"):
        assert (model / name).is_file(), name
    card = (model / "README.md").read_text()
    assert "frozen" in card and "Not a pretrained image model" in card
    assert result.steps == 6 and (out / "training_curves.png").is_file()
    assert set(result.metrics) >= {"text_to_image_object_r@10_en", "text_to_image_object_r@10_zh"}


def test_the_registry_loads_it_and_text_is_exactly_e5(trained, assets, tmp_path):
    _, result = trained
    settings = load_settings(environ={}, home=str(tmp_path), e5lit_model=str(result.model_dir))
    clear_cache()
    row = next(a for a in availability(settings) if a.algorithm == "e5lit")
    assert row.usable and row.dim == 384 and "not a pretrained image model" in row.note
    encoder = get_encoder("e5lit", settings)
    assert encoder.info.name == "e5lit:tiny-lit" and encoder.info.embeds_images
    e5 = E5Encoder()
    for role in ("query", "document"):
        ours = encoder.encode_texts(["a seat for one person"], "en", role=role)
        np.testing.assert_allclose(
            ours, e5.encode_texts(["a seat for one person"], "en", role=role), atol=1e-6
        )
    views = encoder.encode_asset_views([assets[0].view_paths[:3]])
    assert views.shape == (1, 384) and abs(float(np.linalg.norm(views)) - 1) < 1e-5


def test_not_trained_yet_says_how(tmp_path):
    settings = load_settings(environ={}, home=str(tmp_path))  # e5lit_model: trained:demo, absent here
    assert settings.e5lit_model == str(tmp_path / "models" / "e5lit-demo" / "model")
    row = next(a for a in availability(settings) if a.algorithm == "e5lit")
    assert not row.usable and "assetlib train --algorithm e5lit" in row.reason


def test_unchanged_is_reused_and_retrained_weights_get_a_new_version(assets, tmp_path):
    from assetlib.encoders.e5lit import E5LitEncoder

    first = ensure_lit(assets, tmp_path, replace(CFG, max_steps=2), progress=False)
    version = E5LitEncoder(first.model_dir).info.version
    again = ensure_lit(assets, tmp_path, replace(CFG, max_steps=2), progress=False)
    assert not first.reused and again.reused
    other = ensure_lit(assets, tmp_path, replace(CFG, max_steps=3), progress=False)
    assert not other.reused and other.steps == 3
    assert E5LitEncoder(other.model_dir).info.version != version  # the embedding stage re-embeds


def test_search_text_to_image_end_to_end(trained, assetlib_home, tmp_path, fake_dashscope):
    from conftest import embedded_library

    from assetlib.search.service import SearchService

    _, result = trained
    clear_cache()
    assets, settings = embedded_library(
        tmp_path,
        assetlib_home,
        fake_dashscope.base_url,
        size=12,
        seed=7,
        prefix="lit",
        algorithms=("e5lit",),
        e5lit_model=str(result.model_dir),
    )
    with SearchService(settings) as service:
        for mode in ("text_to_image", "text_to_text", "fused"):
            found = service.search_text("能在天上飞的东西", "e5lit", mode, top_k=5)
            assert len(found.hits) == 5 and found.encoder == "e5lit:tiny-lit", mode
        view = load_rgb(assets[0].view_paths[1])
        image = service.search_images([view], "e5lit", "image_to_image", top_k=3)
        assert image.hits[0].asset_id == assets[0].asset_id  # an indexed view finds its own asset
