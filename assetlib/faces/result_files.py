"""Results as files: CSV or JSON rows (ids, Objaverse uids, captions, scores, model URLs), GLB URL lists.

Shared by the API's downloads and the dashboard's (which builds them from the results it shows).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any


class ExportFormat(StrEnum):
    """How results are downloaded: the API's JSON, a CSV table, a JSON list of rows, or model URLs."""

    JSON = "json"  # the search response itself
    CSV = "csv"
    ROWS = "rows"  # a JSON list of the CSV's rows
    GLB_LIST = "glb-list"  # one model URL per line (wget -i / aria2c -i)


EXPORT_COLUMNS = (
    "rank",
    "asset_id",
    "objaverse_uid",
    "similarity",
    "caption_en",
    "caption_cn",
    "name",
    "license",
    "categories",
    "tags",
    "face_count",
    "model_url",
    "model_source",
    "relevant",
)


def export_rows(results: Sequence[dict[str, Any]], relevance: dict[str, bool] | None = None) -> list[dict]:
    """Flat rows of the results (search hits as the API answers them), with judgments when given."""
    relevance = relevance or {}
    rows = []
    for rank, hit in enumerate(results, start=1):
        rows.append(
            {
                "rank": rank,
                "asset_id": hit["asset_id"],
                "objaverse_uid": hit.get("objaverse_id"),
                "similarity": hit.get("similarity"),
                "caption_en": hit.get("caption_en"),
                "caption_cn": hit.get("caption_cn"),
                "name": hit.get("name"),
                "license": hit.get("license"),
                "categories": ";".join(hit.get("categories") or []),
                "tags": ";".join(hit.get("tags") or []),
                "face_count": hit.get("face_count"),
                "model_url": hit.get("model_url"),
                "model_source": hit.get("model_source"),
                "relevant": relevance.get(hit["asset_id"]),
            }
        )
    return rows


def rows_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV text with the export header (UTF-8; Chinese kept)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def glb_list(rows: Sequence[dict]) -> str:
    """One model URL per line, for results that have one."""
    return "".join(f"{r['model_url']}\n" for r in rows if r.get("model_url"))


def export_file(
    results: Sequence[dict[str, Any]], fmt: ExportFormat, relevance: dict[str, bool] | None = None
) -> tuple[str, str, str]:
    """(content, media type, file suffix) of results in a file format (not JSON: that is the response)."""
    rows = export_rows(results, relevance)
    if fmt is ExportFormat.CSV:
        return rows_csv(rows), "text/csv; charset=utf-8", "csv"
    if fmt is ExportFormat.ROWS:
        return json.dumps(rows, ensure_ascii=False, indent=1), "application/json", "json"
    if fmt is ExportFormat.GLB_LIST:
        return glb_list(rows), "text/plain; charset=utf-8", "txt"
    raise ValueError(f"{fmt} is the search response itself, not a file format")
