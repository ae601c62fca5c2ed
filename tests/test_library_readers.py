"""Readers of real Objaverse formats: captions JSON and CSV, index map, quality list, both render layouts."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from library_fixtures import gobjaverse_cameras, truncate, write_views
from PIL import Image

from assetlib.library.readers import LibraryError, LibrarySource, read_library
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


def test_the_view_index_is_reused_and_a_changed_folder_rescanned(real_library, tmp_path):
    from assetlib.library.view_index import index_path, load_index, scan_tree

    renders = real_library / "renders"
    index = index_path(tmp_path / "home", renders)
    ids = ["0/10002", "0/10023", "1/20007", "1/20009", "2/30001"]
    first, stats = scan_tree(renders, ids, index_file=index)
    assert (stats.scanned, stats.reused, stats.missing) == (4, 0, 1) and index.is_file()
    again, stats = scan_tree(renders, ids, index_file=index)
    assert (stats.scanned, stats.reused) == (0, 4)  # nothing listed or parsed again
    assert again == first
    # Views added to one folder and removed from another: both, and only they, are rescanned.
    write_views(renders / "1" / "20009", gobjaverse_cameras()[:5])
    (renders / "0" / "10023" / "00039" / "00039.png").unlink()
    (renders / "0" / "10023" / "00039" / "00039.json").unlink()
    (renders / "0" / "10023" / "00039").rmdir()
    changed, stats = scan_tree(renders, ids, index_file=index)
    assert (stats.scanned, stats.reused) == (2, 2)
    assert len(changed["1/20009"].views) == 5 and len(changed["0/10023"].views) == 39
    assert changed["0/10002"] == first["0/10002"]
    # A corrupt index is set aside and rebuilt, never fatal.
    index.write_bytes(b"not a pickle")
    assert load_index(index, renders) == {}
    rebuilt, stats = scan_tree(renders, ids, index_file=index)
    assert stats.scanned == 4 and rebuilt == changed


def test_a_parallel_read_equals_a_serial_one_and_keeps_decode_checks(real_library, tmp_path):
    from assetlib.library.readers import DecodeCheck
    from assetlib.library.view_index import index_path, scan_tree

    renders = real_library / "renders"
    truncate(renders / "0" / "10002" / "campos_512_v4" / "00000" / "00000.png")
    ids = ["0/10002", "0/10023", "1/20007", "1/20009", "2/30001"]
    serial, _ = scan_tree(renders, ids, check=DecodeCheck(8))
    index = index_path(tmp_path / "home", renders)
    parallel, stats = scan_tree(renders, ids, index_file=index, workers=2, chunk=1, check=DecodeCheck(8))
    assert stats.workers == 2 and parallel == serial
    assert serial["0/10002"].intact[0] is not None  # the truncated view was found out, and remembered
    source = LibrarySource.at(real_library)
    first = read_library(source, num_views=8, index_file=index)
    second = read_library(source, num_views=8, index_file=index, workers=2)
    assert second.assets == first.assets and second.failures == first.failures
    assert second.counts["folders_from_index"] == 2 and second.counts["folders_scanned"] == 0  # captioned ids
    assert all(p.parent.name != "00000" for p in first.assets[0].view_paths)
