"""The dashboard's HTML: its stylesheet, message boxes, and the metrics and pipeline-run tables."""

from __future__ import annotations

import html

from assetlib.evaluation.report import COMPARISON_COLUMNS, comparison_cells

CSS = """
<style>
.al-title { font: 600 22px system-ui, sans-serif; color: #1d2733; }
.al-sub { font: 13px system-ui, sans-serif; color: #5b6673; }
.al-status { font: 13px system-ui, sans-serif; color: #33404d; padding: 4px 2px; }
.al-error { background: #fdecea; color: #8a1c12; border: 1px solid #f2b8b0; border-radius: 6px;
            padding: 8px 12px; font: 13px system-ui, sans-serif; }
.al-warning { background: #fff6e0; color: #6b4b00; border: 1px solid #f0d58c; border-radius: 6px;
              padding: 8px 12px; font: 13px system-ui, sans-serif; }
.al-card { border: 1px solid #dde3ea; border-radius: 8px; padding: 6px; background: #fff; }
.al-card:hover { box-shadow: 0 2px 8px rgba(30, 50, 80, .15); }
.al-selected { border: 2px solid #2f6fde; box-shadow: 0 2px 10px rgba(47, 111, 222, .3); }
.al-caption { font: 12px system-ui, sans-serif; line-height: 1.35; color: #24303c; }
.al-clamp { display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; }
.al-meta { font: 11px ui-monospace, monospace; color: #6b7785; }
.al-score { font: 600 12px system-ui, sans-serif; color: #2f6fde; }
.al-note { font: 12px system-ui, sans-serif; color: #7a5a00; background: #fff7df;
           border-radius: 4px; padding: 3px 8px; }
.al-matched img { outline: 3px solid #2f6fde; }
.al-row { gap: 8px; }
.al-table { border-collapse: collapse; font: 12px system-ui, sans-serif; }
.al-table th, .al-table td { border-bottom: 1px solid #e3e8ee; padding: 3px 8px; text-align: right; }
.al-table th:nth-child(-n+5), .al-table td:nth-child(-n+5) { text-align: left; }
.al-table tr.al-best td { font-weight: 600; background: #eef4ff; }
.al-runs td { text-align: left !important; }
.al-judged-table td:nth-child(-n+2) { text-align: left; }
.al-name { font: 600 13px system-ui, sans-serif; color: #1d2733; margin: 1px 0; }
.al-chips { margin: 3px 0 1px; }
.al-chip { display: inline-block; font: 11px system-ui, sans-serif; color: #3a4756; background: #eef1f5;
           border-radius: 9px; padding: 0 7px; margin: 0 3px 2px 0; }
.al-chip-cat { background: #e4edfb; color: #1f4d99; }
.al-facets .widget-button, .al-active-filters .widget-button { border-radius: 13px; font-size: 12px;
           padding: 0 10px; margin: 2px 4px 2px 0; }
.al-facet-chip { background: #f1f4f8; color: #24303c; border: 1px solid #dbe2ea; }
.al-facet-chip:hover { background: #e4edfb; }
.al-filter-chip { background: #2f6fde !important; color: #fff !important; }
.al-clear-chip { background: #fff; color: #8a1c12; border: 1px solid #f2b8b0; }
.al-facet-title { font: 600 12px system-ui, sans-serif; color: #5b6673; }
.al-facets { background: #fafbfc; border: 1px solid #e6ebf0; border-radius: 8px; padding: 4px 8px; }
.al-facets:empty { display: none; }
.al-download { display: inline-block; font: 12px system-ui, sans-serif; color: #2f6fde; border: 1px solid
               #c9d8f3; border-radius: 5px; padding: 1px 8px; margin-right: 4px; text-decoration: none; }
.al-downloads { padding: 4px 2px; }
.al-judged-yes { border-color: #1b7f3b; box-shadow: inset 0 0 0 1px #1b7f3b; }
.al-judged-no { opacity: .62; }
.al-badge { font: 600 10px system-ui, sans-serif; border-radius: 8px; padding: 1px 6px; margin-left: 4px; }
.al-badge-both { background: #e3f4e8; color: #1b7f3b; }
.al-badge-only { background: #fff1d6; color: #8a5a00; }
.al-card-only { border-color: #f0c36d; }
.al-side-title { font: 700 16px system-ui, sans-serif; color: #2f6fde; width: 22px; }
.al-side-head { font: 13px system-ui, sans-serif; color: #33404d; padding: 6px 0; }
.al-bar { height: 6px; width: 260px; background: #eef1f5; border-radius: 3px; margin-top: 4px; }
.al-bar div { height: 6px; background: #2f6fde; border-radius: 3px; }
</style>
"""


def box(message: str, css: str) -> str:
    """A message in a styled box (status, note, error), escaped."""
    return f'<div class="{css}">{html.escape(message)}</div>'


def clamped(text: str | None) -> str:
    """A caption cut at three lines on the card; the whole text shows on hover."""
    safe = html.escape(text or "—")
    return f'<div class="al-clamp" title="{safe}">{safe}</div>'


def run_table(manifest: dict) -> str:
    """The stages of a pipeline run: status, time, and why a stage was skipped or failed."""
    colours = {"done": "#1b7f3b", "skipped": "#8a6d00", "failed": "#b3261e", "running": "#2f6fde"}
    rows = []
    for stage in manifest.get("stages", []):
        status = stage.get("status", "?")
        seconds = f"{stage['seconds']:.1f} s" if "seconds" in stage else ""
        detail = stage.get("error") or stage.get("reason") or ""
        rows.append(
            f"<tr><td>{html.escape(stage['name'])}</td>"
            f'<td style="color:{colours.get(status, "#333")}">{html.escape(status)}</td>'
            f"<td>{seconds}</td><td>{html.escape(detail)}</td></tr>"
        )
    head = (
        f'<div class="al-sub">pipeline run {html.escape(manifest.get("run", "?"))}: '
        f"{html.escape(manifest.get('status', '?'))} "
        f"(started {html.escape(str(manifest.get('created', '')))}, "
        f"encoders: {html.escape(', '.join(manifest.get('encoders', [])) or '–')})</div>"
    )
    return (
        head
        + '<table class="al-table al-runs"><tr><th>stage</th><th>status</th><th>time</th><th>note</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def metrics_table(rows: list[dict]) -> str:
    """The comparison as an HTML table, the best r@10 of each query kind highlighted."""
    best: dict[str, float] = {}
    for row in rows:
        best[row["kind"]] = max(best.get(row["kind"], 0.0), row["r@10"])
    head = "".join(f"<th>{c}</th>" for c in COMPARISON_COLUMNS)
    body = []
    for r in rows:
        cells = comparison_cells(r, readable_modes=True)
        css = ' class="al-best"' if r["r@10"] == best[r["kind"]] else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f'<table class="al-table"><tr>{head}</tr>{"".join(body)}</table>'


def judged_table(rows: list[dict]) -> str:
    """Judged precision per algorithm and mode, as the API's /judgments/precision gives it."""
    head = "".join(
        f"<th>{c}</th>" for c in ("algorithm", "mode", "queries", "judged", "relevant", "judged precision")
    )
    body = []
    for r in rows:
        precision = "–" if r["judged_precision"] is None else f"{r['judged_precision']:.2f}"
        cells = (r["algorithm"], r["mode"], r["queries"], r["judged"], r["relevant"], precision)
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f'<table class="al-table al-judged-table"><tr>{head}</tr>{"".join(body)}</table>'
