"""The scan of a G-Objaverse render tree, in parallel, remembered between reads.

Reading 280k assets × 40 views means 11M files and as many camera JSONs; a second read of the
same tree should not pay that again. Each asset folder's scan (its views with camera angles, the
problems found, and the decode checks done) is kept in an index under ASSETLIB_HOME, keyed by the
modification times of the asset folder and of its views folder: a later read stats two folders
per asset and rescans only those whose times changed (views added, removed or renamed). A file
rewritten in place changes no folder's time, so it is not noticed: `rescan=True`
(`assetlib library read --rescan`) reads everything again. A corrupt index is ignored, with a
warning, and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from assetlib.media.views import CAMPOS_DIR, CameraError, View, read_view

log = logging.getLogger(__name__)

FORMAT = 1  # bump when Entry changes: an index of another format is rebuilt
CHUNK = 256  # asset folders per worker task: few enough tasks, small enough for a smooth progress bar
FolderKey = tuple[int, int]  # mtime_ns of the asset folder and of the folder holding its views


@dataclass
class Entry:
    """One asset folder's scan: its views (with camera angles), problems, and decode checks done."""

    key: FolderKey
    views: list[View]
    problems: list[str]
    intact: dict[int, str | None] = field(default_factory=dict)  # view index → None, or why not


def views_folder(render_root: Path, asset_id: str) -> tuple[Path, Path]:
    """(asset folder, the folder its view folders are in: campos_512_v4 when the tree has it)."""
    base = render_root.joinpath(*asset_id.split("/"))
    campos = base / CAMPOS_DIR
    return base, campos if campos.is_dir() else base


def folder_key(render_root: Path, asset_id: str) -> FolderKey | None:
    """The modification times that say whether an asset's views changed (None: no folder)."""
    base, folder = views_folder(render_root, asset_id)
    try:
        return (base.stat().st_mtime_ns, folder.stat().st_mtime_ns)
    except OSError:
        return None


def scan_folder(render_root: Path, asset_id: str) -> tuple[list[View], list[str]]:
    """All views of an asset in either layout (with or without campos_512_v4); also per-view problems."""
    base, folder = views_folder(render_root, asset_id)
    if not folder.is_dir():
        return [], [f"no render folder {base}"]
    views, problems = [], []
    with os.scandir(folder) as entries:  # one listing; the view folders' names say what is in them
        names = sorted(e.name for e in entries if len(e.name) == 5 and e.name.isdecimal() and e.is_dir())
    for name in names:
        image, camera = folder / name / f"{name}.png", folder / name / f"{name}.json"
        if not image.exists() or not camera.exists():
            problems.append(f"view {name}: missing {'image' if not image.exists() else 'camera JSON'}")
            continue
        try:
            views.append(read_view(int(name), image, camera))
        except CameraError as exc:
            problems.append(f"view {name}: {exc}")
    return views, problems


class Check(Protocol):
    """The decode checks a view choice needs (picklable: it runs in worker processes)."""

    def missing(self, views: list[View], known: dict[int, str | None]) -> bool:
        """Whether choosing among `views` needs a check that `known` does not hold."""
        ...

    def __call__(self, views: list[View], known: dict[int, str | None]) -> dict[int, str | None]:
        """`known` plus the checks the choice needs: view index → None when it decodes, else why not."""
        ...


def _scan_chunk(
    render_root: Path, items: Sequence[tuple[str, Entry | None]], check: Check | None
) -> list[tuple[str, Entry | None]]:
    """Scan each asset folder, or, given its still-valid entry, only add the decode checks it lacks."""
    out: list[tuple[str, Entry | None]] = []
    for asset_id, entry in items:
        if entry is not None:
            if check is not None:
                entry.intact = check(entry.views, entry.intact)
            out.append((asset_id, entry))
            continue
        key = folder_key(render_root, asset_id)  # before the listing: a change during it shows next time
        if key is None:
            out.append((asset_id, None))
            continue
        views, problems = scan_folder(render_root, asset_id)
        out.append((asset_id, Entry(key, views, problems, check(views, {}) if check is not None else {})))
    return out


def index_path(home: Path, render_root: Path) -> Path:
    """Where the index of a render tree lives: under ASSETLIB_HOME, so a read-only tree works too."""
    digest = hashlib.blake2b(str(render_root.resolve()).encode(), digest_size=8).hexdigest()
    return home / "cache" / "view_index" / f"{digest}.pkl"


