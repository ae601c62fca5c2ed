"""The comparison tab's widgets: one query, two sides (algorithm and mode), two result columns."""

from __future__ import annotations

import html

import ipywidgets as w

from assetlib.faces.dashboard.html import box
from assetlib.vocab import MODE_TITLES, ImageLayout, Mode, TextMode

TEXT_MODE_OPTIONS = [(MODE_TITLES[Mode(m)], m.value) for m in TextMode]
# Image layouts a side may ask for ("": what the store serves best); captions and keywords ignore it.
LAYOUT_OPTIONS = [
    ("best layout", ""),
    ("per-view max", ImageLayout.VIEWS.value),
    ("pooled + re-rank", ImageLayout.POOLED.value),
    ("one vector per asset", ImageLayout.ASSET.value),
]


class SidePicker:
    """An algorithm and a text mode for one side of the comparison."""

    def __init__(self, title: str, mode: str) -> None:
        self.algorithm = w.Dropdown(description="algorithm", layout=w.Layout(width="230px"))
        self.mode = w.Dropdown(
            options=TEXT_MODE_OPTIONS, value=mode, description="mode", layout=w.Layout(width="290px")
        )
        self.layout = w.Dropdown(
            options=LAYOUT_OPTIONS,
            value="",
            description="layout",
            tooltip="how render vectors are searched (text → renders and fused only)",
            layout=w.Layout(width="240px"),
        )
        self.widget = w.HBox(
            [
                w.HTML(f'<span class="al-side-title">{html.escape(title)}</span>'),
                self.algorithm,
                self.mode,
                self.layout,
            ],
            layout=w.Layout(align_items="center"),
        )
        self.widget.add_class("al-row")
        self.widget.add_class(f"al-side-{title.lower()}")

    def set_algorithms(self, names: list[tuple[str, str]], preferred: str | None) -> None:
        """Offer these (title, name) algorithms, keeping the current choice when it is still there."""
        current = self.algorithm.value
        self.algorithm.options = names
        values = [n for _, n in names]
        if current in values:
            self.algorithm.value = current
        elif preferred in values:
            self.algorithm.value = preferred
        elif values:
            self.algorithm.value = values[0]

    def side(self) -> dict:
        """This side as the API's `a` / `b` object."""
        if not self.algorithm.value:
            raise ValueError("no usable algorithm to compare (see the notes on the Search tab)")
        side = {"algorithm": self.algorithm.value, "mode": self.mode.value}
        if self.layout.value:
            side["layout"] = self.layout.value
        return side


class ComparePanel:
    """Widgets of the comparison tab; the dashboard fills the columns."""

    def __init__(self) -> None:
        self.query = w.Text(
            placeholder="Compare two ways of searching the same query, e.g. a wooden chair / 一把木椅子",
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", height="36px"),
        )
        self.button = w.Button(description="Compare", button_style="primary", icon="columns")
        self.a = SidePicker("A", TextMode.TEXT_TO_IMAGE.value)
        self.b = SidePicker("B", TextMode.HYBRID.value)
        self.summary = w.HTML(box("pick two sides and compare them on one query", "al-sub"))
        self.summary.add_class("al-compare-summary")
        self.column_a = w.GridBox(layout=self._grid())
        self.column_b = w.GridBox(layout=self._grid())
        self.head_a = w.HTML()
        self.head_b = w.HTML()
        columns = w.HBox(
            [
                w.VBox([self.head_a, self.column_a], layout=w.Layout(width="50%", padding="0 6px 0 0")),
                w.VBox([self.head_b, self.column_b], layout=w.Layout(width="50%", padding="0 0 0 6px")),
            ],
            layout=w.Layout(width="100%"),
        )
        self.column_a.add_class("al-column-a")
        self.column_b.add_class("al-column-b")
        row = w.HBox([self.query, self.button], layout=w.Layout(align_items="center"))
        row.add_class("al-row")
        self.widget = w.VBox([row, self.a.widget, self.b.widget, self.summary, columns])

    @staticmethod
    def _grid() -> w.Layout:
        return w.Layout(grid_template_columns="repeat(auto-fill, minmax(170px, 1fr))", grid_gap="8px")


def side_heading(title: str, response: dict, alone: int) -> str:
    """A column's head: which side, what it searched (and over which layout), how many it found alone."""
    mode = MODE_TITLES.get(Mode(response["mode"]), response["mode"])
    layout = f" · {response['layout']}" if response.get("layout") else ""
    count = len(response["results"])
    return (
        f'<div class="al-side-head"><b>{html.escape(title)}</b> · {html.escape(response["algorithm"])} · '
        f"{html.escape(mode)}{html.escape(layout)} · {count} result{'' if count == 1 else 's'}, "
        f"{alone} found only here</div>"
    )


def compare_summary(answer: dict) -> str:
    """overlap@k in words and as a bar."""
    k, overlap = answer["k"], answer["overlap"]
    share = answer["overlap_at_k"]
    return (
        f'<div class="al-status"><b>overlap@{k} = {share:.2f}</b> ({overlap} of {k} in both) · '
        f"only A: {len(answer['only_a'])} · only B: {len(answer['only_b'])}"
        f'<div class="al-bar"><div style="width:{100 * share:.0f}%"></div></div></div>'
    )
