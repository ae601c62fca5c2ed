"""The Voila dashboard: search by text, image or 3D model; results with thumbnails, metadata, filters and
facets; a 3D viewer (local or remote models); judgments and downloads; a side-by-side comparison; metrics.

Thin by design: ipywidgets plus the REST API client. Voila starts a kernel per visitor, so no model
is loaded here; `assetlib serve api` (or `assetlib serve dashboard`, which starts both) holds the
encoders once for everybody. Every handler catches its errors and shows them in words.
"""

from __future__ import annotations

import functools
import html
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ipywidgets as w

from assetlib.config import SOURCE_TREE
from assetlib.faces.api_client import ApiClient, ApiError
from assetlib.faces.dashboard.cards import ResultCard
from assetlib.faces.dashboard.compare import ComparePanel, compare_summary, side_heading
from assetlib.faces.dashboard.downloads import download_link, result_downloads, safe_stem
from assetlib.faces.dashboard.filters import FilterPanel
from assetlib.faces.dashboard.html import CSS, box, judged_table, metrics_table, run_table
from assetlib.faces.viewer import ModelViewer, ViewerUnavailable
from assetlib.vocab import (
    IMAGE_SUFFIXES,
    LANGUAGE_TITLES,
    MAX_IMAGE_UPLOAD_BYTES,
    MAX_MODEL_UPLOAD_BYTES,
    MESH_SUFFIXES,
    MODE_TITLES,
    MODES_FOR,
    Language,
    Mode,
    QueryKind,
    detect_language,
)

log = logging.getLogger(__name__)

# The dashboard's mode switch picks one of each query kind's modes (vocab.MODES_FOR order); the word
# modes exist for text only.
MODE_CHOICES = ("same", "cross", "fused", "keyword", "hybrid")
OUTAGE_RETRY_MAX_S = 2.0  # while the database is away, ask again at least this often


def _row(children: list[w.Widget], **layout: str) -> w.HBox:
    """A horizontal row with spacing between its children (Layout has no `gap`; CSS does)."""
    row = w.HBox(children, layout=w.Layout(align_items="center", **layout))
    row.add_class("al-row")
    return row


