"""The `assetlib` command: configuration, libraries, database checks and maintenance."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assetlib import __version__
from assetlib.config import ConfigError, Settings, load_settings
from assetlib.logs import configure_logging
from assetlib.vocab import Algorithm

if TYPE_CHECKING:
    from assetlib.pipeline.stages import LibraryStage

log = logging.getLogger("assetlib.faces.cli")


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.params, **overrides)


def cmd_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration (secrets masked); exit 2 with one line per invalid value."""
    settings = _settings(args)
    values = settings.masked()
    values["database"] = (
        "embedded" if settings.embedded else f"external {settings.db_host}:{settings.db_port}"
    )
    if args.json:
        print(json.dumps(values, indent=2, default=str))
    else:
        width = max(len(k) for k in values)
        for key, value in values.items():
            print(f"{key:<{width}}  {'(unset)' if value is None else value}")
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    """Connect (starting the embedded server if needed), migrate, and report versions, tables and indexes."""
    from assetlib.store.db import Database
    from assetlib.store.report import database_report, format_report

    settings = _settings(args)
    with Database.open(settings) as db, db.connection() as conn:
        report = database_report(conn, db.where)
    print(format_report(report))
    return 1 if report.problems() else 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    """Stop the embedded PostgreSQL server if it is running."""
    from assetlib.store.db import stop_embedded

    settings = _settings(args)
    if not settings.embedded:
        print(f"DB_HOST is set ({settings.db_host}): an external server is not assetlib's to stop")
        return 1
    stopped = stop_embedded(settings.pgdata)
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def cmd_db_drop_encoder(args: argparse.Namespace) -> int:
    """Drop every stored vector of one encoder (its tables and load records)."""
    from assetlib.store.db import Database
    from assetlib.store.schema import drop_encoder

    settings = _settings(args)
    with Database.open(settings) as db, db.connection() as conn:
        dropped = drop_encoder(conn, args.encoder)
    print(f"dropped {args.encoder}" if dropped else f"no stored vectors for {args.encoder}")
    return 0 if dropped else 1


def cmd_library_demo(args: argparse.Namespace) -> int:
    """Generate the procedural demo library (meshes, renders, English and Chinese captions)."""
    from assetlib.pipeline.stages import build_library

    settings = _settings(args, **({"views_per_asset": args.views} if args.views else {}))
    stage = build_library(
        settings,
        "demo",
        args.out,
        run_dir=args.run_dir,
        size=args.size,
        seed=args.seed,
        image_size=args.image_size,
        workers=args.workers,
    )
    _print_stage(stage)
    return 0


def cmd_library_read(args: argparse.Namespace) -> int:
    """Read a real library (Cap3D captions, G-Objaverse renders) and report what it holds."""
    from assetlib.pipeline.stages import build_library

    stage = build_library(
        _settings(args),
        "real",
        args.root,
        run_dir=args.run_dir,
        verify_images=not args.no_verify,
        rescan=args.rescan,
    )
    _print_stage(stage)
    return 0


def _print_stage(stage: LibraryStage) -> None:
    print(f"library:  {stage.root}")
    print(f"assets:   {len(stage.assets)}")
    print(f"counts:   {json.dumps(stage.counts)}")
    print(f"failures: {len(stage.failures)}" + (f" (see {stage.failures_csv})" if stage.failures_csv else ""))
    print(f"seconds:  {json.dumps({k: round(v, 1) for k, v in stage.seconds.items()})}")
    if stage.preview:
        print(f"preview:  {stage.preview}")


