"""The vocabulary: one rule for Chinese, the modes each query kind may use, names parsed once."""

from __future__ import annotations

import pytest

from assetlib.vocab import (
    FUSED_PARTS,
    MODES_FOR,
    Algorithm,
    Language,
    Mode,
    QueryKind,
    cjk_count,
    detect_language,
    mode_for,
    parse_algorithm,
    resolve_language,
)


@pytest.mark.parametrize(
    ("text", "language", "han"),
    [
        ("a red chair", Language.EN, 0),
        ("一把红色的椅子", Language.ZH, 7),
        ("红色 chair", Language.ZH, 2),
        ("㐀 extension A", Language.ZH, 1),  # CJK Extension A: detection and translation checks agree
        ("兀 compatibility", Language.ZH, 1),  # CJK compatibility ideograph
        ("ｒｅｄ", Language.EN, 0),  # full-width Latin is not Chinese
    ],
)
def test_one_rule_decides_what_is_chinese(text, language, han):
    assert detect_language(text) is language and cjk_count(text) == han


def test_languages_resolve_from_every_name_a_client_uses():
    assert (
        resolve_language("auto", "一把椅子") is Language.ZH
        and resolve_language("auto", "chair") is Language.EN
    )
    assert resolve_language("English") is Language.EN and resolve_language("zh") is Language.ZH
    with pytest.raises(ValueError, match="valid: auto, english, chinese"):
        resolve_language("french")


def test_each_query_kind_has_its_modes_and_refuses_the_others():
    assert MODES_FOR[QueryKind.TEXT] == (
        Mode.TEXT_TO_TEXT,
        Mode.TEXT_TO_IMAGE,
        Mode.FUSED,
        Mode.KEYWORD,
        Mode.HYBRID,
    )
    assert FUSED_PARTS[QueryKind.TEXT] == (Mode.TEXT_TO_TEXT, Mode.TEXT_TO_IMAGE)  # words are not vectors
    assert MODES_FOR[QueryKind.IMAGE] == (Mode.IMAGE_TO_IMAGE, Mode.IMAGE_TO_TEXT, Mode.FUSED)
    assert mode_for(QueryKind.TEXT) is Mode.TEXT_TO_TEXT
    assert mode_for(QueryKind.TEXT, cross_modal=True) is Mode.TEXT_TO_IMAGE
    assert mode_for(QueryKind.IMAGE, cross_modal=True) is Mode.IMAGE_TO_TEXT
    assert mode_for(QueryKind.IMAGE, "fused", cross_modal=True) is Mode.FUSED  # an explicit mode wins
    with pytest.raises(ValueError, match="needs an image query"):
        mode_for(QueryKind.TEXT, "image_to_image")
    with pytest.raises(ValueError, match="unknown mode"):
        mode_for(QueryKind.IMAGE, "sideways")
    with pytest.raises(ValueError, match="needs a text query"):
        mode_for(QueryKind.IMAGE, "keyword")


def test_algorithm_specs_parse_with_or_without_a_model():
    assert parse_algorithm("siglip") == (Algorithm.SIGLIP, "")
    assert parse_algorithm("SigLIP:google/siglip2-base-patch16-naflex") == (
        Algorithm.SIGLIP,
        "google/siglip2-base-patch16-naflex",
    )
    assert parse_algorithm("qwen3vl:Qwen/Qwen3-VL-Embedding-8B") == (
        Algorithm.QWEN3VL,
        "Qwen/Qwen3-VL-Embedding-8B",
    )
    with pytest.raises(ValueError, match="valid: siglip, qwen, e5, e5lit, qwen3vl"):
        parse_algorithm("clip")
