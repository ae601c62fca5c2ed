"""One body per pipeline stage, called by the stage notebooks and by the CLI alike.

Every body records what it did in `<run_dir>/stage_metrics.json` (`write_stage_metrics`); the
pipeline runner copies that into the run's manifest. Notebooks hold parameters, one call into
this module, and the tables and plots of its result.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assetlib.config import Settings, trained_model_dir
from assetlib.library.asset import Asset
from assetlib.library.readers import default_library_root, open_library
from assetlib.records import Failure, write_failures, write_json
from assetlib.vocab import Algorithm

# Each stage imports its room when it runs: the runner and the CLI's parser load none of them.
if TYPE_CHECKING:
    from assetlib.embedding.summary import EmbedSummary
    from assetlib.evaluation.queries import QuerySet
    from assetlib.evaluation.report import EvalReport
    from assetlib.library.translate import TranslationReport
    from assetlib.store.populate import PopulateResult
    from assetlib.store.report import DatabaseReport
    from assetlib.train.trainer import TrainResult

log = logging.getLogger(__name__)

STAGE_METRICS = "stage_metrics.json"


class StageName(StrEnum):
    """The pipeline's stages, in the order they run (each is notebooks/<name>.ipynb)."""

    BUILD_LIBRARY = "00_build_library"
    TRANSLATE = "01_translate_captions"
    TRAIN = "02a_train_siglip"
    TRAIN_E5LIT = "02b_train_e5lit"
    EMBED_SIGLIP = "02_embed_siglip"
    EMBED_QWEN = "03_embed_qwen"
    POPULATE = "04_populate_database"
    EVALUATE = "05_evaluate"


NEEDS_API_KEY = frozenset({StageName.TRANSLATE, StageName.EMBED_QWEN})


def write_stage_metrics(run_dir: str | Path, stage: str, status: str, **data: Any) -> Path:
    """Record a stage's outcome (done, skipped with a reason, incomplete) and its numbers."""
    path = write_json(Path(run_dir) / STAGE_METRICS, {"stage": str(stage), "status": status, **data})
    log.info("%s: %s %s", stage, status, data.get("reason") or "")
    return path


def read_stage_metrics(run_dir: str | Path) -> dict | None:
    """A stage's recorded outcome, or None when it wrote none."""
    path = Path(run_dir) / STAGE_METRICS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# -- 00 build library ---------------------------------------------------------------------------------
@dataclass
class LibraryStage:
    """Result of the library stage: the assets, what was skipped, where the pictures are, timings."""

    root: Path
    assets: list[Asset]
    failures: list[Failure]
    counts: dict[str, int]
    seconds: dict[str, float]
    preview: Path | None
    failures_csv: Path | None


