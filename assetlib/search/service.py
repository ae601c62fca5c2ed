"""SearchService: the one entry point the API, the dashboard and the evaluation use, for every mode."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

import numpy as np
import psycopg
from PIL import Image

from assetlib.config import Settings
from assetlib.encoders.base import Encoder, EncoderUnavailable
from assetlib.encoders.registry import availability, get_encoder
from assetlib.media.render import RenderSettings
from assetlib.media.render_worker import RenderPool
from assetlib.search.batching import EncodeBatcher, Encoded
from assetlib.search.fusion import FUSION_DEPTH, rrf_fuse
from assetlib.search.query_cache import QueryCache, image_key, text_key
from assetlib.store.db import ConnectionLost, Database
from assetlib.store.facets import facet_counts
from assetlib.store.filters import NO_FILTERS, SearchFilters
from assetlib.store.indexes import ann_indexes
from assetlib.store.keyword import keyword_search
from assetlib.store.knn import SearchTuning, StoreHit, knn, knn_pooled
from assetlib.store.layout import LayoutError, reranks_by_view, serving_layout, target_kind
from assetlib.store.schema import EncoderTables, encoder_tables
from assetlib.vocab import (
    FUSED_PARTS,
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    ImageLayout,
    Mode,
    QueryKind,
    VectorKind,
    mode_for,
    parse_algorithm,
    resolve_language,
)

log = logging.getLogger(__name__)

FACET_DEPTH = 200  # facets are counted over this many candidates (the results a filter chooses among)
T = TypeVar("T")
LAYOUT_TTL_S = 60.0  # how long the image layout chosen from the store's indexes is trusted


class SearchError(ValueError):
    """A query that cannot be served as asked (empty, bad mode for the algorithm…): the client's to fix."""


class AlgorithmUnavailable(RuntimeError):
    """The algorithm exists but cannot be used here (no weights, no key, no vectors), with the reason."""


@dataclass(frozen=True)
class Hit(StoreHit):
    """One result: the stored asset's fields (captions, ids, catalog metadata, which view or caption
    matched) with the score it was ranked by and, for fused results, the modes that found it."""

    sources: tuple[str, ...] = ()

    @property
    def has_model(self) -> bool:
        """Whether a local GLB is on record for it."""
        return bool(self.glb_path)


@dataclass
class SearchResult:
    """Hits plus what was searched and how long encoding and the database took."""

    hits: list[Hit]
    algorithm: str
    encoder: str
    mode: str
    language: str | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    layout: str | None = None  # the image layout that served it (None for caption-only searches)
    notes: list[str] = field(default_factory=list)  # what was done to the query (a model's skipped parts…)
    filters: dict = field(default_factory=dict)  # the filters applied (SearchFilters.describe)
    facets: dict[str, list[dict]] | None = None  # counts over the candidate set, when asked for
    candidates: int = 0  # how many results the facets were counted over


def clean_query(text: str) -> str:
    """Stripped query text; SearchError when empty or over MAX_QUERY_CHARS."""
    text = (text or "").strip()
    if not text:
        raise SearchError("the query is empty")
    if len(text) > MAX_QUERY_CHARS:
        raise SearchError(f"the query has {len(text)} characters; at most {MAX_QUERY_CHARS} are searched")
    return text


def check_top_k(top_k: int | None, default: int) -> int:
    """How many results to return: `top_k`, else the default; SearchError outside 1..MAX_TOP_K."""
    k = default if top_k is None else top_k
    if not 1 <= k <= MAX_TOP_K:
        raise SearchError(f"top_k must be between 1 and {MAX_TOP_K}, got {k}")
    return k


def _query_mode(kind: QueryKind, mode: Mode | str) -> Mode:
    try:
        return mode_for(kind, str(mode))
    except ValueError as exc:
        raise SearchError(str(exc)) from None


_STORED_FIELDS = tuple(f.name for f in fields(StoreHit))  # once: _hit runs for every result


