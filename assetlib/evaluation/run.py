"""Retrieval evaluation: benchmark queries from a library → SearchService → metrics.json, a table, plots.

Query sets are built once per run folder and saved (queries.json), so later runs are comparable.
- Demo library (ground-truth attributes): one English and one Chinese text query per
  (category, colour) group, phrased from the attributes ("a red chair", "一把红色的椅子"), relevant =
  every asset of that group; image queries are held-out views (rendered at another elevation and
  azimuth than the indexed views) of one asset per group, relevant = its group.
- Real data: a seeded sample of captions (English, and Chinese when present) and held-out views
  (views the index did not select), relevant = the caption's or view's own asset.
Every usable algorithm with stored vectors is run over text (text→text, text→image, fused) and
image (image→image, image→text, fused) queries, per language, and per image layout where the
encoder has several (SigLIP: max over views vs mean-pooled; Qwen: its fused multi-image vector).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from assetlib.evaluation.metrics import hit_curve, summarize
from assetlib.library.asset import Asset
from assetlib.library.demo.generator import short_phrases
from assetlib.records import write_csv
from assetlib.search.service import AlgorithmUnavailable, SearchError, SearchService

log = logging.getLogger(__name__)

TOP_K = 50  # ranking depth kept per query (recall@k curves go to 50)


@dataclass
class Query:
    """One benchmark query: text (with language) or an image file, and its relevant assets."""

    qid: str
    kind: str  # "text" | "image"
    relevant: list[str]
    group: str
    text: str | None = None
    language: str | None = None
    image: str | None = None
    source_asset: str | None = None


@dataclass
class QuerySet:
    """The saved queries of a run."""

    queries: list[Query]
    seed: int
    source: str  # "attributes" (demo ground truth) or "own-asset" (real data)

    def save(self, path: Path) -> None:
        """Write queries.json."""
        path.write_text(
            json.dumps(
                {"seed": self.seed, "source": self.source, "queries": [asdict(q) for q in self.queries]},
                ensure_ascii=False,
                indent=1,
            )
        )

    @classmethod
    def load(cls, path: Path) -> QuerySet:
        """Read queries.json."""
        data = json.loads(path.read_text())
        return cls([Query(**q) for q in data["queries"]], data["seed"], data["source"])


def _group(asset: Asset) -> str | None:
    attrs = asset.attributes or {}
    return f"{attrs['category']}/{attrs['colour']}" if "category" in attrs and "colour" in attrs else None


def _held_out_view(asset: Asset, out_dir: Path, seed: int) -> Path | None:
    """A view of the asset that the index does not hold: an unselected render, else one rendered now."""
    indexed = {p.resolve() for p in asset.view_paths}
    if asset.view_paths:
        folder = asset.view_paths[0].parent.parent
        others = sorted(p for p in folder.glob("*/*.png") if p.resolve() not in indexed)
        if others:
            return random.Random(f"{seed}/{asset.asset_id}").choice(others)
    if asset.glb_path is None:
        return None
    from PIL import Image

    from assetlib.media.meshes import load_mesh
    from assetlib.media.render import Renderer, RenderSettings

    target = out_dir / "query_views" / (asset.asset_id.replace("/", "__") + ".png")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Between two indexed azimuths and higher than them: a viewpoint the index never saw.
        settings = RenderSettings(views=1, size=256, elevation_deg=38.0, start_azimuth_deg=52.5)
        renderer = Renderer(settings)
        try:
            rgba, _ = renderer.render_scene(load_mesh(asset.glb_path))[0]
        finally:
            renderer.close()
        Image.fromarray(rgba, "RGBA").save(target)
    return target


def build_queries(assets: Sequence[Asset], out_dir: Path, seed: int = 0, max_queries: int = 200) -> QuerySet:
    """Benchmark queries for a library (see the module docstring); saved to out_dir/queries.json."""
    rng = random.Random(seed)
    by_group: dict[str, list[Asset]] = {}
    for asset in sorted(assets, key=lambda a: a.asset_id):
        group = _group(asset)
        if group:
            by_group.setdefault(group, []).append(asset)
    queries: list[Query] = []
    if by_group:
        source = "attributes"
        groups = sorted(by_group)
        rng.shuffle(groups)
        for group in sorted(groups[:max_queries]):
            members = [a.asset_id for a in by_group[group]]
            category, colour = group.split("/")
            en, zh = short_phrases(category, colour)
            queries.append(Query(f"t-en-{group}", "text", members, group, text=en, language="en"))
            queries.append(Query(f"t-zh-{group}", "text", members, group, text=zh, language="zh"))
            probe = rng.choice(by_group[group])
            view = _held_out_view(probe, out_dir, seed)
            if view is not None:
                queries.append(
                    Query(f"i-{group}", "image", members, group, image=str(view), source_asset=probe.asset_id)
                )
    else:
        source = "own-asset"
        sample = rng.sample(sorted(assets, key=lambda a: a.asset_id), min(max_queries, len(assets)))
        for asset in sample:
            group = asset.tags[0] if asset.tags else "all"
            for language, text in (("en", asset.caption_en), ("zh", asset.caption_cn)):
                if text:
                    queries.append(
                        Query(
                            f"t-{language}-{asset.asset_id}",
                            "text",
                            [asset.asset_id],
                            group,
                            text=text,
                            language=language,
                        )
                    )
            view = _held_out_view(asset, out_dir, seed)
            if view is not None:
                queries.append(
                    Query(
                        f"i-{asset.asset_id}",
                        "image",
                        [asset.asset_id],
                        group,
                        image=str(view),
                        source_asset=asset.asset_id,
                    )
                )
    query_set = QuerySet(queries, seed, source)
    out_dir.mkdir(parents=True, exist_ok=True)
    query_set.save(out_dir / "queries.json")
    log.info(
        "built %d queries (%d text, %d image) from %s",
        len(queries),
        sum(q.kind == "text" for q in queries),
        sum(q.kind == "image" for q in queries),
        source,
    )
    return query_set


@dataclass
class Config:
    """One cell of the comparison: algorithm × query kind × mode × image layout × language."""

    algorithm: str
    kind: str
    mode: str
    layout: str | None
    language: str | None

    @property
    def label(self) -> str:
        """A short name for tables and legends."""
        parts = [self.algorithm, self.mode]
        if self.layout:
            parts.append(self.layout)
        if self.language:
            parts.append(self.language)
        return " ".join(parts)


def configs_for(service: SearchService, algorithms: Sequence[str]) -> list[Config]:
    """Every configuration the usable, stored algorithms support (an unknown name is a SearchError)."""
    out = []
    for algorithm in algorithms:
        try:
            encoder = service.encoder(algorithm)  # a typo raises SearchError: never skipped silently
        except AlgorithmUnavailable as exc:
            log.warning("evaluation skips %s: %s", algorithm, exc)
            continue
        info = encoder.info
        layouts = (
            [None] if not info.embeds_images else (["asset"] if info.fused_views else ["views", "asset"])
        )
        for language in [lang for lang in ("en", "zh") if lang in info.languages]:
            out.append(Config(algorithm, "text", "text_to_text", None, language))
            if info.embeds_images:
                for layout in layouts:
                    out.append(Config(algorithm, "text", "text_to_image", layout, language))
                    out.append(Config(algorithm, "text", "fused", layout, language))
        if info.embeds_images:
            for layout in layouts:
                for mode in ("image_to_image", "image_to_text", "fused"):
                    out.append(Config(algorithm, "image", mode, layout, None))
    return out


@dataclass
class EvalReport:
    """The comparison table, recall@k curves, per-category recall and where the files are."""

    rows: list[dict]
    curves: dict[str, list[float]]
    per_category: dict[str, dict[str, float]]
    out_dir: Path
    files: dict[str, str] = field(default_factory=dict)


def evaluate(
    service: SearchService,
    query_set: QuerySet,
    algorithms: Sequence[str],
    out_dir: Path,
    progress: bool = True,
) -> EvalReport:
    """Run every configuration over the queries; write metrics.json, results.csv and the figures."""
    from PIL import Image

    from assetlib.logs import progress as tqdm
    from assetlib.media.images import load_rgb

    out_dir.mkdir(parents=True, exist_ok=True)
    configs = configs_for(service, algorithms)
    images: dict[str, Image.Image] = {}
    rows, curves, per_category = [], {}, {}
    for config in tqdm(configs, desc="evaluate", unit="config", disable=not progress):
        selected = [
            q
            for q in query_set.queries
            if q.kind == config.kind and (config.language is None or q.language == config.language)
        ]
        if not selected:
            continue
        rankings, relevants, latencies, groups = [], [], [], []
        try:
            for q in selected:
                started = time.perf_counter()
                if q.kind == "text":
                    result = service.search_text(
                        q.text or "",
                        config.algorithm,
                        config.mode,
                        q.language or "auto",
                        top_k=TOP_K,
                        layout=config.layout,
                    )
                else:
                    image = images.setdefault(q.image or "", load_rgb(q.image or ""))
                    result = service.search_images(
                        [image], config.algorithm, config.mode, top_k=TOP_K, layout=config.layout
                    )
                latencies.append((time.perf_counter() - started) * 1000)
                rankings.append([h.asset_id for h in result.hits])
                relevants.append(set(q.relevant))
                groups.append(q.group.split("/")[0])
        except (AlgorithmUnavailable, SearchError) as exc:
            log.warning("evaluation of %s failed: %s", config.label, exc)
            continue
        metrics = summarize(rankings, relevants)
        row = {
            **asdict(config),
            "label": config.label,
            **{k: round(v, 4) for k, v in metrics.items()},
            "latency_p50_ms": round(statistics.median(latencies), 2),
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 2),
        }
        rows.append(row)
        curves[config.label] = [round(v, 4) for v in hit_curve(rankings, relevants, TOP_K)]
        by_cat: dict[str, list[float]] = {}
        for ranking, rel, cat in zip(rankings, relevants, groups, strict=True):
            by_cat.setdefault(cat, []).append(1.0 if set(ranking[:10]) & rel else 0.0)
        per_category[config.label] = {c: round(float(np.mean(v)), 4) for c, v in sorted(by_cat.items())}
    report = EvalReport(rows, curves, per_category, out_dir)
    _write(report, query_set)
    return report


def _write(report: EvalReport, query_set: QuerySet) -> None:
    out = report.out_dir
    (out / "metrics.json").write_text(
        json.dumps(
            {
                "definitions": "r@k = a relevant asset in the top k (hit rate); recall@k = share of "
                "relevant assets in the top k; mrr; map; ndcg@10 (binary gains); see assetlib/metrics.py",
                "query_source": query_set.source,
                "seed": query_set.seed,
                "rows": report.rows,
                "curves": report.curves,
                "per_category": report.per_category,
            },
            ensure_ascii=False,
            indent=1,
        )
    )
    write_csv(report.rows, out / "results.csv")
    report.files = {"metrics": str(out / "metrics.json"), "table": str(out / "results.csv")}
    report.files.update(plot_report(report))


def plot_report(report: EvalReport) -> dict[str, str]:
    """recall@k curves and per-category bars, saved as PNGs; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from assetlib.media.preview import use_cjk_font

    use_cjk_font()
    files = {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, kind in zip(axes, ("text", "image"), strict=True):
        for row in report.rows:
            if row["kind"] == kind:
                ax.plot(range(1, TOP_K + 1), report.curves[row["label"]], label=row["label"], lw=1.2)
        ax.set(
            xlabel="k",
            ylabel="recall@k (a relevant asset in the top k)",
            title=f"{kind} queries",
            xscale="log",
            ylim=(0, 1.02),
        )
        if ax.lines:
            ax.legend(fontsize=6.5, ncol=1)
        else:
            ax.text(
                0.5, 0.5, f"no {kind} queries evaluated", ha="center", va="center", transform=ax.transAxes
            )
    fig.tight_layout()
    files["recall_at_k"] = str(report.out_dir / "recall_at_k.png")
    fig.savefig(files["recall_at_k"], dpi=110)
    plt.close(fig)
    best = _best_per_algorithm(report.rows, kind="text", mode="text_to_image")
    if best:
        cats = sorted({c for label in best for c in report.per_category[label]})
        fig, ax = plt.subplots(figsize=(13, 4))
        width = 0.8 / len(best)
        for i, label in enumerate(best):
            values = [report.per_category[label].get(c, 0.0) for c in cats]
            ax.bar(np.arange(len(cats)) + i * width, values, width, label=label)
        ax.set_xticks(np.arange(len(cats)) + width * (len(best) - 1) / 2, cats, rotation=60, fontsize=8)
        ax.set(ylabel="r@10", title="text→image recall@10 per category", ylim=(0, 1.05))
        ax.legend(fontsize=8)
        fig.tight_layout()
        files["per_category"] = str(report.out_dir / "per_category.png")
        fig.savefig(files["per_category"], dpi=110)
        plt.close(fig)
    return files


def _best_per_algorithm(rows: list[dict], kind: str, mode: str) -> list[str]:
    best: dict[str, dict] = {}
    for row in rows:
        if (
            row["kind"] == kind
            and row["mode"] == mode
            and row.get("r@10", 0) >= best.get(row["algorithm"], {}).get("r@10", -1)
        ):
            best[row["algorithm"]] = row
    return [r["label"] for r in best.values()]


COMPARISON_COLUMNS = (
    "algorithm",
    "queries",
    "mode",
    "layout",
    "lang",
    "r@1",
    "r@5",
    "r@10",
    "recall@10",
    "MRR",
    "mAP",
    "nDCG@10",
    "p50 ms",
)


def comparison_cells(row: dict) -> list[str]:
    """One row of the comparison, formatted, in COMPARISON_COLUMNS order (Markdown and the dashboard)."""
    metrics = [f"{row[k]:.3f}" for k in ("r@1", "r@5", "r@10", "recall@10", "mrr", "map", "ndcg@10")]
    return [
        row["algorithm"],
        row["kind"],
        row["mode"],
        row.get("layout") or "–",
        row.get("language") or "–",
        *metrics,
        f"{row['latency_p50_ms']:.1f}",
    ]


def comparison_table(rows: list[dict]) -> str:
    """The comparison as a Markdown table (for notebooks, notes and the README)."""
    lines = ["| " + " | ".join(COMPARISON_COLUMNS) + " |", "|" + " --- |" * len(COMPARISON_COLUMNS)]
    lines += ["| " + " | ".join(comparison_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def find_latest_metrics(root: Path) -> Path | None:
    """The newest metrics.json under a folder of runs (None when nothing was evaluated yet)."""
    if not root.is_dir():
        return None
    found = [p for p in root.rglob("metrics.json") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def read_report(metrics_path: Path) -> EvalReport:
    """An evaluation read back from its metrics.json, with its figures (redrawn when missing)."""
    data = json.loads(metrics_path.read_text(encoding="utf-8"))
    report = EvalReport(data["rows"], data["curves"], data.get("per_category", {}), metrics_path.parent)
    report.files = {"metrics": str(metrics_path)}
    figures = {name: metrics_path.parent / f"{name}.png" for name in ("recall_at_k", "per_category")}
    curves = figures["recall_at_k"]
    if not curves.is_file() or curves.stat().st_mtime < metrics_path.stat().st_mtime:
        report.files.update(plot_report(report))
    else:
        report.files.update({name: str(p) for name, p in figures.items() if p.is_file()})
    return report


def cached_queries(
    assets: Sequence[Asset], cache_root: Path, seed: int = 0, max_queries: int = 200
) -> tuple[QuerySet, Path]:
    """The benchmark queries of a library, built once (held-out views rendered once) and reused.

    Keyed by the library's asset ids and captions, the seed and the size, so a changed library
    gets new queries and an unchanged one the same, comparable ones.
    """
    digest = hashlib.blake2b(digest_size=8)
    for asset in sorted(assets, key=lambda a: a.asset_id):
        digest.update(f"{asset.asset_id}\t{asset.caption_en}\t{asset.caption_cn}\n".encode())
    folder = cache_root / f"queries-{digest.hexdigest()}-s{seed}-n{max_queries}"
    path = folder / "queries.json"
    if path.is_file():
        log.info("reusing the benchmark queries in %s", folder)
        return QuerySet.load(path), folder
    folder.mkdir(parents=True, exist_ok=True)
    return build_queries(assets, folder, seed=seed, max_queries=max_queries), folder


def evaluation_fingerprint(service: SearchService, query_set: QuerySet, configs: Sequence[Config]) -> str:
    """What an evaluation's results depend on: queries, configurations, encoders, stored vectors,
    indexes and search settings. Equal fingerprints give equal rankings."""
    from psycopg import sql

    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps([asdict(q) for q in query_set.queries], sort_keys=True).encode())
    digest.update(json.dumps([asdict(c) for c in configs], sort_keys=True).encode())
    s = service.settings
    digest.update(
        f"{s.hnsw_ef_search}/{s.ivfflat_probes}/{s.pooled_rerank_factor}/{s.qwen_num_images}".encode()
    )
    with service.db.connection() as conn:
        for algorithm in sorted({c.algorithm for c in configs}):
            info = service.encoder(algorithm).info
            digest.update(f"{info.name}:{info.version}:{info.dim}".encode())
            batches = conn.execute(
                "SELECT target, batch_key, batch_hash FROM load_batches WHERE target LIKE %s ORDER BY 1, 2",
                (f"{info.name}/%",),
            ).fetchall()
            digest.update(json.dumps(batches).encode())
        indexes = conn.execute(
            sql.SQL("SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'emb\\_%' ORDER BY 1")
        ).fetchall()
        digest.update(json.dumps(indexes).encode())
    return digest.hexdigest()


REPORT_FILES = ("metrics.json", "results.csv", "recall_at_k.png", "per_category.png")


def evaluate_cached(
    service: SearchService,
    query_set: QuerySet,
    algorithms: Sequence[str],
    out_dir: Path,
    cache_root: Path,
    progress: bool = True,
) -> tuple[EvalReport, bool]:
    """`evaluate`, or its earlier results when nothing it depends on changed; (report, reused)."""
    import shutil

    configs = configs_for(service, algorithms)
    cached = cache_root / f"report-{evaluation_fingerprint(service, query_set, configs)}"
    out_dir.mkdir(parents=True, exist_ok=True)
    if (cached / "metrics.json").is_file():
        for name in REPORT_FILES:
            if (cached / name).is_file():
                shutil.copy2(cached / name, out_dir / name)
        log.info(
            "reused the evaluation in %s: same queries, vectors, indexes and settings (its latencies are "
            "from that run)",
            cached,
        )
        return read_report(out_dir / "metrics.json"), True
    report = evaluate(service, query_set, algorithms, out_dir, progress=progress)
    cached.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        if (out_dir / name).is_file():
            shutil.copy2(out_dir / name, cached / name)
    return report, False
