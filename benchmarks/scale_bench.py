"""Scale benchmark: search layouts at 100k–1M assets × 8 views on one machine, against exact per-view truth.

Generates a clustered synthetic library block by block (a million assets × 8 views never sits in
RAM), loads the catalog, the per-view vectors and their per-asset means, computes exact per-view
top-k for the queries while streaming, then for each layout builds its index (the memory guard
may refuse it: that is recorded) and measures p50/p95/p99 latency with 1 and 8 concurrent
clients, throughput, and recall@k against the exact per-view ranking.

Layouts: `views` (HNSW/IVFFlat over every view, over-fetch and group), `pooled` (HNSW over the
per-asset means, then an exact max-over-views re-rank of the candidates), `asset` (the means
alone). Writes outputs/bench/scale_<assets>_<dim>_<storage>.csv and a recall/latency plot.

    python benchmarks/scale_bench.py --assets 100000 --storage vector
    python benchmarks/scale_bench.py --assets 1000000 --storage halfvec --methods hnsw ivfflat
    python benchmarks/scale_bench.py --assets 1000000 --reuse --prewarm --layouts pooled --methods ivfflat
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from psycopg import sql

from assetlib.config import load_settings
from assetlib.library.asset import Asset
from assetlib.logs import configure_logging, progress
from assetlib.records import write_csv
from assetlib.store.db import Database, physical_memory
from assetlib.store.indexes import (
    IndexParams,
    IndexTooLarge,
    build_indexes,
    drop_indexes,
    ivfflat_lists,
    prewarm_indexes,
)
from assetlib.store.knn import SearchTuning, knn, knn_pooled
from assetlib.store.load import load_catalog, load_vectors
from assetlib.store.schema import drop_encoder, ensure_encoder
from assetlib.store.synthetic import cluster_centres, view_blocks
from assetlib.vocab import VectorKind

log = logging.getLogger("bench.scale")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=100_000)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--storage", choices=["vector", "halfvec"], default="halfvec")
    p.add_argument("--layouts", nargs="+", default=["views", "pooled", "asset"])
    p.add_argument("--m", type=int, nargs="+", default=[16])
    p.add_argument("--ef-construction", type=int, nargs="+", default=[64])
    p.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200])
    p.add_argument("--rerank", type=int, nargs="+", default=[5, 10, 20], help="pooled: candidates per result")
    p.add_argument("--methods", nargs="+", choices=["hnsw", "ivfflat"], default=["hnsw"])
    p.add_argument(
        "--prewarm",
        action="store_true",
        help="read the tables once, and each new index into shared buffers, so the figures are warm",
    )
    p.add_argument("--probes", type=int, nargs="+", default=[10, 30])
    p.add_argument("--lists", type=int, nargs="+", default=[0], help="IVFFlat lists (0 = rows/1000)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--clients", type=int, nargs="+", default=[1, 8])
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--memory-fraction", type=float, default=0.6, help="index memory guard (share of RAM)")
    p.add_argument("--maintenance-work-mem", default="8GB")
    p.add_argument("--db-name", default="bench_scale")
    p.add_argument("--reuse", action="store_true", help="keep loaded data from an earlier run (same shape)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=Path("outputs/bench"))
    p.add_argument(
        "--plot",
        type=Path,
        nargs="+",
        metavar="CSV",
        help="only draw the recall/p95 plot of earlier runs' CSVs into --out-dir/scale_plot.png",
    )
    return p.parse_args()


def make_queries(args: argparse.Namespace, count: int | None = None, offset: int = 10_000) -> np.ndarray:
    """Queries shaped like the library: new objects of its categories (mean of views of an unseen asset)."""
    rng = np.random.default_rng(args.seed)  # the library's own centres: same seed, drawn first
    centres = cluster_centres(args.clusters, args.dim, rng)
    q_rng = np.random.default_rng(args.seed + offset)
    scale = 1.0 / np.sqrt(args.dim)
    count = args.queries if count is None else count
    q = centres[q_rng.integers(0, args.clusters, count)]
    q = q + 0.6 * scale * q_rng.standard_normal((count, args.dim), dtype=np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


class TruthAccumulator:
    """Exact per-view top-k (max over each asset's views), merged block by block."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries, self.k = queries, k
        self.idx = np.full((len(queries), 0), -1, dtype=np.int64)
        self.score = np.full((len(queries), 0), -np.inf, dtype=np.float32)

    def add(self, start: int, block: np.ndarray) -> None:
        """Fold in one block (count, views, dim) whose first asset is `start`."""
        count, views, dim = block.shape
        scores = (block.reshape(-1, dim) @ self.queries.T).reshape(count, views, -1).max(axis=1).T
        idx = np.concatenate(
            [self.idx, np.broadcast_to(np.arange(start, start + count), scores.shape)], axis=1
        )
        score = np.concatenate([self.score, scores], axis=1)
        keep = np.argpartition(-score, self.k - 1, axis=1)[:, : self.k]
        self.idx = np.take_along_axis(idx, keep, axis=1)
        self.score = np.take_along_axis(score, keep, axis=1)

    def ids(self) -> list[set[str]]:
        """The exact top-k asset ids of each query."""
        return [{f"syn{i:07d}" for i in row} for row in self.idx]


def load_library(conn, args: argparse.Namespace, encoder: str, truth: TruthAccumulator) -> dict:
    """Load catalog, views and per-asset means block by block; returns load figures."""
    tables = ensure_encoder(conn, encoder, args.dim, storage=args.storage)
    rows, load_s = 0, 0.0
    bar = progress(total=args.assets, desc="load", unit="asset")
    for start, block in view_blocks(args.assets, args.views, args.dim, args.seed, args.clusters, block=5000):
        truth.add(start, block)
        ids = [f"syn{i:07d}" for i in range(start, start + len(block))]
        t0 = time.perf_counter()
        catalog = [
            Asset(
                asset_id=a,
                caption_en=f"synthetic {a}",
                high_quality=(start + i) % 10 == 0,
                view_paths=tuple("" for _ in range(args.views)),
            )
            for i, a in enumerate(ids)
        ]
        load_catalog(conn, catalog, f"catalog_{start:09d}")
        load_vectors(
            conn,
            tables,
            VectorKind.VIEW,
            [a for a in ids for _ in range(args.views)],
            block.reshape(-1, args.dim),
            f"views_{start:09d}",
            sub_keys=[v for _ in ids for v in range(args.views)],
        )
        pooled = block.mean(axis=1)
        pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
        load_vectors(conn, tables, VectorKind.ASSET, ids, pooled, f"assets_{start:09d}")
        load_s += time.perf_counter() - t0
        rows += len(ids) * (args.views + 1)
        bar.update(len(ids))
    bar.close()
    return {"rows": rows, "load_s": round(load_s, 1), "rows_per_s": round(rows / load_s) if load_s else 0}


def accumulate_truth_only(args: argparse.Namespace, truth: TruthAccumulator) -> None:
    """With --reuse: regenerate the same blocks for the exact truth, without loading them again."""
    for start, block in view_blocks(args.assets, args.views, args.dim, args.seed, args.clusters, block=5000):
        truth.add(start, block)


@dataclass
class Measure:
    """Latencies and recall of one configuration with one client count."""

    p50: float
    p95: float
    p99: float
    qps: float
    recall: float


def measure(
    db: Database,
    search,
    queries: np.ndarray,
    truth: list[set[str]],
    k: int,
    clients: int,
    warmup: np.ndarray,
) -> Measure:
    """Run every query (each client takes its share) and time each one, after untimed warm-up queries."""
    latencies: list[float] = []
    recalls: list[float] = []
    lock = threading.Lock()

    def client(part: range) -> None:
        with db.connection() as conn:
            for i in part:
                t = time.perf_counter()
                hits = search(conn, queries[i])
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    recalls.append(len({h.asset_id for h in hits} & truth[i]) / k)

    # Warm the plans and the index's upper levels with other queries than the measured ones, so
    # the order in which configurations run does not decide their figures.
    with db.connection() as conn:
        for q in warmup:
            search(conn, q)
    parts = [range(c, len(queries), clients) for c in range(clients)]
    threads = [threading.Thread(target=client, args=(p,)) for p in parts]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.array(latencies)
    return Measure(
        *(round(float(np.percentile(lat, p)), 2) for p in (50, 95, 99)),
        round(len(lat) / wall, 1),
        round(float(np.mean(recalls)), 4),
    )


def line(row: dict, r: Measure, k: int) -> str:
    """One printed result line."""
    where = f"{row['index']:<26} {row['knob']:<13} rerank {row['rerank'] or '-':<3} clients {row['clients']}"
    return (
        f"  {where}: p50 {r.p50:6.2f}  p95 {r.p95:6.2f}  p99 {r.p99:6.2f} ms  {r.qps:7.1f} q/s  "
        f"recall@{k} {r.recall:.3f}"
    )


def relation_mb(conn, name: str) -> float:
    """Size of a table (heap and TOAST, without its indexes, which are reported apart) or an index in MB."""
    return round(conn.execute("SELECT pg_table_size(%s::regclass)", (name,)).fetchone()[0] / 2**20, 1)


def main() -> None:
    """Load, then build and measure every configuration; print the table, write CSV and a plot."""
    args = parse_args()
    if args.plot:
        plot_csvs(args.plot, args.out_dir / "scale_plot.png", args.k)
        return
    configure_logging("WARNING")
    # One pooled connection per client (and one spare): with fewer, clients queue for connections
    # and time out instead of querying concurrently.
    settings = load_settings(
        db_name=args.db_name,
        maintenance_work_mem=args.maintenance_work_mem,
        db_pool_size=max(args.clients) + 1,
    )
    encoder = f"bench:{args.assets}x{args.views}x{args.dim}-{args.storage}"
    budget = int(args.memory_fraction * physical_memory())
    queries = make_queries(args)
    warmup = make_queries(args, count=50, offset=20_000)
    truth = TruthAccumulator(queries, args.k)
    rows: list[dict] = []
    base = {"assets": args.assets, "views": args.views, "dim": args.dim, "storage": args.storage}
    started = time.perf_counter()
    with Database.open(settings) as db:
        with db.connection() as conn:
            tables = ensure_encoder(conn, encoder, args.dim, storage=args.storage)
            loaded = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(tables.ident(VectorKind.ASSET))
            ).fetchone()[0]
            cache = (
                args.out_dir / f"truth_{args.assets}x{args.views}x{args.dim}_s{args.seed}_q{args.queries}.npy"
            )
            if args.reuse and loaded == args.assets:
                print(f"reusing {loaded:,} loaded assets of {encoder}")
                if cache.is_file():
                    truth.idx = np.load(cache)
                else:
                    accumulate_truth_only(args, truth)
                load = {}
            else:
                drop_encoder(conn, encoder)
                load = load_library(conn, args, encoder, truth)
                tables = ensure_encoder(conn, encoder, args.dim, storage=args.storage)
                print(f"loaded {load['rows']:,} rows in {load['load_s']} s: {load['rows_per_s']:,} rows/s")
            conn.execute(sql.SQL("ANALYZE {}").format(tables.ident(VectorKind.VIEW)))
            conn.execute(sql.SQL("ANALYZE {}").format(tables.ident(VectorKind.ASSET)))
            sizes = {
                "view_table_mb": relation_mb(conn, tables.table(VectorKind.VIEW)),
                "asset_table_mb": relation_mb(conn, tables.table(VectorKind.ASSET)),
            }
            print(
                f"tables: views {sizes['view_table_mb']:,} MB, per-asset means {sizes['asset_table_mb']:,} MB"
            )
        if args.prewarm:  # a sequential read of the heaps leaves them in the OS page cache
            t0 = time.perf_counter()
            with db.connection() as conn, conn.transaction():
                # count(*) alone would be answered from the smaller primary-key index.
                conn.execute("SET LOCAL enable_indexonlyscan = off")
                conn.execute("SET LOCAL enable_indexscan = off")
                conn.execute("SET LOCAL enable_bitmapscan = off")
                for kind in (VectorKind.VIEW, VectorKind.ASSET):
                    read = sql.SQL("SELECT count(*) FROM {} WHERE high_quality OR NOT high_quality")
                    conn.execute(read.format(tables.ident(kind)))
            print(f"prewarmed the tables in {time.perf_counter() - t0:.0f} s")
        truth_ids = truth.ids()
        args.out_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache, truth.idx)
        so_far = time.perf_counter() - started
        print(f"exact per-view truth for {len(queries)} queries ready ({so_far:.0f} s so far)")

        groups = [(VectorKind.VIEW, ["views"])] if "views" in args.layouts else []
        shared = [layout for layout in ("pooled", "asset") if layout in args.layouts]
        if shared:  # one per-asset index serves both the pooled re-rank and the means alone
            groups.append((VectorKind.ASSET, shared))
        for kind, layouts in groups:
            methods = (
                [("hnsw", m, efc) for m in args.m for efc in args.ef_construction]
                if "hnsw" in args.methods
                else []
            )
            if "ivfflat" in args.methods and kind is VectorKind.ASSET:
                methods += [("ivfflat", lists or ivfflat_lists(args.assets), None) for lists in args.lists]
            for method, size, efc in methods:  # size: HNSW m, or IVFFlat lists
                hnsw = method == "hnsw"
                params = IndexParams(
                    method=method,
                    m=size if hnsw else 16,
                    ef_construction=efc or 64,
                    lists=None if hnsw else size,
                    maintenance_work_mem=args.maintenance_work_mem,
                    memory_budget=budget,
                )
                suffix = f" m={size} efc={efc}" if hnsw else f" lists={size}"
                with db.connection() as conn:
                    for other in VectorKind:
                        if other is not VectorKind.CAPTION:
                            drop_indexes(conn, tables.table(other))
                    try:
                        build = build_indexes(conn, tables, params, kinds=(kind,))[0]
                    except IndexTooLarge as exc:
                        print(f"{kind.value} {method}{suffix}: REFUSED by the memory guard: {exc}")
                        for layout in layouts:
                            rows.append(
                                {
                                    **base,
                                    "layout": layout,
                                    "index": f"{layout} {method}{suffix}",
                                    "refused": str(exc),
                                }
                            )
                        continue
                    index_mb = relation_mb(conn, build.index)
                    if args.prewarm:  # the only ANN index now: the others were dropped above
                        prewarm_indexes(conn)
                print(f"{kind.value} {method}{suffix}: built in {build.seconds:.1f} s, {index_mb:,} MB")
                for layout in layouts:
                    label = f"{layout} {method}{suffix}"
                    knobs = args.ef_search if method == "hnsw" else args.probes
                    factors = args.rerank if layout == "pooled" else [None]
                    for knob in knobs:
                        for factor in factors:
                            tuning = SearchTuning(
                                ef_search=knob,
                                probes=knob,
                                views_per_asset=args.views,
                                rerank_factor=factor or 10,
                            )
                            if layout == "pooled":

                                def search(conn, q, t=tuning):
                                    return knn_pooled(conn, tables, q, args.k, tuning=t)
                            else:

                                def search(conn, q, t=tuning, kind=kind):
                                    return knn(conn, tables, kind, q, args.k, tuning=t)

                            for clients in args.clients:
                                r = measure(db, search, queries, truth_ids, args.k, clients, warmup)
                                row = {
                                    **base,
                                    **sizes,
                                    **load,
                                    "layout": layout,
                                    "index": label,
                                    "build_s": round(build.seconds, 1),
                                    "index_mb": index_mb,
                                    "knob": f"{'ef_search' if method == 'hnsw' else 'probes'}={knob}",
                                    "rerank": factor,
                                    "clients": clients,
                                    "p50_ms": r.p50,
                                    "p95_ms": r.p95,
                                    "p99_ms": r.p99,
                                    "qps": r.qps,
                                    f"recall@{args.k}": r.recall,
                                }
                                rows.append(row)
                                print(line(row, r, args.k))
    name = f"scale_{args.assets}_{args.dim}_{args.storage}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out_dir / f"{name}.csv")
    plot(rows, args.out_dir / f"{name}.png", args.k, name)
    print(f"wrote {args.out_dir / name}.csv and .png  (total {time.perf_counter() - started:.0f} s)")


