"""Mesh loading for GLB/glTF (Draco-compressed included), OBJ, PLY and STL, checked before use."""

from __future__ import annotations

from pathlib import Path

import trimesh

from assetlib.vocab import MESH_SUFFIXES

MAX_MESH_BYTES = 512 * 1024 * 1024


class MeshError(ValueError):
    """A mesh file that cannot be used, with the reason."""


class UnsupportedMeshFormat(MeshError):
    """A file whose suffix is none of the mesh formats read here."""


def load_mesh(path: str | Path) -> trimesh.Scene:
    """Load a mesh file as a scene; raise MeshError for missing, empty, oversized or unparsable files.

    What of the scene can be drawn (triangles, textures, size) is `mesh_prep.prepare_scene`'s job.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise UnsupportedMeshFormat(
            f"{path.name}: unsupported mesh format {suffix or '(none)'}; use {', '.join(MESH_SUFFIXES)}"
        )
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MeshError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if size == 0:
        raise MeshError(f"{path.name} is empty (0 bytes)")
    if size > MAX_MESH_BYTES:
        raise MeshError(f"{path.name} is {size:,} bytes, over the {MAX_MESH_BYTES:,}-byte limit")
    try:
        # trimesh decodes KHR_draco_mesh_compression through DracoPy (a dependency); without it such
        # files load as all-zero vertices, which prepare_scene refuses (zero extent).
        loaded = trimesh.load(str(path), force="scene", process=False)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(f"{path.name}: cannot parse mesh ({type(exc).__name__}: {exc})") from exc
    return loaded if isinstance(loaded, trimesh.Scene) else trimesh.Scene(loaded)
