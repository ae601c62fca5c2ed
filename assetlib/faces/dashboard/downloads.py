"""Download links the browser saves without another request: the file is inside the link (data URI)."""

from __future__ import annotations

import base64
import html

from assetlib.faces.result_files import ExportFormat, export_file

# Labels of the result downloads, in the order they are offered.
RESULT_FORMATS: tuple[tuple[ExportFormat, str], ...] = (
    (ExportFormat.CSV, "CSV"),
    (ExportFormat.ROWS, "JSON"),
    (ExportFormat.GLB_LIST, "GLB list"),
)


def download_link(content: str | bytes, filename: str, media_type: str, label: str) -> str:
    """An <a download> whose href carries the file itself (base64), so no server has to keep it."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    mime = media_type.split(";")[0]
    href = f"data:{mime};charset=utf-8;base64,{base64.b64encode(data).decode('ascii')}"
    return (
        f'<a class="al-download" download="{html.escape(filename)}" href="{href}" '
        f'title="{html.escape(filename)}">{html.escape(label)}</a>'
    )


def result_downloads(results: list[dict], stem: str, relevance: dict[str, bool] | None = None) -> str:
    """Links to the shown results as CSV, JSON rows and a GLB URL list (with the session's marks)."""
    links = []
    for fmt, label in RESULT_FORMATS:
        content, media, suffix = export_file(results, fmt, relevance)
        links.append(download_link(content, f"{stem}.{suffix}", media, label))
    return '<span class="al-sub">download</span> ' + " ".join(links)


def safe_stem(text: str, limit: int = 40) -> str:
    """A file-name stem from a query: letters, digits (any script) and dashes."""
    kept = "".join(c if c.isalnum() else "-" for c in text.strip())[:limit]
    return "-".join(part for part in kept.split("-") if part) or "results"