def _hit(h: StoreHit, score: float, sources: tuple[str, ...]) -> Hit:
    stored = {name: getattr(h, name) for name in _STORED_FIELDS}
    return Hit(**(stored | {"score": float(score)}), sources=sources)


class SearchService:
    """Encodes queries once per process, searches the store, fuses when asked."""

    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database.open(settings)
        self.tuning = SearchTuning.from_settings(settings)
        self._lock = threading.Lock()
        self._encoders: dict[str, Encoder] = {}
        self._layouts: dict[str, tuple[float, frozenset[VectorKind]]] = {}
        self._table_cache: dict[str, tuple[float, EncoderTables]] = {}
        self._renderers: RenderPool | None = None
        self.query_cache = QueryCache()
        self.batcher = EncodeBatcher(
            max_batch=settings.query_batch_max,
            window_ms=settings.query_batch_window_ms,
            threads=settings.encode_threads,
        )

    def close(self) -> None:
        """Stop the query encoder, the renderer processes and the database pool."""
        self.batcher.close()
        if self._renderers is not None:
            self._renderers.close()
        self.db.close()

    def __enter__(self) -> SearchService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- algorithms -------------------------------------------------------------------------------
    def encoder(self, algorithm: str) -> Encoder:
        """The loaded encoder for an algorithm (AlgorithmUnavailable with the reason when it cannot load)."""
        try:
            parse_algorithm(algorithm)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        with self._lock:
            if algorithm not in self._encoders:
                try:
                    self._encoders[algorithm] = get_encoder(algorithm, self.settings)
                except EncoderUnavailable as exc:
                    raise AlgorithmUnavailable(str(exc)) from exc
            return self._encoders[algorithm]

    def warm(self) -> None:
        """Start the renderers beside the caller (the API does at start-up)."""
        self.renderers().warm()

    def status(self) -> list[dict]:
        """Each algorithm: usable, loaded, stored vectors; for /health and the dashboard."""
        loaded = {k.split(":", 1)[0]: v.info.name for k, v in self._encoders.items()}
        with self.db.connection() as conn:
            stored = [r[0] for r in conn.execute("SELECT name FROM encoders")]
        return [
            {
                "algorithm": a.algorithm,
                "title": a.title,
                "model": a.model,
                "usable": a.usable,
                "reason": a.reason,
                "note": a.note,
                "modalities": list(a.modalities),
                "loaded": a.algorithm in loaded,
                "encoder": loaded.get(a.algorithm),
                "stored_encoders": [n for n in stored if n.startswith(f"{a.algorithm}:")],
            }
            for a in availability(self.settings)
        ]

    def _tables(self, conn: psycopg.Connection, encoder: Encoder) -> EncoderTables:
        # An encoder's tables change only when it is loaded or dropped: one catalog query a minute,
        # not one per search (a dropped encoder's tables are forgotten on the first error, below).
        name = encoder.info.name
        cached = self._table_cache.get(name)
        if cached is not None and time.monotonic() - cached[0] < LAYOUT_TTL_S:
            return cached[1]
        tables = encoder_tables(conn, name)
        if tables is not None:
            self._table_cache[name] = (time.monotonic(), tables)
        if tables is None:
            raise AlgorithmUnavailable(
                f"{encoder.info.name} has no vectors in the database yet: run `assetlib embed --algorithm "
                f"{encoder.info.algorithm}` first"
            )
        return tables

    def layout_for(
        self,
        encoder: Encoder,
        conn: psycopg.Connection,
        tables: EncoderTables,
        requested: ImageLayout | str | None = None,
    ) -> ImageLayout:
        """The image layout a search uses (store/layout.py's rule over what is indexed now)."""
        # Which tables are indexed changes only when vectors are loaded: look it up once a minute,
        # not with two catalog queries on every search.
        cached = self._layouts.get(encoder.info.name)
        if cached is None or time.monotonic() - cached[0] >= LAYOUT_TTL_S:
            indexed = frozenset(
                kind for kind in (VectorKind.VIEW, VectorKind.ASSET) if ann_indexes(conn, tables.table(kind))
            )
            cached = (time.monotonic(), indexed)
            self._layouts[encoder.info.name] = cached
        try:
            return serving_layout(
                encoder.info.fused_views, cached[1], ImageLayout(self.settings.image_layout), requested
            )
        except (LayoutError, ValueError) as exc:
            raise SearchError(str(exc)) from None

    # -- search -----------------------------------------------------------------------------------
    def search_text(
        self,
        query: str,
        algorithm: str = "siglip",
        mode: Mode | str = Mode.TEXT_TO_TEXT,
        language: str = "auto",
        top_k: int | None = None,
        high_quality_only: bool = False,
        layout: ImageLayout | str | None = None,
        filters: SearchFilters | None = None,
        facets: bool = False,
    ) -> SearchResult:
        """Search with a text query (English or Chinese): captions, renders, both fused, keywords, or
        keywords fused with the algorithm's vector rankings (hybrid); filtered, with facets if asked."""
        text = clean_query(query)
        chosen = _query_mode(QueryKind.TEXT, mode)
        try:
            lang = resolve_language(language, text)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        k = check_top_k(top_k, self.settings.default_top_k)
        wanted = (filters or NO_FILTERS).with_quality(high_quality_only)
        if chosen is Mode.KEYWORD:
            return self._keyword_only(text, lang, k, wanted, facets)
        encoder = self.encoder(algorithm)
        if lang not in encoder.info.languages:
            raise SearchError(
                f"{encoder.info.name} does not embed {lang} text (it knows {encoder.info.languages})"
            )
        if chosen in (Mode.FUSED, Mode.HYBRID):
            modes = FUSED_PARTS[QueryKind.TEXT]
            if chosen is Mode.HYBRID and not encoder.info.embeds_images:
                modes = (Mode.TEXT_TO_TEXT,)  # hybrid: keyword + whatever vectors the algorithm has
        else:
            modes = (chosen,)
        self._check_modalities(encoder, modes)
        key = text_key(encoder.info, text, lang, "query")
        encoded = self._encoded(key, lambda: self.batcher.text(encoder, text, lang, role="query"))
        keyword = text if chosen is Mode.HYBRID else None
        return self._run(encoder, algorithm, chosen, modes, encoded, lang, k, wanted, layout, facets, keyword)

    def _read(self, ask: Callable[[], T]) -> T:
        """Run a read-only store request; again on another connection when a pooled one broke in use
        (its backend was terminated) while the server is fine. Up to the pool's size more times: when
        an administrator terminates every backend, several pooled connections may still look alive
        while their backends go, and each is discarded as it fails."""
        for attempt in range(1, self.settings.db_pool_size + 1):
            try:
                return ask()
            except ConnectionLost:
                if self.db.supervisor.outage is not None:
                    raise
                log.info("search: a pooled connection broke (attempt %d); asking again on another", attempt)
        return ask()

    def _keyword_only(
        self, text: str, language: str, k: int, filters: SearchFilters, facets: bool
    ) -> SearchResult:
        """Keyword mode: the catalog's words alone, no encoder (the algorithm is not used)."""
        depth = max(k, FACET_DEPTH) if facets else k
        started = time.perf_counter()

        def ask() -> tuple[list[StoreHit], dict[str, list[dict]] | None]:
            with self.db.connection() as conn:
                found = keyword_search(conn, text, language, depth, filters)
                counts = facet_counts(conn, [h.asset_id for h in found]) if facets else None
            return found, counts

        found, counts = self._read(ask)
        db_ms = (time.perf_counter() - started) * 1000
        return SearchResult(
            [_hit(h, h.score, (Mode.KEYWORD.value,)) for h in found[:k]],
            Mode.KEYWORD.value,
            "keyword (PostgreSQL full text)",
            Mode.KEYWORD.value,
            language,
            {"db_ms": round(db_ms, 2)},
            None,
            filters=filters.describe(),
            facets=counts,
            candidates=len(found) if facets else 0,
        )

    def search_images(
        self,
        images: Sequence[Image.Image],
        algorithm: str = "siglip",
        mode: Mode | str = Mode.IMAGE_TO_IMAGE,
        top_k: int | None = None,
        high_quality_only: bool = False,
        layout: ImageLayout | str | None = None,
        filters: SearchFilters | None = None,
        facets: bool = False,
    ) -> SearchResult:
        """Search with an image (or pooled views of one object) against renders, captions, or both."""
        if not images:
            raise SearchError("no image to search with")
        chosen = _query_mode(QueryKind.IMAGE, mode)
        encoder = self.encoder(algorithm)
        modes = FUSED_PARTS[QueryKind.IMAGE] if chosen is Mode.FUSED else (chosen,)
        self._check_modalities(encoder, modes)
        k = check_top_k(top_k, self.settings.default_top_k)
        # One image is looked up by its pixels; an object's views (query by model) are rendered anew
        # each time and not cached.
        key = image_key(encoder.info, images[0]) if len(images) == 1 else None
        encoded = self._encoded(key, lambda: self.batcher.images(encoder, list(images)))
        wanted = (filters or NO_FILTERS).with_quality(high_quality_only)
        return self._run(encoder, algorithm, chosen, modes, encoded, None, k, wanted, layout, facets)

    def search_model(
        self,
        mesh_path: str | Path,
        algorithm: str = "siglip",
        mode: Mode | str = Mode.IMAGE_TO_IMAGE,
        top_k: int | None = None,
        high_quality_only: bool = False,
        filters: SearchFilters | None = None,
        facets: bool = False,
    ) -> SearchResult:
        """Search with a 3D model: render it like the library (on a warm renderer), then by its views."""
        started = time.perf_counter()
        rendered = self.renderers().render(Path(mesh_path), label=Path(mesh_path).name)
        render_ms = (time.perf_counter() - started) * 1000
        views = [Image.fromarray(rgba, "RGBA") for rgba in rendered.views]
        result = self.search_images(views, algorithm, mode, top_k, high_quality_only, None, filters, facets)
        result.timings_ms["render_ms"] = round(render_ms, 2)
        result.notes = rendered.notes
        return result

    def _encoded(self, key: tuple[str, ...] | None, encode: Callable[[], Encoded]) -> Encoded:
        """The query's vector from the cache when it was asked before (key None: never cached), else
        encoded now and remembered."""
        vector = self.query_cache.get(key) if key is not None else None
        if vector is not None:
            return Encoded(vector, 0.0, 0.0, 0, cached=True)
        encoded = encode()
        if key is not None:
            self.query_cache.put(key, encoded.vector)
        return encoded

    def renderers(self) -> RenderPool:
        """The warm renderer processes for query-by-model (started on first use, or by `warm`)."""
        with self._lock:
            if self._renderers is None:
                s = self.settings
                self._renderers = RenderPool(
                    RenderSettings(
                        views=s.query_views,
                        size=s.query_render_size,
                        supersample=1,
                        max_vertices=s.query_max_vertices,
                    ),
                    timeout=s.render_timeout_s,
                    size=s.render_workers,
                    name="query-render",
                )
            return self._renderers

    def _rankings(
        self,
        encoder: Encoder,
        modes: Sequence[Mode],
        vector: np.ndarray,
        language: str | None,
        fetch: int,
        filters: SearchFilters,
        layout: ImageLayout | str | None,
        keyword: str | None = None,
    ) -> tuple[dict[str, list[StoreHit]], ImageLayout]:
        """Each mode's ranking from the store (and the keyword ranking for hybrid), on one pooled
        connection, and the layout that served it."""
        rankings: dict[str, list[StoreHit]] = {}
        with self.db.connection() as conn:
            if keyword is not None:
                rankings[Mode.KEYWORD.value] = keyword_search(conn, keyword, language or "en", fetch, filters)
            tables = self._tables(conn, encoder)
            chosen = self.layout_for(encoder, conn, tables, layout)
            for store_mode in modes:
                kind = target_kind(store_mode, chosen)
                if kind is VectorKind.CAPTION:
                    # A text query matches captions in its own language; an image matches any caption.
                    caption_language = language if store_mode is Mode.TEXT_TO_TEXT else None
                    rankings[store_mode.value] = knn(
                        conn,
                        tables,
                        kind,
                        vector,
                        fetch,
                        caption_language,
                        tuning=self.tuning,
                        filters=filters,
                    )
                elif reranks_by_view(chosen):
                    rankings[store_mode.value] = knn_pooled(
                        conn, tables, vector, fetch, tuning=self.tuning, filters=filters
                    )
                else:
                    rankings[store_mode.value] = knn(
                        conn, tables, kind, vector, fetch, tuning=self.tuning, filters=filters
                    )
        return rankings, chosen

    def _check_modalities(self, encoder: Encoder, modes: Sequence[Mode]) -> None:
        needs_image = any(m is not Mode.TEXT_TO_TEXT for m in modes)
        if needs_image and not encoder.info.embeds_images:
            raise SearchError(f"{encoder.info.name} embeds text only: use mode text_to_text")

    def _run(
        self,
        encoder: Encoder,
        algorithm: str,
        mode: Mode,
        modes: Sequence[Mode],
        encoded: Encoded,
        language: str | None,
        k: int,
        filters: SearchFilters,
        layout: ImageLayout | str | None = None,
        facets: bool = False,
        keyword: str | None = None,
    ) -> SearchResult:
        vector = encoded.vector
        started = time.perf_counter()
        fusing = len(modes) > 1 or keyword is not None
        depth = max(k, FACET_DEPTH) if facets else k  # facets count over a deeper candidate set
        fetch = depth * FUSION_DEPTH if fusing else depth  # fusion needs depth beyond the final k
        ask = functools.partial(
            self._rankings, encoder, modes, vector, language, fetch, filters, layout, keyword
        )
        try:
            rankings, chosen = self._read(ask)
        except psycopg.errors.UndefinedTable:
            # The encoder's tables went (`assetlib db drop-encoder`, a re-created database) since
            # they were looked up: forget them and ask the catalog again.
            self._table_cache.pop(encoder.info.name, None)
            self._layouts.pop(encoder.info.name, None)
            rankings, chosen = self._read(ask)
        if fusing:
            hits = [_hit(h, score, sources) for h, score, sources in rrf_fuse(rankings, depth)]
        else:
            hits = [_hit(h, h.score, (modes[0].value,)) for h in rankings[modes[0].value]]
        counts = None
        if facets:
            with self.db.connection() as conn:
                counts = facet_counts(conn, [h.asset_id for h in hits])
        candidates = len(hits) if facets else 0
        hits = hits[:k]
        db_ms = (time.perf_counter() - started) * 1000
        image_search = any(target_kind(m, chosen) is not VectorKind.CAPTION for m in modes)
        # One line per search at DEBUG: an evaluation runs thousands, the API's access log has each.
        log.debug(
            "search %s %s %s: %d hits (queue %.1f ms, encode %.1f ms in a batch of %d, db %.1f ms)",
            encoder.info.name,
            mode.value,
            language or "-",
            len(hits),
            encoded.queue_ms,
            encoded.encode_ms,
            encoded.batch,
            db_ms,
        )
        return SearchResult(
            hits,
            algorithm,
            encoder.info.name,
            mode.value,
            language,
            {**encoded.timings(), "db_ms": round(db_ms, 2)},
            chosen.value if image_search else None,
            filters=filters.describe(),
            facets=counts,
            candidates=candidates,
        )
