"""Real-world meshes: scenes with lines and points, broken textures, huge meshes, slow renders.

Every file is built here in a real format (GLB written by trimesh, its JSON chunk edited where a
case needs what trimesh would not write) and goes through the real renderer.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
import trimesh
from PIL import Image
from servers import ServedApp

from assetlib.faces.api.app import create_app
from assetlib.media.decimate import cluster_decimate
from assetlib.media.mesh_prep import NothingToRender, prepare_scene
from assetlib.media.meshes import load_mesh
from assetlib.media.render import RenderSettings
from assetlib.media.render_jobs import RenderJob, render_many
from assetlib.media.render_worker import RenderTimeout, RenderWorker

pytestmark = pytest.mark.slow

SMALL = RenderSettings(views=2, size=48, supersample=1)
RED = [220, 30, 30, 255]


def red_box() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
    box.visual = trimesh.visual.ColorVisuals(box, face_colors=np.tile(RED, (len(box.faces), 1)))
    return box


def line_strip() -> trimesh.path.Path3D:
    return trimesh.load_path(np.array([[0, 0, 0], [1.5, 1, 0.5], [2, 0, 1], [2.5, 1.2, 0]], dtype=float))


def write_glb(path: Path, geometry: dict) -> Path:
    path.write_bytes(trimesh.Scene(geometry).export(file_type="glb"))
    return path


def edit_glb_json(data: bytes, edit) -> bytes:
    """A GLB with its JSON chunk changed by `edit(dict)`; the binary chunk is kept as it is."""
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    json_len, json_type = struct.unpack_from("<I4s", data, 12)
    assert magic == b"glTF" and json_type == b"JSON"
    doc = json.loads(data[20 : 20 + json_len])
    edit(doc)
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + json_len :]
    body = struct.pack("<I4s", len(text), b"JSON") + text + rest
    return struct.pack("<4sII", b"glTF", version, 12 + len(body)) + body


def textured_box(base_color: list[int]) -> trimesh.Trimesh:
    box = trimesh.creation.box()
    texture = Image.fromarray((np.random.default_rng(0).random((16, 16, 3)) * 255).astype(np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture, baseColorFactor=base_color)
    box.visual = trimesh.visual.TextureVisuals(
        uv=np.random.default_rng(1).random((len(box.vertices), 2)), material=material
    )
    return box


def red_fraction(rgba: np.ndarray) -> float:
    """Share of covered pixels that are clearly red (the base colour showing through)."""
    covered = rgba[..., 3] > 0
    red = (rgba[..., 0] > 1.5 * rgba[..., 1]) & (rgba[..., 0] > 1.5 * rgba[..., 2])
    return float((red & covered).sum() / max(covered.sum(), 1))


# -- what is drawn ---------------------------------------------------------------------------------
def test_lines_points_and_triangles_render_the_triangles_and_say_what_was_skipped(tmp_path):
    glb = write_glb(
        tmp_path / "mixed.glb",
        {"box": red_box(), "wire": line_strip(), "dots": trimesh.PointCloud(np.random.rand(40, 3))},
    )
    prepared = prepare_scene(load_mesh(glb), glb.name)
    assert list(prepared.scene.geometry) == ["box"]
    assert any("skipped" in n and "line geometry" in n and "point cloud" in n for n in prepared.notes)
    worker = RenderWorker(SMALL, timeout=60)
    try:
        rendered = worker.render(glb)
    finally:
        worker.close()
    assert len(rendered.views) == 2 and red_fraction(rendered.views[0]) > 0.5


def test_a_file_of_lines_only_is_nothing_to_render_with_the_reason(tmp_path):
    glb = write_glb(tmp_path / "lines.glb", {"wire": line_strip()})
    with pytest.raises(NothingToRender, match="only 1 line geometry"):
        prepare_scene(load_mesh(glb), glb.name)


def test_a_missing_and_a_broken_texture_fall_back_to_the_base_colour(tmp_path):
    data = trimesh.Scene({"box": textured_box(RED)}).export(file_type="glb")

    def point_at_a_missing_file(doc: dict) -> None:
        doc["images"] = [{"uri": "textures/not-there.png"}]

    missing = tmp_path / "missing.glb"
    missing.write_bytes(edit_glb_json(data, point_at_a_missing_file))
    png = data.find(b"\x89PNG")
    broken = tmp_path / "broken.glb"
    broken.write_bytes(data[: png + 8] + b"\x00" * 64 + data[png + 72 :])
    worker = RenderWorker(SMALL, timeout=60)
    try:
        for path in (missing, broken):
            rendered = worker.render(path)
            assert red_fraction(rendered.views[0]) > 0.5, path.name  # the factor, not a black box
    finally:
        worker.close()


def test_a_mesh_over_the_vertex_cap_is_decimated_and_keeps_its_silhouette(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=6)  # 40,962 vertices
    sphere.visual = trimesh.visual.ColorVisuals(sphere, vertex_colors=np.tile(RED, (len(sphere.vertices), 1)))
    glb = write_glb(tmp_path / "dense.glb", {"sphere": sphere})
    capped = RenderSettings(views=1, size=64, supersample=1, max_vertices=2000)
    full, small = RenderWorker(SMALL, timeout=60), RenderWorker(capped, timeout=60)
    try:
        detailed = full.render(glb).views[0]
        decimated = small.render(glb)
    finally:
        full.close()
        small.close()
    assert decimated.simplified and 1000 <= decimated.vertices <= 2000
    assert any("drawn as one mesh" in n for n in decimated.notes)
    coverage = [(v[..., 3] > 0).mean() for v in (detailed, decimated.views[0])]
    assert abs(coverage[0] - coverage[1]) < 0.05  # the same sphere, fewer triangles
    assert red_fraction(decimated.views[0]) > 0.8  # colours survive the clustering


def test_cluster_decimation_reaches_its_target_and_drops_degenerate_faces():
    mesh = trimesh.creation.icosphere(subdivisions=5)
    out = cluster_decimate(mesh, 1500)
    assert 750 <= len(out.vertices) <= 1500
    f = out.faces
    assert ((f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])).all()
    assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f)
    np.testing.assert_allclose(out.extents, mesh.extents, rtol=0.05)


def test_nan_vertices_are_dropped_with_their_faces(tmp_path):
    box = red_box()
    vertices = np.vstack([box.vertices, [[np.nan, 0, 0]]])
    faces = np.vstack([box.faces, [[0, 1, len(vertices) - 1]]])
    bad = trimesh.Trimesh(vertices, faces, process=False)
    prepared = prepare_scene(trimesh.Scene({"bad": bad}), "nan.glb")
    assert np.all(np.isfinite(prepared.scene.extents))
    assert any("NaN/Inf" in n for n in prepared.notes)


# -- time limits -----------------------------------------------------------------------------------
def test_a_render_past_its_time_limit_is_stopped_and_the_worker_replaced(tmp_path):
    glb = write_glb(tmp_path / "box.glb", {"box": red_box()})
    worker = RenderWorker(SMALL, timeout=60)
    try:
        worker.start()
        worker.timeout = 0.001  # no render answers in a millisecond
        with pytest.raises(RenderTimeout, match=r"longer than 0\.001s"):
            worker.render(glb)
        worker.timeout = 60
        assert len(worker.render(glb).views) == 2  # a fresh process took over
        assert worker.restarts == 1
    finally:
        worker.close()


def test_a_library_render_keeps_an_asset_with_lines_beside_its_meshes(tmp_path):
    mixed = write_glb(tmp_path / "mixed.glb", {"box": red_box(), "wire": line_strip()})
    lines = write_glb(tmp_path / "lines.glb", {"wire": line_strip()})
    jobs = [
        RenderJob("mixed", mixed, tmp_path / "out" / "mixed"),
        RenderJob("lines", lines, tmp_path / "lines"),
    ]
    done, failures = render_many(jobs, SMALL, workers=1, progress=False)
    assert done == ["mixed"] and [f.asset_id for f in failures] == ["lines"]
    assert "nothing to render" in failures[0].reason
    assert len(list((tmp_path / "out" / "mixed").glob("*/*.png"))) == 2


# -- through the API -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def api(demo_world):
    settings = demo_world.settings.model_copy(update={"query_max_vertices": 1000})
    with ServedApp(create_app(settings)) as base:
        yield base


def upload(base: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{base}/search/model", files={"file": (name, data)}, params={"top_k": 3}, timeout=120)


def test_the_api_searches_by_a_scene_with_lines_and_points(api, tmp_path):
    glb = write_glb(
        tmp_path / "mixed.glb",
        {"box": red_box(), "wire": line_strip(), "dots": trimesh.PointCloud(np.random.rand(40, 3))},
    )
    response = upload(api, "mixed.glb", glb.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 3
    assert any("line geometry" in n for n in body["notes"])


def test_the_api_answers_422_with_the_reason_for_a_file_of_lines(api, tmp_path):
    glb = write_glb(tmp_path / "lines.glb", {"wire": line_strip()})
    response = upload(api, "lines.glb", glb.read_bytes())
    assert response.status_code == 422
    assert "nothing to render" in response.json()["detail"] and "line geometry" in response.json()["detail"]


def test_the_api_decimates_a_model_over_the_vertex_cap(api, tmp_path):
    glb = write_glb(tmp_path / "dense.glb", {"sphere": trimesh.creation.icosphere(subdivisions=5)})
    response = upload(api, "dense.glb", glb.read_bytes())
    assert response.status_code == 200, response.text
    assert any("drawn as one mesh" in n for n in response.json()["notes"])


def test_the_api_renders_a_model_whose_texture_is_missing(api, tmp_path):
    def point_at_a_missing_file(doc: dict) -> None:
        doc["images"] = [{"uri": "textures/not-there.png"}]

    data = edit_glb_json(
        trimesh.Scene({"box": textured_box(RED)}).export(file_type="glb"), point_at_a_missing_file
    )
    response = upload(api, "missing.glb", data)
    assert response.status_code == 200, response.text
