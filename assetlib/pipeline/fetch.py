"""`assetlib library fetch-models`: choose assets (ids, a search's top N, judged relevant), download
the GLBs not on this machine into the model cache, and report what was fetched."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from assetlib.config import Settings
from assetlib.library.fetch_models import FetchReport, ModelDownload, fetch_models, read_sha256_sums
from assetlib.library.remote_models import cached_model_path, local_model, remote_model_url
from assetlib.records import Failure, write_failures, write_json
from assetlib.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class FetchPlan:
    """What a fetch will do: the downloads, and the assets it skips (already here, or no URL)."""

    downloads: list[ModelDownload]
    local: int
    unknown: list[str]
    no_url: list[str]


def plan_fetch(
    settings: Settings, db: Database, ids: Sequence[str], sums: dict[str, str] | None = None
) -> FetchPlan:
    """Downloads for the given asset ids or Objaverse uids whose GLB is neither in the library nor cached."""
    wanted = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT asset_id, objaverse_uid, glb_path, glb_relpath FROM assets "
            "WHERE asset_id = ANY(%(ids)s) OR objaverse_uid = ANY(%(ids)s) ORDER BY asset_id",
            {"ids": wanted},
        ).fetchall()
    found = {r[0] for r in rows} | {r[1] for r in rows if r[1]}
    plan = FetchPlan([], 0, [i for i in wanted if i not in found], [])
    by_name = {PurePosixPath(k).name: v for k, v in (sums or {}).items()}
    for asset_id, uid, glb_path, relpath in rows:
        if local_model(settings.home, glb_path, relpath) is not None:
            plan.local += 1
            continue
        url = remote_model_url(settings.model_url_template, relpath, uid)
        dest = cached_model_path(settings.home, relpath) if relpath else None
        if url is None or dest is None:
            plan.no_url.append(asset_id)
            continue
        digest = (sums or {}).get(relpath) or by_name.get(PurePosixPath(relpath).name)
        plan.downloads.append(ModelDownload(asset_id, url, dest, digest))
    return plan


def read_id_list(path: Path) -> list[str]:
    """Asset ids or Objaverse uids, one per line ('#' comments and blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def fetch_selected(
    settings: Settings,
    ids: Sequence[str],
    sums_file: Path | None = None,
    run_dir: Path | None = None,
    db: Database | None = None,
) -> tuple[FetchPlan, FetchReport]:
    """Plan and run a fetch; write fetch_report.json and fetch_failures.csv to run_dir when given."""
    owned = db is None
    database = db or Database.open(settings)
    try:
        plan = plan_fetch(settings, database, ids, read_sha256_sums(sums_file) if sums_file else None)
    finally:
        if owned:
            database.close()
    log.info(
        "fetch-models: %d to download, %d already on this machine, %d unknown ids, %d without a URL",
        len(plan.downloads),
        plan.local,
        len(plan.unknown),
        len(plan.no_url),
    )
    report = fetch_models(plan.downloads, workers=settings.fetch_workers)
    if run_dir is not None:
        failures = [
            *report.failures,
            *(Failure(i, "fetch-models", "no such asset or uid in the catalog") for i in plan.unknown),
            *(
                Failure(i, "fetch-models", "no model URL (MODEL_URL_TEMPLATE empty, or no index path)")
                for i in plan.no_url
            ),
        ]
        write_failures(failures, Path(run_dir) / "fetch_failures.csv")
        write_json(
            Path(run_dir) / "fetch_report.json",
            {**report.summary(), "local": plan.local, "unknown": plan.unknown, "no_url": plan.no_url},
        )
    return plan, report
