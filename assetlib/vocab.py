"""The project's vocabulary: algorithms, search modes, languages, vector kinds, image layouts, limits.

Every room and every face takes these names from here, so a mode or a limit is written once. It
imports the standard library only: the dashboard kernel and the CLI's argument parser load it for
free.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Algorithm(StrEnum):
    """An encoder family; `<algorithm>:<model>` names one model of it (siglip:google/siglip2-…)."""

    SIGLIP = "siglip"
    QWEN = "qwen"
    E5 = "e5"
    E5LIT = "e5lit"  # frozen e5 text + an image tower trained into its space (LiT-style)
    QWEN3VL = "qwen3vl"  # Qwen3-VL-Embedding on this machine (transformers): views fused in one input


def parse_algorithm(spec: str) -> tuple[Algorithm, str]:
    """(algorithm, model or "") of 'siglip', 'siglip:<hub id or dir>', 'qwen:<model>'; else ValueError."""
    name, _, model = spec.strip().partition(":")
    try:
        return Algorithm(name.lower()), model
    except ValueError:
        raise ValueError(f"unknown algorithm {spec!r}; valid: {', '.join(Algorithm)}") from None


# -- what a query is compared with ------------------------------------------------------------------
class QueryKind(StrEnum):
    """What the user searches with."""

    TEXT = "text"
    IMAGE = "image"  # an image, or the rendered views of an uploaded 3D model


class Mode(StrEnum):
    """Query modality → what it is compared with; `fused` ranks both by reciprocal rank fusion."""

    TEXT_TO_TEXT = "text_to_text"
    TEXT_TO_IMAGE = "text_to_image"
    IMAGE_TO_IMAGE = "image_to_image"
    IMAGE_TO_TEXT = "image_to_text"
    FUSED = "fused"
    KEYWORD = "keyword"  # words, not vectors: full text (English words, Chinese character pairs)
    HYBRID = "hybrid"  # keyword and the algorithm's vector rankings, fused by reciprocal rank


class TextMode(StrEnum):
    """The modes a text query can use, in the order the faces offer them (same, cross-modal, fused,
    then the word-based ones)."""

    TEXT_TO_TEXT = Mode.TEXT_TO_TEXT.value
    TEXT_TO_IMAGE = Mode.TEXT_TO_IMAGE.value
    FUSED = Mode.FUSED.value
    KEYWORD = Mode.KEYWORD.value
    HYBRID = Mode.HYBRID.value


class ImageMode(StrEnum):
    """The modes an image (or 3D-model) query can use, in the same order."""

    IMAGE_TO_IMAGE = Mode.IMAGE_TO_IMAGE.value
    IMAGE_TO_TEXT = Mode.IMAGE_TO_TEXT.value
    FUSED = Mode.FUSED.value


MODES_FOR: dict[QueryKind, tuple[Mode, ...]] = {
    QueryKind.TEXT: tuple(Mode(m) for m in TextMode),
    QueryKind.IMAGE: tuple(Mode(m) for m in ImageMode),
}
# Modes that rank by words rather than vectors (text queries only).
WORD_MODES = (Mode.KEYWORD, Mode.HYBRID)
# The single-modality vector searches a fused query combines (hybrid adds keyword to these).
FUSED_PARTS: dict[QueryKind, tuple[Mode, ...]] = {
    kind: tuple(m for m in modes if m is not Mode.FUSED and m not in WORD_MODES)
    for kind, modes in MODES_FOR.items()
}
MODE_TITLES: dict[Mode, str] = {
    Mode.TEXT_TO_TEXT: "text → captions",
    Mode.TEXT_TO_IMAGE: "text → renders",
    Mode.IMAGE_TO_IMAGE: "image → renders",
    Mode.IMAGE_TO_TEXT: "image → captions",
    Mode.FUSED: "captions + renders (fused)",
    Mode.KEYWORD: "keyword (full text)",
    Mode.HYBRID: "keyword + vectors (hybrid)",
}


def mode_for(kind: QueryKind, mode: str | None = None, cross_modal: bool = False) -> Mode:
    """The mode of a query: `mode` when given (checked against the query kind), else the original
    system's `cross_modal` flag (text→image / image→text) or the same modality."""
    allowed = MODES_FOR[kind]
    if mode is None:
        return allowed[1] if cross_modal else allowed[0]
    try:
        chosen = Mode(mode)
    except ValueError:
        raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(allowed)}") from None
    if chosen not in allowed:
        other = "an image" if kind is QueryKind.TEXT else "a text"
        raise ValueError(
            f"mode {chosen.value} needs {other} query; valid for {kind.value} queries: {', '.join(allowed)}"
        )
    return chosen


