"""Metadata filters on a search: which catalog fields, as SQL conditions the kNN and keyword SQL share."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from psycopg import sql

MAX_FILTER_VALUES = 50  # per field: a filter is chosen from chips, not pasted in bulk


class FilterError(ValueError):
    """A filter that cannot be applied (too many values, an empty range…): the client's to fix."""


@dataclass(frozen=True)
class SearchFilters:
    """What results must satisfy: any of the values within a field, every field given.

    categories: Objaverse / G-Objaverse categories; lvis: LVIS categories; licenses: Objaverse
    licence codes; tags: tag names; face_min/face_max: the mesh's face count (inclusive);
    high_quality: on the quality list.
    """

    categories: tuple[str, ...] = ()
    lvis: tuple[str, ...] = ()
    licenses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    face_min: int | None = None
    face_max: int | None = None
    high_quality: bool = False

    def __post_init__(self) -> None:
        for name in ("categories", "lvis", "licenses", "tags"):
            values = getattr(self, name)
            if len(values) > MAX_FILTER_VALUES:
                raise FilterError(f"filter {name}: at most {MAX_FILTER_VALUES} values, got {len(values)}")
            if any(not str(v).strip() for v in values):
                raise FilterError(f"filter {name}: empty value")
        for bound in (self.face_min, self.face_max):
            if bound is not None and bound < 0:
                raise FilterError(f"face counts are never negative, got {bound}")
        if self.face_min is not None and self.face_max is not None and self.face_min > self.face_max:
            raise FilterError(f"face_min {self.face_min} is above face_max {self.face_max}")

    def with_quality(self, high_quality_only: bool) -> SearchFilters:
        """These filters, also requiring the quality list when `high_quality_only`."""
        return replace(self, high_quality=self.high_quality or high_quality_only)

    @property
    def on_catalog(self) -> bool:
        """Whether any condition needs the catalog (the quality flag is copied into vector rows)."""
        return bool(self.categories or self.lvis or self.licenses or self.tags) or (
            self.face_min,
            self.face_max,
        ) != (None, None)

    def describe(self) -> dict[str, Any]:
        """The filters that are set, for results and logs."""
        out: dict[str, Any] = {}
        for name in ("categories", "lvis", "licenses", "tags"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        for name in ("face_min", "face_max"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.high_quality:
            out["high_quality"] = True
        return out

    def catalog_conditions(self, alias: str) -> list[sql.Composable]:
        """SQL conditions on the catalog row `alias` (parameters named f_*, see `params`)."""
        a = sql.Identifier(alias)
        out: list[sql.Composable] = []
        if self.categories:
            out.append(sql.SQL("{}.categories && %(f_categories)s::text[]").format(a))
        if self.lvis:
            out.append(sql.SQL("{}.lvis && %(f_lvis)s::text[]").format(a))
        if self.tags:
            out.append(sql.SQL("{}.tags && %(f_tags)s::text[]").format(a))
        if self.licenses:
            out.append(sql.SQL("{}.license = ANY(%(f_licenses)s::text[])").format(a))
        if self.face_min is not None:
            out.append(sql.SQL("{}.face_count >= %(f_face_min)s").format(a))
        if self.face_max is not None:
            out.append(sql.SQL("{}.face_count <= %(f_face_max)s").format(a))
        return out

    def vector_row_condition(self, table: sql.Composable) -> sql.Composable | None:
        """A condition on a vector table's rows: its asset passes the catalog filters (None: no filter).

        An EXISTS on the catalog's primary key keeps the ANN scan the outer loop, so pgvector's
        iterative scan goes on until enough rows pass (hnsw.iterative_scan).
        """
        conditions = self.catalog_conditions("f")
        if not conditions:
            return None
        return sql.SQL("EXISTS (SELECT 1 FROM assets f WHERE f.asset_id = {}.asset_id AND {})").format(
            table, sql.SQL(" AND ").join(conditions)
        )

    def params(self) -> dict[str, Any]:
        """The f_* parameters the conditions name."""
        return {
            "f_categories": list(self.categories),
            "f_lvis": list(self.lvis),
            "f_tags": [t.lower() for t in self.tags],
            "f_licenses": list(self.licenses),
            "f_face_min": self.face_min,
            "f_face_max": self.face_max,
        }


NO_FILTERS = SearchFilters()
