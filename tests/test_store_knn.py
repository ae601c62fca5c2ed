"""kNN search: the ANN index serves every mode, filters still return k rows, grouping is exact."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from psycopg import sql

from assetlib.config import load_settings
from assetlib.store.db import Database
from assetlib.store.filters import SearchFilters
from assetlib.store.indexes import (
    IndexParams,
    IndexTooLarge,
    ann_indexes,
    build_indexes,
    estimate_index_bytes,
    prewarm_indexes,
)
from assetlib.store.knn import (
    QueryVectorError,
    SearchTuning,
    explain_knn,
    knn,
    knn_pooled,
    pooled_sql,
)
from assetlib.store.layout import choose_layout, target_kind
from assetlib.store.load import load_vectors
from assetlib.store.schema import ensure_encoder
from assetlib.store.synthetic import clustered_view_vectors, exact_per_view_topk, load_synthetic_views
from assetlib.vocab import ImageLayout, Mode, VectorKind

N_ASSETS, N_VIEWS, DIM = 10000, 4, 32  # ≥10k rows per table: below that the planner rightly prefers a scan
HQ_EVERY = 20  # 5% of assets are high quality: a selective filter


@pytest.fixture(scope="module")
def store(assetlib_home):
    """A database with 10k assets × 4 views, English and Chinese captions and pooled asset vectors."""
    settings = load_settings(environ={}, home=str(assetlib_home), db_name=f"s_{uuid.uuid4().hex[:10]}")
    views = clustered_view_vectors(N_ASSETS, N_VIEWS, DIM, seed=11, clusters=30)
    with Database.open(settings) as db, db.connection() as conn:
        load_synthetic_views(
            conn, "test:search", views, batch_assets=5000, high_quality_every=HQ_EVERY, storage="vector"
        )
        tables = ensure_encoder(conn, "test:search", DIM, "vector")
        ids = [f"syn{i:07d}" for i in range(N_ASSETS)]
        pooled = views.mean(axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        load_vectors(conn, tables, VectorKind.ASSET, ids, pooled, "pooled")
        rng = np.random.default_rng(5)
        captions = np.concatenate([pooled + 0.05 * rng.normal(size=pooled.shape) for _ in range(2)])
        load_vectors(
            conn,
            tables,
            VectorKind.CAPTION,
            ids + ids,
            captions.astype(np.float32),
            "captions",
            sub_keys=["en"] * N_ASSETS + ["zh"] * N_ASSETS,
        )
        builds = build_indexes(conn, tables, IndexParams(method="hnsw", m=16, ef_construction=64))
        assert {b.index for b in builds} == {
            f"{tables.prefix}_view_hnsw",
            f"{tables.prefix}_asset_hnsw",
            f"{tables.prefix}_caption_en_hnsw",
            f"{tables.prefix}_caption_zh_hnsw",
        }
        yield db, tables, views


def _query(views: np.ndarray, i: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + i)
    q = views[i].mean(axis=0) + 0.1 * rng.normal(size=views.shape[-1])
    return (q / np.linalg.norm(q)).astype(np.float32)


CASES = [
    (mode, layout, language)
    for mode in Mode
    if mode is not Mode.FUSED  # a fused search runs two of these
    for layout in ImageLayout
    for language in (["en", "zh"] if target_kind(mode, layout) is VectorKind.CAPTION else [None])
    if not (target_kind(mode, layout) is VectorKind.CAPTION and layout is not ImageLayout.VIEWS)
    and layout is not ImageLayout.POOLED  # pooled = the asset index (tested below) + a re-rank by key
]


@pytest.mark.parametrize(("mode", "layout", "language"), CASES)
def test_every_mode_is_served_by_the_ann_index(store, mode, layout, language):
    db, tables, views = store
    kind = target_kind(mode, layout)
    with db.connection() as conn:
        plan = explain_knn(conn, tables, kind, _query(views, 1), 10, language=language)
    index = f"{tables.prefix}_{kind.value}_{language + '_' if language else ''}hnsw"
    assert f"Index Scan using {index}" in plan, plan
    assert "Seq Scan on emb_" not in plan, plan


def test_filtered_search_still_returns_k_rows(store):
    """Only 5% of assets pass the filter; the index scan must keep going until k assets are found."""
    db, tables, views = store
    with db.connection() as conn:
        # At this small size the planner would rather scan the few matching rows exactly (right, and
        # fast); at scale it picks the index. Rule the scan out to test the iterative index path.
        conn.execute("SET enable_seqscan = off")
        for kind, language in [(VectorKind.VIEW, None), (VectorKind.ASSET, None), (VectorKind.CAPTION, "zh")]:
            plan = explain_knn(
                conn, tables, kind, _query(views, 0), 25, language=language, high_quality_only=True
            )
            assert "Index Scan using emb_" in plan and "Filter: high_quality" in plan, plan
            for i in range(5):
                hits = knn(
                    conn, tables, kind, _query(views, i), 25, language=language, high_quality_only=True
                )
                assert len(hits) == 25, (kind, i)
                assert all(h.high_quality for h in hits)
                assert len({h.asset_id for h in hits}) == 25
        conn.execute("RESET enable_seqscan")


def test_per_view_search_groups_by_asset_with_max_over_views(store):
    db, tables, views = store
    queries = np.stack([_query(views, i, seed=100) for i in range(0, 300, 10)])
    truth, truth_scores = exact_per_view_topk(views, queries, 10)
    recalls = []
    with db.connection() as conn:
        for q, expected, expected_scores in zip(queries, truth, truth_scores, strict=True):
            exact = knn(conn, tables, VectorKind.VIEW, q, 10, tuning=SearchTuning(exact=True))
            assert [h.asset_id for h in exact] == [f"syn{i:07d}" for i in expected]
            np.testing.assert_allclose([h.score for h in exact], expected_scores, atol=1e-5)
            for hit in exact:  # the matched view is the asset's best view for this query
                asset = views[int(hit.asset_id[3:])]
                assert hit.matched_view == int(np.argmax(asset @ q))
            ann = knn(conn, tables, VectorKind.VIEW, q, 10)
            recalls.append(len({h.asset_id for h in ann} & {h.asset_id for h in exact}) / 10)
            scores = [h.score for h in ann]
            assert scores == sorted(scores, reverse=True)
    assert np.mean(recalls) >= 0.9, recalls


def test_pooled_layout_reranks_asset_candidates_by_their_best_view(store):
    db, tables, views = store
    queries = np.stack([_query(views, i, seed=200) for i in range(0, 300, 10)])
    truth, _ = exact_per_view_topk(views, queries, 10)
    recalls, asset_only = [], []
    with db.connection() as conn:
        for q, expected in zip(queries, truth, strict=True):
            hits = knn_pooled(conn, tables, q, 10, tuning=SearchTuning(rerank_factor=10))
            expected_ids = {f"syn{i:07d}" for i in expected}
            recalls.append(len({h.asset_id for h in hits} & expected_ids) / 10)
            means = knn(conn, tables, VectorKind.ASSET, q, 10)
            asset_only.append(len({h.asset_id for h in means} & expected_ids) / 10)
            for hit in hits:  # scores and matched views are the exact per-view ones
                asset = views[int(hit.asset_id[3:])]
                assert hit.matched_view == int(np.argmax(asset @ q))
                assert abs(hit.score - float((asset @ q).max())) < 1e-5
        plan = conn.execute(
            sql.SQL("EXPLAIN (COSTS OFF) ") + pooled_sql(tables, False),
            {"q": queries[0], "k": 10, "fetch": 100},
        ).fetchall()
    plan_text = "\n".join(r[0] for r in plan)
    assert f"Index Scan using {tables.prefix}_asset_hnsw" in plan_text and "Seq Scan on emb_" not in plan_text
    assert np.mean(recalls) >= 0.9 and np.mean(recalls) > np.mean(asset_only), (recalls, asset_only)


def test_layout_follows_the_setting_and_what_is_indexed():
    both = {VectorKind.VIEW, VectorKind.ASSET}
    assert choose_layout(both) is ImageLayout.POOLED  # the default (IMAGE_LAYOUT=pooled)
    assert choose_layout(both, ImageLayout.VIEWS) is ImageLayout.VIEWS
    assert (
        choose_layout({VectorKind.ASSET}, ImageLayout.VIEWS) is ImageLayout.POOLED
    )  # the view index was refused
    assert choose_layout({VectorKind.VIEW}) is ImageLayout.VIEWS  # no per-asset index (yet)
    assert choose_layout(set()) is ImageLayout.VIEWS  # nothing indexed: exact per-view, still right


def test_hits_carry_catalog_fields(store):
    db, tables, views = store
    with db.connection() as conn:
        hits = knn(conn, tables, VectorKind.CAPTION, _query(views, 42), 3, language="en")
    assert hits[0].asset_id == "syn0000042"
    assert hits[0].matched_language == "en"
    assert hits[0].caption_en == "synthetic asset syn0000042"
    assert hits[0].view_count == N_VIEWS


def test_bad_query_vectors_are_refused(store):
    db, tables, _ = store
    with db.connection() as conn:
        with pytest.raises(QueryVectorError, match="33 dimensions, the store holds 32"):
            knn(conn, tables, VectorKind.VIEW, np.ones(33), 5)
        with pytest.raises(QueryVectorError, match="zero"):
            knn(conn, tables, VectorKind.VIEW, np.zeros(32), 5)
        with pytest.raises(QueryVectorError, match="NaN"):
            knn(conn, tables, VectorKind.VIEW, np.full(32, np.nan), 5)


@pytest.mark.parametrize(
    ("storage", "method"), [("halfvec", "hnsw"), ("vector", "ivfflat"), ("halfvec", "ivfflat")]
)
def test_halfvec_and_ivfflat_layouts_use_their_index(db, storage, method):
    views = clustered_view_vectors(1500, 4, DIM, seed=3)
    with db.connection() as conn:
        load_synthetic_views(conn, f"test:{storage}", views, batch_assets=1500, storage=storage)
        tables = ensure_encoder(conn, f"test:{storage}", DIM, storage)
        assert tables.storage == storage
        build_indexes(conn, tables, IndexParams(method=method, lists=20), kinds=(VectorKind.VIEW,))
        q = _query(views, 7)
        tuning = SearchTuning(probes=20, views_per_asset=4)
        plan = explain_knn(conn, tables, VectorKind.VIEW, q, 10, tuning=tuning)
        assert f"Index Scan using {tables.prefix}_view_{method}" in plan, plan
        hits = knn(conn, tables, VectorKind.VIEW, q, 10, tuning=tuning)
        exact = knn(conn, tables, VectorKind.VIEW, q, 10, tuning=SearchTuning(exact=True, views_per_asset=4))
        assert hits[0].asset_id == exact[0].asset_id == "syn0000007"
        assert len({h.asset_id for h in hits} & {h.asset_id for h in exact}) >= 8


@pytest.mark.parametrize(("min_rows", "asset_method"), [(1000, "ivfflat"), (2000, "hnsw")])
def test_auto_index_uses_ivfflat_only_on_large_per_asset_tables(db, min_rows, asset_method):
    views = clustered_view_vectors(1500, 4, DIM, seed=4)
    name = f"test:auto{min_rows}"
    with db.connection() as conn:
        load_synthetic_views(conn, name, views, batch_assets=1500, storage="halfvec")
        tables = ensure_encoder(conn, name, DIM, "halfvec")
        pooled = views.mean(axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        load_vectors(conn, tables, VectorKind.ASSET, [f"syn{i:07d}" for i in range(1500)], pooled, "pooled")
        auto = IndexParams(lists=20, ivfflat_min_rows=min_rows)  # method "auto" is the default
        assert auto.method == "auto"
        builds = build_indexes(conn, tables, auto, kinds=(VectorKind.VIEW, VectorKind.ASSET))
        assert {b.index: b.method for b in builds} == {
            f"{tables.prefix}_view_hnsw": "hnsw",  # 6,000 view rows, still HNSW: auto never moves views
            f"{tables.prefix}_asset_{asset_method}": asset_method,
        }
        hits = knn_pooled(conn, tables, _query(views, 9), 10, tuning=SearchTuning(probes=20))
    assert hits[0].asset_id == "syn0000009"


def test_prewarm_reads_every_ann_index_into_shared_buffers(store):
    db, tables, _ = store
    with db.connection() as conn:
        done = {p.index: p for p in prewarm_indexes(conn)}
        ours = [name for name in done if name.startswith(tables.prefix)]
        assert sorted(ours) == sorted(
            f"{tables.prefix}_{part}_hnsw" for part in ("view", "asset", "caption_en", "caption_zh")
        )
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_buffercache")
        for name in ours:
            assert done[name].mode == "buffer" and done[name].mb > 0
            cached, pages = conn.execute(
                """SELECT (SELECT count(*) FROM pg_buffercache
                           WHERE relfilenode = pg_relation_filenode(%(i)s::regclass)),
                          pg_relation_size(%(i)s::regclass) / 8192""",
                {"i": name},
            ).fetchone()
            assert cached == pages  # every page of the index is in shared buffers


def test_the_settings_defaults_are_the_measured_ones():
    settings = load_settings(environ={})
    # README "Search at a million assets": halfvec storage, auto index (IVFFlat on per-asset
    # tables from 500k rows), 5 probes and 10 candidates per result for the pooled re-rank.
    assert (settings.vector_storage, settings.vector_index) == ("halfvec", "auto")
    assert (settings.ivfflat_probes, settings.pooled_rerank_factor) == (5, 10)
    params = IndexParams.from_settings(settings)
    assert params.method == "auto" and params.ivfflat_min_rows == 500_000


def test_an_index_that_would_not_fit_is_refused_before_anything_changes(store):
    db, tables, _ = store
    views = N_ASSETS * N_VIEWS
    need = estimate_index_bytes(views, DIM, "vector", "hnsw", 16)
    tight = IndexParams(method="hnsw", m=16, memory_budget=need // 2)
    with db.connection() as conn:
        before = ann_indexes(conn, tables.table(VectorKind.VIEW))
        with pytest.raises(IndexTooLarge) as caught:
            build_indexes(conn, tables, tight, kinds=(VectorKind.VIEW,))
        assert ann_indexes(conn, tables.table(VectorKind.VIEW)) == before  # the old index is still there
        actual = conn.execute("SELECT pg_relation_size(%s)", (f"{tables.prefix}_view_hnsw",)).fetchone()[0]
    message = str(caught.value)
    assert f"{views:,} rows × {DIM}-d vector" in message and "refused before building" in message
    assert "VECTOR_STORAGE=halfvec" in message and "IMAGE_LAYOUT=pooled" in message
    assert 0.6 < need / actual < 1.6  # the estimate is in the right range on real pgvector


def test_index_size_estimate_matches_the_store_benchmark():
    # benchmarks/store_bench.py measured 3,125 MB for HNSW m=16 over 800,000 768-d vector rows.
    measured = 3125 * 2**20
    assert abs(estimate_index_bytes(800_000, 768, "vector", "hnsw", 16) / measured - 1) < 0.1
    assert estimate_index_bytes(800_000, 768, "halfvec") < 0.6 * estimate_index_bytes(800_000, 768, "vector")


def _annotate_synthetic_catalog(conn) -> None:
    """Licences, categories and face counts on the synthetic assets: 10 % 'by', 1 in 7 'Furnitures'."""
    with conn.transaction():
        conn.execute(
            """UPDATE assets SET
                   license = CASE WHEN right(asset_id, 1) = '3' THEN 'by' ELSE 'cc0' END,
                   categories = CASE WHEN right(asset_id, 3)::int % 7 = 0 THEN ARRAY['Furnitures']
                                     ELSE ARRAY['Plants'] END,
                   face_count = right(asset_id, 4)::int
               WHERE asset_id LIKE 'syn%'"""
        )
        conn.execute("ANALYZE assets")


def test_metadata_filters_return_k_rows_through_the_iterative_index_scan(store):
    """Licence, category and face-count filters: k rows that all pass, found by the ANN index scan
    (kept going by pgvector's iterative scan), the same assets an exact filtered search finds."""
    db, tables, views = store
    with db.connection() as conn:
        _annotate_synthetic_catalog(conn)
        wanted = SearchFilters(licenses=("by",), categories=("Furnitures", "Plants"), face_max=6000)
        for kind in (VectorKind.VIEW, VectorKind.ASSET):
            plan = explain_knn(conn, tables, kind, _query(views, 2), 20, filters=wanted)
            assert f"Index Scan using {tables.prefix}_{kind.value}_hnsw" in plan, plan
            for i in range(3):
                hits = knn(conn, tables, kind, _query(views, i), 20, filters=wanted)
                assert len(hits) == 20 and len({h.asset_id for h in hits}) == 20
                rows = conn.execute(
                    "SELECT license, face_count FROM assets WHERE asset_id = ANY(%s)",
                    ([h.asset_id for h in hits],),
                ).fetchall()
                assert all(lic == "by" and faces <= 6000 for lic, faces in rows)
                exact = knn(
                    conn, tables, kind, _query(views, i), 20, tuning=SearchTuning(exact=True), filters=wanted
                )
                overlap = len({h.asset_id for h in hits} & {h.asset_id for h in exact})
                assert overlap >= 18, (kind, i, overlap)  # approximate, but close to the exact answer
        pooled = knn_pooled(conn, tables, _query(views, 4), 20, filters=wanted)
        assert len(pooled) == 20 and all(h.license == "by" for h in pooled)
