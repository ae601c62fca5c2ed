"""The headless renderer: every mesh format, Draco GLBs, camera JSON, and broken meshes as failure rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from library_fixtures import write_draco_glb
from PIL import Image

from assetlib.media.meshes import MeshError, load_mesh
from assetlib.media.render import RenderSettings
from assetlib.media.render_jobs import RenderJob, render_many
from assetlib.media.views import camera_angles

SETTINGS = RenderSettings(views=8, size=64, elevation_deg=20.0, campos_layout=False, supersample=1)


def _object() -> trimesh.Trimesh:
    """An asymmetric object (a box with a cylinder on one side), so views differ."""
    parts = [trimesh.creation.box(extents=(1.0, 0.4, 0.6)), trimesh.creation.cylinder(0.2, 0.8)]
    parts[1].apply_translation([0.45, 0, 0.5])
    return trimesh.util.concatenate(parts)


@pytest.fixture
def meshes(tmp_path):
    mesh = _object()
    paths = {}
    for suffix in ("glb", "obj", "ply", "stl"):
        paths[suffix] = tmp_path / f"thing.{suffix}"
        mesh.export(paths[suffix])
    paths["draco"] = tmp_path / "draco.glb"
    write_draco_glb(mesh, paths["draco"])
    paths["empty"] = tmp_path / "empty.glb"
    paths["empty"].write_bytes(b"")
    paths["garbage"] = tmp_path / "garbage.glb"
    paths["garbage"].write_bytes(b"glTF" + b"\x02\x00\x00\x00" + b"\xff" * 64)
    paths["flat"] = tmp_path / "flat.obj"
    paths["flat"].write_text("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n")
    return paths


def test_draco_glb_is_decoded_not_read_as_zeros(meshes):
    scene = load_mesh(meshes["draco"])
    np.testing.assert_allclose(scene.extents, _object().extents, rtol=1e-3)


def test_every_format_renders_views_with_cameras(meshes, tmp_path):
    jobs = [RenderJob(k, meshes[k], tmp_path / "out" / k) for k in ("glb", "obj", "ply", "stl", "draco")]
    done, failures = render_many(jobs, SETTINGS, workers=2, progress=False)
    assert failures == [] and sorted(done) == sorted(j.asset_id for j in jobs)
    coverages = {}
    for job in jobs:
        pngs = sorted(job.folder.glob("*/*.png"))
        assert [p.parent.name for p in pngs] == [f"{i:05d}" for i in range(8)]
        images = [np.asarray(Image.open(p)) for p in pngs]
        assert all(im.shape == (64, 64, 4) for im in images)
        alpha = np.stack([im[..., 3] for im in images])
        coverages[job.asset_id] = float((alpha > 0).mean())
        assert 0.05 < coverages[job.asset_id] < 0.9  # the object is in frame and not clipped away
        assert not all(np.array_equal(images[0], im) for im in images[1:])  # views differ
        angles = [camera_angles(json.loads(p.with_suffix(".json").read_text())) for p in pngs]
        assert all(abs(e - 20.0) < 0.01 for _, e in angles)
        azimuths = sorted(a for a, _ in angles)
        np.testing.assert_allclose(np.diff(azimuths), 45.0, atol=0.01)
    # The Draco file renders the same object as the plain GLB.
    assert abs(coverages["draco"] - coverages["glb"]) < 0.02


def test_broken_meshes_become_failure_rows_and_the_run_completes(meshes, tmp_path):
    names = ("glb", "empty", "garbage", "flat")
    jobs = [RenderJob(k, meshes[k], tmp_path / "out" / k) for k in names]
    done, failures = render_many(jobs, SETTINGS, workers=1, progress=False)
    assert done == ["glb"]
    reasons = {f.asset_id: f.reason for f in failures}
    assert set(reasons) == {"empty", "garbage", "flat"}
    assert "empty (0 bytes)" in reasons["empty"]
    assert "zero or undefined extent" in reasons["flat"] or "no triangles" in reasons["flat"]
    assert all(f.stage == "render" for f in failures)
    with pytest.raises(MeshError, match="unsupported mesh format"):
        load_mesh(tmp_path / "thing.fbx")


def test_finished_assets_are_skipped_on_a_second_run(meshes, tmp_path):
    job = RenderJob("glb", meshes["glb"], tmp_path / "out" / "glb")
    render_many([job], SETTINGS, workers=1, progress=False)
    first = job.folder / "00000" / "00000.png"
    stamp = first.stat().st_mtime_ns
    done, failures = render_many([job], SETTINGS, workers=1, progress=False)
    assert done == ["glb"] and failures == []
    assert first.stat().st_mtime_ns == stamp
