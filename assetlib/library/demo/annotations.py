"""The demo library's annotations, written in the published Objaverse, LVIS and G-Objaverse formats.

So the demo's names, tags, licences, face counts and categories are read by the same readers as a
real download. The demo's objects are generated here and are CC0; the licence codes are spread over
Objaverse's codes, deterministically per asset, only so that the licence filter has something to do
(the README says so; like and view counts are made up the same way).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assetlib.records import write_json

if TYPE_CHECKING:
    from assetlib.library.demo.generator import DemoSpec

# Objaverse licence codes, as its annotations spell them.
DEMO_LICENSES = ("by", "by-sa", "cc0", "by-nc", "by-nd")

# Each demo category under one of G-Objaverse's ten labels, and one of Sketchfab's category names
# (what Objaverse's annotations carry).
GOBJAVERSE_LABELS: dict[str, tuple[str, str]] = {
    "chair": ("Furnitures", "Furniture & Home"),
    "table": ("Furnitures", "Furniture & Home"),
    "sofa": ("Furnitures", "Furniture & Home"),
    "bed": ("Furnitures", "Furniture & Home"),
    "bench": ("Furnitures", "Furniture & Home"),
    "stool": ("Furnitures", "Furniture & Home"),
    "bookshelf": ("Furnitures", "Furniture & Home"),
    "lamp": ("Daily-Used", "Furniture & Home"),
    "mug": ("Daily-Used", "Food & Drink"),
    "cup": ("Daily-Used", "Food & Drink"),
    "bowl": ("Daily-Used", "Food & Drink"),
    "bottle": ("Daily-Used", "Food & Drink"),
    "vase": ("Daily-Used", "Furniture & Home"),
    "car": ("Transportations", "Cars & Vehicles"),
    "boat": ("Transportations", "Cars & Vehicles"),
    "airplane": ("Transportations", "Cars & Vehicles"),
    "rocket": ("Transportations", "Science & Technology"),
    "tree": ("Plants", "Nature & Plants"),
    "mushroom": ("Plants", "Nature & Plants"),
    "house": ("Buildings&&Outdoor", "Architecture"),
    "tower": ("Buildings&&Outdoor", "Architecture"),
    "fence": ("Buildings&&Outdoor", "Architecture"),
    "snowman": ("Human-Shape", "Characters & Creatures"),
    "robot": ("Electronics", "Science & Technology"),
}


def _annotation(spec: DemoSpec) -> dict:
    """One asset's entry as Objaverse's metadata/*.json.gz files hold it."""
    seed = int(spec.objaverse_uid[:8], 16)
    sketchfab = GOBJAVERSE_LABELS[spec.category][1]
    return {
        "uid": spec.objaverse_uid,
        "name": f"{spec.colour} {spec.material} {spec.category}",
        "tags": [{"name": t, "slug": t} for t in (spec.category, spec.colour, spec.material)],
        "categories": [{"name": sketchfab, "slug": sketchfab.lower().replace(" & ", "-")}],
        "license": DEMO_LICENSES[seed % len(DEMO_LICENSES)],
        "faceCount": spec.faces,
        "vertexCount": spec.vertices,
        "likeCount": seed % 97,
        "viewCount": seed % 5000,
        "description": spec.caption_en,
    }


def write_demo_annotations(root: Path, specs: Sequence[DemoSpec]) -> None:
    """Write metadata/000-000.json.gz, lvis-annotations.json.gz and category_annotation.json under root."""
    metadata = root / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({s.objaverse_uid: _annotation(s) for s in specs}, ensure_ascii=False)
    tmp = metadata / ".000-000.json.gz.tmp"
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        fh.write(payload)
    tmp.replace(metadata / "000-000.json.gz")
    lvis: dict[str, list[str]] = {}
    for spec in specs:
        lvis.setdefault(spec.category, []).append(spec.objaverse_uid)
    tmp = root / ".lvis-annotations.json.gz.tmp"
    with gzip.open(tmp, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(lvis))
    tmp.replace(root / "lvis-annotations.json.gz")
    write_json(
        root / "category_annotation.json",
        [
            {"object_index": f"{s.objaverse_uid}.glb", "label": GOBJAVERSE_LABELS[s.category][0]}
            for s in specs
        ],
    )
