"""What of a real-world scene gets rendered: its triangles, with usable textures, small enough to draw.

Objaverse scenes hold more than triangle meshes: line geometry (trimesh Path3D), point clouds,
empty nodes, textures that are missing, truncated or in modes OpenGL cannot take, NaN
vertices, thousands of primitives, millions of vertices. Each is handled here, with a note
saying what was done, so that one odd part never fails the whole asset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import trimesh
from PIL import Image

from assetlib.media.decimate import cluster_decimate
from assetlib.media.meshes import MeshError

log = logging.getLogger(__name__)

MAX_TEXTURE_PX = 2048  # larger textures are downscaled: a render is 256 px wide
TEXTURE_SLOTS = (
    "baseColorTexture",
    "metallicRoughnessTexture",
    "normalTexture",
    "emissiveTexture",
    "occlusionTexture",
    "image",  # SimpleMaterial (OBJ/MTL)
)
MAX_DRAWN_NODES = 512  # more primitives than this are merged into one mesh for a query render


class NothingToRender(MeshError):
    """A scene without a single usable triangle (only lines, points, empty nodes…), with what it holds."""


@dataclass
class PreparedScene:
    """A scene of triangle meshes only, ready for the renderer, and what was changed to get there."""

    scene: trimesh.Scene
    notes: list[str] = field(default_factory=list)
    vertices: int = 0
    simplified: bool = False


def _kind(geometry: object) -> str:
    if isinstance(geometry, trimesh.path.Path3D | trimesh.path.Path2D):
        return "line geometry"
    if isinstance(geometry, trimesh.PointCloud):
        return "point cloud"
    if isinstance(geometry, trimesh.Trimesh):
        return "mesh without triangles"
    return type(geometry).__name__


def _usable_texture(image: object) -> Image.Image | None:
    """The texture as 8-bit RGB(A) no larger than MAX_TEXTURE_PX, or None when it cannot be decoded."""
    if not isinstance(image, Image.Image):
        return None
    try:
        image.load()  # PIL decodes lazily: a truncated PNG fails here, not in the renderer
        if image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() or image.mode == "P" else "RGB")
        if max(image.size) > MAX_TEXTURE_PX:
            image = image.copy()
            image.thumbnail((MAX_TEXTURE_PX, MAX_TEXTURE_PX), Image.Resampling.LANCZOS)
        return image
    except Exception:  # PIL raises OSError, ValueError, SyntaxError… for broken image data
        return None


def _fix_textures(mesh: trimesh.Trimesh, name: str, notes: list[str]) -> None:
    """Broken or missing textures fall back to the material's base colour."""
    visual = mesh.visual
    if not isinstance(visual, trimesh.visual.TextureVisuals):
        return
    material = visual.material
    if material is None:
        return
    if visual.uv is None or len(visual.uv) != len(mesh.vertices):
        # A texture without coordinates cannot be drawn; keep the base colour. (A material with
        # no texture at all needs no coordinates and no note.)
        cleared = [slot for slot in TEXTURE_SLOTS if getattr(material, slot, None) is not None]
        for slot in cleared:
            setattr(material, slot, None)
        if cleared:
            notes.append(f"{name}: texture without UV coordinates, drawn in its base colour")
        return
    for slot in TEXTURE_SLOTS:
        image = getattr(material, slot, None)
        if image is None:
            continue
        usable = _usable_texture(image)
        if usable is None:
            notes.append(f"{name}: {slot} cannot be decoded, drawn in its base colour")
        setattr(material, slot, usable)


def _finite(mesh: trimesh.Trimesh, name: str, notes: list[str]) -> trimesh.Trimesh | None:
    """The mesh without faces on NaN/Inf vertices (None when none remain)."""
    bad: np.ndarray = ~np.all(np.isfinite(np.asarray(mesh.vertices)), axis=1)
    if not bad.any():
        return mesh
    keep = ~bad[mesh.faces].any(axis=1)
    notes.append(f"{name}: {int(bad.sum())} vertices with NaN/Inf dropped with their faces")
    if not keep.any():
        return None
    mesh = mesh.copy()
    mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()
    return mesh


