"""Row counts for /health without scanning: exact when small, the planner's estimate when large."""

from __future__ import annotations

from assetlib.store.catalog import EXACT_COUNT_BELOW, row_counts, store_counts
from assetlib.store.db import Database


def _table(conn, name: str, rows: int, analyse: bool) -> None:
    conn.execute(f"CREATE TABLE {name} (id bigint, note text)")
    conn.execute(f"INSERT INTO {name} SELECT g, 'row ' || g FROM generate_series(1, %s) g", (rows,))
    if analyse:
        conn.execute(f"ANALYZE {name}")


def test_small_tables_are_counted_exactly(db: Database):
    with db.connection() as conn:
        _table(conn, "small_t", 1234, analyse=True)
        _table(conn, "small_unanalysed", 77, analyse=False)
        counts, estimated = row_counts(conn, ["small_t", "small_unanalysed"])
    assert counts == {"small_t": 1234, "small_unanalysed": 77} and estimated is False


def test_large_tables_are_estimated_from_the_catalog_and_follow_growth(db: Database):
    rows = EXACT_COUNT_BELOW * 3
    with db.connection() as conn:
        _table(conn, "large_t", rows, analyse=True)
        counts, estimated = row_counts(conn, ["large_t"])
        assert estimated is True
        assert abs(counts["large_t"] - rows) / rows < 0.02
        # Rows added since the last ANALYZE still show: the estimate scales with the pages there are now.
        conn.execute("INSERT INTO large_t SELECT g, 'row ' || g FROM generate_series(1, %s) g", (rows,))
        grown, _ = row_counts(conn, ["large_t"])
    assert abs(grown["large_t"] - 2 * rows) / (2 * rows) < 0.05


def test_a_large_table_never_analysed_is_not_scanned_to_the_end(db: Database):
    with db.connection() as conn:
        _table(conn, "large_unanalysed", EXACT_COUNT_BELOW + 5000, analyse=False)
        counts, estimated = row_counts(conn, ["large_unanalysed"])
    # Counted only up to the threshold ("at least that many"), and flagged as an estimate.
    assert estimated is True and counts["large_unanalysed"] >= EXACT_COUNT_BELOW


def test_store_counts_reports_each_encoder_and_whether_it_estimated(db: Database):
    with db.connection() as conn:
        result = store_counts(conn)
    assert result == {"assets": 0, "vectors": {}, "estimated": False}
