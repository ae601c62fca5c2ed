"""The scan of a G-Objaverse render tree, in parallel, remembered between reads.

Reading 280k assets × 40 views means 11M files and as many camera JSONs; a second read of the
same tree should not pay that again. Each asset folder's scan is kept in an index (JSON lines
under ASSETLIB_HOME, keyed by the resolved render root, so a read-only tree works): the folder's
modification times, its complete views, the problems found, the decode checks done, and the views
chosen for each (views per asset, verify) a read asked for. A later read stats the asset folder and
its campos_512_v4 folder and rescans only assets whose times changed (views added, removed or
renamed), new ones, and ones asking for a choice the index does not hold (another view count:
the camera angles are not kept, to keep the index small). Removed folders drop out.

Limitation: a file rewritten in place (an image re-rendered, a camera JSON edited, a missing file
added inside an existing view folder) changes no folder time the index looks at, so it is not
noticed: `rescan=True` (`assetlib library read --rescan`) reads everything again. A corrupt or
partial index is ignored, with a warning, and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from assetlib.media.views import CAMPOS_DIR, CameraError, View, read_view, select_views

log = logging.getLogger(__name__)

FORMAT = 2  # bump when Entry changes: an index of another format is rebuilt
CHUNK = 256  # asset folders per worker task: few enough tasks, small enough for a smooth progress bar
FolderKey = tuple[int, int]  # mtime_ns of the asset folder and of its campos_512_v4 folder (0: none)
Choice = tuple[list[int], list[str]]  # view indices chosen, and the decode problems met choosing them


class Chooser(Protocol):
    """Chooses an asset's views (picklable: it runs in worker processes)."""

    @property
    def count(self) -> int:
        """Views per asset."""
        ...

    @property
    def verify(self) -> bool:
        """Whether chosen views must decode."""
        ...

    def __call__(self, views: list[View], intact: dict[int, str | None]) -> Choice:
        """The choice among `views`; decode checks are read from and added to `intact`."""
        ...

    def decode(self, image: Path) -> str | None:
        """None when the image decodes in full, else why not."""
        ...


def choice_key(count: int, verify: bool) -> str:
    """How an index entry names a choice: "8" for 8 views unverified, "8v" verified."""
    return f"{count}v" if verify else str(count)


