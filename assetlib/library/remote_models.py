"""Where an asset's GLB is: on local disk, in the fetched-models cache, or at a remote URL (a template)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote


def model_cache_dir(home: Path) -> Path:
    """Where `assetlib library fetch-models` keeps downloaded GLBs, by their index-map path."""
    return Path(home) / "cache" / "models"


def _safe_relpath(relpath: str) -> PurePosixPath | None:
    """The index map's `<shard>/<uid>.glb` as a relative path, or None if it would leave the cache."""
    path = PurePosixPath(relpath.replace("\\", "/"))
    if not relpath or path.is_absolute() or ".." in path.parts:
        return None
    return path


def cached_model_path(home: Path, relpath: str) -> Path | None:
    """Where the cache keeps (or would keep) this GLB; None for a path that is not a safe relative one."""
    rel = _safe_relpath(relpath)
    return model_cache_dir(home).joinpath(*rel.parts) if rel is not None else None


def local_model(home: Path, glb_path: str | None, relpath: str | None) -> Path | None:
    """The GLB on this machine: the library's own file, else a fetched copy; None when neither exists."""
    if glb_path and Path(glb_path).is_file():
        return Path(glb_path)
    if relpath:
        cached = cached_model_path(home, relpath)
        if cached is not None and cached.is_file():
            return cached
    return None


def remote_model_url(template: str, relpath: str | None, uid: str | None) -> str | None:
    """The GLB's URL from MODEL_URL_TEMPLATE ({path}, {uid}); None when disabled or a field is missing."""
    if not template:
        return None
    needs_path, needs_uid = "{path}" in template, "{uid}" in template
    if (needs_path and not relpath) or (needs_uid and not uid):
        return None
    if needs_path and relpath is not None and _safe_relpath(relpath) is None:
        return None
    return template.format(
        path=quote(relpath or "", safe="/"),
        uid=quote(uid or "", safe=""),
    )
