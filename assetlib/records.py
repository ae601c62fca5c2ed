"""Files a run leaves behind: result tables as CSV, failure lists, JSON records written atomically."""

from __future__ import annotations

import csv
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FAILURE_COLUMNS = ("asset_id", "stage", "reason")


@dataclass(frozen=True)
class Failure:
    """An asset (or one of its files) skipped by a stage, and why."""

    asset_id: str
    stage: str
    reason: str


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write dict rows as a CSV whose header is every key in order of first use; return the path.

    Rows may differ (a refused benchmark configuration has no latencies): missing cells stay empty.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if rows:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
    return path


def write_failures(failures: Sequence[Failure], path: str | Path) -> Path:
    """The one failures table (asset_id, stage, reason) as CSV; written with its header even when empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=FAILURE_COLUMNS)
        writer.writeheader()
        writer.writerows(asdict(f) for f in failures)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a file so that a reader (or a crash) never sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> Path:
    """Write JSON atomically (UTF-8, Chinese kept readable; dates and paths as strings)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str))
