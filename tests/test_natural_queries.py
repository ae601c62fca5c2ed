"""The demo's natural-language query set: covers every category in both languages, never names its own
category, shares no phrasing with the caption generator, and is read by no training code."""

from __future__ import annotations

import re
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np

from assetlib.library.demo.generator import COLOURS, MATERIALS
from assetlib.library.demo.natural_queries import NATURAL_QUERIES
from assetlib.library.demo.objects import CATEGORIES

# Near-synonyms that are "just the noun" (or the captions' sub-type nouns), kept out of a
# category's own queries on top of noun_en / noun_zh. English: word prefixes; Chinese: substrings.
OWN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "chair": ("armchair", "recliner"),
    "table": ("desk",),
    "lamp": ("lantern", "light bulb", "台灯", "落地"),
    "mug": ("cup", "杯"),
    "vase": ("urn", "瓶"),
    "car": ("automobile", "sedan", "van", "车"),
    "tree": ("pine", "oak", "松"),
    "house": ("cottage", "home", "房", "屋"),
    "rocket": ("missile", "导弹"),
    "bottle": ("flask", "瓶"),
    "sofa": ("couch", "settee", "沙"),
    "bed": ("bunk", "crib", "卧"),
    "boat": ("ship", "yacht", "舟", "艇"),
    "airplane": ("plane", "jet", "aircraft", "飞机", "客机"),
    "bench": ("pew",),
    "stool": ("凳",),
    "bookshelf": ("shelf", "shelves", "bookcase", "书柜"),
    "snowman": ("snowball", "雪"),
    "mushroom": ("toadstool", "fungus", "fungi", "菌", "菇"),
    "tower": ("turret", "spire", "steeple", "lighthouse"),
    "bowl": ("basin",),
    "cup": ("mug", "teacup", "杯"),
    "robot": ("android", "droid", "机器"),
    "fence": ("railing", "palisade", "篱", "栏"),
}

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "with",
        "and",
        "of",
        "on",
        "in",
        "for",
        "to",
        "its",
        "is",
        "that",
        "has",
        "no",
        "at",
        "or",
        "it",
    ]
)


