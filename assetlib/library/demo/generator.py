"""Procedural demo library: seeded 3D objects, renders and bilingual captions, written in the real formats.

The output folder looks like a small G-Objaverse + Cap3D download (captions JSON in English and
Chinese, the index map, a quality list, GLBs, renders with camera JSON), plus `attributes.json`
with the ground truth (category, colour, material, features) that evaluation uses, and Objaverse-,
LVIS- and G-Objaverse-format annotations (`demo/annotations.py`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import trimesh

from assetlib.library.demo.annotations import write_demo_annotations
from assetlib.library.demo.objects import CATEGORIES, Category
from assetlib.media.render import RenderSettings
from assetlib.media.render_jobs import iter_jobs, render_many
from assetlib.records import Failure, write_json

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
DEFAULT_SIZE = 480  # 24 categories × 20: every (category, colour) pair about twice

# name → (RGB, Chinese)
COLOURS: dict[str, tuple[tuple[int, int, int], str]] = {
    "red": ((200, 30, 30), "红色"),
    "orange": ((240, 125, 20), "橙色"),
    "yellow": ((235, 200, 30), "黄色"),
    "green": ((40, 150, 50), "绿色"),
    "blue": ((30, 80, 210), "蓝色"),
    "purple": ((125, 50, 175), "紫色"),
    "pink": ((245, 130, 185), "粉色"),
    "white": ((238, 238, 238), "白色"),
    "black": ((28, 28, 28), "黑色"),
    "gray": ((128, 128, 128), "灰色"),
    "brown": ((120, 72, 36), "棕色"),
    "teal": ((20, 160, 160), "青色"),
}

# name → (metallic, roughness, English adjective, Chinese adjective)
MATERIALS: dict[str, tuple[float, float, str, str]] = {
    "matte": (0.0, 0.95, "matte", "哑光"),
    "glossy": (0.0, 0.2, "glossy", "亮面"),
    "metallic": (0.65, 0.35, "metallic", "金属质感"),
}

# Fixed colours of the parts that do not take the asset's colour.
ROLE_COLOURS: dict[str, tuple[int, int, int]] = {
    "dark": (52, 52, 58),
    "metal": (175, 175, 180),
    "wood": (118, 78, 42),
    "white": (236, 236, 230),
    "roof": (88, 48, 40),
    "light": (250, 238, 170),
    "book": (222, 210, 180),
    "carrot": (240, 120, 20),
}


@dataclass
class DemoSpec:
    """Everything that defines one demo asset (deterministic from the library seed)."""

    asset_id: str
    objaverse_uid: str
    category: str
    colour: str
    material: str
    seed: int
    high_quality: bool
    features: dict = field(default_factory=dict)
    caption_en: str = ""
    caption_cn: str = ""
    faces: int = 0  # of the built mesh, for the demo's Objaverse-format annotations
    vertices: int = 0

    @property
    def glb_relpath(self) -> str:
        """Path of the GLB under glbs/, as the index map records it."""
        return f"000-{int(self.asset_id.rsplit('-', 1)[1]) // 100:03d}/{self.objaverse_uid}.glb"


def _category(name: str) -> Category:
    return next(c for c in CATEGORIES if c.name == name)


def plan_demo(size: int = DEFAULT_SIZE, seed: int = 0, hq_fraction: float = 0.6) -> list[DemoSpec]:
    """Specs of a demo library: categories round-robin, each colour once per category before repeats."""
    if size < 1:
        raise ValueError(f"demo library size must be at least 1, got {size}")
    rng = np.random.default_rng(seed)
    colour_names = list(COLOURS)
    decks: dict[str, list[str]] = {}
    specs = []
    for i in range(size):
        category = CATEGORIES[i % len(CATEGORIES)]
        deck = decks.setdefault(category.name, [])
        if not deck:  # every colour once per category before any repeats
            deck.extend(rng.permutation(colour_names).tolist())
        colour = deck.pop()
        material = str(rng.choice(list(MATERIALS)))
        asset_id = f"demo/{category.name}-{i:04d}"
        specs.append(
            DemoSpec(
                asset_id=asset_id,
                objaverse_uid=uuid.uuid5(uuid.NAMESPACE_URL, f"assetlib-demo/{asset_id}").hex,
                category=category.name,
                colour=colour,
                material=material,
                seed=int(rng.integers(0, 2**31 - 1)),
                high_quality=bool(rng.random() < hq_fraction),
            )
        )
    return specs


def build_scene(spec: DemoSpec) -> trimesh.Scene:
    """Build the object (Y-up, as glTF expects) and fill in the spec's features and captions."""
    category = _category(spec.category)
    design = category.build(np.random.default_rng(spec.seed))
    metallic, roughness, material_en, material_zh = MATERIALS[spec.material]
    main_rgb, colour_zh = COLOURS[spec.colour]
    scene = trimesh.Scene()
    z_up_to_y_up = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])
    for index, part in enumerate(design.parts):
        rgb = main_rgb if part.role == "main" else _role_colour(part.role, spec.colour)
        mesh = part.mesh.copy()
        mesh.apply_transform(z_up_to_y_up)
        mesh.visual = trimesh.visual.TextureVisuals(
            material=trimesh.visual.material.PBRMaterial(
                baseColorFactor=[*rgb, 255],
                metallicFactor=metallic if part.role == "main" else 0.0,
                roughnessFactor=roughness if part.role == "main" else 0.7,
            )
        )
        scene.add_geometry(mesh, geom_name=f"{part.role}_{index}")
    spec.features = design.features
    spec.faces = sum(len(g.faces) for g in scene.geometry.values())
    spec.vertices = sum(len(g.vertices) for g in scene.geometry.values())
    if design.template_en and design.template_zh:
        spec.caption_en = design.template_en.format(material=material_en, colour=spec.colour)
        spec.caption_cn = design.template_zh.format(material=material_zh, colour=colour_zh)
    else:
        spec.caption_en = f"a {material_en} {spec.colour} {category.noun_en} {design.detail_en}"
        spec.caption_cn = (
            f"一{category.measure_zh}{material_zh}的{colour_zh}{category.noun_zh}，{design.detail_zh}"
        )
    return scene


