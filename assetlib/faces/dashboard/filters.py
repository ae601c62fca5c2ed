"""The dashboard's filters: active filter chips, a face-count range, and facet chips that add a filter."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import ipywidgets as w

# Facet fields as the API names them, their titles, and the filter list a click adds to.
FACET_FIELDS: tuple[tuple[str, str], ...] = (
    ("categories", "category"),
    ("lvis", "LVIS"),
    ("licenses", "licence"),
    ("tags", "tag"),
    ("faces", "faces"),
    ("high_quality", "quality"),
)
LIST_FIELDS = ("categories", "lvis", "licenses", "tags")


class FilterPanel:
    """What results must satisfy, edited by chips; `changed` is called after every edit."""

    def __init__(self, changed: Callable[[], None]) -> None:
        self.changed = changed
        self.values: dict[str, list[str]] = {name: [] for name in LIST_FIELDS}
        self.face_min = w.BoundedIntText(
            value=0,
            min=0,
            max=100_000_000,
            description="faces ≥",
            style={"description_width": "initial"},
            layout=w.Layout(width="150px"),
        )
        self.face_max = w.BoundedIntText(
            value=0,
            min=0,
            max=100_000_000,
            description="≤",
            tooltip="0: no upper limit",
            style={"description_width": "initial"},
            layout=w.Layout(width="120px"),
        )
        self.high_quality = w.Checkbox(value=False, description="high-quality only", indent=False)
        self.active = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.active.add_class("al-active-filters")
        self.facets = w.VBox()
        self.facets.add_class("al-facets")
        for box in (self.face_min, self.face_max):
            box.observe(lambda _: self._edited(), names="value")
        self.high_quality.observe(lambda _: self._edited(), names="value")
        self._quiet = False
        self._show_active()

    # -- state ------------------------------------------------------------------------------------
    def as_api(self) -> dict[str, Any]:
        """The filters as the API's `filters` object, and as an upload search's query parameters (a
        list repeats the parameter); quality is sent as high_quality_only."""
        body: dict[str, Any] = {name: list(v) for name, v in self.values.items() if v}
        if self.face_min.value:
            body["face_min"] = self.face_min.value
        if self.face_max.value:
            body["face_max"] = self.face_max.value
        return body

    @property
    def any(self) -> bool:
        """Whether any filter is set (quality included)."""
        return bool(self.as_api()) or self.high_quality.value

    def add(self, field: str, value: str) -> None:
        """Require `value` in a list field (a second value of the same field widens it: any of them)."""
        if value not in self.values[field]:
            self.values[field].append(value)
            self._edited()

    def remove(self, field: str, value: str) -> None:
        """Drop one value of a list field."""
        if value in self.values[field]:
            self.values[field].remove(value)
            self._edited()

    def set_faces(self, low: int | None, high: int | None) -> None:
        """Set the face-count range in one edit (None: no bound)."""
        self._quiet = True
        self.face_min.value, self.face_max.value = low or 0, high or 0
        self._quiet = False
        self._edited()

    def clear(self) -> None:
        """Drop every filter."""
        self._quiet = True
        self.values = {name: [] for name in LIST_FIELDS}
        self.face_min.value = self.face_max.value = 0
        self.high_quality.value = False
        self._quiet = False
        self._edited()

    def _edited(self) -> None:
        if self._quiet:
            return
        self._show_active()
        self.changed()

    # -- chips ------------------------------------------------------------------------------------
    def _chip(self, text: str, tooltip: str, on_click: Callable[[Any], None], css: str) -> w.Button:
        chip = w.Button(description=text, tooltip=tooltip, layout=w.Layout(width="auto", height="26px"))
        chip.add_class(css)
        chip.on_click(on_click)
        return chip

    def _show_active(self) -> None:
        titles = dict(FACET_FIELDS)
        chips: list[w.Widget] = []
        for field, values in self.values.items():
            for value in values:
                chips.append(
                    self._chip(
                        f"{titles[field]}: {value} ×",
                        "remove this filter",
                        functools.partial(lambda f, v, _: self.remove(f, v), field, value),
                        "al-filter-chip",
                    )
                )
        if self.face_min.value or self.face_max.value:
            low, high = self.face_min.value, self.face_max.value
            text = f"faces {low:,}–{high:,}" if high else f"faces ≥ {low:,}"
            chips.append(
                self._chip(
                    f"{text} ×", "remove this filter", lambda _: self.set_faces(None, None), "al-filter-chip"
                )
            )
        if chips:
            chips.append(
                self._chip("clear all", "remove every filter", lambda _: self.clear(), "al-clear-chip")
            )
        label = w.HTML(
            '<span class="al-sub">filters</span>' if chips else '<span class="al-sub">no filters</span>'
        )
        self.active.children = [label, *chips]

    def show_facets(self, facets: dict[str, list[dict]] | None, candidates: int) -> None:
        """Facet chips with their counts over the candidates; a click adds that filter."""
        if not facets:
            self.facets.children = []
            return
        rows: list[w.Widget] = [
            w.HTML(f'<span class="al-sub">refine — counts over the top {candidates} candidates</span>')
        ]
        for field, title in FACET_FIELDS:
            entries = facets.get(field) or []
            chips: list[w.Widget] = []
            for entry in entries:
                value, count = str(entry["value"]), int(entry["count"])
                if field in LIST_FIELDS and value in self.values[field]:
                    continue  # already a filter
                if field == "faces":
                    click = functools.partial(
                        lambda lo, hi, _: self.set_faces(lo, hi), entry.get("face_min"), entry.get("face_max")
                    )
                elif field == "high_quality":
                    if self.high_quality.value:
                        continue
                    click = functools.partial(lambda _: setattr(self.high_quality, "value", True))
                else:
                    click = functools.partial(lambda f, v, _: self.add(f, v), field, value)
                chips.append(self._chip(f"{value}  {count}", f"only {title} {value}", click, "al-facet-chip"))
            if chips:
                head = w.HTML(f'<span class="al-facet-title">{title}</span>', layout=w.Layout(width="70px"))
                row = w.HBox([head, *chips], layout=w.Layout(flex_flow="row wrap", align_items="center"))
                row.add_class(f"al-facet-{field}")
                rows.append(row)
        self.facets.children = rows
