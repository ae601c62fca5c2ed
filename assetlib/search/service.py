"""SearchService: the one entry point the API and the dashboard use, for every mode and algorithm."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
from PIL import Image

from assetlib.config import Settings
from assetlib.encoders.base import Encoder, EncoderUnavailable
from assetlib.encoders.registry import ALGORITHMS, availability, get_encoder
from assetlib.store.db import Database
from assetlib.store.knn import (
    ImageLayout,
    Mode,
    SearchTuning,
    StoreHit,
    choose_layout,
    knn,
    knn_pooled,
    target_kind,
)
from assetlib.store.schema import EncoderTables, VectorKind, ann_indexes
from assetlib.store.schema import get_encoder as stored_encoder

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 1000
RRF_K = 60  # reciprocal rank fusion constant (Cormack et al.); ranks, not raw scores, are fused
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LANGUAGE_NAMES = {"english": "en", "chinese": "zh", "en": "en", "zh": "zh"}


class SearchMode(StrEnum):
    """What the query is compared with (the store's modes plus fused caption+render scoring)."""

    TEXT_TO_TEXT = "text_to_text"
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"
    IMAGE_TO_TEXT = "image_to_text"
    FUSED = "fused"


LAYOUT_TTL_S = 60.0  # how long the image layout chosen from the store's indexes is trusted


class SearchError(ValueError):
    """A query that cannot be served as asked (bad mode for the algorithm, empty query…)."""


class AlgorithmUnavailable(RuntimeError):
    """The algorithm exists but cannot be used here, with the reason."""


@dataclass(frozen=True)
class Hit:
    """One result: the asset, its score, captions, ids, and which view or caption matched."""

    asset_id: str
    score: float
    caption_en: str | None
    caption_cn: str | None
    objaverse_uid: str | None
    matched_view: int | None
    matched_language: str | None
    view_count: int
    high_quality: bool
    has_model: bool
    sources: tuple[str, ...] = ()  # modes that found it (fused results)


@dataclass
class SearchResult:
    """Hits plus what was searched and how long encoding and the database took."""

    hits: list[Hit]
    algorithm: str
    encoder: str
    mode: str
    language: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)


def detect_language(text: str) -> str:
    """'zh' when the text contains CJK ideographs, else 'en'."""
    return "zh" if CJK.search(text) else "en"


def clean_query(text: str) -> str:
    """Stripped query text; SearchError when empty or over MAX_QUERY_CHARS."""
    text = (text or "").strip()
    if not text:
        raise SearchError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are searched")
    return text


def rrf_fuse(
    rankings: dict[str, list[StoreHit]], top_k: int
) -> list[tuple[StoreHit, float, tuple[str, ...]]]:
    """Reciprocal rank fusion of several rankings of assets: score = Σ 1 / (RRF_K + rank)."""
    scores: dict[str, float] = {}
    best: dict[str, StoreHit] = {}
    sources: dict[str, list[str]] = {}
    for name, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            scores[hit.asset_id] = scores.get(hit.asset_id, 0.0) + 1.0 / (RRF_K + rank)
            sources.setdefault(hit.asset_id, []).append(name)
            if hit.asset_id not in best or hit.score > best[hit.asset_id].score:
                best[hit.asset_id] = hit
    ordered = sorted(scores, key=lambda a: (-scores[a], a))[:top_k]
    return [(best[a], scores[a], tuple(sources[a])) for a in ordered]


