"""Google's three SigLIP kinds, as hub snapshots under their real ids, loaded the way a user loads them.

The reference is transformers used the way the conversion scripts use it (tokenizer with right
padding and input ids only, `padding="max_length"`, 64 tokens, lowercase for SigLIP 2; the image
processor's whole output): assetlib must match it to cos 0.9999 with the hub offline, and keep
matching when a re-saved tokenizer config says left padding and returns a mask.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_google import BUILDERS, NAFLEX, SIGLIP, SIGLIP2, place_in_hub_cache, resave_like_a_finetune

from assetlib.config import load_settings
from assetlib.encoders.base import EncoderUnavailable
from assetlib.encoders.registry import availability, clear_cache, get_encoder
from assetlib.encoders.siglip import SiglipEncoder

TEXTS = ["A Red Chair with four legs", "一把红色的椅子", "a blue CAR"]
KINDS = {SIGLIP: "siglip", SIGLIP2: "siglip2", NAFLEX: "siglip2-naflex"}


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A private HF cache holding the three kinds under their hub ids, the hub switched off."""
    root = tmp_path_factory.mktemp("hf")
    cache = root / "hub"
    snapshots = {
        repo: place_in_hub_cache(build(root / repo.split("/")[1]), repo, cache)
        for repo, build in BUILDERS.items()
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_CACHE", str(cache))
        patch.setenv("HF_HUB_OFFLINE", "1")
        clear_cache()
        yield cache, snapshots
    clear_cache()


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), (200, 30, 30)), Image.new("RGBA", (24, 48), (20, 90, 200, 255))]