def build_library(
    settings: Settings,
    source: Literal["demo", "real"] = "demo",
    root: str | Path | None = None,
    run_dir: str | Path | None = None,
    size: int | None = None,
    seed: int = 0,
    image_size: int = 256,
    workers: int | None = None,
    verify_images: bool = True,
    rescan: bool = False,
    progress: bool = True,
) -> LibraryStage:
    """Build (demo) or read (real) a library; write failures, a preview grid and counts to run_dir.

    Views per asset and the asset cap come from the settings (VIEWS_PER_ASSET, MAX_ASSETS).
    """
    from assetlib.library.demo.generator import DEFAULT_SIZE, write_demo_library
    from assetlib.media.preview import sample_assets, save_asset_grid
    from assetlib.media.render import RenderSettings

    if source not in ("demo", "real"):
        raise ValueError(f"source must be 'demo' or 'real', got {source!r}")
    folder = Path(root).expanduser() if root else default_library_root(settings.home)
    seconds: dict[str, float] = {}
    failures: list[Failure] = []
    started = time.perf_counter()
    if source == "demo":
        build = write_demo_library(
            folder,
            size=size or DEFAULT_SIZE,
            seed=seed,
            render=RenderSettings(views=settings.views_per_asset, size=image_size),
            workers=workers,
            progress=progress,
        )
        failures += build.failures
        seconds.update({f"build_{k}": v for k, v in build.seconds.items()})
    elif not folder.is_dir():
        raise FileNotFoundError(f"library folder not found: {folder}")
    t = time.perf_counter()
    read = open_library(settings, folder, verify_images=verify_images, rescan=rescan)
    seconds["read"] = time.perf_counter() - t
    failures += read.failures
    seconds["total"] = time.perf_counter() - started
    preview = failures_csv = None
    if run_dir is not None:
        out = Path(run_dir)
        failures_csv = write_failures(failures, out / "library_failures.csv")
        title = f"{source} library: {len(read.assets)} assets, 16 at random (seed {seed})"
        preview = save_asset_grid(
            sample_assets(read.assets, 16, seed), out / "library_preview.png", title=title
        )
        rounded = {k: round(v, 1) for k, v in seconds.items()}
        counts = {"source": source, "root": str(folder), "counts": read.counts, "failures": len(failures)}
        write_json(out / "library_counts.json", {**counts, "seconds": rounded}, indent=2)
        write_stage_metrics(
            out,
            StageName.BUILD_LIBRARY,
            "done",
            source=source,
            library=str(folder),
            counts=read.counts,
            seconds=rounded,
            skipped_assets=len(failures),
            failures_csv=str(failures_csv),
        )
    log.info(
        "library stage (%s): %d assets, %d failures in %.1fs",
        source,
        len(read.assets),
        len(failures),
        seconds["total"],
    )
    return LibraryStage(folder, read.assets, failures, read.counts, seconds, preview, failures_csv)


# -- 01 translate captions ----------------------------------------------------------------------------
@dataclass
class TranslateStage:
    """Where the translations go, and what the run did (None when it was skipped)."""

    status: str
    captions: Path  # the English captions translated
    target: Path
    report: TranslationReport | None
    reason: str | None = None


def translate(
    settings: Settings,
    captions: str | Path | None = None,
    run_dir: str | Path = "outputs/translate",
    mode: str = "batch",
    dry_run: bool = False,
    output: str | Path | None = None,
    max_wait: float | None = None,
) -> TranslateStage:
    """English → Chinese captions through Qwen; never overwrites Chinese captions a library came with."""
    from assetlib.library.translate import OUTPUT_NAME, translate_captions

    source = Path(captions) if captions else default_library_root(settings.home) / "text_captions_cap3d.json"
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Where translations go is decided once per run folder, so a resumed run writes to the same place.
    decided = out / "output_path.txt"
    if output:
        target = Path(output)
    elif decided.exists():
        target = Path(decided.read_text())
    else:
        beside = source.with_name(OUTPUT_NAME)
        target = out / OUTPUT_NAME if beside.exists() else beside
    decided.write_text(str(target))
    record: dict[str, Any] = {"captions": str(source), "mode": mode, "output": str(target)}
    if settings.dashscope_api_key is None and not dry_run:
        stage = TranslateStage("skipped", source, target, None, "skipped: no API key")
        write_stage_metrics(out, StageName.TRANSLATE, stage.status, reason=stage.reason, **record)
        return stage
    report = translate_captions(
        source, out, settings, mode=mode, dry_run=dry_run, output=target, max_wait=max_wait
    )
    status = "dry run" if dry_run else ("done" if report.complete else "incomplete")
    write_stage_metrics(
        out,
        StageName.TRANSLATE,
        status,
        **record,
        total=report.total,
        already=report.already,
        translated=report.translated,
        failed=len(report.failed),
        batches=report.batches,
        plan=report.dry_run,
        written=str(report.output) if report.output else None,
    )
    return TranslateStage(status, source, target, report)


# -- 02a train SigLIP -----------------------------------------------------------------------------------
@dataclass
class TrainStage:
    """The trained (or reused) model and where its curves and metrics went."""

    result: TrainResult
    curves: Path | None
    card: str


