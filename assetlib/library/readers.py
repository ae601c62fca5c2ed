"""Readers for real Objaverse data (Cap3D captions, G-Objaverse renders, index map, quality list,
annotations through `metadata`).

The generated demo library is written in the same formats, so it is read by this code unchanged.
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from PIL import Image

from assetlib.config import Settings
from assetlib.library.asset import Asset
from assetlib.library.metadata import AssetMetadata, MetadataSources, read_metadata
from assetlib.library.view_index import Entry, choice_key, index_path, scan_folder, scan_tree, views_folder
from assetlib.logs import progress
from assetlib.media.views import View, select_views
from assetlib.records import Failure

log = logging.getLogger(__name__)

VIEW_DIR = re.compile(r"^\d{5}$")
J = TypeVar("J", dict, list)  # the JSON container a library file must hold


@dataclass(frozen=True)
class LibrarySource:
    """Where a library's files are; each defaults to its usual name under `root`."""

    root: Path
    captions_en: Path | None = None
    captions_cn: Path | None = None
    cap3d_csv: Path | None = None
    index_map: Path | None = None
    quality_list: Path | None = None
    renders: Path | None = None
    glbs: Path | None = None
    attributes: Path | None = None

    @classmethod
    def at(cls, root: str | Path, **paths: str | Path | None) -> LibrarySource:
        """A source rooted at `root`, with standard file names for anything not given."""
        root = Path(root)
        defaults = {
            "captions_en": "text_captions_cap3d.json",
            "captions_cn": "text_captions_cap3d_cn.json",
            "index_map": "gobjaverse_280k_index_to_objaverse.json",
            "quality_list": "kiui_gobj_merged.json",
            "renders": "renders",
            "glbs": "glbs",
            "attributes": "attributes.json",
        }
        resolved: dict[str, Path | None] = {}
        for key in (
            "captions_en",
            "captions_cn",
            "cap3d_csv",
            "index_map",
            "quality_list",
            "renders",
            "glbs",
            "attributes",
        ):
            given = paths.get(key)
            if given is not None:
                resolved[key] = Path(given)
            elif key in defaults and (root / defaults[key]).exists():
                resolved[key] = root / defaults[key]
            else:
                resolved[key] = None
        return cls(root, **resolved)


@dataclass
class LibraryRead:
    """Assets read from a source, the ones skipped with reasons, and counts for the log."""

    assets: list[Asset]
    failures: list[Failure] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class LibraryError(ValueError):
    """A library-level file (captions, index map) that is missing or unreadable."""


