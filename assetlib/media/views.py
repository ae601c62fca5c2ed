"""Rendered views and their cameras (G-Objaverse JSON), and an even, deterministic choice among them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# G-Objaverse's 280k set keeps each asset's views under this folder; other trees have none.
CAMPOS_DIR = "campos_512_v4"
# Views looking almost straight down or up say little about an object's shape from the side.
MAX_ELEVATION_DEG = 60.0


@dataclass(frozen=True)
class View:
    """One rendered view: image path, view index, and where its camera sits (Z-up world)."""

    index: int
    image: Path
    azimuth_deg: float
    elevation_deg: float


class CameraError(ValueError):
    """A camera JSON file that is missing fields or unreadable."""


def camera_angles(camera: dict) -> tuple[float, float]:
    """Azimuth and elevation in degrees of a G-Objaverse camera (`origin` is the camera position, Z up)."""
    try:
        x, y, z = (float(c) for c in camera["origin"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CameraError(f"camera has no usable 'origin': {exc}") from exc
    radius = math.sqrt(x * x + y * y + z * z)
    if radius == 0:
        raise CameraError("camera sits at the origin")
    azimuth = math.degrees(math.atan2(y, x)) % 360.0
    elevation = math.degrees(math.asin(max(-1.0, min(1.0, z / radius))))
    return azimuth, elevation


def read_view(index: int, image: Path, camera_json: Path) -> View:
    """A View from an image path and its camera JSON."""
    try:
        camera = json.loads(camera_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CameraError(f"{camera_json}: {exc}") from exc
    azimuth, elevation = camera_angles(camera)
    return View(index, image, azimuth, elevation)


def select_views(views: list[View], count: int) -> list[View]:
    """Up to `count` views spread evenly in azimuth, side views first; the same input gives the same choice.

    Targets are `count` azimuths evenly spaced from the first side view's; each takes the unused
    view nearest to it (ties: lower |elevation|, then lower index).
    """
    if count <= 0 or not views:
        return []
    side = [v for v in views if abs(v.elevation_deg) <= MAX_ELEVATION_DEG] or list(views)
    side.sort(key=lambda v: v.index)
    if len(side) <= count:
        return side
    start = side[0].azimuth_deg
    chosen: list[View] = []
    used: set[int] = set()
    for i in range(count):
        target = (start + 360.0 * i / count) % 360.0

        def cost(v: View, target: float = target) -> tuple[float, float, int]:
            gap = abs((v.azimuth_deg - target + 180.0) % 360.0 - 180.0)
            return (round(gap, 6), abs(v.elevation_deg), v.index)

        best = min((v for v in side if v.index not in used), key=cost)
        used.add(best.index)
        chosen.append(best)
    return sorted(chosen, key=lambda v: v.index)


def camera_json(position: np.ndarray, target: np.ndarray, fov_deg: float) -> dict:
    """A G-Objaverse-style camera record (Z-up world): axes x, y, z of the camera, origin, field of view.

    As in Blender, the camera looks along its -z axis and y points up in the image.
    """
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    z_axis = -forward
    up = np.array([0.0, 0.0, 1.0])
    if abs(float(np.dot(up, z_axis))) > 0.999:
        up = np.array([0.0, 1.0, 0.0])
    x_axis = np.cross(up, z_axis)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    fov = math.radians(fov_deg)
    return {
        "x": [round(float(c), 6) for c in x_axis],
        "y": [round(float(c), 6) for c in y_axis],
        "z": [round(float(c), 6) for c in z_axis],
        "origin": [round(float(c), 6) for c in position],
        "x_fov": round(fov, 6),
        "y_fov": round(fov, 6),
    }
