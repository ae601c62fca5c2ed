"""The demo library's 24 object categories: procedural builders with captionable variations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from assetlib.library.demo.shapes import (
    Part,
    box,
    cone,
    cylinder,
    ellipsoid,
    lathe,
    prism_roof,
    sphere,
    torus,
)


@dataclass
class Design:
    """A built object: its parts, a caption detail in English and Chinese, and its features."""

    parts: list[Part]
    detail_en: str
    detail_zh: str
    features: dict[str, Any] = field(default_factory=dict)
    # For objects whose colour is an accessory's (a snowman's hat): whole-caption templates with
    # {material} and {colour} slots, used instead of "<material> <colour> <noun> <detail>".
    template_en: str | None = None
    template_zh: str | None = None


@dataclass(frozen=True)
class Category:
    """An object category: English and Chinese nouns, the Chinese measure word, and its builder."""

    name: str
    noun_en: str
    noun_zh: str
    measure_zh: str
    build: Callable[[np.random.Generator], Design]


def _j(rng: np.random.Generator, value: float, spread: float = 0.1) -> float:
    """Jitter a dimension by up to ±spread (relative) so no two objects are identical."""
    return float(value * (1.0 + rng.uniform(-spread, spread)))


def chair(rng: np.random.Generator) -> Design:
    """Seat, four legs, a tall or low back, with or without armrests."""
    seat_h, w = _j(rng, 0.45), _j(rng, 0.45)
    tall = bool(rng.random() < 0.5)
    arms = bool(rng.random() < 0.5)
    back_h = _j(rng, 0.55 if tall else 0.25)
    parts = [box((w, w, 0.05), (0, 0, seat_h), "main")]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(
                box((0.04, 0.04, seat_h), (sx * (w / 2 - 0.03), sy * (w / 2 - 0.03), seat_h / 2), "dark")
            )
    parts.append(box((w, 0.05, back_h), (0, w / 2 - 0.025, seat_h + back_h / 2), "main"))
    if arms:
        for sx in (-1, 1):
            parts.append(box((0.04, w * 0.8, 0.04), (sx * (w / 2 - 0.02), 0, seat_h + 0.2), "main"))
            parts.append(box((0.04, 0.04, 0.2), (sx * (w / 2 - 0.02), -w * 0.35, seat_h + 0.1), "main"))
    en = ("with armrests and " if arms else "with ") + ("a tall back" if tall else "a low back")
    zh = ("有扶手和" if arms else "带") + ("高靠背" if tall else "矮靠背")
    return Design(parts, en, zh, {"back": "tall" if tall else "low", "armrests": arms})


def table(rng: np.random.Generator) -> Design:
    """A round table on one pedestal or a square table on four legs."""
    round_top = bool(rng.random() < 0.5)
    h, w = _j(rng, 0.75), _j(rng, 1.0)
    if round_top:
        parts = [
            cylinder(w / 2, 0.05, (0, 0, h), "main"),
            cylinder(0.05, h, (0, 0, h / 2), "dark"),
            cylinder(w / 4, 0.04, (0, 0, 0.02), "dark"),
        ]
        return Design(parts, "with a round top on a single pedestal", "圆形桌面，单柱支撑", {"top": "round"})
    parts = [box((w, w * 0.7, 0.05), (0, 0, h), "main")]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(box((0.06, 0.06, h), (sx * (w / 2 - 0.05), sy * (w * 0.35 - 0.05), h / 2), "dark"))
    return Design(
        parts, "with a rectangular top and four legs", "长方形桌面，四条桌腿", {"top": "rectangular"}
    )


def lamp(rng: np.random.Generator) -> Design:
    """A tall floor lamp or a short desk lamp with a coloured cone shade."""
    tall = bool(rng.random() < 0.5)
    h = _j(rng, 1.6 if tall else 0.5)
    shade_r = _j(rng, 0.25 if tall else 0.15)
    parts = [
        cylinder(_j(rng, 0.18), 0.04, (0, 0, 0.02), "dark"),
        cylinder(0.02, h, (0, 0, h / 2), "metal"),
        lathe(
            [
                (0.0, h - 0.05),
                (shade_r, h - 0.05),
                (shade_r * 0.5, h + shade_r * 0.9),
                (0.0, h + shade_r * 0.9),
            ],
            "main",
        ),
    ]
    if tall:
        return Design(
            parts,
            "standing tall on a thin pole with a cone shade",
            "高高的落地灯，细灯杆配锥形灯罩",
            {"kind": "floor"},
        )
    return Design(parts, "for a desk with a cone shade", "台灯，配锥形灯罩", {"kind": "desk"})


def mug(rng: np.random.Generator) -> Design:
    """A cylindrical mug with a handle, tall or short."""
    tall = bool(rng.random() < 0.5)
    r, h = _j(rng, 0.4), _j(rng, 1.1 if tall else 0.7)
    parts = [
        lathe([(0, 0), (r, 0), (r, h), (r * 0.88, h), (r * 0.88, 0.08), (0, 0.08)], "main"),
        torus(h * 0.28, 0.05, (r + h * 0.18, 0, h * 0.5), "main", axis="y"),
    ]
    return Design(
        parts,
        "with a handle and a " + ("tall body" if tall else "short, wide body"),
        "带把手，" + ("杯身高" if tall else "杯身矮而宽"),
        {"height": "tall" if tall else "short"},
    )


def vase(rng: np.random.Generator) -> Design:
    """A slender or round-bellied vase."""
    slender = bool(rng.random() < 0.5)
    if slender:
        profile = [
            (0, 0),
            (0.2, 0),
            (0.25, 0.4),
            (0.15, 1.0),
            (0.12, 1.4),
            (0.18, 1.55),
            (0.14, 1.55),
            (0, 1.5),
        ]
    else:
        profile = [
            (0, 0),
            (0.25, 0),
            (0.55, 0.35),
            (0.5, 0.7),
            (0.2, 0.95),
            (0.25, 1.1),
            (0.2, 1.1),
            (0, 1.05),
        ]
    profile = [(_j(rng, x, 0.05), y) for x, y in profile]
    return Design(
        [lathe(profile, "main")],
        "that is slender and tall" if slender else "with a round belly",
        "细长高挑" if slender else "圆肚造型",
        {"shape": "slender" if slender else "round"},
    )


def car(rng: np.random.Generator) -> Design:
    """A sedan or a van on four dark wheels."""
    van = bool(rng.random() < 0.5)
    length, width = _j(rng, 2.0), _j(rng, 0.9)
    parts = [box((length, width, 0.35), (0, 0, 0.45), "main")]
    if van:
        parts.append(box((length * 0.75, width * 0.95, 0.55), (-length * 0.1, 0, 0.9), "main"))
    else:
        parts.append(box((length * 0.5, width * 0.9, 0.3), (-length * 0.05, 0, 0.77), "main"))
    parts.append(box((length * 0.02, width * 0.8, 0.2), (length / 2, 0, 0.5), "light"))
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append(cylinder(0.2, 0.12, (sx * length * 0.32, sy * width / 2, 0.22), "dark", axis="y"))
    if van:
        return Design(parts, "shaped like a tall van", "厢式面包车造型", {"body": "van"})
    return Design(parts, "shaped like a low sedan", "低矮轿车造型", {"body": "sedan"})


def tree(rng: np.random.Generator) -> Design:
    """A pine with stacked cone layers or a tree with a round crown, on a brown trunk."""
    pine = bool(rng.random() < 0.5)
    trunk_h = _j(rng, 0.5)
    parts = [cylinder(0.08, trunk_h, (0, 0, trunk_h / 2), "wood")]
    if pine:
        layers = int(rng.integers(2, 5))
        for i in range(layers):
            r = 0.5 * (1 - i / (layers + 1))
            parts.append(cone(r, 0.6, (0, 0, trunk_h + i * 0.35), "main"))
        en = f"shaped like a pine with {_number_en(layers)} layers of foliage"
        return Design(parts, en, f"松树造型，{_number_zh(layers)}层树冠", {"crown": "pine", "layers": layers})
    parts.append(sphere(_j(rng, 0.5), (0, 0, trunk_h + 0.4), "main"))
    return Design(parts, "with a round crown", "圆形树冠", {"crown": "round"})


def house(rng: np.random.Generator) -> Design:
    """A house with one or two floors, a gabled roof and a door, maybe a chimney."""
    floors = int(rng.integers(1, 3))
    w, d = _j(rng, 1.4), _j(rng, 1.0)
    h = 0.7 * floors
    parts = [
        box((w, d, h), (0, 0, h / 2), "main"),
        prism_roof(w * 1.15, d * 1.1, _j(rng, 0.6), h, "roof"),
        box((0.25, 0.02, 0.45), (0, -d / 2 - 0.01, 0.225), "wood"),
    ]
    chimney = bool(rng.random() < 0.5)
    if chimney:
        parts.append(box((0.15, 0.15, 0.5), (w * 0.25, 0, h + 0.35), "roof"))
    storeys = "one floor" if floors == 1 else "two floors"
    en = f"with {storeys}, a gabled roof and a chimney" if chimney else f"with {storeys} and a gabled roof"
    zh = f"{'单层' if floors == 1 else '两层'}，人字形屋顶" + ("，带烟囱" if chimney else "")
    return Design(parts, en, zh, {"floors": floors, "chimney": chimney})


def rocket(rng: np.random.Generator) -> Design:
    """A rocket body with a nose cone and three or four fins."""
    fins = int(rng.choice([3, 4]))
    h, r = _j(rng, 1.6), _j(rng, 0.22)
    parts = [
        cylinder(r, h, (0, 0, h / 2 + 0.2), "main"),
        cone(r, _j(rng, 0.5), (0, 0, h + 0.2), "accent"),
        cone(r * 0.8, 0.2, (0, 0, 0.2), "dark", pointing="down"),
    ]
    for i in range(fins):
        a = 2 * np.pi * i / fins
        fin = box((0.4, 0.03, 0.4), (0, 0, 0), "accent")
        fin.mesh.apply_transform(_rot_z(a))
        fin.mesh.apply_translation([np.cos(a) * (r + 0.15), np.sin(a) * (r + 0.15), 0.4])
        parts.append(fin)
    return Design(
        parts,
        f"with a pointed nose and {'three' if fins == 3 else 'four'} fins",
        f"尖头，{'三' if fins == 3 else '四'}片尾翼",
        {"fins": fins},
    )


def bottle(rng: np.random.Generator) -> Design:
    """A bottle with a long or short neck and a dark cap."""
    long_neck = bool(rng.random() < 0.5)
    r = _j(rng, 0.3)
    body_h = _j(rng, 0.9)
    neck_h = 0.5 if long_neck else 0.15
    top = body_h + 0.15 + neck_h
    profile = [(0, 0), (r, 0), (r, body_h), (0.1, body_h + 0.15), (0.1, top), (0, top)]
    parts = [lathe(profile, "main"), cylinder(0.11, 0.1, (0, 0, top + 0.05), "dark")]
    return Design(
        parts,
        "with a long thin neck and a cap" if long_neck else "with a short neck and a cap",
        "细长瓶颈，带瓶盖" if long_neck else "短瓶颈，带瓶盖",
        {"neck": "long" if long_neck else "short"},
    )


def sofa(rng: np.random.Generator) -> Design:
    """A two- or three-seat sofa with arms and a back."""
    seats = int(rng.choice([2, 3]))
    w = 0.7 * seats
    parts = [box((w, 0.8, 0.4), (0, 0, 0.2), "main"), box((w, 0.2, 0.5), (0, 0.3, 0.65), "main")]
    for sx in (-1, 1):
        parts.append(box((0.2, 0.8, 0.3), (sx * (w / 2 + 0.1), 0, 0.55), "main"))
    for i in range(seats):
        parts.append(box((0.66, 0.55, 0.1), (-w / 2 + 0.35 + 0.7 * i, -0.1, 0.45), "main"))
    return Design(
        parts,
        f"with {'two' if seats == 2 else 'three'} seat cushions",
        f"{'两' if seats == 2 else '三'}个坐垫",
        {"seats": seats},
    )


def bed(rng: np.random.Generator) -> Design:
    """A single or double bed: frame and headboard coloured, white mattress and pillows."""
    double = bool(rng.random() < 0.5)
    w, length = (1.6 if double else 0.95), _j(rng, 2.0, 0.05)
    parts = [
        box((w, length, 0.3), (0, 0, 0.15), "main"),
        box((w * 0.96, length * 0.95, 0.2), (0, 0, 0.4), "white"),
        box((w, 0.08, 0.9), (0, length / 2, 0.45), "main"),
    ]
    for i in range(2 if double else 1):
        x = 0 if not double else (-w / 4 if i == 0 else w / 4)
        parts.append(box((0.5, 0.3, 0.12), (x, length / 2 - 0.25, 0.56), "white"))
    return Design(
        parts,
        "of double size with two pillows" if double else "of single size with one pillow",
        "双人床，两个枕头" if double else "单人床，一个枕头",
        {"size": "double" if double else "single"},
    )


def boat(rng: np.random.Generator) -> Design:
    """A sailboat with a white sail or a motorboat with a cabin."""
    sail = bool(rng.random() < 0.5)
    length = _j(rng, 2.0)
    hull = ellipsoid((length / 2, 0.4, 0.3), (0, 0, 0.3), "main")
    hull.mesh.vertices[:, 2] = np.maximum(hull.mesh.vertices[:, 2], 0.3 - 0.3 * 0.2)  # flat deck line
    parts = [hull, box((length * 0.8, 0.7, 0.05), (0, 0, 0.3), "wood")]
    if sail:
        parts.append(cylinder(0.03, 1.6, (0, 0, 1.1), "wood"))
        tri = prism_roof(0.9, 0.02, 1.3, 0.45, "white")
        tri.mesh.apply_transform(_rot_z(np.pi / 2))
        tri.mesh.apply_translation([-0.45, 0, 0])
        parts.append(tri)
        return Design(parts, "with a mast and a white sail", "帆船，有桅杆和白色船帆", {"kind": "sailboat"})
    parts.append(box((length * 0.35, 0.5, 0.35), (-length * 0.1, 0, 0.5), "white"))
    return Design(parts, "with a motor and a white cabin", "摩托艇，带白色船舱", {"kind": "motorboat"})


def airplane(rng: np.random.Generator) -> Design:
    """A propeller plane or a jet with two engines under its wings."""
    jet = bool(rng.random() < 0.5)
    length = _j(rng, 2.4)
    parts = [
        ellipsoid((length / 2, 0.22, 0.22), (0, 0, 0.6), "main"),
        box((0.5, length * 0.95, 0.05), (0.1, 0, 0.58), "main"),
        box((0.3, 0.8, 0.04), (-length / 2 + 0.2, 0, 0.65), "main"),
        box((0.3, 0.04, 0.4), (-length / 2 + 0.2, 0, 0.85), "accent"),
    ]
    if jet:
        for sy in (-1, 1):
            parts.append(cylinder(0.1, 0.4, (0.15, sy * length * 0.22, 0.45), "dark", axis="x"))
        return Design(
            parts, "with two jet engines under the wings", "喷气式飞机，机翼下有两个引擎", {"engine": "jet"}
        )
    parts.append(box((0.04, 0.7, 0.1), (length / 2 + 0.02, 0, 0.6), "dark"))
    return Design(parts, "with a propeller on its nose", "螺旋桨飞机，机头有螺旋桨", {"engine": "propeller"})


def bench(rng: np.random.Generator) -> Design:
    """A slatted bench with or without a backrest."""
    backrest = bool(rng.random() < 0.5)
    w = _j(rng, 1.6)
    parts = [box((w, 0.12, 0.04), (0, -0.15 + 0.15 * i, 0.45), "main") for i in range(3)]
    for sx in (-1, 1):
        parts.append(box((0.06, 0.45, 0.45), (sx * (w / 2 - 0.1), 0, 0.225), "dark"))
    if backrest:
        parts += [box((w, 0.04, 0.1), (0, 0.22, 0.6 + 0.15 * i), "main") for i in range(2)]
        parts += [box((0.05, 0.05, 0.4), (sx * (w / 2 - 0.1), 0.22, 0.65), "dark") for sx in (-1, 1)]
    return Design(
        parts,
        "with wooden slats" + (" and a backrest" if backrest else " and no backrest"),
        "板条座面" + ("，带靠背" if backrest else "，无靠背"),
        {"backrest": backrest},
    )


def stool(rng: np.random.Generator) -> Design:
    """A round stool on three or four legs."""
    legs = int(rng.choice([3, 4]))
    h = _j(rng, 0.65)
    parts = [cylinder(_j(rng, 0.22), 0.06, (0, 0, h), "main")]
    for i in range(legs):
        a = 2 * np.pi * i / legs
        parts.append(cylinder(0.025, h, (np.cos(a) * 0.15, np.sin(a) * 0.15, h / 2), "dark"))
    return Design(
        parts,
        f"with a round seat on {'three' if legs == 3 else 'four'} legs",
        f"圆形凳面，{'三' if legs == 3 else '四'}条腿",
        {"legs": legs},
    )


def bookshelf(rng: np.random.Generator) -> Design:
    """A bookshelf with three to five shelves, some holding books."""
    shelves = int(rng.integers(3, 6))
    w, h = _j(rng, 1.0), 0.4 * shelves
    parts = [box((0.05, 0.35, h), (sx * w / 2, 0, h / 2), "main") for sx in (-1, 1)]
    parts.append(box((w, 0.03, h), (0, 0.17, h / 2), "main"))
    for i in range(shelves + 1):
        parts.append(box((w, 0.35, 0.04), (0, 0, i * 0.4), "main"))
    for i in range(shelves):
        count = int(rng.integers(3, 7))
        for b in range(count):
            x = -w / 2 + 0.08 + b * 0.1
            parts.append(box((0.07, 0.25, 0.28), (x, 0, i * 0.4 + 0.16), "book"))
    return Design(
        parts,
        f"with {_number_en(shelves)} shelves of books",
        f"{_number_zh(shelves)}层书架，摆满书",
        {"shelves": shelves},
    )


def snowman(rng: np.random.Generator) -> Design:
    """A snowman of two or three white balls with a coloured hat and scarf."""
    balls = int(rng.choice([2, 3]))
    radii = [0.5, 0.35, 0.25][:balls] if balls == 3 else [0.5, 0.33]
    z, parts = 0.0, []
    for r in radii:
        parts.append(sphere(r, (0, 0, z + r), "white"))
        z += r * 1.7
    head_r = radii[-1]
    head_z = z - head_r * 0.7
    parts += [
        cylinder(head_r * 0.8, 0.35, (0, 0, head_z + head_r + 0.12), "main"),
        cylinder(head_r * 1.2, 0.04, (0, 0, head_z + head_r - 0.05), "main"),
        torus(head_r * 0.85, 0.06, (0, 0, head_z - head_r * 0.75), "main"),
        cone(0.05, 0.25, (head_r * 0.95, 0, head_z), "carrot", pointing="x"),
    ]
    n_en, n_zh = ("two", "两") if balls == 2 else ("three", "三")
    return Design(
        parts,
        f"made of {n_en} snowballs",
        f"由{n_zh}个雪球堆成",
        {"balls": balls},
        template_en=f"a snowman made of {n_en} snowballs, wearing a {{material}} {{colour}} hat and scarf",
        template_zh=f"一个雪人，由{n_zh}个雪球堆成，戴着{{material}}的{{colour}}帽子和围巾",
    )


def mushroom(rng: np.random.Generator) -> Design:
    """A mushroom with a coloured cap, with or without white spots."""
    spots = bool(rng.random() < 0.5)
    cap_r, stem_h = _j(rng, 0.6), _j(rng, 0.6)
    cap = ellipsoid((cap_r, cap_r, cap_r * 0.6), (0, 0, stem_h), "main")
    cap.mesh.vertices[:, 2] = np.maximum(cap.mesh.vertices[:, 2], stem_h)
    parts = [cylinder(0.16, stem_h, (0, 0, stem_h / 2), "white"), cap]
    if spots:
        for i in range(7):
            a, el = 2 * np.pi * i / 7, 0.6 + 0.25 * (i % 2)
            p = (
                cap_r * np.cos(a) * np.cos(el),
                cap_r * np.sin(a) * np.cos(el),
                stem_h + cap_r * 0.6 * np.sin(el),
            )
            parts.append(sphere(0.07, p, "white"))
    return Design(
        parts,
        "with white spots on its cap" if spots else "with a smooth cap",
        "伞盖上有白色斑点" if spots else "伞盖光滑",
        {"spots": spots},
    )


def tower(rng: np.random.Generator) -> Design:
    """A round tower of two to four stacked levels and a cone roof."""
    levels = int(rng.integers(2, 5))
    z, r, parts = 0.0, _j(rng, 0.45), []
    for _ in range(levels):
        parts.append(cylinder(r, 0.6, (0, 0, z + 0.3), "main"))
        parts.append(cylinder(r * 1.08, 0.05, (0, 0, z + 0.6), "roof"))
        z, r = z + 0.6, r * 0.85
    parts.append(cone(r * 1.2, 0.6, (0, 0, z), "roof"))
    return Design(
        parts,
        f"with {_number_en(levels)} levels and a pointed roof",
        f"{_number_zh(levels)}层，尖顶",
        {"levels": levels},
    )


def bowl(rng: np.random.Generator) -> Design:
    """A deep or shallow bowl."""
    deep = bool(rng.random() < 0.5)
    r, h = _j(rng, 0.6), _j(rng, 0.45 if deep else 0.22)
    profile = [(0, 0), (r * 0.45, 0), (r * 0.9, h * 0.6), (r, h), (r * 0.93, h), (r * 0.42, 0.05), (0, 0.05)]
    return Design(
        [lathe(profile, "main")],
        "that is deep" if deep else "that is wide and shallow",
        "深碗" if deep else "宽而浅",
        {"depth": "deep" if deep else "shallow"},
    )


def cup(rng: np.random.Generator) -> Design:
    """A tapered cup without a handle, on a saucer or not."""
    saucer = bool(rng.random() < 0.5)
    r, h = _j(rng, 0.3), _j(rng, 0.7)
    parts = [lathe([(0, 0), (r * 0.7, 0), (r, h), (r * 0.92, h), (r * 0.63, 0.05), (0, 0.05)], "main")]
    if saucer:
        parts.append(cylinder(r * 1.7, 0.04, (0, 0, -0.02), "white"))
    return Design(
        parts,
        "that is tapered and has no handle" + (", standing on a white saucer" if saucer else ""),
        "杯身上宽下窄，无把手" + ("，放在白色碟子上" if saucer else ""),
        {"saucer": saucer},
    )


def robot(rng: np.random.Generator) -> Design:
    """A boxy robot on legs or on wheels, with an antenna."""
    wheels = bool(rng.random() < 0.5)
    parts = [
        box((0.6, 0.4, 0.7), (0, 0, 0.95), "main"),
        box((0.4, 0.35, 0.35), (0, 0, 1.5), "main"),
        sphere(0.05, (-0.1, -0.18, 1.55), "light"),
        sphere(0.05, (0.1, -0.18, 1.55), "light"),
        cylinder(0.015, 0.25, (0, 0, 1.8), "metal"),
        sphere(0.04, (0, 0, 1.93), "accent"),
    ]
    for sx in (-1, 1):
        parts.append(cylinder(0.06, 0.55, (sx * 0.38, 0, 0.95), "metal"))
    if wheels:
        parts.append(box((0.5, 0.35, 0.2), (0, 0, 0.5), "dark"))
        for sx in (-1, 1):
            parts.append(cylinder(0.2, 0.1, (sx * 0.3, 0, 0.2), "dark", axis="x"))
        return Design(
            parts, "rolling on wheels, with an antenna", "靠轮子移动，头上有天线", {"moves": "wheels"}
        )
    for sx in (-1, 1):
        parts.append(cylinder(0.08, 0.6, (sx * 0.15, 0, 0.3), "metal"))
    return Design(
        parts, "standing on two legs, with an antenna", "用两条腿站立，头上有天线", {"moves": "legs"}
    )


def fence(rng: np.random.Generator) -> Design:
    """A fence section of four to seven posts, with pointed or flat tops."""
    posts = int(rng.integers(4, 8))
    pointed = bool(rng.random() < 0.5)
    spacing, h = 0.3, _j(rng, 0.8)
    width = spacing * (posts - 1)
    parts = []
    for i in range(posts):
        x = -width / 2 + i * spacing
        parts.append(box((0.08, 0.05, h), (x, 0, h / 2), "main"))
        if pointed:
            parts.append(cone(0.06, 0.15, (x, 0, h), "main", sections=4))
    for z in (h * 0.3, h * 0.75):
        parts.append(box((width + 0.2, 0.03, 0.08), (0, 0.04, z), "main"))
    return Design(
        parts,
        f"with {_number_en(posts)} {'pointed' if pointed else 'flat-topped'} posts",
        f"{_number_zh(posts)}根{'尖头' if pointed else '平头'}木桩",
        {"posts": posts, "pointed": pointed},
    )


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)


_EN_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven"}
_ZH_NUMBERS = {2: "两", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七"}


def _number_en(n: int) -> str:
    return _EN_NUMBERS.get(n, str(n))


def _number_zh(n: int) -> str:
    return _ZH_NUMBERS.get(n, str(n))


CATEGORIES: list[Category] = [
    Category("chair", "chair", "椅子", "把", chair),
    Category("table", "table", "桌子", "张", table),
    Category("lamp", "lamp", "灯", "盏", lamp),
    Category("mug", "mug", "马克杯", "个", mug),
    Category("vase", "vase", "花瓶", "个", vase),
    Category("car", "car", "汽车", "辆", car),
    Category("tree", "tree", "树", "棵", tree),
    Category("house", "house", "房子", "座", house),
    Category("rocket", "rocket", "火箭", "枚", rocket),
    Category("bottle", "bottle", "瓶子", "个", bottle),
    Category("sofa", "sofa", "沙发", "张", sofa),
    Category("bed", "bed", "床", "张", bed),
    Category("boat", "boat", "船", "艘", boat),
    Category("airplane", "airplane", "飞机", "架", airplane),
    Category("bench", "bench", "长椅", "张", bench),
    Category("stool", "stool", "凳子", "个", stool),
    Category("bookshelf", "bookshelf", "书架", "个", bookshelf),
    Category("snowman", "snowman", "雪人", "个", snowman),
    Category("mushroom", "mushroom", "蘑菇", "个", mushroom),
    Category("tower", "tower", "塔", "座", tower),
    Category("bowl", "bowl", "碗", "个", bowl),
    Category("cup", "cup", "杯子", "个", cup),
    Category("robot", "robot", "机器人", "个", robot),
    Category("fence", "fence", "栅栏", "段", fence),
]
