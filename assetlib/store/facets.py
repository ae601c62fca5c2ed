"""Facet counts over a candidate set: how many of the assets found have each category, licence, tag…"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

# Face-count ranges shown as chips: (label, face_min, face_max), inclusive bounds.
FACE_BUCKETS: tuple[tuple[str, int | None, int | None], ...] = (
    ("< 1k faces", None, 999),
    ("1k–10k faces", 1000, 9999),
    ("10k–100k faces", 10_000, 99_999),
    ("≥ 100k faces", 100_000, None),
)
MAX_VALUES_PER_FACET = 12  # the most frequent values of a field; the rest are not shown

_COUNTS = """
WITH c AS (SELECT * FROM assets WHERE asset_id = ANY(%(ids)s))
SELECT 'categories', v, count(*) FROM c, unnest(c.categories) v GROUP BY v
UNION ALL SELECT 'lvis', v, count(*) FROM c, unnest(c.lvis) v GROUP BY v
UNION ALL SELECT 'tags', v, count(*) FROM c, unnest(c.tags) v GROUP BY v
UNION ALL SELECT 'licenses', license, count(*) FROM c WHERE license IS NOT NULL GROUP BY license
UNION ALL SELECT 'high_quality', 'high quality', count(*) FROM c WHERE high_quality HAVING count(*) > 0
UNION ALL SELECT 'faces', b.label, count(*) FROM c
    JOIN unnest(%(labels)s::text[], %(lows)s::int[], %(highs)s::int[]) AS b(label, lo, hi)
      ON c.face_count >= coalesce(b.lo, 0) AND c.face_count <= coalesce(b.hi, 2147483647)
    GROUP BY b.label
"""


def facet_counts(conn: psycopg.Connection, asset_ids: Sequence[str]) -> dict[str, list[dict]]:
    """Per field, [{value, count}] over the given assets, most frequent first; face buckets in order,
    each with the face_min/face_max its chip filters by."""
    rows = conn.execute(
        _COUNTS,
        {
            "ids": list(asset_ids),
            "labels": [b[0] for b in FACE_BUCKETS],
            "lows": [b[1] for b in FACE_BUCKETS],
            "highs": [b[2] for b in FACE_BUCKETS],
        },
    ).fetchall()
    out: dict[str, list[dict]] = {}
    for field, value, count in rows:
        out.setdefault(field, []).append({"value": value, "count": int(count)})
    order = {b[0]: i for i, b in enumerate(FACE_BUCKETS)}
    for field, values in out.items():
        if field == "faces":
            values.sort(key=lambda v: order[v["value"]])
            for v in values:
                v["face_min"], v["face_max"] = face_bucket(v["value"])
        else:
            values.sort(key=lambda v: (-v["count"], v["value"]))
            del values[MAX_VALUES_PER_FACET:]
    return out


def face_bucket(label: str) -> tuple[int | None, int | None]:
    """The (face_min, face_max) of a face-count chip."""
    for name, low, high in FACE_BUCKETS:
        if name == label:
            return low, high
    raise KeyError(label)