def plot_csvs(paths: list[Path], out: Path, k: int) -> None:
    """Plot the rows of earlier runs' CSVs together (one figure for several invocations)."""
    import csv

    rows: list[dict] = []
    for path in paths:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("p95_ms"):
                    row.update(
                        p95_ms=float(row["p95_ms"]),
                        clients=int(row["clients"]),
                        rerank=int(row["rerank"]) if row["rerank"] else None,
                        **{f"recall@{k}": float(row[f"recall@{k}"])},
                    )
                rows.append(row)
    shapes = sorted({f"{r['assets']} x {r['views']} x {r['dim']} {r['storage']}" for r in rows})
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, out, k, ", ".join(shapes))
    print(f"wrote {out}")


def plot(rows: list[dict], path: Path, k: int, title: str) -> None:
    """Recall against p95 latency (one client), one line per index configuration and re-rank factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))

    def series(r: dict) -> str:
        return f"{r['index']}, re-rank {r['rerank']}" if r.get("rerank") else r["index"]

    for label in dict.fromkeys(series(r) for r in rows if r.get("p95_ms")):
        pts = sorted(
            (r["p95_ms"], r[f"recall@{k}"])
            for r in rows
            if r.get("p95_ms") and series(r) == label and r.get("clients") == 1
        )
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=label)
    ax.axvline(10, color="grey", ls="--", lw=0.8)
    ax.axhline(0.95, color="grey", ls="--", lw=0.8)
    ax.set(
        xlabel="p95 latency, 1 client (ms)", ylabel=f"recall@{k} vs exact per-view", title=title, xscale="log"
    )
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