def train(
    settings: Settings,
    root: str | Path | None = None,
    name: str = "demo",
    init: str | None = None,
    out_dir: str | Path | None = None,
    steps: int = 300,
    max_seconds: float = 900.0,
    batch_size: int = 128,
    learning_rate: float = 5e-4,
    seed: int = 0,
    run_dir: str | Path | None = None,
    algorithm: str = "siglip",
) -> TrainStage:
    """Train SigLIP (from scratch, or fine-tune `init`) or the e5-aligned image tower (`algorithm`
    "e5lit") on a library; reuse the model when unchanged."""
    from assetlib.encoders.registry import text_cache_dir
    from assetlib.train.lit import LitConfig, ensure_lit
    from assetlib.train.trainer import TrainConfig, ensure_trained, plot_history

    assets = open_library(settings, root).assets
    common: dict[str, Any] = {"name": name, "max_steps": steps, "max_seconds": max_seconds}
    common["batch_size"] = batch_size
    common |= {"lr": learning_rate, "seed": seed}
    target = Path(out_dir) if out_dir else trained_model_dir(settings.home, name, algorithm)
    if algorithm == Algorithm.E5LIT:
        if init:
            raise ValueError("the e5-aligned image tower trains from scratch: leave init empty")
        cache = text_cache_dir(settings)
        result = ensure_lit(assets, target, replace(LitConfig(), **common), text_cache=cache)
        stage, note = StageName.TRAIN_E5LIT, "image tower trained here from random weights; text: frozen e5"
    elif algorithm == Algorithm.SIGLIP:
        result = ensure_trained(assets, target, replace(TrainConfig(), init=init or None, **common))
        stage = StageName.TRAIN
        note = f"fine-tuned {init}" if init else "trained here from random weights, not Google's SigLIP"
    else:
        raise ValueError(f"cannot train {algorithm!r}: siglip or e5lit")
    card = (result.model_dir / "README.md").read_text(encoding="utf-8")
    curves = None
    if run_dir is not None:
        out = Path(run_dir)
        out.mkdir(parents=True, exist_ok=True)
        curves = plot_history(result.history, out / "training_curves.png")
        write_json(out / "train_metrics.json", result.metrics, indent=2)
        write_stage_metrics(
            out,
            stage,
            "done",
            model=str(result.model_dir),
            reused=result.reused,
            steps=result.steps,
            seconds=round(result.seconds, 1),
            heldout_recall_at_10=result.metrics,
            note=note,
        )
    return TrainStage(result, curves, card)


# -- 02 / 03 embed ------------------------------------------------------------------------------------------
@dataclass
class EmbedStage:
    """Each algorithm's outcome (done with its numbers, or skipped with the reason)."""

    assets: int
    results: list[dict] = field(default_factory=list)

    @property
    def encoders(self) -> list[str]:
        """The encoders whose shards this stage wrote or confirmed."""
        return [r["encoder"] for r in self.results if r["status"] == "done"]


def _run_engine(
    settings: Settings,
    spec: str,
    assets: Sequence[Asset],
    shards: Path,
    languages: Sequence[str],
    progress: bool,
    run_dir: str | Path | None,
    stage: str,
) -> EmbedSummary:
    """One algorithm through the configured engine, the stage metrics saying how far it is as it goes."""
    from assetlib.embedding.local import embed_assets, embedding_workers
    from assetlib.encoders.registry import get_encoder

    def report(state: dict) -> None:
        # Rewritten after every shard (not logged): what a watcher of the run folder reads for an ETA.
        if run_dir is not None:
            record = {"stage": str(stage), "status": "running", "algorithm": spec, "progress": state}
            write_json(Path(run_dir) / STAGE_METRICS, record)

    workers = embedding_workers(settings.embedding_workers)
    if settings.embedding_engine == "ray":
        from assetlib.embedding.ray_engine import embed_assets_ray

        return embed_assets_ray(
            assets,
            functools.partial(get_encoder, spec, settings),
            shards,
            shard_size=settings.embedding_shard_size,
            languages=languages,
            progress=progress,
            workers=workers,
            address=settings.ray_address,
            actors=settings.ray_actors,
            report=report,
        )
    return embed_assets(
        assets,
        get_encoder(spec, settings),
        shards,
        shard_size=settings.embedding_shard_size,
        languages=languages,
        progress=progress,
        workers=workers,
        report=report,
    )