@dataclass
class Entry:
    """One asset folder's scan: its complete views, problems, decode checks done and choices made."""

    key: FolderKey
    views: list[int]  # complete views (image and readable camera JSON), by index, ascending
    problems: list[str]
    intact: dict[int, str | None] = field(default_factory=dict)  # view index → None, or why not
    chosen: dict[str, Choice] = field(default_factory=dict)  # choice_key → choice

    @property
    def campos(self) -> bool:
        """Whether the views are under campos_512_v4 (the 280k layout)."""
        return self.key[1] != 0

    def images(self, render_root: Path, asset_id: str, indices: list[int]) -> tuple[Path, ...]:
        """The image paths of the given views."""
        folder = render_root.joinpath(*asset_id.split("/"))
        if self.campos:
            folder = folder / CAMPOS_DIR
        return tuple(folder / f"{i:05d}/{i:05d}.png" for i in indices)  # one child: half the parsing

    def to_json(self, asset_id: str) -> str:
        """One index line."""
        record = {
            "id": asset_id,
            "key": self.key,
            "views": self.views,
            "problems": self.problems,
            "intact": self.intact,
            "chosen": self.chosen,
        }
        return json.dumps(record, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_record(cls, r: dict) -> tuple[str, Entry]:
        """An index line's record back as (asset id, entry); raises on anything malformed."""
        key = (int(r["key"][0]), int(r["key"][1]))
        chosen = {str(k): ([int(i) for i in v[0]], [str(p) for p in v[1]]) for k, v in r["chosen"].items()}
        intact = {int(k): (None if v is None else str(v)) for k, v in r["intact"].items()}
        entry = cls(key, [int(i) for i in r["views"]], [str(p) for p in r["problems"]], intact, chosen)
        return str(r["id"]), entry


def views_folder(render_root: Path, asset_id: str) -> tuple[Path, Path]:
    """(asset folder, the folder its view folders are in: campos_512_v4 when the tree has it)."""
    base = render_root.joinpath(*asset_id.split("/"))
    campos = base / CAMPOS_DIR
    return base, campos if campos.is_dir() else base


def folder_key(render_root: Path, asset_id: str) -> FolderKey | None:
    """The modification times that say whether an asset's views changed (None: no folder)."""
    base = render_root.joinpath(*asset_id.split("/"))
    try:
        base_mtime = os.stat(base).st_mtime_ns
    except OSError:
        return None
    try:
        campos = os.stat(base / CAMPOS_DIR)
    except OSError:
        return (base_mtime, 0)
    return (base_mtime, campos.st_mtime_ns if stat.S_ISDIR(campos.st_mode) else 0)


def scan_folder(render_root: Path, asset_id: str) -> tuple[list[View], list[str]]:
    """All views of an asset in either layout (with or without campos_512_v4); also per-view problems."""
    base, folder = views_folder(render_root, asset_id)
    if not folder.is_dir():
        return [], [f"no render folder {base}"]
    views, problems = [], []
    with os.scandir(folder) as entries:  # one listing; d_type answers is_dir without a stat
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


def _resolve(
    render_root: Path, asset_id: str, entry: Entry | None, choose: Chooser
) -> tuple[Entry | None, bool]:
    """An entry that holds `choose`'s choice, and whether the folder had to be listed for it.

    A still-valid entry that holds the unverified choice gets the verified one by decoding those
    views alone, unless one fails: then, as for a new or changed folder, the camera JSONs are read.
    """
    unverified = choice_key(choose.count, False)
    if entry is not None and choose.verify and unverified in entry.chosen:
        picked = entry.chosen[unverified][0]
        images = entry.images(render_root, asset_id, picked)
        for index, image in zip(picked, images, strict=True):
            if index not in entry.intact:
                entry.intact[index] = choose.decode(image)
        if all(entry.intact[i] is None for i in picked):
            entry.chosen[choice_key(choose.count, True)] = (list(picked), [])
            return entry, False
    key = folder_key(render_root, asset_id)  # before the listing: a change during it shows next time
    if key is None:
        return None, True
    views, problems = scan_folder(render_root, asset_id)
    # Same folder times: decode checks and other choices still hold (the view set is the same).
    fresh = Entry(key, [v.index for v in views], problems)
    if entry is not None and entry.key == key:
        fresh.intact, fresh.chosen = entry.intact, entry.chosen
    fresh.chosen[unverified] = ([v.index for v in select_views(views, choose.count)], [])
    if choose.verify:
        fresh.chosen[choice_key(choose.count, True)] = choose(views, fresh.intact)
    return fresh, True


def _work(
    render_root: Path, items: Sequence[tuple[str, Entry | None]], choose: Chooser
) -> list[tuple[str, Entry | None, bool]]:
    """Resolve a chunk of assets (a worker task)."""
    return [(asset_id, *_resolve(render_root, asset_id, entry, choose)) for asset_id, entry in items]


def index_path(home: Path, render_root: Path) -> Path:
    """Where the index of a render tree lives: under ASSETLIB_HOME, so a read-only tree works too."""
    digest = hashlib.blake2b(str(render_root.resolve()).encode(), digest_size=8).hexdigest()
    return home / "cache" / "view_index" / f"{digest}.jsonl"


def _header(render_root: Path) -> dict:
    return {"format": FORMAT, "kind": "assetlib view index", "root": str(render_root.resolve())}


def load_index(path: Path | None, render_root: Path) -> dict[str, Entry]:
    """The index at `path` if it is one of this tree's, in this format; else empty (with a warning)."""
    if path is None or not path.is_file():
        return {}
    entries: dict[str, Entry] = {}
    try:
        with path.open(encoding="utf-8") as f:
            if json.loads(f.readline()) != _header(render_root):
                log.warning("view index %s is of another tree or format: rebuilding it", path)
                return {}
            for line in f:
                record = json.loads(line)
                if "end" in record:  # written last: without it the file is a partial write
                    if record["end"] != len(entries):
                        raise ValueError(f"{len(entries)} entries, the end line says {record['end']}")
                    return entries
                asset_id, entry = Entry.from_record(record)
                entries[asset_id] = entry
        raise ValueError("no end line (a partial write)")
    except Exception as exc:  # truncated, corrupt, not ours: never fatal
        log.warning(
            "ignoring the unreadable view index %s (%s: %s); rebuilding it", path, type(exc).__name__, exc
        )
        return {}


def save_index(path: Path, render_root: Path, entries: dict[str, Entry]) -> None:
    """Write the index atomically (a killed write leaves the old one), with an end line to prove it whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps(_header(render_root)) + "\n")
        for asset_id, entry in entries.items():
            f.write(entry.to_json(asset_id) + "\n")
        f.write(json.dumps({"end": len(entries)}) + "\n")
    tmp.replace(path)


@dataclass
class ScanStats:
    """What a scan did with each asset folder, and how long it took."""

    reused: int = 0  # the index held its choice: one or two stats
    checked: int = 0  # the index held it unverified: only the chosen views were decoded
    new: int = 0  # not in the index: listed and its camera JSONs read
    rescanned: int = 0  # in the index but changed (or the choice needed the cameras): listed again
    missing: int = 0  # no render folder
    seconds: float = 0.0
    workers: int = 1

    @property
    def scanned(self) -> int:
        """Folders listed and their camera JSONs read."""
        return self.new + self.rescanned


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
    choose: Chooser,
    index_file: Path | None = None,
    workers: int = 1,
    rescan: bool = False,
    progress: Callable[[int], object] | None = None,
    pool: Literal["process", "thread"] = "process",
) -> tuple[dict[str, Entry | None], ScanStats]:
    """Each asset's entry holding `choose`'s choice (None: no render folder): from the index where
    its folders are unchanged, else scanned again, `workers` at a time; the index is rewritten
    when anything changed. Processes by default (see benchmarks/reader_bench.py for the measurement)."""
    started = time.perf_counter()
    stats = ScanStats(workers=max(1, workers))
    known = {} if rescan else load_index(index_file, render_root)
    wanted = choice_key(choose.count, choose.verify)
    result: dict[str, Entry | None] = {}
    todo: list[tuple[str, Entry | None]] = []  # with the entry the index holds, if still valid
    for asset_id in asset_ids:
        entry = known.get(asset_id)
        if entry is not None and entry.key != folder_key(render_root, asset_id):
            todo.append((asset_id, None))  # changed: nothing of the old scan holds
        elif entry is not None and wanted in entry.chosen:
            stats.reused += 1
            result[asset_id] = entry
        else:
            todo.append((asset_id, entry))
    if progress and stats.reused:
        progress(stats.reused)
    if todo and stats.workers > 1 and len(todo) > CHUNK:
        with _executor(pool, stats.workers) as executor:
            chunks = list(_chunks(todo, CHUNK))
            n = len(chunks)
            for part in executor.map(_work, [render_root] * n, chunks, [choose] * n):
                _take(part, known, result, stats, progress)
    else:
        for chunk in _chunks(todo, CHUNK):
            _take(_work(render_root, chunk, choose), known, result, stats, progress)
    if index_file is not None and (todo or rescan):
        entries = {**known, **{k: v for k, v in result.items() if v is not None}}
        for asset_id, got in result.items():
            if got is None:
                entries.pop(asset_id, None)  # a folder that went away drops out
        try:
            save_index(index_file, render_root, entries)
        except OSError as exc:  # an unwritable home costs the next read a full scan, not this one
            log.warning("could not write the view index %s: %s", index_file, exc)
    stats.seconds = time.perf_counter() - started
    log.info(
        "scanned %d asset folders of %s in %.1fs (%d %s workers): %d from the index, %d decode-checked "
        "only, %d new, %d rescanned, %d skipped (no folder)",
        len(asset_ids),
        render_root,
        stats.seconds,
        stats.workers,
        pool,
        stats.reused,
        stats.checked,
        stats.new,
        stats.rescanned,
        stats.missing,
    )
    return result, stats


def _take(
    part: list[tuple[str, Entry | None, bool]],
    known: dict[str, Entry],
    result: dict[str, Entry | None],
    stats: ScanStats,
    progress: Callable[[int], object] | None,
) -> None:
    for asset_id, entry, listed in part:
        result[asset_id] = entry
        if entry is None:
            stats.missing += 1
        elif not listed:
            stats.checked += 1
        elif asset_id not in known:
            stats.new += 1
        else:  # changed, or unchanged but the choice asked for needed the camera angles
            stats.rescanned += 1
    if progress:
        progress(len(part))
