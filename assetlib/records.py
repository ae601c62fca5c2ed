"""Writing result tables (benchmarks, evaluation) to CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


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