def _triangles_only(scene: trimesh.Scene, label: str, notes: list[str]) -> trimesh.Scene:
    skipped: dict[str, int] = {}
    drop = []
    for name, geometry in scene.geometry.items():
        mesh = geometry if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) else None
        if mesh is not None:
            mesh = _finite(mesh, name, notes)
        if mesh is None:
            kind = _kind(geometry)
            skipped[kind] = skipped.get(kind, 0) + 1
            drop.append(name)
            continue
        _fix_textures(mesh, name, notes)
        scene.geometry[name] = mesh
    if skipped:
        what = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        if len(drop) == len(scene.geometry):
            raise NothingToRender(f"{label}: nothing to render: the file holds only {what}, no triangles")
        notes.append(f"skipped {what} (only triangles are rendered)")
        scene = scene.copy()
        scene.delete_geometry(drop)
    if not scene.graph.nodes_geometry:
        raise NothingToRender(f"{label}: nothing to render: no node of the scene places a mesh")
    return scene


def _drawn_vertices(scene: trimesh.Scene) -> int:
    """Vertices the renderer draws (a geometry placed by several nodes counts each time)."""
    total = 0
    for node in scene.graph.nodes_geometry:
        _, geometry_name = scene.graph[node]
        total += len(scene.geometry[geometry_name].vertices)
    return total


def _simplified(scene: trimesh.Scene, max_vertices: int) -> trimesh.Scene:
    """One mesh in vertex colours: every placed geometry transformed, merged, then clustered."""
    parts = []
    for mesh in scene.dump():
        if not isinstance(mesh, trimesh.Trimesh):
            continue
        parts.append(
            trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=_vertex_colors(mesh), process=False)
        )
    merged = trimesh.util.concatenate(parts) if len(parts) > 1 else parts[0]
    assert isinstance(merged, trimesh.Trimesh)
    return trimesh.Scene(cluster_decimate(merged, max_vertices))


def _vertex_colors(mesh: trimesh.Trimesh) -> np.ndarray:
    """RGBA per vertex: textures sampled at each vertex's UV, else the material's or mesh's colours."""
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        try:
            return np.asarray(visual.to_color().vertex_colors)[:, :4]
        except Exception:  # a material trimesh cannot sample (no image, odd UVs): its main colour
            color = np.asarray(getattr(visual.material, "main_color", (180, 180, 180, 255)), dtype=np.uint8)
            return np.tile(color[:4], (len(mesh.vertices), 1))
    if isinstance(visual, trimesh.visual.ColorVisuals):
        return np.asarray(visual.vertex_colors)[:, :4]
    return np.tile(np.array([180, 180, 180, 255], dtype=np.uint8), (len(mesh.vertices), 1))


def prepare_scene(scene: trimesh.Scene, label: str, max_vertices: int | None = None) -> PreparedScene:
    """Triangles only (NothingToRender when none), usable textures, and at most `max_vertices` drawn.

    `label` names the file in notes and errors. Without `max_vertices` the scene keeps full detail
    (library renders); with it, bigger scenes are merged and decimated (query renders).
    """
    notes: list[str] = []
    scene = _triangles_only(scene, label, notes)
    result = PreparedScene(scene, notes, _drawn_vertices(scene))
    nodes = len(scene.graph.nodes_geometry)
    if max_vertices is not None and (result.vertices > max_vertices or nodes > MAX_DRAWN_NODES):
        simplified = _simplified(scene, max_vertices)
        kept = len(next(iter(simplified.geometry.values())).vertices)
        notes.append(
            f"{result.vertices:,} vertices in {nodes} parts drawn as one mesh of {kept:,} vertices "
            f"(query renders draw at most {max_vertices:,})"
        )
        result = PreparedScene(simplified, notes, kept, simplified=True)
    extents = result.scene.extents
    if extents is None or not np.all(np.isfinite(extents)) or float(np.max(extents)) <= 1e-9:
        raise MeshError(f"{label}: mesh has zero or undefined extent")
    for note in notes:
        log.info("%s: %s", label, note)
    return result
