"""The demo library: generated in the real formats, read back unchanged, deterministic and resumable."""

from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from assetlib.config import load_settings
from assetlib.library.demo.generator import COLOURS, MATERIALS, build_scene, plan_demo
from assetlib.library.demo.objects import CATEGORIES
from assetlib.pipeline.stages import build_library

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    run_dir = tmp_path_factory.mktemp("run")
    settings = load_settings(environ={}, home=str(tmp_path_factory.mktemp("home")))
    stage = build_library(
        settings, "demo", root, run_dir=run_dir, size=48, seed=3, image_size=64, progress=False
    )
    return stage, root, run_dir


def test_demo_has_enough_variety():
    assert len(CATEGORIES) >= 24 and len(COLOURS) >= 10 and len(MATERIALS) >= 3
    names = {c.name for c in CATEGORIES}
    assert {"chair", "table", "lamp", "mug", "car", "tree", "snowman", "robot", "fence"} <= names


def test_every_asset_has_views_captions_and_a_glb(demo):
    stage, root, _ = demo
    assert stage.failures == []
    assert len(stage.assets) == 48
    categories, colours = set(), set()
    for asset in stage.assets:
        assert len(asset.view_paths) == 8
        assert all(Image.open(p).size == (64, 64) and Image.open(p).mode == "RGBA" for p in asset.view_paths)
        assert asset.glb_path is not None and asset.glb_path.stat().st_size > 0
        assert asset.caption_en and asset.caption_cn and CJK.search(asset.caption_cn)
        attrs = asset.attributes
        categories.add(attrs["category"])
        colours.add(attrs["colour"])
        # Captions are written from the same attributes in both languages.
        assert attrs["colour"] in asset.caption_en and COLOURS[attrs["colour"]][1] in asset.caption_cn
        category = next(c for c in CATEGORIES if c.name == attrs["category"])
        assert category.noun_en in asset.caption_en and category.noun_zh in asset.caption_cn
        assert asset.tags[:2] == (attrs["category"], attrs["colour"])
    assert len(categories) == 24 and len(colours) >= 10
    index = json.loads((root / "gobjaverse_280k_index_to_objaverse.json").read_text())
    assert all(index[a.asset_id].endswith(f"{a.objaverse_uid}.glb") for a in stage.assets)


def test_stage_writes_preview_failures_and_counts(demo):
    _, _, run_dir = demo
    preview = Image.open(run_dir / "library_preview.png")
    assert preview.size[0] > 1000 and preview.size[1] > 1000
    assert (run_dir / "library_failures.csv").read_text().startswith("asset_id,stage,reason")
    counts = json.loads((run_dir / "library_counts.json").read_text())
    assert counts["counts"]["assets"] == 48 and counts["failures"] == 0


def test_a_second_run_reuses_meshes_and_renders(demo):
    stage, root, _ = demo
    view = stage.assets[0].view_paths[0]
    glb = stage.assets[0].glb_path
    stamps = (view.stat().st_mtime_ns, glb.stat().st_mtime_ns)
    settings = load_settings(environ={}, home=str(root.parent))
    again = build_library(settings, "demo", root, size=48, seed=3, image_size=64, progress=False)
    assert [a.caption_en for a in again.assets] == [a.caption_en for a in stage.assets]
    assert (view.stat().st_mtime_ns, glb.stat().st_mtime_ns) == stamps
    assert again.seconds["build_render"] < stage.seconds["build_render"]


def test_plans_are_deterministic_per_seed():
    first, second, other = plan_demo(60, seed=1), plan_demo(60, seed=1), plan_demo(60, seed=2)
    for spec in first + second:
        build_scene(spec)
    assert [(s.asset_id, s.colour, s.material, s.caption_en) for s in first] == [
        (s.asset_id, s.colour, s.material, s.caption_en) for s in second
    ]
    assert [s.colour for s in first] != [s.colour for s in other]
    with pytest.raises(ValueError, match="at least 1"):
        plan_demo(0)
