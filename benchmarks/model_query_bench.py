"""Query-by-3D-model benchmark: how many views, how large, against latency and self-retrieval.

For a sample of the demo library's GLBs, searches with each model (rendered on a warm renderer
process, encoded, searched) under several view counts and sizes, and prints per configuration:
median and p95 latency split into render / encode / database, and how often the model's own
asset comes back first (hit@1) or in the top 5. Needs the embedded demo (`make demo`).

    python benchmarks/model_query_bench.py --assets 60
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from pathlib import Path

from assetlib.config import load_settings
from assetlib.records import write_csv
from assetlib.search.service import SearchService

CONFIGS = [(8, 256), (8, 224), (4, 224), (4, 128), (2, 224)]  # (views, pixels)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 2 else values[0]


def main() -> None:
    """Run every configuration over the sampled models and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=60, help="models sampled from the library")
    p.add_argument("--algorithm", default="siglip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/bench/model_query_bench.csv"))
    args = p.parse_args()
    settings = load_settings()
    demo_model = settings.home / "models" / "siglip-demo" / "model"
    if "SIGLIP_MODEL" not in os.environ and demo_model.is_dir():
        settings = load_settings(siglip_model=str(demo_model))
    with SearchService(settings) as probe, probe.db.connection() as conn:
        models = conn.execute(
            "SELECT asset_id, glb_path FROM assets WHERE glb_path IS NOT NULL ORDER BY asset_id"
        ).fetchall()
    sample = random.Random(args.seed).sample(models, min(args.assets, len(models)))
    print(f"{len(sample)} models from {len(models)}; encoder {settings.siglip_model}")
    rows = []
    for views, size in CONFIGS:
        tuned = settings.model_copy(update={"query_views": views, "query_render_size": size})
        with SearchService(tuned) as service:
            started = time.perf_counter()
            service.search_model(sample[0][1], args.algorithm, top_k=10)  # the cold start, once
            cold = time.perf_counter() - started
            totals, render, encode, db, hit1, hit5 = [], [], [], [], 0, 0
            for asset_id, glb in sample:
                started = time.perf_counter()
                result = service.search_model(glb, args.algorithm, top_k=10)
                totals.append((time.perf_counter() - started) * 1000)
                render.append(result.timings_ms["render_ms"])
                encode.append(result.timings_ms["encode_ms"])
                db.append(result.timings_ms["db_ms"])
                ids = [h.asset_id for h in result.hits]
                hit1 += ids[:1] == [asset_id]
                hit5 += asset_id in ids[:5]
        row = {
            "views": views,
            "pixels": size,
            "cold_start_s": round(cold, 2),
            "p50_ms": round(statistics.median(totals), 1),
            "p95_ms": round(_p95(totals), 1),
            "render_ms_p50": round(statistics.median(render), 1),
            "encode_ms_p50": round(statistics.median(encode), 1),
            "db_ms_p50": round(statistics.median(db), 1),
            "self_hit_at_1": round(hit1 / len(sample), 3),
            "self_hit_at_5": round(hit5 / len(sample), 3),
        }
        rows.append(row)
        print(
            f"{views} views × {size:>3} px: p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
            f"(render {row['render_ms_p50']}, encode {row['encode_ms_p50']}, db {row['db_ms_p50']})  "
            f"self hit@1 {row['self_hit_at_1']:.3f}  hit@5 {row['self_hit_at_5']:.3f}  "
            f"cold start {row['cold_start_s']} s"
        )
    write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