def embed(
    settings: Settings,
    algorithms: Sequence[str],
    root: str | Path | None = None,
    shard_root: str | Path | None = None,
    run_dir: str | Path | None = None,
    languages: Sequence[str] = ("en", "zh"),
    stage: str = StageName.EMBED_SIGLIP,
    progress: bool = True,
) -> EmbedStage:
    """Embed the library with each algorithm into shards; an unusable one is skipped with its reason.

    The stage is done when its first algorithm is (the one it is named after); later ones (the
    e5 baseline) are extras.
    """
    from assetlib.encoders.registry import availability, parse_spec

    assets = open_library(settings, root).assets
    shards = Path(shard_root) if shard_root else settings.home
    usable = {a.algorithm: a for a in availability(settings)}
    result = EmbedStage(len(assets))
    for spec in algorithms:
        algorithm, model = parse_spec(spec, settings)
        state = usable[algorithm]
        if not state.usable:
            result.results.append(
                {"algorithm": algorithm, "status": "skipped", "reason": f"skipped: {state.reason}"}
            )
            log.warning("%s skipped: %s", algorithm, state.reason)
            continue
        summary = _run_engine(settings, spec, assets, shards, languages, progress, run_dir, stage)
        result.results.append(
            {
                "algorithm": algorithm,
                "status": "done",
                "encoder": summary.encoder,
                "model": model,
                "shards": summary.shards,
                "shards_unchanged": summary.shards_skipped,
                "vectors_computed": summary.rows_computed,
                "vectors_reused": summary.rows_reused,
                "vectors_per_second": round(summary.items_per_second, 1),
                "views_per_second": round(summary.views_per_second, 1),
                "engine": summary.engine,
                "workers": summary.workers,
                "steps": summary.steps.as_dict(),
                "failures": summary.failures_total,
                "failures_csv": str(summary.failures_csv),
                "seconds": round(summary.seconds, 1),
                "shard_dir": str(summary.out_dir),
            }
        )
    if run_dir is not None:
        first = result.results[0] if result.results else {"status": "skipped", "reason": "no algorithm"}
        write_stage_metrics(
            run_dir,
            stage,
            "done" if first["status"] == "done" else "skipped",
            reason=first.get("reason"),
            assets=len(assets),
            algorithms=result.results,
            encoders=result.encoders,
        )
    return result


# -- 04 populate the database ----------------------------------------------------------------------------
@dataclass
class PopulateStage:
    """What loading did, and the database as `db check` reports it afterwards."""

    result: PopulateResult
    report: DatabaseReport

    @property
    def rows(self) -> list[dict]:
        """One line per encoder: rows, inserts, indexes, a refused index with its reason."""
        return [load.summary() for load in self.result.loads]


def populate(
    settings: Settings,
    root: str | Path | None = None,
    shard_root: str | Path | None = None,
    encoders: Sequence[str] | None = None,
    run_dir: str | Path | None = None,
    progress: bool = True,
) -> PopulateStage:
    """Load the catalog once and every encoder's shards into PostgreSQL, then build the indexes."""
    from assetlib.embedding.shards import stored_shard_encoders
    from assetlib.store.db import Database
    from assetlib.store.populate import populate as load_store
    from assetlib.store.report import database_report

    assets = open_library(settings, root).assets
    shards = Path(shard_root) if shard_root else settings.home
    names = list(encoders) if encoders else stored_shard_encoders(shards)
    with Database.open(settings) as db:
        result = load_store(db, assets, shards, names, progress=progress)
        with db.connection() as conn:
            report = database_report(conn, db.where)
    stage = PopulateStage(result, report)
    for refused in result.refused:
        log.warning("index refused by the memory guard: %s", refused)
    if run_dir is not None:
        write_stage_metrics(
            run_dir,
            StageName.POPULATE,
            "done" if not report.problems() else "problems",
            assets=len(assets),
            catalog=asdict(result.catalog),
            loads=stage.rows,
            encoders=names,
            refused=result.refused,
            problems=report.problems(),
        )
    return stage


