"""SigLIP training: held-out split, a saved model the encoder loads, resuming, determinism."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

import assetlib.train.trainer as trainer
from assetlib.encoders.siglip import SiglipEncoder
from assetlib.library.demo.generator import write_demo_library
from assetlib.library.readers import LibrarySource, read_library
from assetlib.media.render import RenderSettings
from assetlib.train.data import GroupBatches, encode_assets, group_key
from assetlib.train.init_model import TINY
from assetlib.train.trainer import TrainConfig, ensure_trained, train_siglip

CFG = TrainConfig(
    name="tiny-train",
    size=replace(TINY, vocab_size=700),
    batch_size=8,
    max_steps=8,
    eval_every=4,
    checkpoint_every=2,
    warmup_steps=2,
    val_fraction=0.25,
    seed=3,
    max_seconds=600,
)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    write_demo_library(root, size=32, seed=2, render=RenderSettings(size=32, supersample=1), progress=False)
    return read_library(LibrarySource.at(root)).assets


@pytest.fixture(scope="module")
def trained(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    return out, train_siglip(assets, out, CFG, progress=False)


def test_trained_model_is_saved_like_any_siglip_and_labelled(trained):
    out, result = trained
    encoder = SiglipEncoder(str(result.model_dir))
    assert encoder.info.name == "siglip:tiny-train" and encoder.info.languages == ("en", "zh")
    card = json.loads((result.model_dir / "assetlib.json").read_text())
    assert "NOT Google's" in card["description"] and card["training"]["steps"] == 8
    assert "Not Google's SigLIP" in (result.model_dir / "README.md").read_text()
    assert set(card["heldout_metrics"]) >= {
        "text_to_image_object_r@10_en",
        "text_to_image_object_r@10_zh",
        "image_to_text_r@10_en",
        "image_to_image_r@10",
        "chance_object_r@10",
    }
    assert (out / "training_curves.png").stat().st_size > 1000
    assert [h["step"] for h in result.history] == list(range(1, 9))
    assert all(np.isfinite(h["loss"]) and h["grad_norm"] >= 0 for h in result.history)
    assert "text_to_image_view_r@10_en" in result.history[3]  # validated every 4 steps


def test_validation_assets_are_never_trained_on(trained, assets):
    out, _ = trained
    split = json.loads((out / "split.json").read_text())
    assert not set(split["train"]) & set(split["validation"])
    assert len(split["validation"]) == 8 and len(split["train"]) == 24


def test_batches_never_hold_two_assets_of_one_caption_group(assets):
    import torch

    def pixels(images):  # the batching logic needs shapes, not a real processor
        return {"pixel_values": torch.zeros(len(images), 3, 4, 4)}

    def tokens(texts):
        return {"input_ids": torch.zeros(len(texts), 4, dtype=torch.long)}

    data = encode_assets(assets, pixels, tokens)
    batches = iter(GroupBatches(data, batch_size=16, languages=("en", "zh"), seed=0))
    for _ in range(20):
        views, owners, languages = next(batches)
        groups = [group_key(data.assets[a]) for a in owners]
        assert len(set(groups)) == len(groups)
        assert all(data.view_owner[v] == a for v, a in zip(views, owners, strict=True))
        assert set(languages) <= {"en", "zh"}


def test_an_interrupted_run_resumes_from_its_checkpoint_and_matches(trained, assets, tmp_path, monkeypatch):
    _, uninterrupted = trained
    calls = {"n": 0}
    original = trainer._sigmoid_loss

    def interrupt_at_step_5(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "_sigmoid_loss", interrupt_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_siglip(assets, tmp_path, CFG, progress=False)
    assert (tmp_path / "work" / "checkpoint.pt").exists() and not (tmp_path / "model").exists()
    monkeypatch.setattr(trainer, "_sigmoid_loss", original)
    resumed = train_siglip(assets, tmp_path, CFG, progress=False)
    assert resumed.resumed_from == 4 and resumed.steps == 8
    # Same seed, same batches, same state: the same curve and the same held-out metrics, within noise.
    np.testing.assert_allclose(
        [h["loss"] for h in resumed.history], [h["loss"] for h in uninterrupted.history], rtol=2e-3
    )
    for key, value in uninterrupted.metrics.items():
        assert abs(resumed.metrics[key] - value) <= 0.05, key


def test_a_second_run_reuses_the_trained_model(assets, tmp_path):
    first = ensure_trained(assets, tmp_path, replace(CFG, max_steps=2), progress=False)
    again = ensure_trained(assets, tmp_path, replace(CFG, max_steps=2), progress=False)
    assert not first.reused and again.reused and again.metrics == pytest.approx(first.metrics, abs=1e-4)
    other = ensure_trained(assets, tmp_path, replace(CFG, max_steps=3), progress=False)
    assert not other.reused and other.steps == 3


def test_short_attribute_phrases_are_trained_on_when_asked(assets):
    import torch

    data = encode_assets(
        assets,
        lambda images: {"pixel_values": torch.zeros(len(images), 3, 4, 4)},
        lambda texts: {"input_ids": torch.zeros(len(texts), 4, dtype=torch.long)},
    )
    assert data.has_caption["en_short"].all() and data.has_caption["zh_short"].all()
    always = iter(GroupBatches(data, batch_size=8, languages=("en", "zh"), seed=0, short_rate=1.0))
    never = iter(GroupBatches(data, batch_size=8, languages=("en", "zh"), seed=0, short_rate=0.0))
    assert all(lang.endswith("_short") for lang in next(always)[2])
    assert not any(lang.endswith("_short") for lang in next(never)[2])
