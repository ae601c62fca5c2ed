"""CSV result tables."""

from __future__ import annotations

import csv

from assetlib.records import write_csv


def test_rows_with_different_keys_share_one_header(tmp_path):
    rows = [{"layout": "views", "refused": "too big"}, {"layout": "pooled", "p95_ms": 4.2, "recall@10": 0.97}]
    path = write_csv(rows, tmp_path / "bench" / "t.csv")
    with path.open() as fh:
        read = list(csv.DictReader(fh))
    assert list(read[0]) == ["layout", "refused", "p95_ms", "recall@10"]
    assert read[0]["p95_ms"] == "" and read[1]["refused"] == "" and read[1]["recall@10"] == "0.97"
    assert not write_csv([], tmp_path / "empty.csv").exists()