def shown_errors(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Run a widget handler, showing any failure in the error box (ipywidgets would only log it)."""

    @functools.wraps(handler)
    def wrapper(self: Dashboard, *args: Any, **kwargs: Any) -> Any:
        try:
            return handler(self, *args, **kwargs)
        except ApiError as exc:
            log.warning("%s failed: %s", handler.__name__, exc)
            if exc.retry_after is not None:
                # Passing (the database restarts): say so, and ask again by itself.
                self.show_outage(str(exc), exc.retry_after, functools.partial(wrapper, self, *args, **kwargs))
            else:
                self.show_error(str(exc))
        except ValueError as exc:  # our own checks on input: already in words
            self.show_error(str(exc))
        except Exception as exc:  # anything else is a bug, but the user must still see it
            log.exception("%s failed", handler.__name__)
            self.show_error(f"unexpected error: {exc!r} (the full traceback is in the server log)")
        finally:
            self._busy(False)
        return None

    return wrapper


class Dashboard:
    """The widgets and their handlers; `ui` is what Voila shows."""

    def __init__(self, client: ApiClient, outputs: Path | None = None, top_k: int = 12) -> None:
        self.client = client
        self.outputs = outputs
        self.results: list[dict] = []
        self.last_response: dict | None = None
        self.selected: int | None = None
        self._last_search: tuple[Any, float] = (None, 0.0)
        self.algorithms: list[dict] = []
        self._retry: threading.Timer | None = None  # the pending retry while the database is away

        self.header = w.HTML('<div class="al-title">assetlib · 3D asset search</div>')
        self.query = w.Text(
            placeholder="Describe an asset in English or Chinese, e.g. a red wooden chair / 一把红色的木椅子",
            continuous_update=False,
            layout=w.Layout(flex="1 1 auto", height="36px"),
        )
        self.search_button = w.Button(description="Search", button_style="primary", icon="search")
        self.language_label = w.HTML(layout=w.Layout(width="120px"))
        self.image_upload = w.FileUpload(
            accept="image/*", multiple=False, description="Image…", tooltip="search by an image (≤ 10 MB)"
        )
        self.model_upload = w.FileUpload(
            accept=",".join(MESH_SUFFIXES),
            multiple=False,
            description="3D model…",
            tooltip="search by a GLB/glTF/OBJ/PLY/STL (≤ 50 MB): it is rendered like the library",
        )
        self.algorithm_buttons: dict[str, w.ToggleButton] = {}
        self.algorithm_row = _row([])
        self.algorithm_notes = w.HTML()
        self.mode = w.ToggleButtons(
            options=[
                ("same modality", "same"),
                ("cross-modal", "cross"),
                ("fused", "fused"),
                ("keyword", "keyword"),
                ("hybrid", "hybrid"),
            ],
            value="same",
            tooltips=[
                "text → captions, image → renders",
                "text → renders, image → captions",
                "both, combined by reciprocal rank fusion",
                "words in captions, names and tags (full text; character pairs for Chinese) — text only",
                "keyword and this algorithm's vectors, fused by reciprocal rank — text only",
            ],
            style={"button_width": "auto"},
        )
        self.top_k = w.IntSlider(value=top_k, min=1, max=50, description="top-k", continuous_update=False)
        self.filters = FilterPanel(self._refilter)
        self.high_quality = self.filters.high_quality
        self.downloads = w.HTML()
        self.cards: list[ResultCard] = []
        self.marks: dict[str, bool] = {}  # the shown query's judgments, by asset
        self._last_query: tuple[str, Any] | None = None  # ("text", query) or ("upload", (kind, name, data))
        self.status = w.HTML(box("ready", "al-status"))
        self.error = w.HTML()
        self.query_preview = w.Image(layout=w.Layout(height="64px", display="none"))
        self.grid = w.GridBox(
            layout=w.Layout(
                grid_template_columns="repeat(auto-fill, minmax(180px, 1fr))", grid_gap="10px", width="100%"
            )
        )
        self.detail_title = w.HTML(box("select a result to see it in 3D", "al-sub"))
        try:
            self.viewer: ModelViewer | None = ModelViewer(height="380px")
            viewer_widget: w.Widget = self.viewer
        except ViewerUnavailable as exc:
            self.viewer = None
            viewer_widget = w.HTML(box(str(exc), "al-error"))
        self.views_strip = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        detail = w.VBox(
            [self.detail_title, viewer_widget, self.views_strip],
            layout=w.Layout(width="440px", min_width="440px", padding="0 0 0 12px"),
        )
        self.metrics_box = w.VBox()
        self.reload_metrics = w.Button(description="Reload", icon="refresh")
        self.compare_panel = ComparePanel()
        self.compare_cards: list[ResultCard] = []
        self.last_comparison: dict | None = None

        self._quiet = False  # set while code (not the user) changes the text box
        self.search_button.on_click(lambda _: self.search_text(force=True))
        self.query.observe(lambda _: None if self._quiet else self.search_text(), names="value")
        self.image_upload.observe(lambda _: self._on_upload(self.image_upload, "image"), names="value")
        self.model_upload.observe(lambda _: self._on_upload(self.model_upload, "model"), names="value")
        self.reload_metrics.on_click(lambda _: self.show_metrics())
        self.compare_panel.button.on_click(lambda _: self.compare())
        self.compare_panel.query.observe(lambda _: None if self._quiet else self.compare(), names="value")

        search_tab = w.VBox(
            [
                _row([self.query, self.language_label, self.search_button]),
                _row(
                    [w.HTML('<span class="al-sub">or search by</span>'), self.image_upload, self.model_upload]
                ),
                _row([self.algorithm_row, self.mode], flex_flow="row wrap"),
                _row(
                    [self.top_k, self.filters.high_quality, self.filters.face_min, self.filters.face_max],
                    flex_flow="row wrap",
                ),
                self.filters.active,
                self.algorithm_notes,
                _row([self.query_preview, self.status]),
                self.error,
                self.filters.facets,
                self.downloads,
                w.HBox([w.Box([self.grid], layout=w.Layout(flex="1 1 auto")), detail]),
            ]
        )
        self.tabs = w.Tab(
            children=[search_tab, self.compare_panel.widget, self.metrics_box],
            titles=("Search", "Compare", "Metrics"),
        )
        self.ui = w.VBox([w.HTML(CSS), self.header, self.tabs], layout=w.Layout(padding="8px 12px"))
        self.refresh()
        self.show_metrics()

    @classmethod
    def from_environment(cls, api_url: str = "", outputs: str = "") -> Dashboard:
        """A dashboard on $ASSETLIB_API_URL (or the local default) reading evaluations from outputs/."""
        return cls(ApiClient(api_url or None), Path(outputs) if outputs else default_outputs())

    # -- feedback ---------------------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Show an error in plain words (and keep the previous results)."""
        self._cancel_retry()
        self.error.value = box(message, "al-error")
        self.status.value = box("the last request failed — see the message below", "al-status")

    def show_outage(self, message: str, retry_after: float, again: Callable[[], Any]) -> None:
        """The API's database is away: say so, keep the results, and run `again` after `retry_after`."""
        self._cancel_retry()
        self.error.value = box(f"database unavailable, retrying… ({message})", "al-warning")
        self.status.value = box("database unavailable, retrying…", "al-status")
        self._retry = threading.Timer(max(0.5, min(retry_after, OUTAGE_RETRY_MAX_S)), again)
        self._retry.daemon = True
        self._retry.start()

    def _cancel_retry(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None

    def _clear_error(self) -> None:
        self._cancel_retry()
        self.error.value = ""

    def _busy(self, busy: bool, message: str = "") -> None:
        self.search_button.disabled = busy
        if busy:
            self.status.value = box(message or "searching…", "al-status")

    # -- algorithms and health --------------------------------------------------------------------
    @shown_errors
    def refresh(self) -> None:
        """Read /health: library size, and which algorithms can be used (the others disabled, with why)."""
        health = self.client.health()
        if not health.get("database"):
            # Keep the algorithm buttons as they were: the outage passes, the algorithms stay.
            reason = health.get("counts", {}).get("error", "no answer")
            self.show_outage(str(reason), OUTAGE_RETRY_MAX_S, self.refresh)
            return
        if self._retry is not None:
            self._clear_error()  # the database is back
            self.status.value = box("database back — ready", "al-status")
        counts = health.get("counts", {})
        self.algorithms = health.get("algorithms", [])
        vectors = counts.get("vectors", {}) if isinstance(counts, dict) else {}
        about = (
            "≈" if isinstance(counts, dict) and counts.get("estimated") else ""
        )  # large tables are counted from statistics
        stored = ", ".join(f"{name} {about}{n:,}" for name, n in sorted(vectors.items())) or "no vectors yet"
        database = "database OK" if health.get("database") else "database unreachable"
        self.header.value = (
            '<div class="al-title">assetlib · 3D asset search</div>'
            f'<div class="al-sub">{about}{counts.get("assets", 0):,} assets · '
            f"vectors: {html.escape(stored)} · "
            f"{database} · API {html.escape(self.client.base_url)}</div>"
        )
        buttons, notes = [], []
        current = next((a for a, b in self.algorithm_buttons.items() if b.value), None)
        self.algorithm_buttons = {}
        for entry in self.algorithms:
            name = entry["algorithm"]
            usable, reason = entry["usable"], entry["reason"]
            if usable and not entry.get("stored_encoders"):
                usable = False
                reason = f"no vectors in the database yet: run `assetlib embed --algorithm {name}`"
            button = w.ToggleButton(
                description=entry.get("title") or name,
                disabled=not usable,
                tooltip=entry.get("note") or name if usable else f"unavailable: {reason}",
                layout=w.Layout(width="auto"),
            )
            button.observe(functools.partial(self._pick_algorithm, name), names="value")
            self.algorithm_buttons[name] = button
            buttons.append(button)
            if not usable:
                notes.append(f"<b>{html.escape(name)}</b> unavailable: {html.escape(reason)}")
            elif entry.get("note"):
                notes.append(f"<b>{html.escape(name)}</b>: {html.escape(entry['note'])}")
        usable_names = [n for n, b in self.algorithm_buttons.items() if not b.disabled]
        preferred = self._measured_best() if current is None else None
        if preferred and preferred[0] in usable_names:
            # The default is what the latest evaluation found best for queries phrased in everyday words.
            current = preferred[0]
            self.mode.value = MODE_CHOICES[[m.value for m in MODES_FOR[QueryKind.TEXT]].index(preferred[1])]
        chosen = current if current in usable_names else (usable_names[0] if usable_names else None)
        if chosen:
            self.algorithm_buttons[chosen].value = True
        self.algorithm_row.children = [w.HTML('<span class="al-sub">algorithm</span>'), *buttons]
        titles = {e["algorithm"]: e.get("title") or e["algorithm"] for e in self.algorithms}
        offered = [(titles.get(n, n), n) for n in usable_names]
        self.compare_panel.a.set_algorithms(offered, chosen)
        self.compare_panel.b.set_algorithms(offered, chosen)
        self.algorithm_notes.value = '<div class="al-note">' + "<br>".join(notes) + "</div>" if notes else ""
        if not usable_names:
            self.show_error(
                "no algorithm can search now: "
                + "; ".join(n.replace("<b>", "").replace("</b>", "") for n in notes)
            )

    def _measured_best(self) -> tuple[str, str] | None:
        """(algorithm, text mode) that answered the latest evaluation's natural-language queries best."""
        from assetlib.evaluation.report import best_for_natural_queries, find_latest_metrics

        path = find_latest_metrics(self.outputs) if self.outputs else None
        if path is None:
            return None
        try:
            rows = json.loads(path.read_text(encoding="utf-8")).get("rows", [])
        except (OSError, ValueError):
            return None
        return best_for_natural_queries(rows)

    def _pick_algorithm(self, name: str, change: dict) -> None:
        """Keep exactly one algorithm selected (ToggleButtons cannot disable single options)."""
        if change["new"]:
            for other, button in self.algorithm_buttons.items():
                if other != name and button.value:
                    button.value = False
        elif not any(b.value for b in self.algorithm_buttons.values()):
            self.algorithm_buttons[name].value = True  # one stays chosen

    @property
    def algorithm(self) -> str:
        """The chosen algorithm; ValueError when none can be used."""
        for name, button in self.algorithm_buttons.items():
            if button.value and not button.disabled:
                return name
        raise ValueError("no usable algorithm is selected (see the notes under the algorithm buttons)")

    def _options(self, kind: str) -> dict:
        modes = MODES_FOR[QueryKind(kind)]
        choice = MODE_CHOICES.index(self.mode.value)
        if choice >= len(modes):
            raise ValueError(
                f"{self.mode.value} search needs a text query: pick same modality, cross-modal or fused "
                "to search by an image or a 3D model"
            )
        options: dict[str, Any] = {
            "algorithm": self.algorithm,
            "mode": modes[choice].value,
            "top_k": self.top_k.value,
            "high_quality_only": self.high_quality.value,
            "facets": True,
        }
        if kind == "text":
            options["filters"] = self.filters.as_api()
        else:
            options.update(self.filters.as_api())
        return options

    def _refilter(self) -> None:
        """A filter changed: search the last query again with it."""
        if self._last_query is None:
            return
        what, query = self._last_query
        if what == "text":
            self.search_text(force=True)
        else:
            self.search_upload(*query)

    # -- searching --------------------------------------------------------------------------------
    @shown_errors
    def search_text(self, query: str | None = None, force: bool = False) -> None:
        """Search with the text box's query (or `query`); Enter and the button both land here."""
        text = (self.query.value if query is None else query).strip()
        if query is not None:
            self._quiet = True
            self.query.value = query
            self._quiet = False
        if not text:
            raise ValueError("type a query first (English or Chinese)")
        options = self._options("text")
        key = (text, tuple(sorted(options.items())))
        # A click right after typing also blurs the box, which submits it: search once, not twice.
        if not force and self._last_search[0] == key:
            return
        if force and self._last_search[0] == key and time.monotonic() - self._last_search[1] < 1.0:
            return
        self._last_search = (key, time.monotonic())
        self._last_query = ("text", text)
        language = detect_language(text)
        self.language_label.value = (
            f'<span class="al-sub">detected: {LANGUAGE_TITLES.get(Language(language), language)}</span>'
        )
        self.query_preview.layout.display = "none"
        self._busy(True)
        started = time.perf_counter()
        response = self.client.search_text(text, **options)
        self._show_results(response, time.perf_counter() - started, f"“{text}”")

    @shown_errors
    def search_upload(self, kind: str, name: str, data: bytes) -> None:
        """Search with an uploaded image ('image') or 3D model ('model')."""
        limit = MAX_IMAGE_UPLOAD_BYTES if kind == "image" else MAX_MODEL_UPLOAD_BYTES
        suffixes = IMAGE_SUFFIXES if kind == "image" else MESH_SUFFIXES
        if not data:
            raise ValueError(f"{name} is empty")
        if len(data) > limit:
            raise ValueError(
                f"{name} is {len(data) / 2**20:.1f} MB; the limit for a {kind} is {limit // 2**20} MB"
            )
        if Path(name).suffix.lower() not in suffixes:
            raise ValueError(f"{name}: not a supported {kind} file; use {', '.join(suffixes)}")
        self.language_label.value = ""
        if kind == "image":
            self.query_preview.value = data
            self.query_preview.layout.display = "block"
        self._last_search = (None, 0.0)
        self._last_query = ("upload", (kind, name, data))
        self._busy(True, "rendering the model and searching…" if kind == "model" else "searching…")
        started = time.perf_counter()
        response = self.client.search_upload(kind, name, data, **self._options("image"))
        self._show_results(response, time.perf_counter() - started, f"{kind} {name}")

    def _on_upload(self, upload: w.FileUpload, kind: str) -> None:
        if not upload.value:
            return
        item = upload.value[0]
        name, data = item["name"], bytes(item["content"])
        upload.value = ()  # so that the same file can be searched again
        self.search_upload(kind, name, data)

    def _show_results(self, response: dict, seconds: float, what: str) -> None:
        self._clear_error()
        self.last_response = response
        self.results = response["results"]
        thumbs = self.client.fetch_many([hit["thumbnail_url"] or "" for hit in self.results])
        text_query = self._last_query is not None and self._last_query[0] == "text"
        judge = self.judge if text_query else None  # a judgment belongs to a query's words
        self.cards = [
            ResultCard(i, hit, thumb, self.select, judge)
            for i, (hit, thumb) in enumerate(zip(self.results, thumbs, strict=True))
        ]
        self.grid.children = [card.widget for card in self.cards]
        self.marks = self._stored_marks() if text_query else {}
        self._show_marks()
        self.filters.show_facets(response.get("facets"), response.get("candidates", 0))
        self._show_downloads()
        self.selected = None
        if self.results:
            self.select(0)  # before the status line, which tells a watcher (or a test) that all is shown
        timings = response.get("timings_ms", {})
        # Durations only (the batch size is not one); a query that did not wait shows no queue time.
        parts = [
            f"{k.removesuffix('_ms')} {v:.0f} ms"
            for k, v in timings.items()
            if k.endswith("_ms") and not (k == "queue_ms" and v < 0.5)
        ]
        language = response.get("language")
        filtered = " · filtered" if response.get("filters") else ""
        self.status.value = (
            f'<div class="al-status"><b>{len(self.results)} results</b> for {html.escape(what)} in '
            f"{seconds * 1000:.0f} ms ({', '.join(parts)}) · {html.escape(response['encoder'])} · "
            f"{MODE_TITLES[Mode(response['mode'])]}"
            + (f" · {LANGUAGE_TITLES.get(Language(language), language)}" if language else "")
            + filtered
            + "</div>"
        )
        log.info(
            "%d results for %s (%s, %s) in %.0f ms",
            len(self.results),
            what,
            response["encoder"],
            response["mode"],
            seconds * 1000,
        )
        if not self.results:
            hint = "remove a filter, or try" if self.filters.any else "try"
            self.status.value += box(f"nothing matched; {hint} another wording, mode or algorithm", "al-sub")

    # -- judgments and downloads ------------------------------------------------------------------
    def _mark(self, index: int, relevant: bool) -> dict:
        """A judgment of result `index` of the shown text query, in the API's shape."""
        response = self.last_response or {}
        if self._last_query is None or self._last_query[0] != "text":
            raise ValueError("only the results of a text query can be judged")
        return {
            "query": self._last_query[1],
            "language": response.get("language") or "en",
            "algorithm": response["algorithm"],
            "mode": response["mode"],
            "asset_id": self.results[index]["asset_id"],
            "relevant": relevant,
            "rank": index + 1,
        }

    def _stored_marks(self) -> dict[str, bool]:
        """What was judged before for the shown query, algorithm, mode and language."""
        response = self.last_response or {}
        if self._last_query is None:
            return {}
        marks = self.client.judgments(self._last_query[1])
        return {
            m["asset_id"]: m["relevant"]
            for m in marks
            if (m["algorithm"], m["mode"], m["language"])
            == (response.get("algorithm"), response.get("mode"), response.get("language") or "en")
        }

    @shown_errors
    def judge(self, index: int, relevant: bool) -> None:
        """Mark result `index` relevant or not; the same mark again takes it back."""
        mark = self._mark(index, relevant)
        asset = mark["asset_id"]
        if self.marks.get(asset) is relevant:
            self.client.unjudge(mark)
            del self.marks[asset]
        else:
            self.client.judge(mark)
            self.marks[asset] = relevant
        self._show_marks()
        self._show_downloads()
        log.info("judged %s %s for %r", asset, self.marks.get(asset), mark["query"])

    def _show_marks(self) -> None:
        for card, hit in zip(self.cards, self.results, strict=True):
            card.set_mark(self.marks.get(hit["asset_id"]))

    def _show_downloads(self) -> None:
        """Links to the shown results (with their marks) as files, and how many are judged."""
        if not self.results:
            self.downloads.value = ""
            return
        response = self.last_response or {}
        text = self._last_query[1] if self._last_query and self._last_query[0] == "text" else "upload"
        stem = f"assetlib-{safe_stem(str(text))}-{response.get('algorithm')}-{response.get('mode')}"
        note = ""
        if self.marks:
            note = f"judged {len(self.marks)} of these: {sum(self.marks.values())} relevant"
        self.downloads.value = (
            '<div class="al-downloads">'
            + result_downloads(self.results, stem, self.marks or None)
            + (f' <span class="al-sub">· {html.escape(note)}</span>' if note else "")
            + "</div>"
        )

    @shown_errors
    def select(self, index: int) -> None:
        """Open a result: its GLB in the 3D viewer and the strip of its views."""
        hit = self.results[index]
        for i, card in enumerate(self.grid.children):
            (card.add_class if i == index else card.remove_class)("al-selected")
        self.selected = index
        self.detail_title.value = (
            f'<div class="al-score">#{index + 1} · {html.escape(hit["asset_id"])}'
            + (f" · objaverse {html.escape(hit['objaverse_id'])}" if hit.get("objaverse_id") else "")
            + f'</div><div class="al-caption">{html.escape(hit.get("caption_en") or "")}<br>'
            f"{html.escape(hit.get('caption_cn') or '')}</div>"
            + (
                f'<div class="al-meta">model from {html.escape(urlsplit(hit["model_url"]).netloc)} '
                "(not on this machine)</div>"
                if hit.get("model_source") == "remote" and hit.get("model_url")
                else ""
            )
        )
        views = self.client.fetch_many(hit.get("view_urls", []))
        strip = []
        for i, data in enumerate(views):
            if data is None:
                continue
            image = w.Image(value=data, format="png", layout=w.Layout(width="44px", height="44px"))
            holder = w.Box([image], layout=w.Layout(margin="0 2px"))
            if i == hit.get("matched_view"):
                holder.add_class("al-matched")
            strip.append(holder)
        self.views_strip.children = strip
        if self.viewer is None:
            return
        if not hit.get("model_url"):
            self.viewer.clear()
            raise ValueError(f"{hit['asset_id']} has no 3D model file; its views are shown instead")
        if hit.get("model_source") == "remote":
            # The browser loads it from the remote host itself; if it cannot, the viewer says why.
            hint = (
                f"Download it once with `assetlib library fetch-models --id {hit['asset_id']}` and the API "
                "serves a local copy; its views are shown below."
            )
            self.viewer.show_url(hit["model_url"], hit["asset_id"], hint)
            return
        self.viewer.show(self.client.fetch(hit["model_url"]), hit["asset_id"])

    # -- comparison -------------------------------------------------------------------------------
    @shown_errors
    def compare(self, query: str | None = None) -> None:
        """Search the comparison tab's query on both sides; two columns, overlap@k, who found what alone."""
        panel = self.compare_panel
        if query is not None:
            self._quiet = True  # set by code: its observer must not compare a second time
            panel.query.value = query
            self._quiet = False
        text = panel.query.value.strip()
        if not text:
            raise ValueError("type a query to compare first")
        self._busy(True, "comparing…")
        panel.summary.value = box("comparing…", "al-status")
        answer = self.client.compare(
            text,
            panel.a.side(),
            panel.b.side(),
            top_k=self.top_k.value,
            filters={**self.filters.as_api(), "high_quality": self.high_quality.value},
        )
        self.last_comparison = answer
        both = set(answer["both"])
        self.compare_cards = []
        for column, head, side, alone in (
            (panel.column_a, panel.head_a, "a", answer["only_a"]),
            (panel.column_b, panel.head_b, "b", answer["only_b"]),
        ):
            results = answer[side]["results"]
            thumbs = self.client.fetch_many([h["thumbnail_url"] or "" for h in results])
            cards = [  # no buttons: this view is for reading the two lists against each other
                ResultCard(i, h, t, None, None, "both" if h["asset_id"] in both else "only")
                for i, (h, t) in enumerate(zip(results, thumbs, strict=True))
            ]
            column.children = [c.widget for c in cards]
            head.value = side_heading(side.upper(), answer[side], len(alone))
            self.compare_cards += cards
        panel.summary.value = compare_summary(answer)
        self._clear_error()
        self.status.value = box(f"compared “{text}”", "al-status")

    # -- metrics ----------------------------------------------------------------------------------
    @shown_errors
    def show_metrics(self) -> None:
        """The metrics tab: the latest evaluation's comparison table and its recall@k figures."""
        from assetlib.evaluation.report import find_latest_metrics, read_report

        path = find_latest_metrics(self.outputs) if self.outputs else None
        runs = [w.HTML(run_table(m))] if (m := latest_manifest(self.outputs)) else []
        if path is None:
            self.metrics_box.children = [
                w.HTML(
                    box(
                        f"no evaluation found under {self.outputs}: run `assetlib evaluate` (or `make demo`)",
                        "al-sub",
                    )
                ),
                *self._judged_section(),
                *runs,
                self.reload_metrics,
            ]
            return
        report = read_report(path)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        notes = "".join(
            f"<br><b>{html.escape(a['algorithm'])}</b>: {html.escape(a['note'])}"
            for a in self.algorithms
            if a.get("note")
        )
        figures = [
            w.Image(value=Path(report.files[name]).read_bytes(), format="png", layout=w.Layout(width="100%"))
            for name in ("recall_at_k", "per_category")
            if name in report.files
        ]
        self.metrics_box.children = [
            w.HTML(
                f'<div class="al-sub">latest evaluation: {html.escape(str(path.parent))} ({stamp}); r@k = a '
                f"relevant asset (same category and colour) in the top k{notes}</div>"
            ),
            w.HTML(metrics_table(report.rows)),
            *figures,
            *self._judged_section(),
            *runs,
            self.reload_metrics,
        ]

    def _judged_section(self) -> list[w.Widget]:
        """Judged precision per algorithm and mode, and the judgments as downloads."""
        try:
            precision = self.client.judged_precision()
        except ApiError as exc:
            return [w.HTML(box(f"judgments unavailable: {exc}", "al-sub"))]
        if not precision:
            return [
                w.HTML(
                    box(
                        "no judgments yet: mark results ✓ / ✗ on the Search tab to build an evaluation set",
                        "al-sub",
                    )
                )
            ]
        links = " ".join(
            download_link(self.client.judgments_export(fmt), f"assetlib-judged.{suffix}", media, label)
            for fmt, suffix, media, label in (
                ("csv", "csv", "text/csv", "CSV"),
                ("rows", "json", "application/json", "JSON"),
                ("glb-list", "txt", "text/plain", "GLB list"),
            )
        )
        section = w.HTML(
            '<div class="al-sub">judged results (your ✓ / ✗ marks; `assetlib evaluate --queries judged` '
            f"evaluates every algorithm on them)</div>{judged_table(precision)}"
            f'<div class="al-downloads"><span class="al-sub">download judgments</span> {links}</div>'
        )
        section.add_class("al-judged")
        return [section]


def latest_manifest(outputs: Path | None) -> dict | None:
    """The manifest of the newest pipeline run under outputs/ (outputs/latest), if any."""
    if outputs is None:
        return None
    path = outputs / "latest" / "manifest.json"
    if not path.is_file():
        found = sorted(outputs.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
        path = found[-1] if found else path
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def default_outputs() -> Path:
    """Where run folders are: $ASSETLIB_OUTPUTS, else ./outputs, else the source tree's outputs/."""
    configured = os.environ.get("ASSETLIB_OUTPUTS")
    if configured:
        return Path(configured).expanduser()
    here = Path("outputs")
    if here.is_dir():
        return here.resolve()
    return SOURCE_TREE / "outputs"
