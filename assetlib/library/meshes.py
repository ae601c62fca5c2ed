"""Mesh loading for GLB/glTF (Draco-compressed included), OBJ, PLY and STL, checked before use."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import trimesh

MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
DRACO_EXTENSION = "KHR_draco_mesh_compression"
MAX_MESH_BYTES = 512 * 1024 * 1024

_COMPONENT = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


class MeshError(ValueError):
    """A mesh file that cannot be used, with the reason."""


def load_mesh(path: str | Path) -> trimesh.Scene:
    """Load a mesh file as a scene; raise MeshError for empty, unreadable or degenerate meshes."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(
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
        if suffix == ".glb" and _glb_uses_draco(path):
            scene = _load_draco_glb(path)
        else:
            scene = trimesh.load(str(path), force="scene", process=False)
    except MeshError:
        raise
    except Exception as exc:  # trimesh raises many types for malformed files
        raise MeshError(f"{path.name}: cannot parse mesh ({type(exc).__name__}: {exc})") from exc
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


def _read_glb(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise MeshError(f"{path.name}: not a GLB file")
    _, _, _length = struct.unpack_from("<4sII", data, 0)
    json_len, json_type = struct.unpack_from("<II", data, 12)
    if json_type != 0x4E4F534A or 20 + json_len > len(data):
        raise MeshError(f"{path.name}: truncated or malformed GLB header")
    gltf = json.loads(data[20 : 20 + json_len])
    offset = 20 + json_len
    binary = b""
    if offset + 8 <= len(data):
        bin_len, bin_type = struct.unpack_from("<II", data, offset)
        if bin_type == 0x004E4942:
            binary = data[offset + 8 : offset + 8 + bin_len]
    return gltf, binary


def _glb_uses_draco(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(20)
        if len(head) < 20 or head[:4] != b"glTF":
            return False
        json_len = struct.unpack_from("<I", head, 12)[0]
        chunk = fh.read(min(json_len, 64 * 1024 * 1024))
    return DRACO_EXTENSION.encode() in chunk


def _buffer_view(gltf: dict, binary: bytes, index: int) -> bytes:
    view = gltf["bufferViews"][index]
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


def _accessor(gltf: dict, binary: bytes, index: int) -> np.ndarray:
    acc = gltf["accessors"][index]
    dtype = np.dtype(_COMPONENT[acc["componentType"]])
    width = _WIDTH[acc["type"]]
    view = gltf["bufferViews"][acc["bufferView"]]
    raw = _buffer_view(gltf, binary, acc["bufferView"])
    start = acc.get("byteOffset", 0)
    packed = dtype.itemsize * width
    stride = view.get("byteStride") or packed
    if stride == packed:
        return np.frombuffer(raw, dtype=dtype, count=acc["count"] * width, offset=start).reshape(-1, width)
    # Interleaved attributes: gather each element's bytes, then reinterpret.
    buf = np.frombuffer(raw, dtype=np.uint8)
    rows = np.stack([buf[start + i * stride : start + i * stride + packed] for i in range(acc["count"])])
    return rows.view(dtype).reshape(-1, width)


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    t = trimesh.transformations.translation_matrix(node.get("translation", [0, 0, 0]))
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    r = trimesh.transformations.quaternion_matrix([w, x, y, z])
    s = np.diag([*node.get("scale", [1, 1, 1]), 1.0])
    return t @ r @ s


def _primitive_mesh(gltf: dict, binary: bytes, primitive: dict) -> trimesh.Trimesh:
    import DracoPy

    draco = primitive.get("extensions", {}).get(DRACO_EXTENSION)
    if draco is not None:
        decoded = DracoPy.decode(_buffer_view(gltf, binary, draco["bufferView"]))
        vertices = np.asarray(decoded.points, dtype=np.float64).reshape(-1, 3)
        faces = np.asarray(decoded.faces, dtype=np.int64).reshape(-1, 3)
    else:
        vertices = _accessor(gltf, binary, primitive["attributes"]["POSITION"]).astype(np.float64)
        if "indices" in primitive:
            faces = _accessor(gltf, binary, primitive["indices"]).astype(np.int64).reshape(-1, 3)
        else:
            faces = np.arange(len(vertices)).reshape(-1, 3)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    material = gltf.get("materials", [{}])[primitive["material"]] if "material" in primitive else {}
    colour = material.get("pbrMetallicRoughness", {}).get("baseColorFactor")
    if colour:
        mesh.visual.face_colors = (np.clip(colour, 0, 1) * 255).astype(np.uint8)
    return mesh


def _load_draco_glb(path: Path) -> trimesh.Scene:
    """Decode a GLB whose primitives use KHR_draco_mesh_compression (trimesh alone reads zeros)."""
    gltf, binary = _read_glb(path)
    scene = trimesh.Scene()
    roots = gltf.get("scenes", [{}])[gltf.get("scene", 0)].get(
        "nodes", list(range(len(gltf.get("nodes", []))))
    )
    stack = [(index, np.eye(4)) for index in roots]
    while stack:
        index, parent = stack.pop()
        node = gltf["nodes"][index]
        matrix = parent @ _node_matrix(node)
        if "mesh" in node:
            for p, primitive in enumerate(gltf["meshes"][node["mesh"]]["primitives"]):
                if primitive.get("mode", 4) != 4:
                    continue  # points and lines carry no surface to render
                scene.add_geometry(
                    _primitive_mesh(gltf, binary, primitive), geom_name=f"n{index}_p{p}", transform=matrix
                )
        stack.extend((child, matrix) for child in node.get("children", []))
    return scene
