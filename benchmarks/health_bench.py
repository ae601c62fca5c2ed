"""/health at a million rows: the catalog-statistics counts against exact count(*), and the endpoint itself.

Loads (once; `--reuse` keeps it) a synthetic catalog of N assets with one small view vector each
into its own database on the embedded server, then times, over `--repeat` runs each, the counts
`/health` reports (assetlib.store.catalog.store_counts), the exact `count(*)` of every table that
/health ran before, and `GET /health` through the API in-process.

    python benchmarks/health_bench.py --assets 1000000
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from fastapi.testclient import TestClient
from psycopg import sql

from assetlib.config import load_settings
from assetlib.faces.api.app import create_app
from assetlib.logs import configure_logging
from assetlib.store.catalog import store_counts
from assetlib.store.db import Database, scalar
from assetlib.store.schema import list_encoders
from assetlib.store.synthetic import load_synthetic_views
from assetlib.vocab import VectorKind

ENCODER = "siglip:health-bench"


def _exact_counts(db: Database) -> dict:
    """What /health did before: count(*) of the catalog and every vector table."""
    with db.connection() as conn:
        assets = scalar(conn, "SELECT count(*) FROM assets")
        vectors = {
            t.name: sum(
                int(scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(t.ident(k)))) for k in VectorKind
            )
            for t in list_encoders(conn)
        }
    return {"assets": int(assets), "vectors": vectors}


def _times(fn: Callable[[], object], repeat: int) -> tuple[list[float], object]:
    out, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        out.append((time.perf_counter() - started) * 1000)
    return out, result


def main() -> None:
    """Load the synthetic catalog if needed, then print the three timings."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--reuse", action="store_true", help="keep the database of an earlier run")
    args = p.parse_args()
    configure_logging()
    settings = load_settings(db_name=f"health_bench_{args.assets}")
    db = Database.open(settings)
    with db.connection() as conn:
        have = scalar(conn, "SELECT count(*) FROM assets")
    if not (args.reuse and have == args.assets):
        with db.connection() as conn:
            conn.execute("TRUNCATE assets CASCADE")
            views = np.random.default_rng(0).standard_normal((args.assets, 1, 8)).astype(np.float32)
            started = time.perf_counter()
            load_synthetic_views(conn, ENCODER, views, batch_assets=20_000, progress=True)
            conn.execute("ANALYZE")
            print(f"loaded {args.assets:,} assets and views in {time.perf_counter() - started:.0f} s")

    new_ms, estimated = _times(lambda: _with_conn(db), args.repeat)
    old_ms, exact = _times(lambda: _exact_counts(db), max(3, args.repeat // 4))
    with TestClient(create_app(settings)) as client:
        client.get("/health")
        http_ms, body = _times(lambda: client.get("/health").json(), args.repeat)
    print(f"exact counts          {exact}")
    print(f"estimated counts      {estimated}")
    print(f"count(*) of each table  p50 {statistics.median(old_ms):8.1f} ms  max {max(old_ms):8.1f} ms")
    print(f"store_counts (catalog)  p50 {statistics.median(new_ms):8.1f} ms  max {max(new_ms):8.1f} ms")
    print(f"GET /health (in-process) p50 {statistics.median(http_ms):7.1f} ms  max {max(http_ms):8.1f} ms")
    assert isinstance(body, dict) and body["database"] is True
    db.close()


def _with_conn(db: Database) -> dict:
    with db.connection() as conn:
        return store_counts(conn)


if __name__ == "__main__":
    main()
