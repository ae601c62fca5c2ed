"""Store benchmark: load N synthetic assets × V views, build the ANN index, measure per-view search.

Prints COPY rows/s, index build seconds and size, and for each hnsw.ef_search value the p50/p95
latency and recall@k against exact per-view search (computed in numpy on the same vectors).
Writes the figures to outputs/bench/store_bench.csv. Not a test: numbers, no assertions.

    python benchmarks/store_bench.py                      # 100k assets × 8 views × 768-d
    python benchmarks/store_bench.py --assets 20000 --dim 256 --ef-search 40 100
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from assetlib.config import load_settings
from assetlib.logs import configure_logging
from assetlib.records import write_csv
from assetlib.store.db import Database
from assetlib.store.indexes import IndexParams, build_indexes, drop_indexes
from assetlib.store.knn import SearchTuning, knn
from assetlib.store.schema import drop_encoder, ensure_encoder
from assetlib.store.synthetic import clustered_view_vectors, exact_per_view_topk, load_synthetic_views
from assetlib.vocab import VectorKind

log = logging.getLogger("bench.store")


def parse_args() -> argparse.Namespace:
    """Command-line options of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=100_000)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--storage", choices=["vector", "halfvec"], default="vector")
    p.add_argument("--method", choices=["hnsw", "ivfflat"], default="hnsw")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200])
    p.add_argument("--probes", type=int, nargs="+", default=[10])
    p.add_argument("--batch-assets", type=int, default=5000)
    p.add_argument("--maintenance-work-mem", default="6GB")
    p.add_argument("--db-name", default="bench_store")
    p.add_argument("--reuse", action="store_true", help="keep the loaded data of an earlier run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/bench/store_bench.csv"))
    return p.parse_args()


def main() -> None:
    """Run the benchmark and print its table."""
    args = parse_args()
    configure_logging("WARNING")
    settings = load_settings(db_name=args.db_name)
    encoder = f"bench:{args.dim}d-{args.storage}"
    started = time.perf_counter()
    views = clustered_view_vectors(args.assets, args.views, args.dim, seed=args.seed, clusters=args.clusters)
    print(
        f"generated {args.assets:,} assets × {args.views} views × {args.dim}-d in "
        f"{time.perf_counter() - started:.1f}s"
    )
    rows = args.assets * args.views
    results: dict[str, object] = {
        "assets": args.assets,
        "views": args.views,
        "dim": args.dim,
        "storage": args.storage,
        "method": args.method,
    }
    with Database.open(settings) as db, db.connection() as conn:
        if not args.reuse:  # a clean slate, so the load is measured in full
            drop_encoder(conn, encoder)
            conn.execute("TRUNCATE assets CASCADE")
            conn.execute("DELETE FROM load_batches")
        tables = ensure_encoder(conn, encoder, args.dim, storage=args.storage)
        drop_indexes(conn, tables.table(VectorKind.VIEW))
        t0 = time.perf_counter()
        loads = load_synthetic_views(conn, encoder, views, batch_assets=args.batch_assets, progress=True)
        load_s = time.perf_counter() - t0
        loaded = sum(r.rows for r in loads if not r.skipped)
        results["load_rows_per_s"] = round(loaded / load_s) if loaded else None
        print(
            f"loaded {loaded:,} view rows in {load_s:.1f}s: {results['load_rows_per_s'] or 0:,} rows/s "
            f"(binary COPY → staging → upsert, catalog included)"
        )

        params = IndexParams(
            method=args.method,
            m=args.m,
            ef_construction=args.ef_construction,
            maintenance_work_mem=args.maintenance_work_mem,
        )
        build = build_indexes(conn, tables, params, kinds=(VectorKind.VIEW,))[0]
        size = conn.execute(
            "SELECT pg_size_pretty(pg_relation_size(%s::regclass))", (build.index,)
        ).fetchone()[0]
        table_size = conn.execute(
            "SELECT pg_size_pretty(pg_table_size(%s::regclass))", (tables.table(VectorKind.VIEW),)
        ).fetchone()[0]
        results.update(index_build_s=round(build.seconds, 1), index_size=size, table_size=table_size)
        print(
            f"{args.method} index ({args.m=}, {args.ef_construction=}) on {rows:,} rows: "
            f"{build.seconds:.1f}s, {size} (table {table_size})"
        )

        rng = np.random.default_rng(args.seed + 1)
        picks = rng.integers(0, args.assets, args.queries)
        queries = views[picks].mean(axis=1) + (0.5 / np.sqrt(args.dim)) * rng.standard_normal(
            (args.queries, args.dim), dtype=np.float32
        )
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth, _ = exact_per_view_topk(views, queries, args.k)
        truth_ids = [{f"syn{i:07d}" for i in row} for row in truth]

        knobs = args.ef_search if args.method == "hnsw" else args.probes
        table = []
        for knob in knobs:
            tuning = SearchTuning(ef_search=knob, probes=knob, views_per_asset=args.views)
            for q in queries[:10]:  # warm the cache and the plan
                knn(conn, tables, VectorKind.VIEW, q, args.k, tuning=tuning)
            latencies, recalls = [], []
            for q, expected in zip(queries, truth_ids, strict=True):
                t = time.perf_counter()
                hits = knn(conn, tables, VectorKind.VIEW, q, args.k, tuning=tuning)
                latencies.append((time.perf_counter() - t) * 1000)
                recalls.append(len({h.asset_id for h in hits} & expected) / args.k)
            row = {
                **results,
                "knob": f"{'ef_search' if args.method == 'hnsw' else 'probes'}={knob}",
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p95_ms": round(float(np.percentile(latencies, 95)), 2),
                f"recall@{args.k}": round(float(np.mean(recalls)), 4),
            }
            table.append(row)
            print(
                f"  {row['knob']:<14} p50 {row['p50_ms']:7.2f} ms   p95 {row['p95_ms']:7.2f} ms   "
                f"recall@{args.k} {row[f'recall@{args.k}']:.3f}"
            )
    write_csv(table, args.out)
    print(f"wrote {args.out}  (total {time.perf_counter() - started:.0f}s)")


if __name__ == "__main__":
    main()
