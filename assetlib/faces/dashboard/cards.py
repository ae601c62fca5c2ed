"""A result card: thumbnail, score, name and captions, metadata, and its buttons (3D view, ✓ / ✗)."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as w

from assetlib.faces.dashboard.html import box, clamped

# How the comparison marks a card: found by both sides, or by this side alone.
COMPARE_BADGES = {"both": ("in both", "al-badge-both"), "only": ("only here", "al-badge-only")}


def metadata_line(hit: dict) -> str:
    """The asset's id and what the catalog knows of it, in one short line."""
    parts = [html.escape(hit["asset_id"])]
    if hit.get("high_quality"):
        parts.append("★ high quality")
    if hit.get("license"):
        parts.append(html.escape(hit["license"]))
    if hit.get("face_count") is not None:
        parts.append(f"{hit['face_count']:,} faces")
    if hit.get("model_source") == "remote":
        parts.append("model on remote host")
    elif not hit.get("model_url"):
        parts.append("no 3D model")
    return " · ".join(parts)


def label_chips(hit: dict, limit: int = 4) -> str:
    """Its categories and first tags as small chips."""
    values = list(dict.fromkeys([*(hit.get("categories") or []), *(hit.get("lvis") or [])]))[:limit]
    tags = [t for t in hit.get("tags") or [] if t not in values][: max(0, limit - len(values))]
    chips = [f'<span class="al-chip al-chip-cat">{html.escape(v)}</span>' for v in values]
    chips += [f'<span class="al-chip">#{html.escape(t)}</span>' for t in tags]
    return f'<div class="al-chips">{"".join(chips)}</div>' if chips else ""


class ResultCard:
    """One result's widgets; `widget` is what the grid shows, `set_mark` shows a judgment."""

    def __init__(
        self,
        index: int,
        hit: dict,
        thumb: bytes | None,
        on_view: Callable[[int], None] | None,
        on_judge: Callable[[int, bool], None] | None = None,
        badge: str | None = None,
    ) -> None:
        image: w.Widget = (
            w.Image(
                value=thumb, format="png", layout=w.Layout(width="100%", height="170px", object_fit="contain")
            )
            if thumb
            else w.HTML(box("no render", "al-sub"), layout=w.Layout(height="170px"))
        )
        view = f" · view {hit['matched_view']}" if hit.get("matched_view") is not None else ""
        flag = ""
        if badge in COMPARE_BADGES:
            text, css = COMPARE_BADGES[badge]
            flag = f' <span class="al-badge {css}">{text}</span>'
        name = f'<div class="al-name">{html.escape(hit["name"])}</div>' if hit.get("name") else ""
        score = hit.get("similarity")
        scored = f"{score:.3f}" if isinstance(score, int | float) else "–"
        text_box = w.HTML(
            f'<div class="al-score">#{index + 1} · {scored}{view}{flag}</div>{name}'
            f'<div class="al-caption">{clamped(hit.get("caption_en"))}'
            f"{clamped(hit.get('caption_cn'))}</div>"
            f"{label_chips(hit)}"
            f'<div class="al-meta">{metadata_line(hit)}</div>'
        )
        buttons: list[w.Widget] = []
        if on_view is not None:
            view_button = w.Button(description="View in 3D", icon="cube", layout=w.Layout(flex="1 1 auto"))
            view_button.on_click(lambda _: on_view(index))
            buttons.append(view_button)
        self.relevant = w.Button(
            description="✓", tooltip="relevant to this query", layout=w.Layout(width="38px")
        )
        self.irrelevant = w.Button(
            description="✗", tooltip="not relevant to this query", layout=w.Layout(width="38px")
        )
        if on_judge is not None:
            self.relevant.on_click(lambda _: on_judge(index, True))
            self.irrelevant.on_click(lambda _: on_judge(index, False))
            self.relevant.add_class("al-judge-yes")
            self.irrelevant.add_class("al-judge-no")
            buttons += [self.relevant, self.irrelevant]
        rows = [w.HBox(buttons, layout=w.Layout(width="100%"))] if buttons else []
        self.widget = w.VBox([image, text_box, *rows], layout=w.Layout(width="auto"))
        self.widget.add_class("al-card")
        if badge in COMPARE_BADGES:
            self.widget.add_class(COMPARE_BADGES[badge][1].replace("al-badge", "al-card"))

    def set_mark(self, relevant: bool | None) -> None:
        """Show a judgment on the card (None: not judged)."""
        self.relevant.button_style = "success" if relevant is True else ""
        self.irrelevant.button_style = "danger" if relevant is False else ""
        for css, on in (("al-judged-yes", relevant is True), ("al-judged-no", relevant is False)):
            (self.widget.add_class if on else self.widget.remove_class)(css)