def searches_captions(mode: Mode) -> bool:
    """Whether a single-modality mode is answered from caption vectors (else from image vectors)."""
    return mode in (Mode.TEXT_TO_TEXT, Mode.IMAGE_TO_TEXT)


# -- languages -----------------------------------------------------------------------------------------
class Language(StrEnum):
    """Caption and query languages, as ISO codes."""

    EN = "en"
    ZH = "zh"


class QueryLanguage(StrEnum):
    """How a client names a query's language (the REST contract); auto detects Chinese."""

    AUTO = "auto"
    ENGLISH = "english"
    CHINESE = "chinese"


LANGUAGE_TITLES: dict[Language, str] = {Language.EN: "English", Language.ZH: "中文"}
_LANGUAGE_ALIASES: dict[str, Language] = {
    "en": Language.EN,
    "english": Language.EN,
    "zh": Language.ZH,
    "chinese": Language.ZH,
}

# Han ideographs: CJK Unified Ideographs, Extension A and the compatibility block. One rule for
# detecting Chinese queries and for checking that a translation is Chinese.
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def cjk_count(text: str) -> int:
    """How many Han ideographs a text holds."""
    return len(CJK.findall(text))


def detect_language(text: str) -> Language:
    """Chinese when the text holds a Han ideograph, else English."""
    return Language.ZH if CJK.search(text) else Language.EN


def language_code(name: str) -> str:
    """The ISO code of 'english'/'en', 'chinese'/'zh'; any other name lower-cased (the caller refuses it)."""
    key = name.strip().lower()
    return _LANGUAGE_ALIASES[key].value if key in _LANGUAGE_ALIASES else key


def resolve_language(name: str, text: str = "") -> Language:
    """The language code for 'auto' (detected from `text`), 'english'/'en' or 'chinese'/'zh'."""
    key = (name or "auto").strip().lower()
    if key == QueryLanguage.AUTO:
        return detect_language(text)
    if key not in _LANGUAGE_ALIASES:
        raise ValueError(f"unknown language {name!r}; valid: {', '.join(QueryLanguage)}")
    return _LANGUAGE_ALIASES[key]


# -- what the store holds ---------------------------------------------------------------------------
class VectorKind(StrEnum):
    """What a vector row embeds: a caption, one rendered view, or a whole asset (fused or pooled)."""

    CAPTION = "caption"
    VIEW = "view"
    ASSET = "asset"


class ImageLayout(StrEnum):
    """How image vectors are searched (the rule for each lives in store/layout.py).

    views: ANN over every rendered view, max per asset; pooled: ANN over one mean vector per asset
    for candidates, then an exact max-over-views re-rank; asset: the per-asset vector alone (the
    fused vector of a fused encoder, the mean of the views otherwise).
    """

    VIEWS = "views"
    POOLED = "pooled"
    ASSET = "asset"


class VectorStorage(StrEnum):
    """pgvector column types: float32 `vector` or float16 `halfvec` (half the memory)."""

    VECTOR = "vector"
    HALFVEC = "halfvec"


# The most dimensions pgvector 0.8 indexes (HNSW and IVFFlat alike) per column type.
MAX_INDEX_DIMS: dict[VectorStorage, int] = {VectorStorage.VECTOR: 2000, VectorStorage.HALFVEC: 4000}


# -- limits ----------------------------------------------------------------------------------------------
MAX_QUERY_CHARS = 1000
MAX_TOP_K = 100
MAX_IMAGE_UPLOAD_BYTES = 10 * 1024 * 1024  # also about where browser uploads to Voila fail silently
MAX_MODEL_UPLOAD_BYTES = 50 * 1024 * 1024
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")  # decoders accepted, chosen by content, never by name
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MESH_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")
