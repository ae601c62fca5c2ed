"""Readers for the public Objaverse metadata files, merged per asset into one record.

- Objaverse annotations: `metadata/000-000.json.gz` … `000-159.json.gz`, each one object `{uid: annotation}`
  (name, tags, categories, license, face/vertex/like/view counts, and much else that is not kept).
- LVIS annotations: `lvis-annotations.json.gz`, `{category: [uid, ...]}`, inverted here to uid → categories.
- G-Objaverse category annotation: `category_annotation.json`, a list of `{"object_index": "<uid>.glb",
  "label": "Daily-Used", ...}`.

A file that cannot be read at all raises `MetadataError`; a malformed entry inside a good file is coerced
when the intent is obvious ("12" → 12) or skipped with a DEBUG line, so one bad entry never loses a file.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import re
import time
import zlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

J = TypeVar("J", dict, list)  # the JSON container a metadata file must hold
_INTEGER = re.compile(r"[+-]?[0-9]+")

ANNOTATIONS_DIR = "metadata"
ANNOTATIONS_FILES = ("annotations.json.gz", "annotations.json")
LVIS_FILES = ("lvis-annotations.json.gz", "lvis-annotations.json")
GOBJAVERSE_CATEGORIES_FILE = "category_annotation.json"


class MetadataError(ValueError):
    """A metadata file that is missing, not JSON (or not gzip), or holds the wrong top-level type."""


@dataclass(frozen=True)
class AssetMetadata:
    """What is known about an asset besides captions and views: name, licence, tags, categories, counts."""

    name: str | None = None
    license: str | None = None
    tags: tuple[str, ...] = ()
    # Objaverse categories' names, then the G-Objaverse label, de-duplicated, order kept.
    categories: tuple[str, ...] = ()
    lvis: tuple[str, ...] = ()
    face_count: int | None = None
    vertex_count: int | None = None
    like_count: int | None = None
    # Objaverse's viewCount (Sketchfab page views), not the number of rendered views.
    public_views: int | None = None

    def is_empty(self) -> bool:
        """True when no field holds anything."""
        return self == _EMPTY


_EMPTY = AssetMetadata()


def _load_json(path: Path, kind: type[J], what: str) -> J:
    """The JSON container in `path` (gzip when the name ends in .gz), or a MetadataError saying why not."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetadataError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise MetadataError(f"{what} {path} is a directory, expected a JSON file") from None
    except gzip.BadGzipFile as exc:
        raise MetadataError(f"{what} {path} is not a gzip file: {exc}") from exc
    except (EOFError, zlib.error) as exc:
        raise MetadataError(f"{what} {path} is a truncated or corrupt gzip file: {exc}") from exc
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise MetadataError(f"{what} {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, kind):
        raise MetadataError(f"{what} {path} must hold a JSON {kind.__name__}, not {type(data).__name__}")
    return data


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _text(value: object, field: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        log.debug("%s: %s is a %s, not a string; left out", where, field, type(value).__name__)
        return None
    return value.strip() or None


def _count(value: object, field: str, where: str) -> int | None:
    """A non-negative count; integral floats and digit strings are taken as numbers."""
    number: int | None = None
    if value is None:
        return None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        log.debug("%s: %s %r is not a count; left out", where, field, value)
        return None
    if number < 0:
        log.debug("%s: %s %d is negative; left out", where, field, number)
        return None
    return number


def _names(value: object, field: str, where: str) -> list[str]:
    """The names in a list of `{"name": ..., "slug": ...}` objects (plain strings are taken as names)."""
    if value is None:
        return []
    if not isinstance(value, list):
        log.debug("%s: %s is a %s, not a list; left out", where, field, type(value).__name__)
        return []
    names = []
    for item in value:
        name = (item.get("name") or item.get("slug")) if isinstance(item, dict) else item
        if isinstance(name, str) and name.strip():
            names.append(name.strip())
        else:
            log.debug("%s: %s entry %r has no name; skipped", where, field, item)
    return names


def _annotation(raw: object, where: str) -> AssetMetadata | None:
    """One Objaverse annotation as a record, or None when it is not an object."""
    if not isinstance(raw, dict):
        log.debug("%s: annotation is a %s, not an object; skipped", where, type(raw).__name__)
        return None
    return AssetMetadata(
        name=_text(raw.get("name"), "name", where),
        license=_text(raw.get("license"), "license", where),
        tags=_unique(t.lower() for t in _names(raw.get("tags"), "tags", where)),
        categories=_unique(_names(raw.get("categories"), "categories", where)),
        face_count=_count(raw.get("faceCount"), "faceCount", where),
        vertex_count=_count(raw.get("vertexCount"), "vertexCount", where),
        like_count=_count(raw.get("likeCount"), "likeCount", where),
        public_views=_count(raw.get("viewCount"), "viewCount", where),
    )


def _annotation_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json.gz") if p.is_file())
        if not files:
            raise MetadataError(f"annotations directory {path} holds no .json.gz files")
        return files
    if not path.exists():
        raise MetadataError(f"annotations not found: {path}")
    return [path]


def read_objaverse_annotations(path: Path, uids: Collection[str] | None = None) -> dict[str, AssetMetadata]:
    """Annotations from a metadata/ dir of .json.gz files, one .json.gz or one .json; only `uids` if given."""
    path = Path(path)
    wanted = None if uids is None else set(uids)
    records: dict[str, AssetMetadata] = {}
    for file in _annotation_files(path):
        start = time.perf_counter()
        data = _load_json(file, dict, "annotations file")
        kept = 0
        for key, raw in data.items():
            uid = str(key)
            if wanted is not None and uid not in wanted:
                continue
            record = _annotation(raw, f"{file.name} {uid}")
            if record is None:
                continue
            if uid in records:
                log.debug("%s: %s already read from an earlier file; the earlier one is kept", file.name, uid)
                continue
            records[uid] = record
            kept += 1
        entries = len(data)
        del data  # one file's annotations in memory at a time
        log.info(
            "read annotations %s: %d entries, %d kept in %.2fs",
            file,
            entries,
            kept,
            time.perf_counter() - start,
        )
    return records


def read_lvis(path: Path) -> dict[str, tuple[str, ...]]:
    """LVIS categories per uid from lvis-annotations.json(.gz)."""
    path = Path(path)
    start = time.perf_counter()
    data: dict[Any, Any] = _load_json(path, dict, "LVIS annotations")
    per_uid: dict[str, set[str]] = {}
    for key, members in data.items():
        category = str(key).strip()
        if not category:
            log.debug("%s: empty category name; skipped", path.name)
            continue
        if not isinstance(members, list):
            log.debug(
                "%s: category %r holds a %s, not a list of uids; skipped",
                path.name,
                category,
                type(members).__name__,
            )
            continue
        for uid in members:
            if isinstance(uid, str) and uid.strip():
                per_uid.setdefault(uid.strip(), set()).add(category)
            else:
                log.debug(
                    "%s: category %r has a uid %r that is not a string; skipped", path.name, category, uid
                )
    log.info(
        "read LVIS annotations %s: %d categories, %d uids in %.2fs",
        path,
        len(data),
        len(per_uid),
        time.perf_counter() - start,
    )
    return {uid: tuple(sorted(categories)) for uid, categories in per_uid.items()}


def _gobjaverse_uid(object_index: str) -> str:
    """`<uid>.glb`, `<uid>` or `<shard>/<uid>.glb` → `<uid>` (only `.glb` is cut: uids may hold dots)."""
    return object_index.strip().rsplit("/", 1)[-1].removesuffix(".glb")


def read_gobjaverse_categories(path: Path) -> dict[str, str]:
    """G-Objaverse's category label per uid from category_annotation.json."""
    path = Path(path)
    start = time.perf_counter()
    data: list[Any] = _load_json(path, list, "G-Objaverse category annotation")
    labels: dict[str, str] = {}
    for item in data:
        if not isinstance(item, dict):
            log.debug("%s: entry %r is not an object; skipped", path.name, item)
            continue
        index, label = item.get("object_index"), item.get("label")
        uid = _gobjaverse_uid(index) if isinstance(index, str) else ""
        if not uid or not isinstance(label, str) or not label.strip():
            log.debug("%s: entry %r lacks an object_index or label; skipped", path.name, item)
            continue
        if uid in labels and labels[uid] != label.strip():
            log.debug("%s: %s labelled both %r and %r; the first is kept", path.name, uid, labels[uid], label)
            continue
        labels[uid] = label.strip()
    log.info(
        "read G-Objaverse categories %s: %d entries, %d kept in %.2fs",
        path,
        len(data),
        len(labels),
        time.perf_counter() - start,
    )
    return labels


def merge_metadata(
    base: AssetMetadata | None, lvis: tuple[str, ...] = (), label: str | None = None
) -> AssetMetadata:
    """One record from an annotation (or none), LVIS categories and the G-Objaverse label."""
    base = base or _EMPTY
    label = label.strip() if label else None
    return dataclasses.replace(
        base,
        categories=_unique((*base.categories, label)) if label else base.categories,
        lvis=_unique((*base.lvis, *lvis)),
    )


@dataclass(frozen=True)
class MetadataSources:
    """Where a library's metadata files are (each optional), found by their usual names under a root."""

    annotations: Path | None = None
    lvis: Path | None = None
    gobjaverse_categories: Path | None = None

    @classmethod
    def at(cls, root: str | Path) -> MetadataSources:
        """The metadata files found under `root` by their standard names (None for each one missing)."""
        root = Path(root)

        def first(*names: str) -> Path | None:
            return next((root / n for n in names if (root / n).is_file()), None)

        annotations = (
            root / ANNOTATIONS_DIR if (root / ANNOTATIONS_DIR).is_dir() else first(*ANNOTATIONS_FILES)
        )
        return cls(
            annotations=annotations,
            lvis=first(*LVIS_FILES),
            gobjaverse_categories=first(GOBJAVERSE_CATEGORIES_FILE),
        )


def read_metadata(sources: MetadataSources, uids: Collection[str]) -> dict[str, AssetMetadata]:
    """Every known field for the given uids, merged from whichever files exist; uids with none left out."""
    wanted = list(dict.fromkeys(uids))
    if not wanted:
        return {}
    annotations = read_objaverse_annotations(sources.annotations, wanted) if sources.annotations else {}
    lvis = read_lvis(sources.lvis) if sources.lvis else {}
    labels = (
        read_gobjaverse_categories(sources.gobjaverse_categories) if sources.gobjaverse_categories else {}
    )
    merged = {uid: merge_metadata(annotations.get(uid), lvis.get(uid, ()), labels.get(uid)) for uid in wanted}
    return {uid: record for uid, record in merged.items() if not record.is_empty()}