def load_index(path: Path | None, render_root: Path) -> dict[str, Entry]:
    """The index at `path` if it is one of this tree's, in this format; else empty."""
    if path is None or not path.is_file():
        return {}
    try:
        with path.open("rb") as f:
            stored = pickle.load(f)  # our own cache file, under ASSETLIB_HOME
        if stored.get("format") != FORMAT or stored.get("root") != str(render_root.resolve()):
            log.info("view index %s is of another tree or format: rebuilding it", path)
            return {}
        return dict(stored["entries"])
    except Exception as exc:  # truncated, corrupt, not ours: never fatal
        log.warning(
            "ignoring the unreadable view index %s (%s: %s); rebuilding it", path, type(exc).__name__, exc
        )
        return {}


def save_index(path: Path, render_root: Path, entries: dict[str, Entry]) -> None:
    """Write the index atomically (a killed write leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        pickle.dump(
            {"format": FORMAT, "root": str(render_root.resolve()), "entries": entries},
            f,
            protocol=pickle.HIGHEST_PROTOCOL,
        )
    tmp.replace(path)


@dataclass
class ScanStats:
    """What a scan did: asset folders reused from the index, (re)scanned, missing, and decode-checked."""

    reused: int = 0
    scanned: int = 0
    missing: int = 0
    checked: int = 0  # reused folders whose views needed decode checks the index did not hold
    seconds: float = 0.0
    workers: int = 1


def _chunks(items: list[tuple[str, Entry | None]], size: int) -> Iterator[list[tuple[str, Entry | None]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _executor(kind: Literal["process", "thread"], workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    import multiprocessing

    # Spawned, not forked: the caller may hold threads (a kernel's, a DB pool's).
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def scan_tree(
    render_root: Path,
    asset_ids: Sequence[str],
    index_file: Path | None = None,
    workers: int = 1,
    check: Check | None = None,
    rescan: bool = False,
    progress: Callable[[int], object] | None = None,
    pool: Literal["process", "thread"] = "process",
) -> tuple[dict[str, Entry | None], ScanStats]:
    """Each asset's scan (None: no render folder), from the index where its folders are unchanged,
    else scanned again, `workers` at a time; the index is updated when anything changed.

    Processes by default: listing and camera JSON parsing hold the GIL (benchmarks/reader_bench.py).
    """
    started = time.perf_counter()
    stats = ScanStats(workers=max(1, workers))
    known = {} if rescan else load_index(index_file, render_root)
    result: dict[str, Entry | None] = {}
    todo: list[tuple[str, Entry | None]] = []  # (id, None): scan the folder; (id, entry): only check
    for asset_id in asset_ids:
        entry = known.get(asset_id)
        if entry is None or entry.key != folder_key(render_root, asset_id):
            todo.append((asset_id, None))
            continue
        stats.reused += 1
        if check is not None and check.missing(entry.views, entry.intact):
            todo.append((asset_id, entry))
            stats.checked += 1
        else:
            result[asset_id] = entry
            if progress:
                progress(1)
    if todo and stats.workers > 1 and len(todo) > CHUNK:
        with _executor(pool, stats.workers) as executor:
            chunks = list(_chunks(todo, CHUNK))
            parts = executor.map(_scan_chunk, [render_root] * len(chunks), chunks, [check] * len(chunks))
            for part in parts:
                _take(part, result, stats, progress)
    else:
        for chunk in _chunks(todo, CHUNK):
            _take(_scan_chunk(render_root, chunk, check), result, stats, progress)
    if index_file is not None and (todo or rescan):
        entries = {**known, **{k: v for k, v in result.items() if v is not None}}
        for asset_id, entry in result.items():
            if entry is None:
                entries.pop(asset_id, None)  # a folder that went away drops out
        try:
            save_index(index_file, render_root, entries)
        except OSError as exc:  # an unwritable home costs the next read a full scan, not this one
            log.warning("could not write the view index %s: %s", index_file, exc)
    stats.seconds = time.perf_counter() - started
    log.info(
        "scanned %s in %.1fs with %d %s workers: %d asset folders from the index (%d of them "
        "decode-checked), %d (re)scanned, %d missing",
        render_root,
        stats.seconds,
        stats.workers,
        pool,
        stats.reused,
        stats.checked,
        stats.scanned,
        stats.missing,
    )
    return result, stats


def _take(
    part: list[tuple[str, Entry | None]],
    result: dict[str, Entry | None],
    stats: ScanStats,
    progress: Callable[[int], object] | None,
) -> None:
    for asset_id, entry in part:
        if asset_id not in result:  # a reused entry sent only for decode checks is not a rescan
            stats.scanned += entry is not None
            stats.missing += entry is None
        result[asset_id] = entry
    if progress:
        progress(len(part))