def _read_json(path: Path, kind: type[J], what: str) -> J:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LibraryError(f"{what} not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise LibraryError(f"{what} {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, kind):
        raise LibraryError(f"{what} {path} must be a JSON {kind.__name__}, not {type(data).__name__}")
    return data


def read_captions_json(path: Path) -> dict[str, str]:
    """Cap3D-style captions: one JSON object keyed by G-Objaverse id ("0/10002")."""
    data = _read_json(path, dict, "captions file")
    return {str(k): str(v).strip() for k, v in data.items() if isinstance(v, str) and v.strip()}


def read_index_map(path: Path) -> dict[str, str]:
    """G-Objaverse id → GLB path under the Objaverse glbs folder ("000-000/<uid>.glb")."""
    data = _read_json(path, dict, "index map")
    return {str(k): str(v) for k, v in data.items()}


def uid_of(glb_relpath: str) -> str:
    """The Objaverse uid of an index-map entry: the file stem (not always 32 hex characters)."""
    return Path(glb_relpath).stem


def read_cap3d_csv(path: Path) -> dict[str, str]:
    """Cap3D's headerless `uid,caption` CSV (captions contain commas); uid → caption."""
    captions: dict[str, str] = {}
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) >= 2 and row[0].strip() and row[1].strip():
                    captions[row[0].strip()] = ",".join(row[1:]).strip() if len(row) > 2 else row[1].strip()
    except FileNotFoundError:
        raise LibraryError(f"Cap3D CSV not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise LibraryError(f"Cap3D CSV {path} is not readable: {exc}") from exc
    return captions


def read_quality_list(path: Path) -> set[str]:
    """The high-quality id list (a JSON list of G-Objaverse ids)."""
    return {str(x) for x in _read_json(path, list, "quality list")}


def find_views(render_root: Path, asset_id: str) -> tuple[list[View], list[str]]:
    """All views of an asset in either layout (with or without campos_512_v4); also per-view problems."""
    return scan_folder(render_root, asset_id)


def image_is_intact(path: Path) -> str | None:
    """None when a PNG decodes in full, else why not (truncated, corrupt, empty)."""
    try:
        with Image.open(path) as image:
            image.load()  # verify() misses truncation in the last chunk; a full decode does not
        return None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError… for bad files
        return f"{type(exc).__name__}: {exc}"


def choose_views(
    views: list[View],
    count: int,
    verify: bool,
    intact: Callable[[View], str | None] | None = None,
) -> tuple[list[View], list[str]]:
    """Select `count` views evenly in azimuth, replacing any that do not decode when `verify` is on
    (`intact` says whether one does: a full decode unless told otherwise)."""
    check = intact or (lambda view: image_is_intact(view.image))
    remaining, problems = list(views), list[str]()
    while True:
        chosen = select_views(remaining, count)
        if not verify:
            return chosen, problems
        bad = [(v, why) for v in chosen if (why := check(v)) is not None]
        if not bad:
            return chosen, problems
        for view, why in bad:
            problems.append(f"view {view.index:05d}: unreadable image ({why})")
            remaining.remove(view)


@dataclass(frozen=True)
class ViewChoice:
    """`choose_views` with `count` and `verify` fixed, as index entries record it (picklable)."""

    count: int
    verify: bool

    def __call__(self, views: list[View], intact: dict[int, str | None]) -> tuple[list[int], list[str]]:
        """The chosen view indices and decode problems; decode checks are read from and added to `intact`."""

        def check(view: View) -> str | None:
            if view.index not in intact:
                intact[view.index] = image_is_intact(view.image)
            return intact[view.index]

        chosen, problems = choose_views(views, self.count, self.verify, check)
        return [v.index for v in chosen], problems

    def decode(self, image: Path) -> str | None:
        """None when the image decodes in full, else why not."""
        return image_is_intact(image)


def read_library(
    source: LibrarySource,
    max_assets: int | None = None,
    num_views: int = 8,
    verify_images: bool = True,
    workers: int = 1,
    index_file: Path | None = None,
    rescan: bool = False,
) -> LibraryRead:
    """Read Asset records: captions (JSON, or CSV mapped through the index), views, GLB, quality, attributes.

    Assets with no English caption or no usable view become failure rows; one bad asset never
    ends the run. Ids are read in sorted order, so MAX_ASSETS picks the same assets every time.
    Render folders are scanned by `workers` processes and remembered in `index_file` (`view_index`).
    """
    started = time.perf_counter()
    index = read_index_map(source.index_map) if source.index_map else {}
    captions_en = read_captions_json(source.captions_en) if source.captions_en else {}
    if source.cap3d_csv:
        by_uid = {uid_of(path): asset_id for asset_id, path in index.items()}
        csv_captions = read_cap3d_csv(source.cap3d_csv)
        mapped = {by_uid[uid]: text for uid, text in csv_captions.items() if uid in by_uid}
        log.info("Cap3D CSV: %d captions, %d mapped to ids through the index", len(csv_captions), len(mapped))
        captions_en = {**mapped, **captions_en}  # the JSON wins where both have an id
    if not captions_en:
        raise LibraryError(
            f"no English captions found under {source.root} (text_captions_cap3d.json or a Cap3D CSV)"
        )
    captions_cn = read_captions_json(source.captions_cn) if source.captions_cn else {}
    quality = read_quality_list(source.quality_list) if source.quality_list else set()
    attributes = _read_json(source.attributes, dict, "attributes file") if source.attributes else {}

    ids = sorted(captions_en)
    if max_assets is not None:
        ids = ids[:max_assets]
    uids = {asset_id: uid_of(index[asset_id]) for asset_id in ids if asset_id in index}
    metadata = read_metadata(MetadataSources.at(source.root), set(uids.values()))
    assets, failures = [], []
    counts = {
        "captions_en": len(ids),
        "captions_cn": 0,
        "glb": 0,
        "high_quality": 0,
        "with_metadata": 0,
        "view_problems": 0,
    }
    scans: dict[str, Entry | None] = {}
    wanted = choice_key(num_views, verify_images)
    if source.renders is not None:
        with progress(total=len(ids), desc="scan renders", unit="asset", disable=len(ids) < 2000) as bar:
            scans, stats = scan_tree(
                source.renders,
                ids,
                ViewChoice(num_views, verify_images),
                index_file=index_file,
                workers=workers,
                rescan=rescan,
                progress=bar.update,
            )
        counts.update(
            folders_from_index=stats.reused,
            folders_decode_checked=stats.checked,
            folders_scanned=stats.scanned,
            folders_missing=stats.missing,
        )
    for asset_id in ids:
        view_paths: tuple[Path, ...] = ()
        if source.renders is not None:
            entry = scans.get(asset_id)
            if entry is None:
                base, _ = views_folder(source.renders, asset_id)
                counts["view_problems"] += 1
                failures.append(Failure(asset_id, "read", f"no render folder {base}"))
                continue
            chosen, more = entry.chosen[wanted]
            problems = [*entry.problems, *more]
            counts["view_problems"] += len(problems)
            if not chosen:
                failures.append(Failure(asset_id, "read", "; ".join(problems) or "no views"))
                continue
            for problem in problems:
                log.debug("%s: %s", asset_id, problem)
            view_paths = entry.images(source.renders, asset_id, chosen)
        glb = None
        if asset_id in index and source.glbs is not None:
            candidate = source.glbs / index[asset_id]
            if candidate.exists():
                glb = candidate
                counts["glb"] += 1
        attrs = attributes.get(asset_id, {}) if isinstance(attributes, dict) else {}
        caption_cn = captions_cn.get(asset_id)
        counts["captions_cn"] += caption_cn is not None
        counts["high_quality"] += asset_id in quality
        meta = metadata.get(uids.get(asset_id, ""), AssetMetadata())
        counts["with_metadata"] += not meta.is_empty()
        assets.append(
            Asset(
                asset_id=asset_id,
                objaverse_uid=uids.get(asset_id),
                caption_en=captions_en[asset_id],
                caption_cn=caption_cn,
                view_paths=view_paths,
                glb_path=glb,
                high_quality=asset_id in quality,
                tags=meta.tags
                or tuple(str(attrs[k]) for k in ("category", "colour", "material") if k in attrs),
                attributes=attrs,
                name=meta.name,
                license=meta.license,
                categories=meta.categories,
                lvis=meta.lvis,
                face_count=meta.face_count,
                vertex_count=meta.vertex_count,
                like_count=meta.like_count,
                public_views=meta.public_views,
                glb_relpath=index.get(asset_id),
            )
        )
    counts["assets"] = len(assets)
    counts["failures"] = len(failures)
    log.info(
        "read %d assets from %s in %.1fs (%d with Chinese captions, %d with GLB, %d high quality); "
        "%d skipped, %d view problems",
        len(assets),
        source.root,
        time.perf_counter() - started,
        counts["captions_cn"],
        counts["glb"],
        counts["high_quality"],
        len(failures),
        counts["view_problems"],
    )
    return LibraryRead(assets, failures, counts)


def default_library_root(home: Path) -> Path:
    """Where the library lives unless told otherwise: the demo library under ASSETLIB_HOME."""
    return Path(home) / "libraries" / "demo"


def open_library(
    settings: Settings,
    root: str | Path | None = None,
    verify_images: bool = True,
    rescan: bool = False,
) -> LibraryRead:
    """Read the library at `root` (default: the demo library) as the settings say: MAX_ASSETS assets at
    most, VIEWS_PER_ASSET views each. The one recipe every stage, command and notebook uses."""
    folder = Path(root).expanduser() if root else default_library_root(settings.home)
    return read_library(
        LibrarySource.at(folder),
        max_assets=settings.max_assets,
        num_views=settings.views_per_asset,
        verify_images=verify_images,
        workers=settings.reader_workers,
        index_file=index_path(settings.home, folder / "renders"),
        rescan=rescan,
    )
