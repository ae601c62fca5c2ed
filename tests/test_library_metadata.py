"""Readers of the public Objaverse metadata (annotations, LVIS, G-Objaverse categories), merged per uid."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from assetlib.library.metadata import (
    AssetMetadata,
    MetadataError,
    MetadataSources,
    merge_metadata,
    read_gobjaverse_categories,
    read_lvis,
    read_metadata,
    read_objaverse_annotations,
)

CHAIR = "8476c4170df24cf5bbe6967222d1a42d"
CAR = "b2e1a3f0c6f94f0b8f1e0d2c3a4b5c6d"
ODD = "sketchfab-model_7"  # not all uids are 32 hex characters
TREE = "0c9ad4cb4dbb46d0a1b2c3d4e5f6a7b8"
ONLY_LVIS = "e5f6a7b80c9ad4cb4dbb46d0a1b2c3d4"
NOTHING = "ffffffffffffffffffffffffffffffff"


def _annotation(name, tags=(), categories=(), license="by", faces=100, vertices=60, likes=3, views=40):
    """An annotation as Objaverse publishes it, with some of the keys that are not kept."""
    return {
        "uri": f"https://api.sketchfab.com/v3/models/{name}",
        "name": name,
        "staffpickedAt": None,
        "viewCount": views,
        "likeCount": likes,
        "animationCount": 0,
        "description": f"A {name}.",
        "faceCount": faces,
        "vertexCount": vertices,
        "license": license,
        "publishedAt": "2021-03-01T12:00:00.000000",
        "tags": [{"name": t, "slug": t.lower(), "uri": f"https://x/{t}"} for t in tags],
        "categories": [{"name": c, "slug": c.lower(), "uri": f"https://x/{c}"} for c in categories],
        "archives": {"glb": {"faceCount": faces}},
    }


SHARD_0 = {
    CHAIR: _annotation(
        "Old chair",
        [" Chair", "wood", "chair ", "Furniture"],
        ["Furniture & Home"],
        "by-sa",
        1200,
        640,
        7,
        321,
    ),
    CAR: _annotation("Red car", ["car", "vehicle"], ["Cars & Vehicles"], "cc0", 5000, 2600, 0, 12),
}
SHARD_1 = {
    ODD: _annotation(
        "Statue", ["stone"], ["Cultural Heritage & History", "Art & Abstract"], None, None, None
    ),
    TREE: _annotation("Pine", ["tree", "Tree"], ["Nature & Plants"], "by-nc", 800, 410, 1, 9),
}
LVIS = {"chair": [CHAIR], "armchair": [CHAIR], "car_(automobile)": [CAR], "pine_tree": [TREE, ONLY_LVIS]}
GOBJ = [
    {"object_index": f"{CHAIR}.glb", "label": "Furnitures", "level": 1},
    {"object_index": f"{CAR}.glb", "label": "Transportations", "level": 1},
    {"object_index": f"000-023/{TREE}.glb", "label": "Plants"},  # with a shard prefix
    {"object_index": ODD, "label": "Buildings&&Outdoor"},  # without the .glb suffix
]


def _gz(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        json.dump(data, fh)
    return path


def _json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def download(tmp_path):
    """The metadata files of an Objaverse download, in the published formats and names."""
    _gz(tmp_path / "metadata" / "000-000.json.gz", SHARD_0)
    _gz(tmp_path / "metadata" / "000-001.json.gz", SHARD_1)
    _gz(tmp_path / "lvis-annotations.json.gz", LVIS)
    _json(tmp_path / "category_annotation.json", GOBJ)
    return tmp_path


def test_annotations_from_a_metadata_directory(download):
    records = read_objaverse_annotations(download / "metadata")
    assert set(records) == {CHAIR, CAR, ODD, TREE}
    chair = records[CHAIR]
    assert chair.name == "Old chair"
    assert chair.license == "by-sa"
    assert chair.tags == ("chair", "wood", "furniture")  # stripped, lower-cased, de-duplicated, order kept
    assert chair.categories == ("Furniture & Home",)
    assert chair.lvis == ()
    assert (chair.face_count, chair.vertex_count, chair.like_count, chair.public_views) == (1200, 640, 7, 321)
    statue = records[ODD]
    assert statue.license is None
    assert statue.categories == ("Cultural Heritage & History", "Art & Abstract")
    assert (statue.face_count, statue.vertex_count) == (None, None)
    assert records[TREE].tags == ("tree",)
    assert records[CAR].like_count == 0  # zero is a count, not a missing one


def test_annotations_filtered_by_uids(download):
    records = read_objaverse_annotations(download / "metadata", uids=[CAR, TREE, NOTHING])
    assert set(records) == {CAR, TREE}
    assert records[TREE].name == "Pine"
    assert read_objaverse_annotations(download / "metadata", uids=set()) == {}


def test_annotations_from_one_gz_or_one_plain_json(download, tmp_path):
    one = read_objaverse_annotations(download / "metadata" / "000-001.json.gz")
    assert set(one) == {ODD, TREE}
    plain = read_objaverse_annotations(_json(tmp_path / "annotations.json", SHARD_0), uids={CHAIR})
    assert set(plain) == {CHAIR}
    assert plain[CHAIR] == read_objaverse_annotations(download / "metadata")[CHAIR]


def test_one_info_line_per_file_read(download, caplog):
    with caplog.at_level(logging.INFO, logger="assetlib.library.metadata"):
        read_objaverse_annotations(download / "metadata", uids=[CHAIR])
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 2
    assert "000-000.json.gz: 2 entries, 1 kept" in lines[0]
    assert "000-001.json.gz: 2 entries, 0 kept" in lines[1]


def test_malformed_annotations_are_coerced_or_skipped(tmp_path, caplog):
    data = {
        "strings": {**_annotation("Lamp"), "faceCount": "12", "vertexCount": " 8 ", "likeCount": 4.0},
        "negative": {**_annotation("Box"), "faceCount": -3, "viewCount": "lots", "likeCount": True},
        "bad-tags": {**_annotation("Cup"), "tags": "cup,mug", "categories": {"name": "Food & Drink"}},
        "odd-items": {
            **_annotation("Mug"),
            "tags": [{"slug": "mug"}, "Cup", {"name": 5}, None, {"name": "  "}],
            "categories": [{"name": "Food & Drink"}, 7],
            "name": 42,
            "license": ["by"],
        },
        "not-a-dict": ["name", "Chair"],
        "null": None,
    }
    path = _gz(tmp_path / "metadata" / "000-000.json.gz", data)
    with caplog.at_level(logging.DEBUG, logger="assetlib.library.metadata"):
        records = read_objaverse_annotations(path)
    assert set(records) == {"strings", "negative", "bad-tags", "odd-items"}
    strings = records["strings"]
    assert (strings.face_count, strings.vertex_count, strings.like_count) == (12, 8, 4)
    negative = records["negative"]
    assert (negative.face_count, negative.public_views, negative.like_count) == (None, None, None)
    assert negative.vertex_count == 60
    assert records["bad-tags"].tags == ()
    assert records["bad-tags"].categories == ()
    assert records["bad-tags"].name == "Cup"
    mug = records["odd-items"]
    assert mug.tags == ("mug", "cup")
    assert mug.categories == ("Food & Drink",)
    assert (mug.name, mug.license) == (None, None)
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    for expected in ("not-a-dict", "null", "faceCount -3", "'lots'", "tags is a str"):
        assert expected in debug


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("000-003.json.gz", b"this is not gzip at all", "not a gzip file"),
        ("000-004.json.gz", gzip.compress(b'{"a": {"name": "x"}}')[:-12], "truncated or corrupt gzip"),
        ("000-005.json.gz", gzip.compress(b'{"a": {"name": '), "not readable JSON"),
        ("000-006.json.gz", gzip.compress(b'[{"name": "x"}]'), "must hold a JSON dict, not list"),
        ("annotations.json", b'"just a string"', "must hold a JSON dict, not str"),
        ("annotations.json", b"\xff\xfe not utf-8", "not readable JSON"),
    ],
)
def test_unreadable_annotation_files_raise_naming_the_file(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MetadataError, match=expected) as info:
        read_objaverse_annotations(path)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_corrupt_shard_in_a_directory_names_that_shard(download):
    (download / "metadata" / "000-002.json.gz").write_bytes(b"garbage")
    with pytest.raises(MetadataError, match=r"000-002\.json\.gz"):
        read_objaverse_annotations(download / "metadata")


def test_missing_or_empty_annotation_paths(tmp_path):
    with pytest.raises(MetadataError, match="not found"):
        read_objaverse_annotations(tmp_path / "nowhere.json.gz")
    (tmp_path / "metadata").mkdir()
    with pytest.raises(MetadataError, match=r"no \.json\.gz files"):
        read_objaverse_annotations(tmp_path / "metadata")


def test_lvis_inverted_to_sorted_categories_per_uid(download, tmp_path):
    lvis = read_lvis(download / "lvis-annotations.json.gz")
    assert lvis == {
        CHAIR: ("armchair", "chair"),
        CAR: ("car_(automobile)",),
        TREE: ("pine_tree",),
        ONLY_LVIS: ("pine_tree",),
    }
    plain = _json(
        tmp_path / "lvis-annotations.json", {"mug": [CAR, 7, ""], "bad": "not-a-list", "cup": [CAR]}
    )
    assert read_lvis(plain) == {CAR: ("cup", "mug")}
    with pytest.raises(MetadataError, match=r"lvis-annotations\.json must hold a JSON dict, not list"):
        read_lvis(_json(tmp_path / "lvis-annotations.json", [CAR]))


def test_gobjaverse_labels_with_and_without_suffix_or_shard(download, tmp_path):
    labels = read_gobjaverse_categories(download / "category_annotation.json")
    assert labels == {CHAIR: "Furnitures", CAR: "Transportations", TREE: "Plants", ODD: "Buildings&&Outdoor"}
    messy = [
        {"object_index": "a.b.glb", "label": " Food "},  # only a .glb suffix is cut
        {"object_index": "c.glb"},
        {"object_index": 5, "label": "Food"},
        "not-an-object",
        {"object_index": "d.glb", "label": ""},
        {"object_index": "a.b", "label": "Animals"},  # a conflicting duplicate: the first is kept
    ]
    assert read_gobjaverse_categories(_json(tmp_path / "category_annotation.json", messy)) == {"a.b": "Food"}
    with pytest.raises(MetadataError, match=r"category_annotation\.json must hold a JSON list, not dict"):
        read_gobjaverse_categories(_json(tmp_path / "category_annotation.json", {"a": "Food"}))


def test_merge_metadata():
    base = AssetMetadata(name="Old chair", categories=("Furniture & Home", "Furnitures"), face_count=3)
    merged = merge_metadata(base, ("armchair", "chair"), "Furnitures")
    assert merged.categories == ("Furniture & Home", "Furnitures")  # the label is not repeated
    assert merged.lvis == ("armchair", "chair")
    assert (merged.name, merged.face_count) == ("Old chair", 3)
    assert merge_metadata(base, (), "Plants").categories == ("Furniture & Home", "Furnitures", "Plants")
    only = merge_metadata(None, ("pine_tree",), None)
    assert only == AssetMetadata(lvis=("pine_tree",))
    assert merge_metadata(None).is_empty()
    assert not only.is_empty()
    assert AssetMetadata().is_empty()
    assert not AssetMetadata(like_count=0).is_empty()


def test_sources_found_by_standard_names(download, tmp_path):
    sources = MetadataSources.at(download)
    assert sources == MetadataSources(
        annotations=download / "metadata",
        lvis=download / "lvis-annotations.json.gz",
        gobjaverse_categories=download / "category_annotation.json",
    )
    other = tmp_path / "other"
    _json(other / "annotations.json", SHARD_0)
    _json(other / "lvis-annotations.json", LVIS)
    assert MetadataSources.at(other) == MetadataSources(
        annotations=other / "annotations.json", lvis=other / "lvis-annotations.json"
    )
    _gz(other / "annotations.json.gz", SHARD_1)
    assert MetadataSources.at(str(other)).annotations == other / "annotations.json.gz"
    assert MetadataSources.at(tmp_path / "empty") == MetadataSources()


def test_read_metadata_merges_every_file(download):
    records = read_metadata(MetadataSources.at(download), [CHAIR, CAR, ODD, TREE, ONLY_LVIS, NOTHING])
    assert set(records) == {CHAIR, CAR, ODD, TREE, ONLY_LVIS}  # a uid with nothing is left out
    chair = records[CHAIR]
    assert chair == AssetMetadata(
        name="Old chair",
        license="by-sa",
        tags=("chair", "wood", "furniture"),
        categories=("Furniture & Home", "Furnitures"),
        lvis=("armchair", "chair"),
        face_count=1200,
        vertex_count=640,
        like_count=7,
        public_views=321,
    )
    assert records[CAR].categories == ("Cars & Vehicles", "Transportations")
    assert records[CAR].lvis == ("car_(automobile)",)
    assert records[CAR].license == "cc0"
    assert records[ODD].categories == ("Cultural Heritage & History", "Art & Abstract", "Buildings&&Outdoor")
    assert records[ODD].lvis == ()
    assert records[TREE].categories == ("Nature & Plants", "Plants")
    assert records[ONLY_LVIS] == AssetMetadata(lvis=("pine_tree",))


def test_read_metadata_with_some_files_missing(download):
    only_labels = MetadataSources(gobjaverse_categories=download / "category_annotation.json")
    assert read_metadata(only_labels, [CHAIR, ONLY_LVIS]) == {
        CHAIR: AssetMetadata(categories=("Furnitures",))
    }
    assert read_metadata(MetadataSources(), [CHAIR]) == {}
    assert read_metadata(MetadataSources.at(download), []) == {}


def test_read_metadata_keeps_only_the_asked_uids_from_each_shard(download, monkeypatch):
    seen: list[int] = []
    from assetlib.library import metadata

    real = metadata._annotation

    def counting(raw, where):
        seen.append(1)
        return real(raw, where)

    monkeypatch.setattr(metadata, "_annotation", counting)
    records = read_metadata(MetadataSources.at(download), [TREE])
    assert set(records) == {TREE}
    assert len(seen) == 1  # the other annotations are never parsed
