"""The view loader: worker processes give the very vectors the inline path gives; bad views fail
their asset only; every step of the pipeline is timed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from small_demo import small_demo_library
from tiny_models import tiny_siglip

from assetlib.embedding.loader import STEPS, ViewLoader, prepare
from assetlib.embedding.local import embed_assets
from assetlib.embedding.shards import encoder_dir, finished_shards
from assetlib.encoders.siglip import SiglipEncoder

N_ASSETS = 12


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return small_demo_library(tmp_path_factory.mktemp("lib"), N_ASSETS, seed=11)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return SiglipEncoder(str(tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip")), batch_size=7)


def _shards(folder):
    """Every finished shard's metadata and vectors, in shard order."""
    out = []
    for done in finished_shards(folder):
        stem = done.name.removesuffix(".done.json")
        out.append((pd.read_parquet(folder / f"{stem}.parquet"), np.load(folder / f"{stem}.npy")))
    return out


@pytest.mark.slow
def test_two_workers_give_the_same_vectors_as_none(library, encoder, tmp_path):
    inline = embed_assets(library, encoder, tmp_path / "w0", shard_size=5, progress=False, workers=0)
    pooled = embed_assets(library, encoder, tmp_path / "w2", shard_size=5, progress=False, workers=2)
    assert (inline.workers, pooled.workers) == (0, 2)
    assert inline.rows_computed == pooled.rows_computed == N_ASSETS * 11
    a = _shards(encoder_dir(tmp_path / "w0", encoder.info.name))
    b = _shards(encoder_dir(tmp_path / "w2", encoder.info.name))
    assert len(a) == len(b) == 3
    for (meta_a, vec_a), (meta_b, vec_b) in zip(a, b, strict=True):
        pd.testing.assert_frame_equal(meta_a, meta_b)
        np.testing.assert_array_equal(vec_a, vec_b)  # bit for bit: the same batches, the same tensors
    # Every step of the view pipeline was timed, in both runs, for every view.
    for summary in (inline, pooled):
        assert set(summary.steps.rates()) >= set(STEPS)
        assert summary.steps.views["model"] == N_ASSETS * 8
        assert summary.steps.bound() in STEPS
        assert summary.views_per_second > 0


def test_a_view_that_cannot_be_decoded_fails_its_asset_only(encoder, tmp_path):
    assets = small_demo_library(tmp_path / "lib", 6, seed=3)
    broken = assets[3]
    broken.view_paths[2].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing
    summary = embed_assets(assets, encoder, tmp_path / "run", shard_size=4, progress=False, workers=1)
    assert [(f.asset_id, f.stage) for f in summary.failures] == [(broken.asset_id, "embed:view")]
    assert "corrupt or truncated PNG" in summary.failures[0].reason
    meta = pd.concat(m for m, _ in _shards(encoder_dir(tmp_path / "run", encoder.info.name)))
    assert broken.asset_id not in set(meta["asset_id"])
    assert meta["asset_id"].nunique() == len(assets) - 1


def test_the_loader_keeps_job_order_and_reports_bad_files(library, encoder, tmp_path):
    missing = tmp_path / "gone.png"
    paths = [str(p) for p in library[0].view_paths[:3]]
    jobs = [("a", paths[:2]), ("empty", []), ("b", [paths[2], str(missing)])]
    with ViewLoader(encoder.pixel_preprocessor(), workers=0) as loader:
        out = list(loader.map(jobs))
    assert [tag for tag, _ in out] == ["a", "empty", "b"]
    assert out[1][1].batch is None and out[1][1].ok == []
    assert out[2][1].ok == [0] and out[2][1].errors[0][0] == 1 and "cannot read" in out[2][1].errors[0][1]
    alone = prepare(encoder.pixel_preprocessor(), paths[:2])
    np.testing.assert_array_equal(alone.batch["pixel_values"], out[0][1].batch["pixel_values"])
