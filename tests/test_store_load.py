"""Bulk loads: idempotent, resumable after a kill, refusing bad vectors by row id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_assets

from assetlib.store.load import BadVectorsError, load_catalog, load_vectors
from assetlib.store.schema import SchemaError, ensure_encoder
from assetlib.store.synthetic import clustered_view_vectors
from assetlib.vocab import VectorKind

DIM = 32


def _snapshot(conn, table: str) -> list[tuple]:
    return conn.execute(
        f"SELECT asset_id, view_index, embedding::text, content_hash, updated_at FROM {table} ORDER BY 1, 2"
    ).fetchall()


def _load_views(conn, tables, assets, vectors, key="b0"):
    ids = [a.asset_id for a in assets for _ in range(vectors.shape[1])]
    subs = [v for _ in assets for v in range(vectors.shape[1])]
    return load_vectors(conn, tables, VectorKind.VIEW, ids, vectors.reshape(-1, DIM), key, sub_keys=subs)


def test_loading_twice_changes_nothing(db):
    assets = make_assets(50, views=4)
    vectors = clustered_view_vectors(50, 4, DIM, seed=1)
    with db.connection() as conn:
        assert load_catalog(conn, assets, "c0").inserted == 50
        tables = ensure_encoder(conn, "test:twice", DIM, "vector")
        first = _load_views(conn, tables, assets, vectors)
        assert (first.inserted, first.updated, first.skipped) == (200, 0, False)
        before = _snapshot(conn, tables.table(VectorKind.VIEW))

        again = _load_views(conn, tables, assets, vectors)
        assert again.skipped and again.inserted == 0 and again.updated == 0
        # Same rows under another batch key: the upsert itself must find nothing changed.
        other_key = _load_views(conn, tables, assets, vectors, key="b0-again")
        assert (other_key.skipped, other_key.inserted, other_key.updated, other_key.unchanged) == (
            False,
            0,
            0,
            200,
        )
        assert load_catalog(conn, assets, "c0").skipped
        assert load_catalog(conn, assets, "c0-again").unchanged == 50

        after = _snapshot(conn, tables.table(VectorKind.VIEW))
        assert after == before  # content, hashes and updated_at untouched
        assert conn.execute("SELECT count(*) FROM assets").fetchone()[0] == 50


def test_changed_rows_only_are_updated(db):
    assets = make_assets(10, views=2)
    vectors = clustered_view_vectors(10, 2, DIM, seed=2)
    with db.connection() as conn:
        load_catalog(conn, assets, "c0")
        tables = ensure_encoder(conn, "test:update", DIM, "vector")
        _load_views(conn, tables, assets, vectors)
        changed = vectors.copy()
        changed[3, 1] = -changed[3, 1]
        result = _load_views(conn, tables, assets, changed)
        assert (result.inserted, result.updated, result.unchanged) == (0, 1, 19)
        stored = conn.execute(
            f"SELECT embedding FROM {tables.table(VectorKind.VIEW)} WHERE asset_id = %s AND view_index = 1",
            (assets[3].asset_id,),
        ).fetchone()[0]
        np.testing.assert_allclose(stored.to_numpy(), changed[3, 1], rtol=1e-6)


def test_duplicate_keys_in_one_batch_keep_the_last(db):
    assets = make_assets(2, views=1)
    rng = np.random.default_rng(0)
    first, last = rng.normal(size=(2, DIM)).astype(np.float32)
    with db.connection() as conn:
        load_catalog(conn, assets, "c0")
        tables = ensure_encoder(conn, "test:dupes", DIM, "vector")
        ids = [assets[0].asset_id, assets[0].asset_id]
        result = load_vectors(conn, tables, VectorKind.ASSET, ids, np.stack([first, last]), "b0")
        assert result.inserted == 1
        stored = conn.execute(f"SELECT embedding FROM {tables.table(VectorKind.ASSET)}").fetchall()
        assert len(stored) == 1
        np.testing.assert_allclose(stored[0][0].to_numpy(), last, rtol=1e-6)


@pytest.mark.parametrize(
    ("damage", "reason", "bad_rows"),
    [
        ("nan", "NaN or Inf", ["a00001#view1"]),
        ("inf", "NaN or Inf", ["a00002#view0"]),
        ("zero", "zero vectors", ["a00003#view1", "a00004#view0"]),
    ],
)
def test_bad_vectors_are_refused_with_row_ids(db, damage, reason, bad_rows):
    assets = make_assets(5, views=2)
    vectors = clustered_view_vectors(5, 2, DIM, seed=3)
    for row in bad_rows:
        aid, view = row.split("#view")
        i = int(aid[1:])
        vectors[i, int(view)] = {"nan": np.nan, "inf": np.inf, "zero": 0.0}[damage]
    with db.connection() as conn:
        load_catalog(conn, assets, "c0")
        tables = ensure_encoder(conn, "test:bad", DIM, "vector")
        with pytest.raises(BadVectorsError) as caught:
            _load_views(conn, tables, assets, vectors)
        assert reason in str(caught.value)
        for row in bad_rows:
            assert row in str(caught.value)
        assert sorted(next(iter(caught.value.rows.values()))) == sorted(bad_rows)
        # Nothing of the batch was written, and no batch was recorded.
        assert conn.execute(f"SELECT count(*) FROM {tables.table(VectorKind.VIEW)}").fetchone()[0] == 0
        assert (
            conn.execute("SELECT count(*) FROM load_batches WHERE target LIKE 'test:bad%'").fetchone()[0] == 0
        )


def test_wrong_dimension_and_unknown_assets_are_refused(db):
    assets = make_assets(3, views=1)
    with db.connection() as conn:
        load_catalog(conn, assets, "c0")
        tables = ensure_encoder(conn, "test:dims", DIM, "vector")
        wrong = np.ones((3, DIM + 1), dtype=np.float32)
        with pytest.raises(
            BadVectorsError, match=rf"3 vectors of {DIM + 1} dimensions, expected {DIM}: a00000"
        ):
            load_vectors(conn, tables, VectorKind.ASSET, [a.asset_id for a in assets], wrong, "b0")
        good = np.ones((2, DIM), dtype=np.float32)
        with pytest.raises(BadVectorsError, match="missing from the catalog: ghost"):
            load_vectors(conn, tables, VectorKind.ASSET, ["a00000", "ghost"], good, "b1")
        assert conn.execute(f"SELECT count(*) FROM {tables.table(VectorKind.ASSET)}").fetchone()[0] == 0
        with pytest.raises(SchemaError, match="stored with 32 dimensions but now yields 64"):
            ensure_encoder(conn, "test:dims", 64, "vector")


def test_quality_flag_changes_reach_vector_rows(db):
    assets = make_assets(6, views=1, high_quality_every=1000)
    with db.connection() as conn:
        load_catalog(conn, assets, "c0")
        tables = ensure_encoder(conn, "test:quality", DIM, "vector")
        load_vectors(
            conn,
            tables,
            VectorKind.ASSET,
            [a.asset_id for a in assets],
            clustered_view_vectors(6, 1, DIM)[:, 0],
            "b0",
        )
        query = f"SELECT asset_id FROM {tables.table(VectorKind.ASSET)} WHERE high_quality ORDER BY 1"
        assert conn.execute(query).fetchall() == [("a00000",)]
        flipped = [replace(a, high_quality=a.asset_id == "a00004") for a in assets]
        assert load_catalog(conn, flipped, "c0").updated == 2
        assert conn.execute(query).fetchall() == [("a00004",)]


KILLABLE_LOADER = textwrap.dedent(
    """
    import sys, time
    from assetlib.config import load_settings
    from assetlib.store.db import Database
    from assetlib.store.synthetic import clustered_view_vectors, load_synthetic_views

    home, dbname, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    settings = load_settings(environ={}, home=home, db_name=dbname)
    views = clustered_view_vectors(2000, 4, 32, seed=7)
    import assetlib.store.load as load
    original = load.load_vectors
    def slow(*args, **kwargs):
        result = original(*args, **kwargs)
        print("batch", kwargs.get("batch_key", args[5] if len(args) > 5 else "?"), flush=True)
        time.sleep(pause)
        return result
    load.load_vectors = slow
    with Database.open(settings) as db, db.connection() as conn:
        load_synthetic_views(conn, "test:killed", views, batch_assets=200, storage="vector")
    print("done", flush=True)
    """
)


@pytest.mark.slow
def test_load_killed_midway_resumes_without_duplicates_or_loss(settings, tmp_path):
    script = tmp_path / "loader.py"
    script.write_text(KILLABLE_LOADER)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(settings.home), settings.db_name, "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    seen = 0
    deadline = time.monotonic() + 120
    while seen < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("batch"):
            seen += 1
    os.kill(proc.pid, signal.SIGKILL)  # mid-run: some batches committed, one possibly in flight
    proc.wait()
    assert seen == 3

    finished = subprocess.run(
        [sys.executable, str(script), str(settings.home), settings.db_name, "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "done" in finished.stdout

    from assetlib.store.db import Database
    from assetlib.store.schema import encoder_tables

    views = clustered_view_vectors(2000, 4, 32, seed=7)
    with Database.open(settings) as db, db.connection() as conn:
        tables = encoder_tables(conn, "test:killed")
        table = tables.table(VectorKind.VIEW)
        total, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT (asset_id, view_index)) FROM {table}"
        ).fetchone()
        assert total == distinct == 2000 * 4
        rows = conn.execute(f"SELECT asset_id, view_index, embedding FROM {table}").fetchall()
        stored = np.stack([r[2].to_numpy() for r in sorted(rows, key=lambda r: (r[0], r[1]))])
        np.testing.assert_allclose(stored, views.reshape(-1, 32), rtol=1e-6)
        batches = conn.execute(
            "SELECT count(*) FROM load_batches WHERE target = 'test:killed/view'"
        ).fetchone()[0]
        assert batches == 10