def cmd_library_fetch_models(args: argparse.Namespace) -> int:
    """Download GLBs not on this machine (by id, a search's top N, judged relevant) into the model cache."""
    from assetlib.pipeline.fetch import fetch_selected, read_id_list
    from assetlib.store.db import Database
    from assetlib.store.judgments import list_judgments

    settings = _settings(args)
    ids: list[str] = list(args.id or [])
    if args.ids:
        ids += read_id_list(Path(args.ids))
    db = Database.open(settings)
    try:
        if args.query:
            from assetlib.search.service import SearchService

            service = SearchService(settings, db)
            result = service.search_text(args.query, args.algorithm, args.mode, top_k=args.top_k)
            ids += [h.asset_id for h in result.hits]
            service.batcher.close()
        if args.judged:
            with db.connection() as conn:
                ids += [j.asset_id for j in list_judgments(conn) if j.relevant]
        if not ids:
            raise ValueError("nothing to fetch: give --id, --ids FILE, --query TEXT or --judged")
        plan, report = fetch_selected(settings, ids, args.sums, args.run_dir, db=db)
    finally:
        db.close()
    summary = report.summary()
    print(
        f"fetched {summary['downloaded']} ({summary['resumed']} resumed), {summary['present']} already "
        f"cached, {plan.local} in the library, {len(report.failures)} failed, {len(plan.unknown)} unknown, "
        f"{len(plan.no_url)} without a URL; {summary['mb']} MB in {summary['seconds']} s"
    )
    for failure in report.failures[:5]:
        print(f"  {failure.asset_id}: {failure.reason}")
    return 0 if not report.failures else 5


def cmd_library_render(args: argparse.Namespace) -> int:
    """Render mesh files (GLB, OBJ, PLY, STL) into views with camera JSON, in the G-Objaverse layout."""
    from assetlib.media.render import RenderSettings
    from assetlib.media.render_jobs import RenderJob, render_many

    settings = RenderSettings(
        views=args.views, size=args.image_size, elevation_deg=args.elevation, campos_layout=False
    )
    out = Path(args.out)
    jobs = [RenderJob(Path(m).stem, Path(m), out / Path(m).stem) for m in args.meshes]
    done, failures = render_many(jobs, settings, workers=args.workers, skip_done=False)
    for failure in failures:
        print(f"FAILED {failure.asset_id}: {failure.reason}", file=sys.stderr)
    print(f"rendered {len(done)} of {len(jobs)} meshes into {out}")
    return 1 if failures else 0


def cmd_encoders(args: argparse.Namespace) -> int:
    """List the algorithms with dimension, modalities, languages and whether each is usable now."""
    from assetlib.encoders.registry import availability

    rows = availability(_settings(args))
    for a in rows:
        state = "usable" if a.usable else "NOT USABLE"
        details = f"{a.dim or '?'}-d, {'+'.join(a.modalities) or '?'}, {'/'.join(a.languages) or '?'}"
        print(f"{a.algorithm:<7} {a.model:<40} {state:<11} {details:<28} {a.reason}")
        if a.note:
            print(f"{'':<7} {a.note}")
    if args.dashscope_models:
        from assetlib.model_specs import QWEN_MODELS

        print("\nDashScope models (QWEN_MODEL; QWEN_DIMENSION one of the dimensions):")
        for spec in QWEN_MODELS.values():
            dims = ", ".join(map(str, spec.dims))
            images = f"{spec.max_fused_images} image{'s' if spec.max_fused_images != 1 else ''}"
            items = f"{spec.max_items} item{'s' if spec.max_items != 1 else ''}"
            print(
                f"  {spec.name:<30} {spec.default_dim:>5}-d (of {dims}); fusion: {spec.fusion}, "
                f"{images} per fused vector, {items} per request, "
                f"images ≤ {spec.max_image_bytes // 2**20} MB{', instruct' if spec.instruct else ''}; "
                f"{spec.note}"
            )
    return 0