def is_zh(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def test_natural_queries_are_honest() -> None:
    """Every rule of the set (see the module docstring of natural_queries.py), each breach listed."""

    by_name = {c.name: c for c in CATEGORIES}
    problems: list[str] = []

    def word_re(word: str, plural: bool = True) -> re.Pattern[str]:
        return re.compile(rf"\b{re.escape(word)}{'(?:e?s)?' if plural else ''}\b", re.IGNORECASE)

    # Caption phrasing: every English content bigram and every Chinese 3-character run of the
    # caption details and templates, over many seeds of every builder.
    cap_en_bigrams: set[tuple[str, str]] = set()
    cap_zh_trigrams: set[str] = set()
    for cat in CATEGORIES:
        for seed in range(40):
            d = cat.build(np.random.default_rng(seed))
            en_texts = [d.detail_en, d.template_en or ""]
            zh_texts = [d.detail_zh, d.template_zh or ""]
            for text in en_texts:
                words = re.findall(r"[a-z]+", text.lower())
                for a, b in pairwise(words):
                    if not (a in STOPWORDS and b in STOPWORDS) and "{" not in a + b:
                        cap_en_bigrams.add((a, b))
            for text in zh_texts:
                for chunk in re.split(r"[，,{}]", text):
                    cap_zh_trigrams.update(chunk[i : i + 3] for i in range(len(chunk) - 2))
    cap_zh_trigrams = {t for t in cap_zh_trigrams if len(t) == 3}

    colour_en = [word_re(c, plural=False) for c in COLOURS]
    colour_zh = [zh for _, zh in COLOURS.values()]
    material_words = [m[2] for m in MATERIALS.values()] + ["metal"]
    material_zh = [m[3] for m in MATERIALS.values()] + ["金属"]

    seen: set[tuple[str, str]] = set()
    coverage: Counter[tuple[str, str]] = Counter()
    multi = []
    for lang, text, relevant in NATURAL_QUERIES:
        where = f"[{lang}] {text!r}"
        if lang not in ("en", "zh"):
            problems.append(f"{where}: unknown language")
            continue
        if (lang, text) in seen:
            problems.append(f"{where}: duplicate")
        seen.add((lang, text))
        if is_zh(text) != (lang == "zh"):
            problems.append(f"{where}: language does not match the text")
        if not relevant or len(set(relevant)) != len(relevant):
            problems.append(f"{where}: empty or repeated relevant categories")
        if len(relevant) > 1:
            multi.append((lang, text, relevant))
        size = len(text.split()) if lang == "en" else len(re.sub(r"\W", "", text))
        if (lang == "en" and not 3 <= size <= 10) or (lang == "zh" and not 4 <= size <= 14):
            problems.append(f"{where}: length {size} outside the typed-query range")
        for name in relevant:
            if name not in by_name:
                problems.append(f"{where}: {name!r} is not a demo category")
                continue
            coverage[(lang, name)] += 1
            cat = by_name[name]
            # own noun (substring: no "bedroom", "street" ... either) and own near-synonyms
            if cat.noun_en.lower() in text.lower() or cat.noun_zh in text:
                problems.append(f"{where}: contains its own noun ({cat.noun_en} / {cat.noun_zh})")
            for syn in OWN_SYNONYMS.get(name, ()):
                hit = syn in text if is_zh(syn) else re.search(rf"\b{re.escape(syn)}", text, re.I)
                if hit:
                    problems.append(f"{where}: contains {syn!r}, a near-synonym of {name}")
        # no other category's noun either (English whole word, Chinese substring)
        for cat in CATEGORIES:
            if cat.name in relevant:
                continue
            if (lang == "en" and word_re(cat.noun_en).search(text)) or (lang == "zh" and cat.noun_zh in text):
                problems.append(f"{where}: mentions another category's noun ({cat.name})")
        # no colours, no material adjectives
        if any(p.search(text) for p in colour_en) or any(c in text for c in colour_zh):
            problems.append(f"{where}: mentions a colour")
        material_en_hit = any(word_re(m, plural=False).search(text) for m in material_words)
        if material_en_hit or any(m in text for m in material_zh):
            problems.append(f"{where}: mentions a material adjective")
        # no caption phrasing
        if lang == "en":
            words = re.findall(r"[a-z]+", text.lower())
            shared = set(pairwise(words)) & cap_en_bigrams
        else:
            shared = {text[i : i + 3] for i in range(len(text) - 2)} & cap_zh_trigrams
        if shared:
            problems.append(f"{where}: shares caption phrasing {sorted(shared)}")

    for lang in ("en", "zh"):
        for cat in CATEGORIES:
            if coverage[(lang, cat.name)] < 2:
                problems.append(f"{cat.name}: only {coverage[(lang, cat.name)]} {lang} queries (need 2)")

    counts = Counter(lang for lang, _, _ in NATURAL_QUERIES)
    total = len(NATURAL_QUERIES)
    print(f"queries: {total} (en {counts['en']}, zh {counts['zh']}); categories {len(CATEGORIES)}")
    for lang in ("en", "zh"):
        per = [coverage[(lang, c.name)] for c in CATEGORIES]
        print(f"  {lang}: per-category coverage min {min(per)}, max {max(per)}")
    print(f"multi-category queries: {len(multi)}")
    for lang, text, relevant in multi:
        print(f"  [{lang}] {text} -> {', '.join(relevant)}")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  " + p)
        raise AssertionError("\n".join(problems))
    print("self-check passed")


def test_no_training_code_reads_the_natural_queries() -> None:
    """Nothing under assetlib/train or the caption generator imports the evaluation's phrasings."""
    root = Path(__file__).resolve().parent.parent / "assetlib"
    for path in [*(root / "train").rglob("*.py"), *(root / "library").rglob("*.py")]:
        if path.name == "natural_queries.py":
            continue
        assert "natural_queries" not in path.read_text(encoding="utf-8"), path
