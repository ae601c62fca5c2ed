"""Embedding stage: shards, skip-on-rerun, reuse of unchanged rows, kill-and-resume, loading, failures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
from fake_dashscope import FakeDashScopeServer
from small_demo import small_demo_library
from tiny_models import tiny_siglip

from assetlib.embedding.local import embed_assets
from assetlib.embedding.shards import encoder_dir
from assetlib.encoders.qwen import QwenEncoder, to_data_uri
from assetlib.encoders.siglip import SiglipEncoder
from assetlib.media.images import load_rgb
from assetlib.store.indexes import IndexParams, ann_indexes
from assetlib.store.populate import load_shards
from assetlib.store.schema import encoder_tables
from assetlib.vocab import ImageLayout, VectorKind

N_ASSETS = 24


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    return root, small_demo_library(root, N_ASSETS, seed=5)


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    return tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip")


def test_shards_are_written_then_skipped_then_partly_reused(library, siglip_dir, tmp_path):
    _, assets = library
    encoder = SiglipEncoder(str(siglip_dir), batch_size=16)
    first = embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
    # 24 assets × (2 captions + 8 views + 1 pooled asset vector)
    assert (first.shards, first.shards_skipped, first.rows_computed) == (3, 0, N_ASSETS * 11)
    folder = encoder_dir(tmp_path, encoder.info.name)
    assert sorted(p.name for p in folder.glob("shard_00000*")) == [
        "shard_00000.done.json",
        "shard_00000.npy",
        "shard_00000.parquet",
    ]
    again = embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
    assert (again.shards_skipped, again.rows_computed) == (3, 0)
    edited = [
        replace(a, caption_en=a.caption_en + " (edited)") if i == 13 else a for i, a in enumerate(assets)
    ]
    third = embed_assets(edited, encoder, tmp_path, shard_size=10, progress=False)
    assert (third.shards_skipped, third.rows_computed, third.rows_reused) == (2, 1, 10 * 11 - 1)


def test_an_asset_vector_is_the_mean_of_its_views_computed_once(library, siglip_dir, tmp_path):
    from assetlib.embedding.shards import finished_shards, read_shard
    from assetlib.vocab import VectorKind

    _, assets = library
    encoder = SiglipEncoder(str(siglip_dir), batch_size=16)
    calls: list[int] = []
    original = encoder.embed_pixels

    def counted(batch):
        calls.append(len(batch["pixel_values"]))
        return original(batch)

    encoder.embed_pixels = counted  # type: ignore[method-assign]
    embed_assets(assets[:4], encoder, tmp_path, shard_size=10, progress=False)
    assert sum(calls) == 4 * 8  # each view encoded once: the asset rows reuse them
    encoder.embed_pixels = original  # type: ignore[method-assign]
    part = next(
        p
        for p in read_shard(finished_shards(encoder_dir(tmp_path, encoder.info.name))[0])
        if p.kind is VectorKind.ASSET
    )
    expected = encoder.encode_asset_views([a.view_paths for a in assets[:4]])
    by_id = dict(zip(part.asset_ids, part.vectors, strict=True))
    np.testing.assert_allclose(np.stack([by_id[a.asset_id] for a in assets[:4]]), expected, atol=1e-5)


def test_loading_shards_gives_one_vector_per_key_and_is_idempotent(library, siglip_dir, tmp_path, db):
    _, assets = library
    encoder = SiglipEncoder(str(siglip_dir), batch_size=16)
    embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
    first = load_shards(db, tmp_path, encoder.info.name, assets, progress=False)
    assert first.inserted == N_ASSETS * 11 and first.indexes
    second = load_shards(db, tmp_path, encoder.info.name, assets, progress=False)
    assert (second.inserted, second.updated, second.indexes) == (0, 0, [])
    with db.connection() as conn:
        tables = encoder_tables(conn, encoder.info.name)
        counts = {
            kind: conn.execute(f"SELECT count(*) FROM {tables.table(kind)}").fetchone()[0]
            for kind in VectorKind
        }
        assert counts == {
            VectorKind.CAPTION: N_ASSETS * 2,
            VectorKind.VIEW: N_ASSETS * 8,
            VectorKind.ASSET: N_ASSETS,
        }


def test_the_per_view_index_follows_the_image_layout(library, siglip_dir, tmp_path, db):
    _, assets = library
    encoder = SiglipEncoder(str(siglip_dir), batch_size=16)
    embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
    name = encoder.info.name
    every_view = IndexParams(layout=ImageLayout.VIEWS)  # IMAGE_LAYOUT=views
    views = load_shards(db, tmp_path, name, assets, index_params=every_view, progress=False)
    assert {b.table.rsplit("_", 1)[-1] for b in views.indexes} == {"caption", "view", "asset"}
    pooled = load_shards(
        db, tmp_path, name, assets, index_params=IndexParams(layout=ImageLayout.POOLED), progress=False
    )
    assert pooled.indexes == []  # nothing changed: nothing rebuilt...
    with db.connection() as conn:
        tables = encoder_tables(conn, name)
        assert ann_indexes(conn, tables.table(VectorKind.VIEW)) == []  # ...but the unused view index went
        assert ann_indexes(conn, tables.table(VectorKind.ASSET))


KILLABLE = textwrap.dedent(
    """
    import sys, time
    from assetlib.embedding.local import embed_assets
    from assetlib.encoders.siglip import SiglipEncoder
    from assetlib.library.readers import LibrarySource, read_library
    import assetlib.embedding.shards as shards

    root, model, run_dir, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    assets = read_library(LibrarySource.at(root)).assets
    original = shards.ShardFiles.write
    def slow_write(self, *args, **kwargs):
        original(self, *args, **kwargs)
        print("shard", self.done.name, flush=True)
        time.sleep(pause)
    shards.ShardFiles.write = slow_write
    embed_assets(assets, SiglipEncoder(model, batch_size=16), run_dir, shard_size=5, progress=False)
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_a_run_killed_midway_is_finished_by_the_next_with_nothing_duplicated(
    library, siglip_dir, tmp_path, db
):
    root, assets = library
    script = tmp_path / "embed.py"
    script.write_text(KILLABLE)
    run_dir = tmp_path / "run"
    args = [sys.executable, str(script), str(root), str(siglip_dir), str(run_dir)]
    proc = subprocess.Popen(
        [*args, "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen, deadline = 0, time.monotonic() + 120
    while seen < 2 and time.monotonic() < deadline:
        if proc.stdout.readline().startswith("shard"):
            seen += 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen == 2
    folder = encoder_dir(run_dir, "siglip:tiny-test")
    assert len(list(folder.glob("*.done.json"))) == 2  # 5 shards planned, 2 finished

    finished = subprocess.run([*args, "0"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0 and "done" in finished.stdout, finished.stderr[-2000:]
    assert [ln.split()[1] for ln in finished.stdout.splitlines() if ln.startswith("shard ")] == [
        "shard_00002.done.json",
        "shard_00003.done.json",
        "shard_00004.done.json",
    ]  # only the three unfinished shards were computed
    load_shards(db, run_dir, "siglip:tiny-test", assets, progress=False)
    with db.connection() as conn:
        table = encoder_tables(conn, "siglip:tiny-test").table(VectorKind.VIEW)
        total, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT (asset_id, view_index, encoder)) FROM {table}"
        ).fetchone()
    assert total == distinct == N_ASSETS * 8


def test_qwen_stage_fuses_views_and_records_an_asset_that_keeps_failing(library, tmp_path, db):
    _, assets = library
    poisoned = assets[7]
    with FakeDashScopeServer(dim=64) as fake:
        fake.state.poison = to_data_uri(load_rgb(poisoned.view_paths[0]))[30:90]
        encoder = QwenEncoder(
            "tongyi-embedding-vision-plus",
            "sk-test",
            dimension=64,
            base_url=fake.base_url,
            backoff_base=0.001,
            backoff_max=0.002,
            requests_per_minute=100_000,
            max_retries=2,
        )
        summary = embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
        fused_requests = [r for r in fake.state.requests if "multi_images" in r["input"]["contents"][0]]
    assert [(f.asset_id, f.stage) for f in summary.failures] == [(poisoned.asset_id, "embed:asset")]
    assert "poisoned content" in summary.failures[0].reason
    assert all(
        len(r["input"]["contents"]) == 1 and len(r["input"]["contents"][0]["multi_images"]) == 8
        for r in fused_requests
    )
    load_shards(db, tmp_path, encoder.info.name, assets, progress=False)
    with db.connection() as conn:
        tables = encoder_tables(conn, encoder.info.name)
        rows = conn.execute(f"SELECT asset_id, embedding FROM {tables.table(VectorKind.ASSET)}").fetchall()
        views = conn.execute(f"SELECT count(*) FROM {tables.table(VectorKind.VIEW)}").fetchone()[0]
    assert len(rows) == N_ASSETS - 1 and poisoned.asset_id not in {r[0] for r in rows}
    assert views == 0  # fused: one vector per asset, no per-view rows
    assert min(np.linalg.norm(r[1].to_numpy()) for r in rows) > 0.99
    assert (encoder_dir(tmp_path, encoder.info.name) / "failures.csv").exists()


def test_new_weights_under_the_same_name_are_never_served_stale_vectors(library, tmp_path):
    """The weights' identity is their content: retrained bytes recompute, a mere copy or touch does not."""
    _, assets = library
    model = tiny_siglip(tmp_path / "retrained")
    first = embed_assets(
        assets[:6], SiglipEncoder(str(model)), tmp_path / "run", shard_size=10, progress=False
    )
    weights = next(model.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # touched
    touched = embed_assets(
        assets[:6], SiglipEncoder(str(model)), tmp_path / "run", shard_size=10, progress=False
    )
    assert touched.rows_computed == 0  # same bytes, same vectors: nothing recomputed
    shutil.rmtree(model)
    tiny_siglip(model, seed=1)  # retrained: the same name (siglip:tiny-test), other weights
    again = embed_assets(
        assets[:6], SiglipEncoder(str(model)), tmp_path / "run", shard_size=10, progress=False
    )
    assert again.shards_skipped == 0 and again.rows_computed == first.rows_computed


def test_qwen3_vl_embedding_embeds_stores_and_searches_end_to_end(library, tmp_path, db):
    """qwen3-vl-embedding through DashScope (the fake): fused by enable_fusion, searched like any Qwen."""
    from pydantic import SecretStr

    from assetlib.encoders.registry import clear_cache, get_encoder
    from assetlib.search.service import SearchService

    _, assets = library
    with FakeDashScopeServer(dim=256) as fake:
        settings = db.settings.model_copy(
            update={
                "qwen_model": "qwen3-vl-embedding",
                "qwen_dimension": 256,
                "dashscope_api_key": SecretStr("sk-test"),
                "dashscope_base_url": fake.base_url,
                "qwen_requests_per_minute": 100_000,
            }
        )
        clear_cache()
        encoder = get_encoder("qwen", settings)
        summary = embed_assets(assets, encoder, tmp_path, shard_size=10, progress=False)
        assert summary.failures == [] and encoder.info.name == "qwen:qwen3-vl-embedding@256"
        fused = [r for r in fake.state.requests if r["parameters"].get("enable_fusion")]
        assert len(fused) == N_ASSETS and all(len(r["input"]["contents"]) == 8 for r in fused)
        load_shards(db, tmp_path, encoder.info.name, assets, progress=False)
        service = SearchService(settings, db)
        text = service.search_text("a red chair", "qwen", "text_to_image", top_k=3)
        image = service.search_images([load_rgb(assets[2].view_paths[0])], "qwen", "fused", top_k=3)
        queries = [r for r in fake.state.requests if "instruct" in r["parameters"]]
    assert len(text.hits) == len(image.hits) == 3 and text.layout == "asset"
    # The two queries carry the instruction (an image searched with is a query too); no render did.
    assert len(queries) == 2 and queries[0]["input"]["contents"] == [{"text": "a red chair"}]
    assert list(queries[1]["input"]["contents"][0]) == ["image"]
    assert not any("instruct" in r["parameters"] for r in fused)
    assert fake.state.uploads == []
    clear_cache()