class SearchService:
    """Encodes queries once per process, searches the store, fuses when asked."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database.open(settings)
        self._lock = threading.Lock()
        self._encoders: dict[str, Encoder] = {}
        self._layouts: dict[str, tuple[float, ImageLayout]] = {}

    def close(self) -> None:
        """Close the database pool."""
        self.db.close()

    def __enter__(self) -> SearchService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- algorithms -------------------------------------------------------------------------------
    def encoder(self, algorithm: str) -> Encoder:
        """The loaded encoder for an algorithm (AlgorithmUnavailable with the reason when it cannot load)."""
        name = algorithm.split(":", 1)[0].lower()
        if name not in ALGORITHMS:
            raise SearchError(f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
        with self._lock:
            if algorithm not in self._encoders:
                try:
                    self._encoders[algorithm] = get_encoder(algorithm, self.settings)
                except EncoderUnavailable as exc:
                    raise AlgorithmUnavailable(str(exc)) from exc
            return self._encoders[algorithm]

    def status(self) -> list[dict]:
        """Each algorithm: usable, loaded, stored vectors; for /health and the dashboard."""
        loaded = {k.split(":", 1)[0]: v.info.name for k, v in self._encoders.items()}
        with self.db.connection() as conn:
            stored = {r[0]: r[1] for r in conn.execute("SELECT name, dim FROM encoders")}
        out = []
        for a in availability(self.settings):
            names = [n for n in stored if n.startswith(f"{a.algorithm}:")]
            out.append(
                {
                    "algorithm": a.algorithm,
                    "model": a.model,
                    "usable": a.usable,
                    "reason": a.reason,
                    "note": a.note,
                    "modalities": list(a.modalities),
                    "loaded": a.algorithm in loaded,
                    "encoder": loaded.get(a.algorithm),
                    "stored_encoders": names,
                }
            )
        return out

    def _tables(self, conn: object, encoder: Encoder) -> EncoderTables:
        tables = stored_encoder(conn, encoder.info.name)  # type: ignore[arg-type]
        if tables is None:
            raise AlgorithmUnavailable(
                f"{encoder.info.name} has no vectors in the database yet: run `assetlib embed --algorithm "
                f"{encoder.info.algorithm}` first"
            )
        return tables

    # -- search -----------------------------------------------------------------------------------
    def search_text(
        self,
        query: str,
        algorithm: str = "siglip",
        mode: str = "text_to_text",
        language: str = "auto",
        top_k: int | None = None,
        high_quality_only: bool = False,
        layout: str | None = None,
    ) -> SearchResult:
        """Search with a text query (English or Chinese) against captions, renders, or both fused."""
        text = clean_query(query)
        mode = SearchMode(mode)
        if mode not in (SearchMode.TEXT_TO_TEXT, SearchMode.TEXT_TO_IMAGE, SearchMode.FUSED):
            raise SearchError(f"mode {mode.value} needs an image query")
        lang = detect_language(text) if language == "auto" else LANGUAGE_NAMES.get(language.lower())
        if lang is None:
            raise SearchError(f"unknown language {language!r}; valid: auto, english, chinese")
        encoder = self.encoder(algorithm)
        if lang not in encoder.info.languages:
            raise SearchError(
                f"{encoder.info.name} does not embed {lang} text (it knows {encoder.info.languages})"
            )
        modes = [Mode.TEXT_TO_TEXT, Mode.TEXT_TO_IMAGE] if mode is SearchMode.FUSED else [Mode(mode.value)]
        self._check_modalities(encoder, modes)
        started = time.perf_counter()
        vector = encoder.encode_texts([text], lang, role="query")[0]
        encode_ms = (time.perf_counter() - started) * 1000
        return self._run(
            encoder, algorithm, mode, modes, vector, lang, top_k, high_quality_only, encode_ms, layout
        )

    def search_images(
        self,
        images: Sequence[Image.Image],
        algorithm: str = "siglip",
        mode: str = "image_to_image",
        top_k: int | None = None,
        high_quality_only: bool = False,
        layout: str | None = None,
    ) -> SearchResult:
        """Search with an image (or pooled views of one object) against renders, captions, or both."""
        if not images:
            raise SearchError("no image to search with")
        mode = SearchMode(mode)
        if mode not in (SearchMode.IMAGE_TO_IMAGE, SearchMode.IMAGE_TO_TEXT, SearchMode.FUSED):
            raise SearchError(f"mode {mode.value} needs a text query")
        encoder = self.encoder(algorithm)
        modes = [Mode.IMAGE_TO_IMAGE, Mode.IMAGE_TO_TEXT] if mode is SearchMode.FUSED else [Mode(mode.value)]
        self._check_modalities(encoder, modes)
        started = time.perf_counter()
        if len(images) == 1:
            vector = encoder.encode_images(list(images))[0]
        else:
            vector = encoder.encode_asset_views([list(images)])[0]
        encode_ms = (time.perf_counter() - started) * 1000
        return self._run(
            encoder, algorithm, mode, modes, vector, None, top_k, high_quality_only, encode_ms, layout
        )

    def search_model(
        self,
        mesh_path: str | Path,
        algorithm: str = "siglip",
        mode: str = "image_to_image",
        top_k: int | None = None,
        high_quality_only: bool = False,
    ) -> SearchResult:
        """Search with a 3D model: render it like the library, then search with its views."""
        from assetlib.media.meshes import load_mesh
        from assetlib.media.render import Renderer, RenderSettings

        started = time.perf_counter()
        scene = load_mesh(mesh_path)
        renderer = Renderer(RenderSettings(views=self.settings.qwen_num_images, size=256))
        try:
            views = [Image.fromarray(rgba, "RGBA") for rgba, _ in renderer.render_scene(scene)]
        finally:
            renderer.close()
        render_ms = (time.perf_counter() - started) * 1000
        result = self.search_images(views, algorithm, mode, top_k, high_quality_only)
        result.timings_ms["render_ms"] = round(render_ms, 2)
        return result

    def _check_modalities(self, encoder: Encoder, modes: list[Mode]) -> None:
        needs_image = any(m is not Mode.TEXT_TO_TEXT for m in modes)
        if needs_image and not encoder.info.embeds_images:
            raise SearchError(f"{encoder.info.name} embeds text only: use mode text_to_text")

    def _layout(
        self, encoder: Encoder, requested: str | None = None, conn: object = None, tables: object = None
    ) -> ImageLayout:
        """As asked; else the asset vector for fused encoders, and for per-view ones IMAGE_LAYOUT when its
        table is indexed, otherwise the layout whose table is (`choose_layout`)."""
        if requested is not None:
            if encoder.info.fused_views and requested in (ImageLayout.VIEWS, ImageLayout.POOLED):
                raise SearchError(
                    f"{encoder.info.name} stores one fused vector per asset, no per-view vectors"
                )
            return ImageLayout(requested)
        if encoder.info.fused_views:
            return ImageLayout.ASSET
        if conn is None or tables is None:
            return ImageLayout.VIEWS
        # Which tables are indexed changes only when vectors are loaded: look it up once a minute,
        # not with two catalog queries on every search.
        cached = self._layouts.get(encoder.info.name)
        if cached is not None and time.monotonic() - cached[0] < LAYOUT_TTL_S:
            return cached[1]
        indexed = {
            kind
            for kind in (VectorKind.VIEW, VectorKind.ASSET)
            if ann_indexes(conn, tables.table(kind))  # type: ignore[attr-defined, arg-type]
        }
        chosen = choose_layout(indexed, ImageLayout(self.settings.image_layout))
        self._layouts[encoder.info.name] = (time.monotonic(), chosen)
        return chosen

    def _run(
        self,
        encoder: Encoder,
        algorithm: str,
        mode: SearchMode,
        modes: list[Mode],
        vector: np.ndarray,
        language: str | None,
        top_k: int | None,
        high_quality_only: bool,
        encode_ms: float,
        layout: str | None = None,
    ) -> SearchResult:
        k = top_k or self.settings.default_top_k
        if not 1 <= k <= 1000:
            raise SearchError("top_k must be between 1 and 1000")
        tuning = SearchTuning(
            ef_search=self.settings.hnsw_ef_search,
            probes=self.settings.ivfflat_probes,
            views_per_asset=self.settings.qwen_num_images,
            rerank_factor=self.settings.pooled_rerank_factor,
        )
        started = time.perf_counter()
        rankings: dict[str, list[StoreHit]] = {}
        with self.db.connection() as conn:
            tables = self._tables(conn, encoder)
            chosen = self._layout(encoder, layout, conn, tables)
            for store_mode in modes:
                kind = target_kind(store_mode, chosen)
                caption_language = language if kind is VectorKind.CAPTION and language else None
                if kind is VectorKind.CAPTION and store_mode is Mode.IMAGE_TO_TEXT:
                    caption_language = None  # an image matches a caption in any language
                fetch = k * 3 if len(modes) > 1 else k  # fusion needs depth beyond the final k
                if chosen is ImageLayout.POOLED and kind is VectorKind.ASSET:
                    rankings[store_mode.value] = knn_pooled(
                        conn, tables, vector, fetch, high_quality_only=high_quality_only, tuning=tuning
                    )
                    continue
                rankings[store_mode.value] = knn(
                    conn,
                    tables,
                    kind,
                    vector,
                    fetch,
                    language=caption_language,
                    high_quality_only=high_quality_only,
                    tuning=tuning,
                )
        db_ms = (time.perf_counter() - started) * 1000
        if len(modes) > 1:
            fused = rrf_fuse(rankings, k)
            hits = [_hit(h, score, sources) for h, score, sources in fused]
        else:
            hits = [_hit(h, h.score, (modes[0].value,)) for h in rankings[modes[0].value]]
        log.info(
            "search %s %s %s: %d hits (encode %.1f ms, db %.1f ms)",
            encoder.info.name,
            mode.value,
            language or "-",
            len(hits),
            encode_ms,
            db_ms,
        )
        return SearchResult(
            hits,
            algorithm,
            encoder.info.name,
            mode.value,
            language,
            {"encode_ms": round(encode_ms, 2), "db_ms": round(db_ms, 2)},
        )


def _hit(h: StoreHit, score: float, sources: tuple[str, ...]) -> Hit:
    return Hit(
        h.asset_id,
        float(score),
        h.caption_en,
        h.caption_cn,
        h.objaverse_uid,
        h.matched_view,
        h.matched_language,
        h.view_count,
        h.high_quality,
        bool(h.glb_path),
        sources,
    )
