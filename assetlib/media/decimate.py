"""Vertex clustering: a mesh with too many vertices becomes one with about `target`, colours kept.

Query renders are a few hundred pixels wide: a million-vertex scan draws no better than a
hundred-thousand-vertex one, but it costs the CPU rasteriser seconds. Clustering on a grid is
crude next to quadric decimation, but it is plain numpy, linear in the vertex count, and keeps
the silhouette and the colours, which is what an embedding of the render sees.
"""

from __future__ import annotations

import numpy as np
import trimesh


def _cells(vertices: np.ndarray, lo: np.ndarray, extent: float, resolution: int) -> np.ndarray:
    index = np.floor((vertices - lo) / extent * resolution).astype(np.int64)
    np.clip(index, 0, resolution - 1, out=index)
    return (index[:, 0] * resolution + index[:, 1]) * resolution + index[:, 2]


def _grid_for(vertices: np.ndarray, target: int) -> tuple[np.ndarray, int]:
    """Cell ids on a grid holding about `target` occupied cells (surfaces fill cells ~ resolution²)."""
    lo = vertices.min(axis=0)
    extent = float(np.ptp(vertices, axis=0).max()) or 1.0
    resolution = max(2, int(np.sqrt(target)))
    keys = _cells(vertices, lo, extent, resolution)
    for _ in range(4):  # a few corrections: occupancy depends on the shape
        occupied = len(np.unique(keys))
        if 0.7 * target <= occupied <= target:
            break
        resolution = max(2, int(resolution * np.sqrt(target / max(occupied, 1)) * 0.95))
        keys = _cells(vertices, lo, extent, resolution)
    return keys, resolution


def cluster_decimate(mesh: trimesh.Trimesh, target: int) -> trimesh.Trimesh:
    """The mesh with vertices merged per grid cell (about `target` left); vertex colours averaged."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    if len(vertices) <= target:
        return mesh
    given = getattr(mesh.visual, "vertex_colors", None)  # ColorVisuals; a textured mesh has none here
    colors = (
        np.asarray(given, dtype=np.float64)[:, :4]
        if given is not None and len(given) == len(vertices)
        else np.full((len(vertices), 4), (180.0, 180.0, 180.0, 255.0))
    )
    keys, _ = _grid_for(vertices, target)
    _, inverse = np.unique(keys, return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)[:, None]
    merged = np.zeros((len(count), 3))
    np.add.at(merged, inverse, vertices)
    merged_colors = np.zeros((len(count), 4))
    np.add.at(merged_colors, inverse, colors)
    faces = inverse[np.asarray(mesh.faces)]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    # Two triangles over the same three cells are one triangle now (either winding).
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    faces = faces[np.sort(first)]
    return trimesh.Trimesh(
        vertices=merged / count,
        faces=faces,
        vertex_colors=np.clip(merged_colors / count, 0, 255).astype(np.uint8),
        process=False,
    )
