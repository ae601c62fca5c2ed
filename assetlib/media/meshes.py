"""Mesh loading for GLB/glTF (Draco-compressed included), OBJ, PLY and STL, checked before use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from assetlib.vocab import MESH_SUFFIXES

MAX_MESH_BYTES = 512 * 1024 * 1024


class MeshError(ValueError):
    """A mesh file that cannot be used, with the reason."""


class UnsupportedMeshFormat(MeshError):
    """A file whose suffix is none of the mesh formats read here."""


def load_mesh(path: str | Path) -> trimesh.Scene:
    """Load a mesh file as a scene; raise MeshError for empty, unreadable or degenerate meshes."""
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
        # files load as all-zero vertices, which check_scene below refuses.
        loaded = trimesh.load(str(path), force="scene", process=False)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(f"{path.name}: cannot parse mesh ({type(exc).__name__}: {exc})") from exc
    scene = loaded if isinstance(loaded, trimesh.Scene) else trimesh.Scene(loaded)
    check_scene(scene, path.name)
    return scene


def check_scene(scene: trimesh.Scene, name: str) -> None:
    """Refuse scenes without triangles or with zero extent (e.g. Draco data that was never decoded)."""
    faces = sum(len(g.faces) for g in scene.geometry.values() if hasattr(g, "faces"))
    if faces == 0:
        raise MeshError(f"{name}: no triangles")
    extents = scene.extents
    if extents is None or not np.all(np.isfinite(extents)) or float(np.max(extents)) <= 1e-9:
        raise MeshError(f"{name}: mesh has zero or undefined extent")
