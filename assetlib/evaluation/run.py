"""Run an evaluation: every usable algorithm × mode × language × image layout over a query set.

Every usable algorithm with stored vectors is run over text (text→text, text→image, fused) and
image (image→image, image→text, fused) queries, per language, and per image layout the encoder's
vectors can serve (store/layout.py: per-view max, pooled, mean only; a fused encoder's vector).
Results are cached by a fingerprint of everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from psycopg import sql

from assetlib.evaluation.metrics import hit_curve, summarize
from assetlib.evaluation.queries import IN_GRAMMAR, Query, QuerySet
from assetlib.evaluation.report import REPORT_FILES, TOP_K, EvalReport, read_report, write_report
from assetlib.logs import progress as progress_bar
from assetlib.media.images import load_rgb
from assetlib.search.service import AlgorithmUnavailable, SearchError, SearchResult, SearchService
from assetlib.store.layout import layout_label, layouts_to_compare
from assetlib.store.load import CATALOG_TARGET
from assetlib.vocab import FUSED_PARTS, MODES_FOR, Language, Mode, QueryKind, searches_captions

log = logging.getLogger(__name__)

KEYWORD = Mode.KEYWORD.value  # the "algorithm" of keyword rows: no encoder is involved


@dataclass
class Config:
    """One cell of the comparison: algorithm × query kind × mode × image layout × language."""

    algorithm: str
    kind: str
    mode: str
    layout: str | None
    language: str | None
    layout_label: str | None = None  # what the layout means for this encoder (store/layout.py)

    @property
    def label(self) -> str:
        """A short name for tables and legends."""
        parts = [self.algorithm] if self.mode == Mode.KEYWORD else [self.algorithm, self.mode]
        if self.layout:
            parts.append(self.layout)
        if self.language:
            parts.append(self.language)
        return " ".join(parts)


def configs_for(service: SearchService, algorithms: Sequence[str]) -> list[Config]:
    """Every configuration the usable, stored algorithms support (an unknown name is a SearchError).

    Keyword search uses no encoder: it is one row per language (algorithm "keyword"); hybrid is
    one row per algorithm and language, on the layout the store serves by default.
    """
    out: list[Config] = []
    keyword_languages: list[str] = []
    for algorithm in algorithms:
        try:
            encoder = service.encoder(algorithm)  # a typo raises SearchError: never skipped silently
        except AlgorithmUnavailable as exc:
            log.warning("evaluation skips %s: %s", algorithm, exc)
            continue
        info = encoder.info
        layouts = layouts_to_compare(info.fused_views) if info.embeds_images else ()
        for kind in QueryKind:
            if kind is QueryKind.IMAGE and not info.embeds_images:
                continue
            languages: list[str | None] = (
                [lang for lang in Language if lang in info.languages] if kind is QueryKind.TEXT else [None]
            )
            for language in languages:
                for mode in MODES_FOR[kind]:
                    if mode is Mode.KEYWORD:
                        if language is not None and language not in keyword_languages:
                            keyword_languages.append(language)
                        continue
                    if mode is Mode.HYBRID:
                        out.append(Config(algorithm, kind.value, mode.value, None, language))
                        continue
                    parts = FUSED_PARTS[kind] if mode is Mode.FUSED else (mode,)
                    if all(searches_captions(p) for p in parts):  # captions only: no image layout
                        out.append(Config(algorithm, kind.value, mode.value, None, language))
                    elif info.embeds_images:
                        out.extend(
                            Config(
                                algorithm,
                                kind.value,
                                mode.value,
                                layout.value,
                                language,
                                layout_label(layout, info.fused_views),
                            )
                            for layout in layouts
                        )
    out.extend(
        Config(KEYWORD, QueryKind.TEXT.value, Mode.KEYWORD.value, None, lang) for lang in keyword_languages
    )
    return out


def _search(
    service: SearchService, config: Config, query: Query, images: dict[str, Image.Image]
) -> SearchResult:
    if query.kind == QueryKind.TEXT:
        return service.search_text(
            query.text or "",
            config.algorithm,
            config.mode,
            query.language or "auto",
            top_k=TOP_K,
            layout=config.layout,
        )
    if query.image not in images:
        images[query.image or ""] = load_rgb(query.image or "")
    image = images[query.image or ""]
    return service.search_images([image], config.algorithm, config.mode, top_k=TOP_K, layout=config.layout)


def _timed_search(
    service: SearchService, config: Config, query: Query, images: dict[str, Image.Image]
) -> tuple[SearchResult, float]:
    started = time.perf_counter()
    result = _search(service, config, query, images)
    return result, (time.perf_counter() - started) * 1000


def evaluate(
    service: SearchService,
    query_set: QuerySet,
    algorithms: Sequence[str],
    out_dir: Path,
    progress: bool = True,
) -> EvalReport:
    """Run every configuration over the queries; write metrics.json, results.csv and the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    configs = configs_for(service, algorithms)
    images: dict[str, Image.Image] = {}
    rows: list[dict] = []
    curves: dict[str, list[float]] = {}
    per_category: dict[str, dict[str, float]] = {}
    for config in progress_bar(configs, desc="evaluate", unit="config", disable=not progress):
        selected = [
            q
            for q in query_set.queries
            if q.kind == config.kind and (config.language is None or q.language == config.language)
        ]
        if not selected:
            continue
        rankings: list[list[str]] = []
        relevants: list[set[str]] = []
        latencies: list[float] = []
        groups: list[str] = []
        sets: list[str] = []
        try:
            for q in selected:
                # A database restart mid-evaluation is waited for and the query asked again; its
                # latency is that of the attempt that answered.
                result, ms = service.db.retry(
                    partial(_timed_search, service, config, q, images), f"evaluate {config.label}"
                )
                latencies.append(ms)
                rankings.append([h.asset_id for h in result.hits])
                relevants.append(set(q.relevant))
                groups.append(q.group.split("/")[0])
                sets.append(q.query_set)
        except (AlgorithmUnavailable, SearchError) as exc:
            log.warning("evaluation of %s failed: %s", config.label, exc)
            continue
        # One row per query set (in-grammar, natural): the same searches, reported side by side.
        for query_set_name in sorted(set(sets), key=lambda s: (s != IN_GRAMMAR, s)):
            keep = [i for i, s in enumerate(sets) if s == query_set_name]
            label = config.label if query_set_name == IN_GRAMMAR else f"{config.label} [{query_set_name}]"
            picked_rankings = [rankings[i] for i in keep]
            picked_relevants = [relevants[i] for i in keep]
            metrics = summarize(picked_rankings, picked_relevants)
            picked_latencies = [latencies[i] for i in keep]
            rows.append(
                {
                    **asdict(config),
                    "query_set": query_set_name,
                    "label": label,
                    **{k: round(v, 4) for k, v in metrics.items()},
                    "latency_p50_ms": round(statistics.median(picked_latencies), 2),
                    "latency_p95_ms": round(float(np.percentile(picked_latencies, 95)), 2),
                }
            )
            curves[label] = [round(v, 4) for v in hit_curve(picked_rankings, picked_relevants, TOP_K)]
            by_cat: dict[str, list[float]] = {}
            for i in keep:
                by_cat.setdefault(groups[i], []).append(1.0 if set(rankings[i][:10]) & relevants[i] else 0.0)
            per_category[label] = {c: round(float(np.mean(v)), 4) for c, v in sorted(by_cat.items())}
    log.info("evaluated %d configurations over %d queries", len(rows), len(query_set.queries))
    report = EvalReport(rows, curves, per_category, out_dir)
    write_report(report, query_set.source, query_set.seed)
    return report