def short_phrases(category: str, colour: str) -> tuple[str, str]:
    """How people type a query for an asset: "a red chair" / "一把红色的椅子"."""
    cat = _category(category)
    return f"a {colour} {cat.noun_en}", f"一{cat.measure_zh}{COLOURS[colour][1]}的{cat.noun_zh}"


def _role_colour(role: str, main: str) -> tuple[int, int, int]:
    if role == "accent":  # contrasts with the main colour
        return (40, 40, 46) if main in {"white", "yellow", "pink", "orange"} else (236, 236, 230)
    return ROLE_COLOURS[role]


@dataclass
class DemoBuild:
    """What a demo build wrote and how long each part took."""

    root: Path
    specs: list[DemoSpec]
    failures: list[Failure]
    seconds: dict[str, float]


def write_demo_library(
    root: str | Path,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    render: RenderSettings | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DemoBuild:
    """Generate (or finish) a demo library under `root`; GLBs and renders already present are kept."""
    from assetlib.logs import progress as tqdm

    root = Path(root)
    render = render or RenderSettings()
    root.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    specs = plan_demo(size, seed)
    failures: list[Failure] = []
    built = 0
    for spec in tqdm(specs, desc="build meshes", unit="asset", disable=not progress):
        glb = root / "glbs" / spec.glb_relpath
        try:
            scene = build_scene(spec)  # always: it also fills in the captions
            if not glb.exists():
                glb.parent.mkdir(parents=True, exist_ok=True)
                tmp = glb.with_suffix(".glb.tmp")
                tmp.write_bytes(scene.export(file_type="glb"))
                tmp.replace(glb)
                built += 1
        except Exception as exc:  # one broken builder must not end the run
            failures.append(Failure(spec.asset_id, "build", f"{type(exc).__name__}: {exc}"))
            log.warning("demo build %s failed: %s", spec.asset_id, exc)
    seconds["meshes"] = time.perf_counter() - started
    log.info(
        "demo: %d meshes built, %d kept from an earlier run (%.1fs)",
        built,
        len(specs) - built,
        seconds["meshes"],
    )

    started = time.perf_counter()
    failed = {f.asset_id for f in failures}
    pairs = [(s.asset_id, root / "glbs" / s.glb_relpath) for s in specs if s.asset_id not in failed]
    _, render_failures = render_many(
        list(iter_jobs(pairs, root / "renders", render)), render, workers, progress
    )
    failures += render_failures
    seconds["render"] = time.perf_counter() - started

    _write_metadata(root, specs, failures, seed, render, seconds)
    return DemoBuild(root, specs, failures, seconds)


def _write_metadata(
    root: Path,
    specs: list[DemoSpec],
    failures: list[Failure],
    seed: int,
    render: RenderSettings,
    seconds: dict[str, float],
) -> None:
    failed = {f.asset_id for f in failures}
    good = [s for s in specs if s.asset_id not in failed]
    write_json(root / "text_captions_cap3d.json", {s.asset_id: s.caption_en for s in good})
    write_json(root / "text_captions_cap3d_cn.json", {s.asset_id: s.caption_cn for s in good})
    write_json(root / "gobjaverse_280k_index_to_objaverse.json", {s.asset_id: s.glb_relpath for s in good})
    write_json(root / "kiui_gobj_merged.json", [s.asset_id for s in good if s.high_quality])
    write_demo_annotations(root, good)
    write_json(
        root / "attributes.json",
        {
            s.asset_id: {"category": s.category, "colour": s.colour, "material": s.material, **s.features}
            for s in good
        },
    )
    write_json(
        root / "library.json",
        {
            "kind": "assetlib-demo",
            "generator_version": GENERATOR_VERSION,
            "size": len(specs),
            "seed": seed,
            "categories": len({s.category for s in specs}),
            "colours": len(COLOURS),
            "materials": list(MATERIALS),
            "render": asdict(render),
            "assets": len(good),
            "failures": [asdict(f) for f in failures],
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        },
    )