def _reference(snapshot, lowercase: bool) -> tuple[np.ndarray, np.ndarray]:
    """Text and image vectors computed directly with transformers, as the conversion scripts do."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    from assetlib.media.images import to_rgb_on_white

    model = AutoModel.from_pretrained(snapshot).eval()
    tokenizer = AutoTokenizer.from_pretrained(snapshot, padding_side="right", model_input_names=["input_ids"])
    processor = AutoImageProcessor.from_pretrained(snapshot, backend="pil")
    texts = [t.lower() for t in TEXTS] if lowercase else TEXTS
    tokens = tokenizer(texts, padding="max_length", max_length=64, return_tensors="pt")
    assert list(tokens) == ["input_ids"]
    images = processor(images=[to_rgb_on_white(i) for i in _images()], return_tensors="pt")
    with torch.no_grad():
        text = model.get_text_features(**tokens).pooler_output
        image = model.get_image_features(**images).pooler_output
    unit = lambda v: (v / v.norm(dim=-1, keepdim=True)).numpy()  # noqa: E731
    return unit(text), unit(image)


@pytest.mark.parametrize("repo", list(BUILDERS))
def test_each_google_kind_loads_by_hub_id_offline_and_matches_the_reference(hub_cache, repo):
    _, snapshots = hub_cache
    settings = load_settings(environ={}, siglip_model=repo)
    started = time.perf_counter()
    encoder = get_encoder("siglip", settings)
    seconds = time.perf_counter() - started
    assert encoder.kind == KINDS[repo]
    assert encoder.info.dim == 24  # text_config.projection_size, not the text tower's hidden size (32)
    assert encoder.info.version == snapshots[repo].name  # the snapshot's commit
    assert encoder.info.languages == (("en",) if repo == SIGLIP else ("en", "zh"))
    reference_text, reference_image = _reference(snapshots[repo], lowercase=repo != SIGLIP)
    text = encoder.encode_texts(TEXTS[:1], "en")
    np.testing.assert_array_less(0.9999, (reference_text[:1] * text).sum(axis=1))
    if "zh" in encoder.info.languages:
        both = encoder.encode_texts(TEXTS[1:2], "zh")
        np.testing.assert_array_less(0.9999, (reference_text[1:2] * both).sum(axis=1))
    image = encoder.encode_images(_images())
    np.testing.assert_array_less(0.9999, (reference_image * image).sum(axis=1))
    assert seconds < 60, f"loading a cached hub id took {seconds:.1f}s"  # minutes when the hub is tried


@pytest.mark.parametrize("repo", list(BUILDERS))
def test_a_resaved_tokenizer_config_saying_left_padding_and_a_mask_changes_nothing(hub_cache, repo, tmp_path):
    _, snapshots = hub_cache
    copy = tmp_path / "finetuned-copy"
    shutil.copytree(snapshots[repo], copy)
    resave_like_a_finetune(copy)
    from transformers import AutoTokenizer

    naive = AutoTokenizer.from_pretrained(copy)
    assert naive.padding_side == "left" and "attention_mask" in naive("a chair")  # the trap is armed
    hub = SiglipEncoder(repo)
    resaved = SiglipEncoder(str(copy))
    for language, texts in (("en", TEXTS[:1]), ("en", TEXTS[2:])):
        np.testing.assert_array_less(
            0.9999, (hub.encode_texts(texts, language) * resaved.encode_texts(texts, language)).sum(axis=1)
        )
    # What the trap does when it is not disarmed: the tokenizer config's left padding and mask.
    encoded = naive([t.lower() for t in TEXTS[:1]], padding="max_length", max_length=64, return_tensors="pt")
    with torch.no_grad():
        wrong = resaved.model.get_text_features(**encoded).pooler_output
    wrong = (wrong / wrong.norm(dim=-1, keepdim=True)).numpy()
    assert float((wrong * hub.encode_texts(TEXTS[:1], "en")).sum()) < 0.99


def test_naflex_gets_its_patch_mask_and_shapes_and_max_num_patches(hub_cache):
    encoder = SiglipEncoder(NAFLEX, max_num_patches=32)
    inputs = encoder.preprocess([Image.new("RGB", (64, 16), (1, 2, 3))])
    assert {"pixel_values", "pixel_attention_mask", "spatial_shapes"} <= set(inputs)
    assert inputs["pixel_values"].shape[1] == 32  # a wide image keeps its aspect in up to 32 patches
    assert encoder.encode_images([Image.new("RGB", (64, 16), (1, 2, 3))]).shape == (1, 24)


def test_a_new_snapshot_revision_is_a_new_version(hub_cache, tmp_path):
    cache, snapshots = hub_cache
    first = SiglipEncoder(SIGLIP).info.version
    retrained = BUILDERS[SIGLIP](tmp_path / "retrained", seed=1)
    place_in_hub_cache(retrained, SIGLIP, cache)  # refs/main now names the new commit
    try:
        second = SiglipEncoder(SIGLIP)
        assert second.info.version != first and second.info.name == f"siglip:{SIGLIP}"
    finally:
        (cache / f"models--{SIGLIP.replace('/', '--')}" / "refs" / "main").write_text(snapshots[SIGLIP].name)


def test_a_model_not_in_the_cache_says_how_to_get_it(hub_cache):
    with pytest.raises(EncoderUnavailable) as caught:
        SiglipEncoder("google/siglip2-large-patch16-512")
    message = str(caught.value)
    assert "assetlib models fetch google/siglip2-large-patch16-512" in message
    assert str(hub_cache[0]) in message and "HF_HUB_OFFLINE" in message
    settings = load_settings(environ={}, siglip_model="google/siglip2-large-patch16-512")
    state = next(a for a in availability(settings) if a.algorithm == "siglip")
    assert not state.usable and "assetlib models fetch" in state.reason


def test_availability_describes_each_kind_without_loading_it(hub_cache):
    for repo, kind in KINDS.items():
        state = next(
            a for a in availability(load_settings(environ={}, siglip_model=repo)) if a.algorithm == "siglip"
        )
        assert state.usable and state.dim == 24, state
        assert state.languages == (("en",) if kind == "siglip" else ("en", "zh"))
        assert {"siglip": "SigLIP:", "siglip2": "SigLIP 2 (FixRes)", "siglip2-naflex": "SigLIP 2 (NaFlex)"}[
            kind
        ] in state.note


def test_a_naflex_checkpoint_fine_tunes_through_the_serving_path(hub_cache, tmp_path):
    from assetlib.library.demo.generator import write_demo_library
    from assetlib.library.readers import LibrarySource, read_library
    from assetlib.media.render import RenderSettings
    from assetlib.train.trainer import TrainConfig, train_siglip

    write_demo_library(
        tmp_path / "lib", size=8, seed=2, render=RenderSettings(size=32, supersample=1), progress=False
    )
    assets = read_library(LibrarySource.at(tmp_path / "lib")).assets
    cfg = TrainConfig(
        name="naflex-ft", init=NAFLEX, max_steps=2, batch_size=4, eval_every=1, val_fraction=0.25
    )
    result = train_siglip(assets, tmp_path / "out", cfg, progress=False)
    assert result.steps == 2 and all(np.isfinite(h["loss"]) for h in result.history)
    tuned = SiglipEncoder(str(result.model_dir))
    assert tuned.kind == "siglip2-naflex" and tuned.encode_images(_images()).shape == (2, 24)


def test_a_hub_id_not_in_the_cache_downloads_only_what_a_model_needs(tmp_path, monkeypatch, capsys):
    from fake_hub import FakeHub
    from tiny_google import build_siglip2_fixres

    from assetlib.faces.cli import main

    folder = build_siglip2_fixres(tmp_path / "repo")
    for junk in ("pytorch_model.bin", "flax_model.msgpack", "onnx/model.onnx"):  # what real repos also hold
        (folder / junk).parent.mkdir(exist_ok=True)
        (folder / junk).write_bytes(b"\0" * 4096)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub() as hub:
        commit = hub.add_repo(SIGLIP2, folder)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert main(["models", "fetch", SIGLIP2]) == 0
        fetched = {
            path.rsplit("/", 1)[-1]
            for method, path in hub.requests
            if method == "GET" and "/resolve/" in path
        }
        assert "downloaded" in capsys.readouterr().out
        assert fetched == {p.name for p in folder.iterdir() if p.is_file()} - {
            "pytorch_model.bin",
            "flax_model.msgpack",
        }
        assert main(["models", "fetch", SIGLIP2]) == 0 and "already cached" in capsys.readouterr().out
        hub.requests.clear()
        SiglipEncoder(SIGLIP2)  # cached: loaded without a single request, the hub up and HF_HUB_OFFLINE unset
        assert hub.requests == []
        hub.down = True
        started = time.perf_counter()
        with pytest.raises(EncoderUnavailable, match="answered 503"):
            SiglipEncoder("google/siglip2-giant-opt-patch16-384")
        assert time.perf_counter() - started < 10  # said at once, not after minutes of retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    encoder = SiglipEncoder(SIGLIP2)  # from the cache now, with the hub gone
    assert encoder.info.version == commit and encoder.kind == "siglip2"
