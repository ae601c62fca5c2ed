"""Headless multi-view renderer: mesh file → N RGBA views around the up axis + G-Objaverse camera JSON.

Long runs and query renders drive it through `render_worker` (warm child processes, time limits).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from assetlib.media.mesh_prep import PreparedScene, prepare_scene
from assetlib.media.meshes import load_mesh
from assetlib.media.views import CAMPOS_DIR, camera_json

# EGL renders without a display, on a GPU or (Mesa llvmpipe) on the CPU; must be set before OpenGL loads.
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

log = logging.getLogger(__name__)

# glTF is Y-up; G-Objaverse cameras (Blender) are Z-up: Blender (x, y, z) = glTF (x, -z, y).
Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)


@dataclass(frozen=True)
class RenderSettings:
    """How views are rendered: count, pixel size, camera elevation and field of view, output layout."""

    views: int = 8
    size: int = 256
    elevation_deg: float = 20.0
    fov_deg: float = 40.0
    start_azimuth_deg: float = 30.0
    campos_layout: bool = True  # write under campos_512_v4/ as the G-Objaverse 280k set does
    supersample: int = 2  # render larger, then downsample: smooth edges for a small cost
    max_vertices: int | None = None  # query renders: bigger scenes are merged and decimated


def asset_render_dir(render_root: Path, asset_id: str, campos_layout: bool = True) -> Path:
    """Folder of one asset's views: <root>/<dir>/<inst>[/campos_512_v4] for an id '<dir>/<inst>'."""
    folder = render_root.joinpath(*asset_id.split("/"))
    return folder / CAMPOS_DIR if campos_layout else folder


def _look_at(position: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    z_axis = position - target
    z_axis /= np.linalg.norm(z_axis)
    x_axis = np.cross(up, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = x_axis, y_axis, z_axis, position
    return pose


class Renderer:
    """One offscreen OpenGL context (per process) that renders scenes to RGBA views."""

    def __init__(self, settings: RenderSettings) -> None:
        import pyrender

        self.settings = settings
        self._pyrender = pyrender
        pixels = settings.size * max(1, settings.supersample)
        self._renderer = pyrender.OffscreenRenderer(pixels, pixels)

    def close(self) -> None:
        """Release the OpenGL context."""
        self._renderer.delete()

    def render_scene(self, tm_scene: trimesh.Scene) -> list[tuple[np.ndarray, dict]]:
        """Render a scene of triangle meshes (Y-up; see `prepare_scene`) from evenly spaced azimuths.

        Returns (RGBA uint8, camera) pairs.
        """
        from PIL import Image

        pyrender = self._pyrender
        s = self.settings
        scene = pyrender.Scene.from_trimesh_scene(
            tm_scene, bg_color=[1.0, 1.0, 1.0, 0.0], ambient_light=[0.35, 0.35, 0.35]
        )
        lo, hi = tm_scene.bounds
        center = (lo + hi) / 2
        radius = float(np.linalg.norm(hi - lo) / 2) or 1.0
        distance = radius / math.sin(math.radians(s.fov_deg) / 2) * 1.05
        camera = pyrender.PerspectiveCamera(
            yfov=math.radians(s.fov_deg), znear=distance * 0.05, zfar=distance * 4
        )
        cam_node = scene.add(camera)
        key = scene.add(pyrender.DirectionalLight(intensity=3.0))
        # A fixed light from above, so tops and sides read differently whatever the view.
        above = center + np.array([0.3, 1.0, 0.2]) * distance
        scene.add(
            pyrender.DirectionalLight(intensity=1.5), pose=_look_at(above, center, np.array([0, 0, 1.0]))
        )
        up = np.array([0.0, 1.0, 0.0])
        out = []
        elevation = math.radians(s.elevation_deg)
        for i in range(s.views):
            azimuth = math.radians(s.start_azimuth_deg + 360.0 * i / s.views)
            offset = (
                np.array(
                    [
                        math.cos(elevation) * math.sin(azimuth),
                        math.sin(elevation),
                        math.cos(elevation) * math.cos(azimuth),
                    ]
                )
                * distance
            )
            pose = _look_at(center + offset, center, up)
            scene.set_pose(cam_node, pose)
            scene.set_pose(key, pose)  # a headlight: every view is lit from the camera
            rgba, _ = self._renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
            if s.supersample > 1:
                rgba = np.asarray(
                    Image.fromarray(rgba, "RGBA").resize((s.size, s.size), Image.Resampling.LANCZOS)
                )
            cam = camera_json(Y_UP_TO_Z_UP @ offset, np.zeros(3), s.fov_deg)
            out.append((rgba, cam))
        return out


def write_views(views: Sequence[tuple[np.ndarray, dict]], folder: Path) -> list[Path]:
    """Write views in the G-Objaverse layout: <folder>/<vvvvv>/<vvvvv>.png and .json; return the PNGs."""
    from PIL import Image

    paths = []
    for index, (rgba, camera) in enumerate(views):
        name = f"{index:05d}"
        view_dir = folder / name
        view_dir.mkdir(parents=True, exist_ok=True)
        png = view_dir / f"{name}.png"
        tmp = png.with_suffix(".png.tmp")
        Image.fromarray(rgba, "RGBA").save(tmp, format="PNG")
        tmp.replace(png)  # a killed run never leaves a half-written PNG under the final name
        (view_dir / f"{name}.json").write_text(json.dumps(camera), encoding="utf-8")
        paths.append(png)
    return paths


def render_mesh_file(
    renderer: Renderer, mesh_path: Path
) -> tuple[list[tuple[np.ndarray, dict]], PreparedScene]:
    """Load, prepare (triangles only, usable textures, the vertex cap) and render one mesh file.

    Raises MeshError (NothingToRender included) for a file that cannot be used.
    """
    prepared = prepare_scene(load_mesh(mesh_path), Path(mesh_path).name, renderer.settings.max_vertices)
    return renderer.render_scene(prepared.scene), prepared
