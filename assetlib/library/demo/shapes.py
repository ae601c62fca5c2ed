"""Primitive parts for procedural objects, modelled Z-up (z is height), each tagged with a colour role."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

Role = str  # "main" takes the asset's colour; other roles have fixed colours (see demo.ROLE_COLOURS)


@dataclass
class Part:
    """One mesh of an object and which colour role paints it."""

    mesh: trimesh.Trimesh
    role: Role = "main"


def _placed(mesh: trimesh.Trimesh, center: tuple[float, float, float]) -> trimesh.Trimesh:
    mesh.apply_translation(np.asarray(center, dtype=float))
    return mesh


def box(size: tuple[float, float, float], center: tuple[float, float, float], role: Role = "main") -> Part:
    """An axis-aligned box of `size` (x, y, z) centred at `center`."""
    return Part(_placed(trimesh.creation.box(extents=size), center), role)


def cylinder(
    radius: float,
    height: float,
    center: tuple[float, float, float],
    role: Role = "main",
    axis: str = "z",
    sections: int = 32,
) -> Part:
    """A cylinder along `axis` centred at `center`."""
    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    if axis == "x":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    elif axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    return Part(_placed(mesh, center), role)


def cone(
    radius: float,
    height: float,
    base: tuple[float, float, float],
    role: Role = "main",
    pointing: str = "up",
    sections: int = 32,
) -> Part:
    """A cone with its base circle centred at `base`, pointing up (+z), down, or along +x."""
    mesh = trimesh.creation.cone(radius=radius, height=height, sections=sections)
    if pointing == "down":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi, [1, 0, 0]))
    elif pointing == "x":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    return Part(_placed(mesh, base), role)


def sphere(radius: float, center: tuple[float, float, float], role: Role = "main") -> Part:
    """A sphere."""
    return Part(_placed(trimesh.creation.icosphere(subdivisions=3, radius=radius), center), role)


def ellipsoid(
    radii: tuple[float, float, float], center: tuple[float, float, float], role: Role = "main"
) -> Part:
    """A sphere scaled to the given radii."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    mesh.apply_scale(np.asarray(radii, dtype=float))
    return Part(_placed(mesh, center), role)


def torus(
    major: float, minor: float, center: tuple[float, float, float], role: Role = "main", axis: str = "z"
) -> Part:
    """A torus around `axis` (its hole faces along that axis)."""
    mesh = trimesh.creation.torus(
        major_radius=major, minor_radius=minor, major_sections=32, minor_sections=12
    )
    if axis == "y":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    elif axis == "x":
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
    return Part(_placed(mesh, center), role)


def lathe(profile: list[tuple[float, float]], role: Role = "main", sections: int = 48) -> Part:
    """A solid of revolution around the z axis from (radius, height) points, bottom to top."""
    points = np.asarray(profile, dtype=float)
    mesh = trimesh.creation.revolve(points, sections=sections)
    return Part(mesh, role)


def prism_roof(width: float, depth: float, height: float, base_z: float, role: Role = "roof") -> Part:
    """A gabled roof: a triangular prism along y, ridge at the top."""
    w, d, h = width / 2, depth / 2, height
    vertices = np.array([[-w, -d, 0], [w, -d, 0], [0, -d, h], [-w, d, 0], [w, d, 0], [0, d, h]], dtype=float)
    faces = np.array([[0, 1, 2], [3, 5, 4], [0, 3, 4], [0, 4, 1], [1, 4, 5], [1, 5, 2], [0, 2, 5], [0, 5, 3]])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=True)
    mesh.fix_normals()
    return Part(_placed(mesh, (0, 0, base_z)), role)