# -- 05 evaluate ---------------------------------------------------------------------------------------------
@dataclass
class EvaluateStage:
    """The queries, the report, and whether the results were reused from an identical earlier run."""

    queries: QuerySet
    report: EvalReport
    reused: bool

    def best_r_at_10(self) -> dict[str, float]:
        """The best r@10 per algorithm and query kind (in-grammar set) and on the natural set."""
        best: dict[str, float] = {}
        for row in self.report.rows:
            natural = row.get("query_set") == "natural"
            key = f"{row['algorithm']} {row['kind']}" + (" natural" if natural else "")
            best[key] = max(best.get(key, 0.0), row["r@10"])
        return best


def _judged_queries(settings: Settings) -> QuerySet:
    """The database's relevance judgments as a query set (ValueError when there are none)."""
    from assetlib.evaluation.queries import judged_query_set
    from assetlib.store.db import Database
    from assetlib.store.judgments import relevance_by_query

    db = Database.open(settings)
    try:
        with db.connection() as conn:
            queries = judged_query_set(relevance_by_query(conn))
    finally:
        db.close()
    if not queries.queries:
        raise ValueError("no judgments in the database yet: mark results in the dashboard first")
    return queries


def evaluate(
    settings: Settings,
    root: str | Path | None = None,
    run_dir: str | Path = "outputs/evaluate",
    algorithms: Sequence[str] = tuple(Algorithm),
    seed: int = 0,
    max_queries: int = 300,
    reuse: bool = True,
    progress: bool = True,
    queries_file: str | Path | None = None,
) -> EvaluateStage:
    """Compare every usable algorithm, mode, language and layout on the library's benchmark queries.

    Queries already in run_dir are reused (the same queries as earlier runs there); with `reuse`,
    the query set is cached per library and the results per fingerprint of what they depend on.
    `queries_file` evaluates a saved query set instead (a queries.json, or "judged": the relevance
    judgments in the database, as the dashboard stored them).
    """
    from assetlib.evaluation.queries import QuerySet, build_queries, cached_queries
    from assetlib.evaluation.report import natural_language_table
    from assetlib.evaluation.run import evaluate as run_evaluation
    from assetlib.evaluation.run import evaluate_cached
    from assetlib.search.service import SearchService

    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_root = settings.home / "evaluations"
    if queries_file == "judged":
        queries = _judged_queries(settings)
        queries.save(out / "queries.json")
    elif queries_file is not None:
        queries = QuerySet.load(Path(queries_file))
        queries.save(out / "queries.json")
    elif (out / "queries.json").exists():
        queries = QuerySet.load(out / "queries.json")
    else:
        assets = open_library(settings, root).assets
        if reuse:
            queries, _ = cached_queries(assets, cache_root, seed=seed, max_queries=max_queries)
        else:
            queries = build_queries(assets, out, seed=seed, max_queries=max_queries)
        queries.save(out / "queries.json")
    with SearchService(settings) as service:
        if reuse:
            report, reused = evaluate_cached(service, queries, list(algorithms), out, cache_root, progress)
        else:
            report, reused = run_evaluation(service, queries, list(algorithms), out, progress), False
    stage = EvaluateStage(queries, report, reused)
    write_stage_metrics(
        out,
        StageName.EVALUATE,
        "done",
        queries=len(queries.queries),
        query_source=queries.source,
        configurations=len(report.rows),
        best_r_at_10=stage.best_r_at_10(),
        natural_language=natural_language_table(report.rows),
        files=report.files,
        reused=reused,
        algorithms=sorted({r["algorithm"] for r in report.rows}),
    )
    return stage