# Bumped when the way queries are encoded changes while the encoders' weights do not (2: image
# queries to the Qwen models carry the query instruction): earlier cached reports no longer hold.
QUERY_ENCODING_REVISION = 2


def evaluation_fingerprint(service: SearchService, query_set: QuerySet, configs: Sequence[Config]) -> str:
    """What an evaluation's results depend on: queries, configurations, encoders, stored vectors,
    indexes and search settings. Equal fingerprints give equal rankings."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"query-encoding/{QUERY_ENCODING_REVISION}".encode())
    digest.update(json.dumps([asdict(q) for q in query_set.queries], sort_keys=True).encode())
    digest.update(json.dumps([asdict(c) for c in configs], sort_keys=True).encode())
    s = service.settings
    digest.update(
        f"{s.hnsw_ef_search}/{s.ivfflat_probes}/{s.pooled_rerank_factor}/{s.views_per_asset}/"
        f"{s.qwen_num_images}/{s.image_layout}".encode()
    )
    with service.db.connection() as conn:
        # Keyword rankings depend on the catalog's words: its load batches say when they changed.
        catalog = conn.execute(
            "SELECT batch_key, batch_hash FROM load_batches WHERE target = %s ORDER BY 1", (CATALOG_TARGET,)
        ).fetchall()
        digest.update(json.dumps(catalog).encode())
        for algorithm in sorted({c.algorithm for c in configs} - {KEYWORD}):
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


def evaluate_cached(
    service: SearchService,
    query_set: QuerySet,
    algorithms: Sequence[str],
    out_dir: Path,
    cache_root: Path,
    progress: bool = True,
) -> tuple[EvalReport, bool]:
    """`evaluate`, or its earlier results when nothing it depends on changed; (report, reused)."""
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
