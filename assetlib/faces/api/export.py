"""The API's downloads: a search response in the asked format (JSON, or a CSV / rows / GLB-list file)."""

from __future__ import annotations

import json

from fastapi.responses import Response

from assetlib.faces.result_files import ExportFormat, export_file

__all__ = ["ExportFormat", "export_content", "export_response"]

ROWS_SCHEMA: dict = {"type": "array", "items": {"type": "object"}, "description": "format=rows"}


def export_content(json_schema: dict) -> dict[int | str, dict]:
    """The 200 answers of a route with `format`, for its OpenAPI document: JSON (the response itself, or
    the rows), CSV, or the GLB list as text."""
    return {
        200: {
            "description": "the results (json), or a download: csv, rows (JSON list), glb-list (text)",
            "content": {
                "application/json": {"schema": {"anyOf": [json_schema, ROWS_SCHEMA]}},
                "text/csv": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
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
