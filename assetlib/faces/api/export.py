"""The API's downloads: a search response in the asked format (JSON, or a CSV / rows / GLB-list file)."""

from __future__ import annotations

import json

from fastapi.responses import Response

from assetlib.faces.result_files import ExportFormat, export_file

__all__ = ["EXPORT_CONTENT", "ExportFormat", "export_response"]

# The answers a route with `format` can give, for its OpenAPI document.
EXPORT_CONTENT: dict[int | str, dict] = {
    200: {
        "description": "the results (json), or a download: csv, rows (JSON list), glb-list (text)",
        "content": {"application/json": {}, "text/csv": {}, "text/plain": {}},
    }
}


def export_response(
    body_json: str, fmt: ExportFormat, filename: str, relevance: dict | None = None
) -> Response:
    """A search response (its JSON) in the asked format, as a download when it is a file."""
    if fmt is ExportFormat.JSON:
        return Response(body_json, media_type="application/json")
    content, media, suffix = export_file(json.loads(body_json)["results"], fmt, relevance)
    return Response(
        content,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{filename}.{suffix}"'},
    )
