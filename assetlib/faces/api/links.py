"""The URLs the API hands out for an asset: its pages here, and where its 3D model can be had."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request

from assetlib.config import Settings
from assetlib.library.remote_models import local_model, remote_model_url


def asset_url(request: Request, asset_id: str, suffix: str = "") -> str:
    """This server's URL of an asset page (`/assets/<id><suffix>`)."""
    return str(request.base_url).rstrip("/") + "/assets/" + quote(asset_id, safe="/") + suffix


def model_link(
    settings: Settings,
    request: Request,
    asset_id: str,
    glb_path: str | None,
    glb_relpath: str | None,
    objaverse_uid: str | None,
) -> tuple[str | None, str | None]:
    """(model URL, source): served here when the library's GLB or a fetched copy is on this machine
    ("local"), else from MODEL_URL_TEMPLATE ("remote"), else (None, None)."""
    if local_model(settings.home, glb_path, glb_relpath) is not None:
        return asset_url(request, asset_id, "/model"), "local"
    url = remote_model_url(settings.model_url_template, glb_relpath, objaverse_uid)
    return (url, "remote") if url else (None, None)
