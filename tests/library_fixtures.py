"""Builders of real-format fixtures: G-Objaverse renders and cameras, Cap3D files, Draco GLBs."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from assetlib.media.views import camera_json


def gobjaverse_cameras() -> list[dict]:
    """40 cameras shaped like G-Objaverse's: 24 on an orbit, 12 near the horizon, then top and bottom."""
    cameras = []
    for i in range(24):
        cameras.append(_camera(15 * i, 20.0))
    for i in range(12):
        cameras.append(_camera(30 * i + 7, 0.0))
    cameras += [_camera(0, 89.0), _camera(0, -89.0), _camera(90, 75.0), _camera(270, -75.0)]
    return cameras


def _camera(azimuth_deg: float, elevation_deg: float, radius: float = 1.6) -> dict:
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    position = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)]) * radius
    return camera_json(position, np.zeros(3), 40.0)


def write_views(folder: Path, cameras: list[dict], size: int = 32, colour=(200, 30, 30)) -> None:
    """Write RGBA PNG + camera JSON per view in the <vvvvv>/<vvvvv>.png layout."""
    for index, camera in enumerate(cameras):
        view_dir = folder / f"{index:05d}"
        view_dir.mkdir(parents=True, exist_ok=True)
        image = np.zeros((size, size, 4), dtype=np.uint8)
        image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = (*colour, 255)
        Image.fromarray(image, "RGBA").save(view_dir / f"{index:05d}.png")
        (view_dir / f"{index:05d}.json").write_text(json.dumps(camera))


def age_tree(root: Path, seconds: float = 3600.0) -> None:
    """Set every folder's modification time back, so that a change made now shows in its time."""
    then = time.time() - seconds
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        os.utime(folder, (then, then))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as an interrupted copy would."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def write_draco_glb(mesh: trimesh.Trimesh, path: Path, colour=(0.1, 0.6, 0.2, 1.0)) -> None:
    """A GLB whose one primitive is Draco-compressed (KHR_draco_mesh_compression), as Objaverse has many."""
    import DracoPy

    blob = DracoPy.encode(
        np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.uint32)
    )
    padded = blob + b"\0" * (-len(blob) % 4)
    lo, hi = mesh.bounds
    gltf = {
        "asset": {"version": "2.0"},
        "extensionsUsed": ["KHR_draco_mesh_compression"],
        "extensionsRequired": ["KHR_draco_mesh_compression"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": list(colour)}}],
        "meshes": [
            {
                "primitives": [
                    {
                        "attributes": {"POSITION": 0},
                        "indices": 1,
                        "material": 0,
                        "extensions": {
                            "KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}
                        },
                    }
                ]
            }
        ],
        "accessors": [
            {
                "componentType": 5126,
                "count": len(mesh.vertices),
                "type": "VEC3",
                "min": lo.tolist(),
                "max": hi.tolist(),
            },
            {"componentType": 5125, "count": len(mesh.faces) * 3, "type": "SCALAR"},
        ],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(blob)}],
        "buffers": [{"byteLength": len(padded)}],
    }
    text = json.dumps(gltf).encode()
    text += b" " * (-len(text) % 4)
    body = (
        struct.pack("<II", len(text), 0x4E4F534A)
        + text
        + struct.pack("<II", len(padded), 0x004E4942)
        + padded
    )
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
