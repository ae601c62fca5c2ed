"""Readers of real Objaverse formats: captions JSON and CSV, index map, quality list, both render layouts."""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil

import numpy as np
import pytest
from library_fixtures import age_tree, gobjaverse_cameras, truncate, write_views
from PIL import Image

from assetlib.library import view_index
from assetlib.library.readers import (
    LibraryError,
    LibraryRead,
    LibrarySource,
    ViewChoice,
    open_library,
    read_library,
)
from assetlib.media.images import ImageError, decode_image, load_rgb
from assetlib.media.views import View, camera_angles, select_views
from assetlib.records import write_failures

UIDS = {
    "0/10002": "8476c4170df24cf5bbe6967222d1a42d",
    "0/10023": "b2e1a3f0c6f94f0b8f1e0d2c3a4b5c6d",
    "1/20007": "sketchfab-model_7",  # not all uids are 32 hex characters
    "1/20009": "0c9ad4cb4dbb46d0a1b2c3d4e5f6a7b8",
    "2/30001": "e5f6a7b80c9ad4cb4dbb46d0a1b2c3d4",
}


@pytest.fixture
def real_library(tmp_path):
    """A tiny G-Objaverse + Cap3D download in the exact real formats and both render layouts."""
    root = tmp_path / "objaverse"
    renders = root / "renders"
    cameras = gobjaverse_cameras()
    write_views(renders / "0" / "10002" / "campos_512_v4", cameras)  # the 280k layout
    write_views(renders / "0" / "10023", cameras)  # the layout without campos_512_v4
    write_views(renders / "1" / "20007" / "campos_512_v4", cameras)
    write_views(renders / "1" / "20009", cameras[:3])  # only three views rendered
    # 2/30001 has captions but no render folder at all.
    (root / "text_captions_cap3d.json").write_text(
        json.dumps(
            {
                "0/10002": "a red chair with four legs",
                "0/10023": "a wooden table",
                "2/30001": "a blue car",
            }
        )
    )
    (root / "text_captions_cap3d_cn.json").write_text(
        json.dumps({"0/10002": "一把有四条腿的红色椅子", "0/10023": "一张木桌"}, ensure_ascii=False)
    )
    (root / "gobjaverse_280k_index_to_objaverse.json").write_text(
        json.dumps({k: f"000-{i:03d}/{uid}.glb" for i, (k, uid) in enumerate(UIDS.items())})
    )
    (root / "kiui_gobj_merged.json").write_text(json.dumps(["0/10023", "1/20007"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # headerless uid,caption; captions with commas are quoted
    writer.writerow([UIDS["1/20007"], "a lamp, tall and thin, with a shade"])
    writer.writerow([UIDS["1/20009"], "a green vase"])
    writer.writerow([UIDS["0/10002"], "CSV caption that the JSON overrides"])
    writer.writerow(["unknown-uid", "an asset outside the index"])
    (root / "Cap3D_automated_Objaverse_full.csv").write_text(buffer.getvalue())
    glb = root / "glbs" / "000-000"
    glb.mkdir(parents=True)
    (glb / f"{UIDS['0/10002']}.glb").write_bytes(b"glTF")
    return root


def test_reads_every_real_format_and_both_layouts(real_library):
    source = LibrarySource.at(real_library, cap3d_csv=real_library / "Cap3D_automated_Objaverse_full.csv")
    read = read_library(source, num_views=8)
    by_id = {a.asset_id: a for a in read.assets}
    assert sorted(by_id) == ["0/10002", "0/10023", "1/20007", "1/20009"]
    chair = by_id["0/10002"]
    assert chair.caption_en == "a red chair with four legs"  # the JSON wins over the CSV
    assert chair.caption_cn == "一把有四条腿的红色椅子"
    assert chair.objaverse_uid == UIDS["0/10002"]
    assert chair.glb_path == real_library / "glbs" / "000-000" / f"{UIDS['0/10002']}.glb"
    assert len(chair.view_paths) == 8 and all("campos_512_v4" in str(p) for p in chair.view_paths)
    table = by_id["0/10023"]
    assert len(table.view_paths) == 8 and not any("campos_512_v4" in str(p) for p in table.view_paths)
    assert table.high_quality and not chair.high_quality and table.caption_cn == "一张木桌"
    lamp = by_id["1/20007"]  # reached only through the CSV, by uid through the index
    assert lamp.caption_en == "a lamp, tall and thin, with a shade"
    assert lamp.objaverse_uid == "sketchfab-model_7" and lamp.caption_cn is None
    assert len(by_id["1/20009"].view_paths) == 3
    assert [(f.asset_id, f.stage) for f in read.failures] == [("2/30001", "read")]
    assert "no render folder" in read.failures[0].reason


def test_views_are_chosen_evenly_from_the_camera_json(real_library):
    read = read_library(LibrarySource.at(real_library), num_views=8)
    chair = next(a for a in read.assets if a.asset_id == "0/10002")
    cameras = gobjaverse_cameras()
    chosen = [int(p.parent.name) for p in chair.view_paths]
    angles = [camera_angles(cameras[i]) for i in chosen]
    assert all(abs(elevation) <= 60 for _, elevation in angles)  # no top or bottom views
    azimuths = sorted(a for a, _ in angles)
    gaps = np.diff([*azimuths, azimuths[0] + 360])
    assert gaps.min() >= 30 and gaps.max() <= 60  # 45° apart, give or take the grid
    again = read_library(LibrarySource.at(real_library), num_views=8)
    assert next(a for a in again.assets if a.asset_id == "0/10002").view_paths == chair.view_paths


def test_select_views_is_deterministic_and_prefers_side_views():
    views = [View(i, None, *camera_angles(c)) for i, c in enumerate(gobjaverse_cameras())]
    first = select_views(views, 4)
    assert first == select_views(list(reversed(views)), 4)
    assert [round(v.azimuth_deg) for v in first] == [0, 90, 180, 270]
    assert select_views(views[:3], 8) == views[:3]
    assert select_views(views, 0) == []


def test_bad_files_become_failure_rows_and_the_run_completes(real_library, tmp_path):
    renders = real_library / "renders"
    for view in range(40):  # every view of 0/10023 truncated: nothing usable is left
        truncate(renders / "0" / "10023" / f"{view:05d}" / f"{view:05d}.png")
    truncate(renders / "0" / "10002" / "campos_512_v4" / "00000" / "00000.png")  # one bad view: replaced
    (renders / "1" / "20009" / "00001" / "00001.json").write_text("{not json")
    csv_file = real_library / "Cap3D_automated_Objaverse_full.csv"
    read = read_library(LibrarySource.at(real_library, cap3d_csv=csv_file), num_views=8)
    by_id = {a.asset_id: a for a in read.assets}
    reasons = {f.asset_id: f.reason for f in read.failures}
    assert "0/10023" in reasons and "unreadable image" in reasons["0/10023"]
    assert len(by_id["0/10002"].view_paths) == 8
    assert all(p.parent.name != "00000" for p in by_id["0/10002"].view_paths)
    assert len(by_id["1/20009"].view_paths) == 2  # the view with a broken camera JSON is dropped
    table = write_failures(read.failures, tmp_path / "failures.csv").read_text()
    assert table.splitlines()[0] == "asset_id,stage,reason" and "0/10023" in table


def test_max_assets_reads_the_same_first_ids(real_library):
    read = read_library(LibrarySource.at(real_library), max_assets=2)
    assert [a.asset_id for a in read.assets] == ["0/10002", "0/10023"]


def test_missing_or_malformed_library_files_are_explained(tmp_path):
    with pytest.raises(LibraryError, match="no English captions"):
        read_library(LibrarySource.at(tmp_path))
    (tmp_path / "text_captions_cap3d.json").write_text("[1, 2]")
    with pytest.raises(LibraryError, match="must be a JSON dict"):
        read_library(LibrarySource.at(tmp_path))


def _png(mode: str, size=(8, 8), colour=(255, 0, 0, 128)) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGBA" else colour[:3]).save(buffer, format="PNG")
    return buffer.getvalue()


def test_rgba_is_composited_onto_white():
    rgb = np.asarray(load_rgb(_png("RGBA")))
    assert rgb.shape == (8, 8, 3)
    assert tuple(rgb[0, 0]) == (255, 127, 127)  # half-transparent red over white
    transparent = np.asarray(load_rgb(_png("RGBA", colour=(0, 0, 0, 0))))
    assert (transparent == 255).all()


def test_bad_images_are_refused_with_reasons(tmp_path):
    good = _png("RGBA")
    with pytest.raises(ImageError, match=r"truncated|corrupt"):
        decode_image(good[: len(good) // 2])
    with pytest.raises(ImageError, match="not a PNG/JPEG/WEBP/BMP"):
        decode_image(b"GIF89a" + b"\0" * 100)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageError, match="over the 100-byte limit"):
        decode_image(good * 10, max_bytes=100)
    big = io.BytesIO()
    Image.new("1", (9000, 9000)).save(big, format="PNG")  # small file, 81M pixels when decoded
    with pytest.raises(ImageError, match=r"pixel limit|decompression bomb"):
        decode_image(big.getvalue())
    with pytest.raises(ImageError, match="cannot read"):
        decode_image(tmp_path / "missing.png")


ALL_IDS = ["0/10002", "0/10023", "1/20007", "1/20009", "2/30001"]


@pytest.fixture
def indexed(real_library, tmp_path, monkeypatch):
    """The real-format library with all five ids captioned, its folders aged (so a change shows in
    their times), an index file, and a counter of folder scans (listing + camera JSONs)."""
    age_tree(real_library / "renders")
    scanned: list[str] = []
    scan = view_index.scan_folder

    def counting(render_root, asset_id):
        scanned.append(asset_id)
        return scan(render_root, asset_id)

    monkeypatch.setattr(view_index, "scan_folder", counting)
    source = LibrarySource.at(real_library, cap3d_csv=real_library / "Cap3D_automated_Objaverse_full.csv")
    index = view_index.index_path(tmp_path / "home", source.renders)
    return source, index, scanned


def _same(a: LibraryRead, b: LibraryRead) -> None:
    assert a.assets == b.assets and a.failures == b.failures  # same assets, order, views, failures
    assert a.counts["view_problems"] == b.counts["view_problems"]


@pytest.mark.parametrize("verify", [True, False])
def test_a_parallel_read_equals_the_serial_one(real_library, tmp_path, monkeypatch, verify):
    renders = real_library / "renders"
    truncate(renders / "0" / "10002" / "campos_512_v4" / "00000" / "00000.png")  # replaced when verifying
    for view in range(40):
        truncate(renders / "0" / "10023" / f"{view:05d}" / f"{view:05d}.png")
    (renders / "1" / "20009" / "00001" / "00001.json").write_text("{not json")
    source = LibrarySource.at(real_library, cap3d_csv=real_library / "Cap3D_automated_Objaverse_full.csv")
    serial = read_library(source, verify_images=verify)
    monkeypatch.setattr(view_index, "CHUNK", 1)  # five folders are enough to go through the pool
    index = tmp_path / "index.jsonl"
    parallel = read_library(source, verify_images=verify, workers=2, index_file=index)  # processes
    _same(parallel, serial)
    warm = read_library(source, verify_images=verify, workers=2, index_file=index)
    _same(warm, serial)
    assert warm.counts["folders_from_index"] == 4 and warm.counts["folders_scanned"] == 0
    choose = ViewChoice(8, verify)
    by_threads, _ = view_index.scan_tree(source.renders, ALL_IDS, choose, workers=2, pool="thread")
    by_one, _ = view_index.scan_tree(source.renders, ALL_IDS, choose, workers=1)
    assert by_threads == by_one
    if verify:
        assert "unreadable image" in {f.asset_id: f.reason for f in serial.failures}["0/10023"]


def test_the_index_is_written_then_reused_without_rescanning(indexed):
    source, index, scanned = indexed
    first = read_library(source, index_file=index)
    assert index.is_file() and sorted(scanned) == ALL_IDS[:4]  # 2/30001 has no render folder
    assert first.counts["folders_scanned"] == 4 and first.counts["folders_missing"] == 1
    scanned.clear()
    second = read_library(source, index_file=index)
    assert scanned == [] and second.counts["folders_from_index"] == 4
    _same(second, first)
    _same(second, read_library(source))  # and both equal a read with no index at all
    scanned.clear()
    forced = read_library(source, index_file=index, rescan=True)
    assert sorted(scanned) == ALL_IDS[:4]
    _same(forced, first)


def test_changed_new_and_removed_folders(indexed):
    source, index, scanned = indexed
    renders = source.renders
    read_library(source, index_file=index)
    write_views(renders / "1" / "20009", gobjaverse_cameras()[:5])  # two views added
    shutil.rmtree(renders / "0" / "10023" / "00039")  # one removed
    write_views(renders / "2" / "30001" / "campos_512_v4", gobjaverse_cameras())  # a new folder
    shutil.rmtree(renders / "1" / "20007")  # a folder gone
    scanned.clear()
    read = read_library(source, num_views=8, index_file=index)
    assert sorted(scanned) == ["0/10023", "1/20009", "2/30001"]  # 0/10002 came from the index
    assert read.counts["folders_from_index"] == 1 and read.counts["folders_missing"] == 1
    by_id = {a.asset_id: a for a in read.assets}
    assert len(by_id["1/20009"].view_paths) == 5
    assert all(p.parent.name != "00039" for p in by_id["0/10023"].view_paths)
    assert "2/30001" in by_id and "campos_512_v4" in str(by_id["2/30001"].view_paths[0])
    assert [f.asset_id for f in read.failures] == ["1/20007"]
    _same(read, read_library(source, num_views=8))
    assert "1/20007" not in view_index.load_index(index, renders)  # dropped out of the index


def test_decode_checks_are_cached_only_once_computed(indexed):
    source, index, scanned = indexed
    unverified = read_library(source, verify_images=False, index_file=index)
    scanned.clear()
    verified = read_library(source, verify_images=True, index_file=index)
    assert scanned == [] and verified.counts["folders_decode_checked"] == 4  # decoded, not listed
    _same(verified, read_library(source, verify_images=True))
    _same(unverified, read_library(source, verify_images=False, index_file=index))
    entry = view_index.load_index(index, source.renders)["0/10002"]
    assert set(entry.chosen) == {"8", "8v"} and all(entry.intact[i] is None for i in entry.chosen["8"][0])
    # A chosen view found broken needs its neighbours' cameras: that folder alone is listed again.
    chosen = entry.chosen["8"][0][0]
    image = source.renders / "0" / "10002" / "campos_512_v4" / f"{chosen:05d}" / f"{chosen:05d}.png"
    index.unlink()
    read_library(source, verify_images=False, index_file=index)
    truncate(image)  # rewritten in place: no folder time changes
    scanned.clear()
    read = read_library(source, verify_images=True, index_file=index)
    assert scanned == ["0/10002"]
    _same(read, read_library(source, verify_images=True))
    # Cached decode checks are trusted: an image rewritten later is not noticed without a rescan.
    assert read_library(source, verify_images=True, index_file=index).counts["folders_scanned"] == 0


def test_max_assets_is_honoured_and_a_larger_read_extends_the_index(indexed):
    source, index, scanned = indexed
    small = read_library(source, max_assets=2, index_file=index)
    assert [a.asset_id for a in small.assets] == ["0/10002", "0/10023"] and sorted(scanned) == ALL_IDS[:2]
    scanned.clear()
    full = read_library(source, index_file=index)
    assert sorted(scanned) == ["1/20007", "1/20009"] and full.counts["folders_from_index"] == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other tree"])
def test_a_corrupt_index_is_ignored_with_a_warning_and_rebuilt(indexed, caplog, damage):
    source, index, scanned = indexed
    first = read_library(source, index_file=index)
    text = index.read_text()
    if damage == "garbage":
        index.write_bytes(b"\x00\xffnot an index")
    elif damage == "truncated":
        index.write_text(text[: len(text) // 2])
    else:
        index.write_text(text.replace(str(source.renders.resolve()), "/elsewhere", 1))
    scanned.clear()
    with caplog.at_level(logging.WARNING, logger="assetlib.library.view_index"):
        again = read_library(source, index_file=index)
    assert "rebuilding it" in caplog.text
    assert sorted(scanned) == ALL_IDS[:4]
    _same(again, first)
    assert len(view_index.load_index(index, source.renders)) == 4  # rebuilt whole


def test_open_library_keeps_its_index_under_assetlib_home(real_library, tmp_path):
    from assetlib.config import load_settings

    settings = load_settings(environ={}, home=str(tmp_path / "home"), reader_workers=2)
    read = open_library(settings, real_library)
    again = open_library(settings, real_library)
    index = view_index.index_path(settings.home, real_library / "renders")
    assert index.is_file() and index.is_relative_to(settings.home)
    assert again.counts["folders_from_index"] == 2 and again.assets == read.assets