def cmd_models_fetch(args: argparse.Namespace) -> int:
    """Download a model's files from the Hugging Face Hub into the local cache (only what it needs)."""
    from assetlib.encoders import hub

    cached = None if args.refresh else hub.cached_snapshot(args.model)
    folder = cached or hub.download(args.model)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"{args.model}: {'already cached' if cached else 'downloaded'} at {folder}")
    print(f"revision {folder.name}, {len(list(folder.iterdir()))} files, {size / 2**20:.1f} MB")
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed a library with one algorithm into shards, then load the vectors into the store."""
    from assetlib.pipeline.stages import embed, populate

    overrides = {
        "embedding_workers": args.workers,
        "embedding_engine": args.engine,
        "ray_address": args.address,
        "ray_actors": args.actors,
    }
    settings = _settings(args, **{k: v for k, v in overrides.items() if v is not None})
    stage = embed(
        settings, [args.algorithm], args.library, shard_root=args.run_dir, languages=args.languages.split(",")
    )
    outcome = stage.results[0]
    if outcome["status"] != "done":
        print(f"{outcome['algorithm']}: {outcome['reason']}", file=sys.stderr)
        return 4
    print(
        f"{outcome['encoder']}: {outcome['shards']} shards ({outcome['shards_unchanged']} unchanged), "
        f"{outcome['vectors_computed']} vectors computed ({outcome['vectors_per_second']:.1f}/s), "
        f"{outcome['vectors_reused']} reused, {outcome['failures']} failed "
        f"({outcome['failures_csv']}), {outcome['seconds']:.1f}s"
    )
    if args.no_load:
        return 1 if outcome["failures"] else 0
    loaded = populate(settings, args.library, shard_root=args.run_dir, encoders=stage.encoders)
    for row in loaded.rows:
        print(
            f"store: {row['rows']} rows offered, {row['inserted']} inserted, {row['updated']} updated, "
            f"{row['indexes_built']} indexes built, {row['seconds']:.1f}s"
        )
        if row["index_refused"]:
            print(f"store: index refused by the memory guard: {row['index_refused']}", file=sys.stderr)
    return 1 if outcome["failures"] else 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a small SigLIP (or fine-tune one), or the e5-aligned image tower, on a library; reuse it
    when already trained."""
    from assetlib.pipeline.stages import train

    lit = args.algorithm == Algorithm.E5LIT
    stage = train(
        _settings(args),
        args.library,
        name=args.name,
        init=args.init,
        out_dir=args.out,
        steps=args.steps or (200 if lit else 300),
        max_seconds=args.seconds,
        batch_size=args.batch,
        learning_rate=args.lr or (1e-3 if lit else 5e-4),
        seed=args.seed,
        run_dir=args.run_dir,
        algorithm=args.algorithm,
    )
    result = stage.result
    state = "reused" if result.reused else f"trained {result.steps} steps in {result.seconds:.0f}s"
    print(f"model:    {result.model_dir}  ({state})")
    setting = "E5LIT_MODEL" if lit else "SIGLIP_MODEL"
    print(f"use it:   {setting}={result.model_dir}  (stored as {args.algorithm}:{args.name})")
    for key, value in sorted(result.metrics.items()):
        print(f"  {key:<34} {value:.3f}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Run the pipeline's stage notebooks with a params file (papermill), into outputs/<run>/."""
    from assetlib.pipeline.runner import PipelineError, format_manifest, run_pipeline

    stages = [s for s in (args.stages or "").split(",") if s]
    try:
        manifest = run_pipeline(
            args.params_file, args.outputs, stages, args.resume, execution_timeout=args.timeout
        )
    except PipelineError as exc:
        print(f"assetlib run: {exc}", file=sys.stderr)
        return 1
    print(format_manifest(manifest))
    print(f"manifest: {manifest.path}")
    return 0


def cmd_translate(args: argparse.Namespace) -> int:
    """Translate English captions to Chinese through Qwen (Batch API, or real time for small sets)."""
    from assetlib.pipeline.stages import translate

    captions = Path(args.captions)
    run_dir = Path(args.run_dir) if args.run_dir else captions.parent / "translation_run"
    stage = translate(
        _settings(args),
        captions,
        run_dir,
        mode=args.mode,
        dry_run=args.dry_run,
        output=args.out,
        max_wait=args.max_wait,
    )
    report = stage.report
    if report is None:
        print(f"assetlib translate: {stage.reason}: set DASHSCOPE_API_KEY", file=sys.stderr)
        return 4
    if report.dry_run:
        plan = report.dry_run
        print(
            f"{plan['requests']} requests in {plan['batch_files']} batch files "
            f"({plan['already_translated']} of {plan['captions']} captions already translated); "
            f"estimated tokens: {plan['input_tokens']:,} in, {plan['output_tokens']:,} out "
            f"(model {plan['model']}); nothing was submitted"
        )
        return 0
    print(
        f"{report.already + report.translated} of {report.total} captions translated "
        f"({report.translated} in this run, {len(report.failed)} failed: {run_dir / 'failed.json'})"
    )
    if report.output is None:
        print(f"batches still running; run the same command again to pick them up (state: {run_dir})")
        return 1
    print(f"wrote {stage.target}")
    return 0 if report.complete else 1


def cmd_serve_dashboard(args: argparse.Namespace) -> int:
    """Serve the Voila dashboard, and the API it calls unless --api-url names one already running."""
    from assetlib.config import settings_environment
    from assetlib.faces.serve import serve_dashboard

    settings = _settings(args)
    log_dir = Path(args.log_dir) if args.log_dir else settings.home / "logs"
    # The API child process gets these settings (from --params too), not only the environment.
    env = {**os.environ, **settings_environment(settings)}
    return serve_dashboard(
        args.host,
        args.port,
        args.api_port,
        args.api_url,
        log_dir,
        Path(args.outputs).resolve(),
        env=env,
        screenshots=Path(args.screenshots) if args.screenshots else None,
    )


def cmd_serve_api(args: argparse.Namespace) -> int:
    """Serve the REST API with uvicorn (encoders load once and are shared by all requests)."""
    import uvicorn

    from assetlib.faces.api.app import create_app

    settings = _settings(args)
    print(f"assetlib API on http://{args.host}:{args.port}  (docs: http://{args.host}:{args.port}/docs)")
    # uvicorn shuts down on SIGTERM, then re-raises it with the handler it found. Python's default
    # would end the process without atexit, leaving this process registered with the embedded
    # server, which then never stops; exiting normally lets the last user stop it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare every usable algorithm, mode, language and image layout on benchmark queries from a library."""
    from assetlib.evaluation.report import comparison_table
    from assetlib.pipeline.stages import evaluate

    stage = evaluate(
        _settings(args),
        args.library,
        args.run_dir,
        args.algorithms.split(","),
        seed=args.seed,
        max_queries=args.max_queries,
        reuse=False,
        queries_file=args.queries,
    )
    print(comparison_table(stage.report.rows))
    for name, path in stage.report.files.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="assetlib",
        description="Search 3D asset libraries by text and image (SigLIP vs Qwen, PostgreSQL + pgvector).",
    )
    parser.add_argument("--version", action="version", version=f"assetlib {__version__}")
    parser.add_argument("--params", help="params YAML file whose settings override the environment")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        parent: argparse._SubParsersAction, name: str, func: Callable[[argparse.Namespace], int], **kw: Any
    ) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=(func.__doc__ or "").splitlines()[0], **kw)
        p.set_defaults(func=func)
        return p

    config = add(sub, "config", cmd_config)
    config.add_argument("--json", action="store_true", help="print JSON instead of aligned text")

    db = sub.add_parser("db", help="database: check, stop, drop an encoder's vectors")
    db_sub = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    add(db_sub, "check", cmd_db_check)
    add(db_sub, "stop", cmd_db_stop)
    drop = add(db_sub, "drop-encoder", cmd_db_drop_encoder)
    drop.add_argument("encoder", help="encoder name as stored, e.g. siglip:demo-v1")

    encoders = add(sub, "encoders", cmd_encoders)
    encoders.add_argument(
        "--dashscope-models", action="store_true", help="also list every DashScope model with its limits"
    )
    models = sub.add_parser("models", help="model weights: fetch from the Hugging Face Hub")
    models_sub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND", required=True)
    fetch = add(models_sub, "fetch", cmd_models_fetch)
    fetch.add_argument("model", help="hub id, e.g. google/siglip2-so400m-patch14-384")
    fetch.add_argument("--refresh", action="store_true", help="download again even when it is cached")
    embed = add(sub, "embed", cmd_embed)
    embed.add_argument(
        "--algorithm",
        required=True,
        help=f"{', '.join(Algorithm)}, optionally :<model> (siglip:<hub id or dir>)",
    )
    embed.add_argument("--library", help="library folder (default: the demo library)")
    embed.add_argument(
        "--run-dir", default="outputs/embed", help="shards go to <run-dir>/embeddings/<encoder>/"
    )
    embed.add_argument("--languages", default="en,zh", help="caption languages to embed")
    embed.add_argument("--no-load", action="store_true", help="write shards only; do not load the store")
    embed.add_argument(
        "--workers", type=int, help="view loader processes beside the model (EMBEDDING_WORKERS; 0: none)"
    )
    embed.add_argument(
        "--engine", choices=["local", "ray"], help="local (default) or ray: shards over a Ray cluster"
    )
    embed.add_argument("--address", help="the Ray cluster to join (RAY_ADDRESS; unset: start one here)")
    embed.add_argument("--actors", type=int, help="Ray model actors, one model each (default: one per GPU)")

    train = add(sub, "train", cmd_train)
    train.add_argument(
        "-a",
        "--algorithm",
        choices=[Algorithm.SIGLIP.value, Algorithm.E5LIT.value],
        default=Algorithm.SIGLIP.value,
        help="siglip: a small SigLIP (or fine-tune one); e5lit: an image tower aligned to frozen e5",
    )
    train.add_argument("--library", help="library folder (default: the demo library)")
    train.add_argument("--out", help="output folder (default: $ASSETLIB_HOME/models/<algorithm>-<name>)")
    train.add_argument(
        "--name", default="demo", help="model name; its vectors are stored as <algorithm>:<name>"
    )
    train.add_argument("--init", help="siglip only: hub id or directory to fine-tune (default: from scratch)")
    train.add_argument("--steps", type=int, help="default: 300 (siglip), 200 (e5lit)")
    train.add_argument("--seconds", type=float, default=900.0, help="stop early after this long")
    train.add_argument("--batch", type=int, default=128)
    train.add_argument("--lr", type=float, help="default: 5e-4 (siglip), 1e-3 (e5lit)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--run-dir", help="write the training curves and held-out metrics here")

    run = add(sub, "run", cmd_run)
    run.add_argument(
        "params_file", help="params YAML: settings at the top, `stages:` and `run:` for the runner"
    )
    run.add_argument("--stages", help="comma-separated stages to run (default: every configured one)")
    run.add_argument("--resume", help="continue this run (folder, name under outputs/, or 'latest')")
    run.add_argument("--outputs", help="folder of run folders (default: run.outputs, else ./outputs)")
    run.add_argument("--timeout", type=int, help="per-cell execution timeout in seconds (default 3600)")

    translate = add(sub, "translate", cmd_translate)
    translate.add_argument("captions", help="English captions JSON {asset id: caption}")
    translate.add_argument("--run-dir", help="state, requests and results (default: beside the captions)")
    translate.add_argument("--mode", choices=["batch", "realtime"], default="batch")
    translate.add_argument("--dry-run", action="store_true", help="count requests and tokens; submit nothing")
    translate.add_argument(
        "--out", help="output JSON (default: text_captions_cap3d_cn.json beside the input)"
    )
    translate.add_argument(
        "--max-wait", type=float, help="stop polling after this many seconds (resume later)"
    )

    serve = sub.add_parser("serve", help="serve the REST API, or the dashboard with the API beside it")
    serve_sub = serve.add_subparsers(dest="serve_command", metavar="SERVE_COMMAND", required=True)
    api = add(serve_sub, "api", cmd_serve_api)
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    dash = add(serve_sub, "dashboard", cmd_serve_dashboard)
    dash.add_argument("--host", default="127.0.0.1")
    dash.add_argument("--port", type=int, default=8866, help="dashboard port (default 8866)")
    dash.add_argument("--api-port", type=int, default=8000, help="port of the API started beside it")
    dash.add_argument("--api-url", help="use this running API instead of starting one")
    dash.add_argument("--outputs", default="outputs", help="run folders; the metrics tab shows the newest")
    dash.add_argument("--log-dir", help="server logs (default: $ASSETLIB_HOME/logs)")
    dash.add_argument(
        "--screenshots", help="once serving, save dashboard screenshots (Chromium) in this folder"
    )

    evaluate = add(sub, "evaluate", cmd_evaluate)
    evaluate.add_argument("--library", help="library folder (default: the demo library)")
    evaluate.add_argument("--run-dir", default="outputs/evaluate", help="queries.json, metrics.json, figures")
    evaluate.add_argument("--algorithms", default=",".join(Algorithm), help="comma-separated algorithms")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument(
        "--max-queries", type=int, default=300, help="groups (demo) or assets (real) sampled"
    )
    evaluate.add_argument(
        "--queries", help="a saved queries.json, or 'judged': the relevance judgments made in the dashboard"
    )

    library = sub.add_parser(
        "library", help="asset libraries: generate the demo, read real data, render meshes"
    )
    lib_sub = library.add_subparsers(dest="library_command", metavar="LIBRARY_COMMAND", required=True)
    demo = add(lib_sub, "demo", cmd_library_demo)
    demo.add_argument("--out", help="library folder (default: $ASSETLIB_HOME/libraries/demo)")
    demo.add_argument("--size", type=int, default=480, help="number of assets (default 480)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--views", type=int, help="views rendered per asset (default: VIEWS_PER_ASSET, 8)")
    demo.add_argument("--image-size", type=int, default=256)
    demo.add_argument("--workers", type=int, default=None, help="render processes (default: all cores)")
    demo.add_argument("--run-dir", help="write failures, counts and a 4×4 preview grid here")
    read = add(lib_sub, "read", cmd_library_read)
    read.add_argument("root", help="folder with text_captions_cap3d.json, the index map, renders/ …")
    read.add_argument("--run-dir", help="write failures, counts and a 4×4 preview grid here")
    read.add_argument("--no-verify", action="store_true", help="skip decoding the chosen views")
    read.add_argument(
        "--rescan", action="store_true", help="scan every render folder again, ignoring the view index"
    )
    fetch = add(lib_sub, "fetch-models", cmd_library_fetch_models)
    fetch.add_argument("--id", action="append", help="an asset id or Objaverse uid (repeatable)")
    fetch.add_argument("--ids", help="file of asset ids or Objaverse uids, one per line")
    fetch.add_argument("--query", help="fetch the top results of this text search")
    fetch.add_argument("--algorithm", default="siglip", help="algorithm of --query (default siglip)")
    fetch.add_argument("--mode", default="text_to_image", help="mode of --query (default text_to_image)")
    fetch.add_argument("--top-k", type=int, default=10, help="results of --query to fetch (default 10)")
    fetch.add_argument("--judged", action="store_true", help="every asset judged relevant in the dashboard")
    fetch.add_argument(
        "--sums", type=Path, help="sha256sum-style file (<hex>  <shard>/<uid>.glb) to verify by"
    )
    fetch.add_argument("--run-dir", type=Path, help="write fetch_report.json and fetch_failures.csv here")
    render = add(lib_sub, "render", cmd_library_render)
    render.add_argument("meshes", nargs="+", help="GLB, OBJ, PLY or STL files")
    render.add_argument("--out", required=True, help="output folder: <out>/<mesh name>/<vvvvv>/<vvvvv>.png")
    render.add_argument("--views", type=int, default=8)
    render.add_argument("--image-size", type=int, default=256)
    render.add_argument("--elevation", type=float, default=20.0, help="camera elevation in degrees")
    render.add_argument("--workers", type=int, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `assetlib` console command."""
    from assetlib.encoders.base import EncoderError
    from assetlib.library.readers import LibraryError
    from assetlib.library.translate import TranslationError
    from assetlib.store.db import DatabaseError

    args = build_parser().parse_args(argv)
    try:
        level = args.log_level or _settings(args).log_level
        configure_logging(level.upper())
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"assetlib: {exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        print(f"assetlib: database error: {exc}", file=sys.stderr)
        return 3
    except (LibraryError, EncoderError, TranslationError, ValueError, FileNotFoundError) as exc:
        print(f"assetlib: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print("assetlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
