"""Benchmark query sets: built once from a library, saved (queries.json), reused so runs stay comparable.

- Demo library (ground-truth attributes): one English and one Chinese text query per
  (category, colour) group, phrased from the attributes ("a red chair", "一把红色的椅子"), relevant =
  every asset of that group; image queries are held-out views (rendered at another elevation and
  azimuth than the indexed views) of one asset per group, relevant = its group.
- Demo library, natural set: every query of `library/demo/natural_queries.py` (described by use,
  place or shape, never naming the category; 40+ per language over all 24 categories), relevant =
  every asset of the categories it describes. No training code reads those phrasings.
- Real data: a seeded sample of captions (English, and Chinese when present) and held-out views
  (views the index did not select), relevant = the caption's or view's own asset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assetlib.library.asset import Asset
from assetlib.library.demo.generator import short_phrases
from assetlib.records import write_json

log = logging.getLogger(__name__)


IN_GRAMMAR, NATURAL, JUDGED = "in-grammar", "natural", "judged"


@dataclass
class Query:
    """One benchmark query: text (with language) or an image file, and its relevant assets."""

    qid: str
    kind: str  # "text" | "image"
    relevant: list[str]
    group: str
    text: str | None = None
    language: str | None = None
    image: str | None = None
    source_asset: str | None = None
    # Which set it belongs to: "in-grammar" (phrased like the captions, or the captions themselves)
    # or "natural" (the demo's everyday phrasings, natural_queries.py); reported side by side.
    query_set: str = "in-grammar"  # IN_GRAMMAR


@dataclass
class QuerySet:
    """The saved queries of a run."""

    queries: list[Query]
    seed: int
    source: str  # "attributes" (demo ground truth) or "own-asset" (real data)

    def save(self, path: Path) -> None:
        """Write queries.json."""
        write_json(
            path, {"seed": self.seed, "source": self.source, "queries": [asdict(q) for q in self.queries]}
        )

    @classmethod
    def load(cls, path: Path) -> QuerySet:
        """Read queries.json."""
        data = json.loads(path.read_text())
        return cls([Query(**q) for q in data["queries"]], data["seed"], data["source"])


def _group(asset: Asset) -> str | None:
    attrs = asset.attributes or {}
    return f"{attrs['category']}/{attrs['colour']}" if "category" in attrs and "colour" in attrs else None


class _HeldOutViews:
    """Views of assets that the index does not hold: an unselected render, else one rendered now.

    One renderer serves every view rendered here (started on first need: an OpenGL context per
    view cost most of the time), closed with `close`.
    """

    def __init__(self, out_dir: Path, seed: int) -> None:
        self.out_dir, self.seed = out_dir, seed
        self._renderer: Any = None

    def view(self, asset: Asset) -> Path | None:
        """The asset's held-out view (None when it has neither spare renders nor a mesh)."""
        indexed = {p.resolve() for p in asset.view_paths}
        if asset.view_paths:
            folder = asset.view_paths[0].parent.parent
            others = sorted(p for p in folder.glob("*/*.png") if p.resolve() not in indexed)
            if others:
                return random.Random(f"{self.seed}/{asset.asset_id}").choice(others)
        if asset.glb_path is None:
            return None
        from PIL import Image

        from assetlib.media.render import Renderer, RenderSettings, render_mesh_file

        target = self.out_dir / "query_views" / (asset.asset_id.replace("/", "__") + ".png")
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if self._renderer is None:
                # Between two indexed azimuths and higher than them: a viewpoint the index never saw.
                settings = RenderSettings(views=1, size=256, elevation_deg=38.0, start_azimuth_deg=52.5)
                self._renderer = Renderer(settings)
            rgba, _ = render_mesh_file(self._renderer, asset.glb_path)[0][0]
            Image.fromarray(rgba, "RGBA").save(target)
        return target

    def close(self) -> None:
        """Release the renderer, if one was started."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


def natural_queries(assets: Sequence[Asset]) -> list[Query]:
    """The natural-language set over a demo library: relevant = every asset of the named categories."""
    from assetlib.library.demo.natural_queries import NATURAL_QUERIES

    by_category: dict[str, list[str]] = {}
    for asset in sorted(assets, key=lambda a: a.asset_id):
        category = (asset.attributes or {}).get("category")
        if category:
            by_category.setdefault(str(category), []).append(asset.asset_id)
    out = []
    for index, (language, text, categories) in enumerate(NATURAL_QUERIES):
        relevant = [a for c in categories for a in by_category.get(c, [])]
        if relevant:  # a library built without some categories has no answer to their queries
            out.append(
                Query(
                    f"n-{language}-{index:03d}",
                    "text",
                    relevant,
                    "+".join(categories),
                    text=text,
                    language=language,
                    query_set=NATURAL,
                )
            )
    return out


def build_queries(assets: Sequence[Asset], out_dir: Path, seed: int = 0, max_queries: int = 200) -> QuerySet:
    """Benchmark queries for a library (see the module docstring); saved to out_dir/queries.json."""
    rng = random.Random(seed)
    by_group: dict[str, list[Asset]] = {}
    for asset in sorted(assets, key=lambda a: a.asset_id):
        group = _group(asset)
        if group:
            by_group.setdefault(group, []).append(asset)
    queries: list[Query] = []
    held_out = _HeldOutViews(out_dir, seed)
    try:
        if by_group:
            source = "attributes"
            groups = sorted(by_group)
            rng.shuffle(groups)
            for group in sorted(groups[:max_queries]):
                members = [a.asset_id for a in by_group[group]]
                category, colour = group.split("/")
                en, zh = short_phrases(category, colour)
                queries.append(Query(f"t-en-{group}", "text", members, group, text=en, language="en"))
                queries.append(Query(f"t-zh-{group}", "text", members, group, text=zh, language="zh"))
                probe = rng.choice(by_group[group])
                view = held_out.view(probe)
                if view is not None:
                    queries.append(
                        Query(
                            f"i-{group}",
                            "image",
                            members,
                            group,
                            image=str(view),
                            source_asset=probe.asset_id,
                        )
                    )
            queries += natural_queries(assets)
        else:
            source = "own-asset"
            sample = rng.sample(sorted(assets, key=lambda a: a.asset_id), min(max_queries, len(assets)))
            for asset in sample:
                group = asset.tags[0] if asset.tags else "all"
                for language, text in (("en", asset.caption_en), ("zh", asset.caption_cn)):
                    if text:
                        queries.append(
                            Query(
                                f"t-{language}-{asset.asset_id}",
                                "text",
                                [asset.asset_id],
                                group,
                                text=text,
                                language=language,
                            )
                        )
                view = held_out.view(asset)
                if view is not None:
                    queries.append(
                        Query(
                            f"i-{asset.asset_id}",
                            "image",
                            [asset.asset_id],
                            group,
                            image=str(view),
                            source_asset=asset.asset_id,
                        )
                    )
    finally:
        held_out.close()

    query_set = QuerySet(queries, seed, source)
    out_dir.mkdir(parents=True, exist_ok=True)
    query_set.save(out_dir / "queries.json")
    log.info(
        "built %d queries (%d text, %d image) from %s",
        len(queries),
        sum(q.kind == "text" for q in queries),
        sum(q.kind == "image" for q in queries),
        source,
    )
    return query_set


def cached_queries(
    assets: Sequence[Asset], cache_root: Path, seed: int = 0, max_queries: int = 200
) -> tuple[QuerySet, Path]:
    """The benchmark queries of a library, built once (held-out views rendered once) and reused.

    Keyed by the library's asset ids and captions, the seed and the size, so a changed library
    gets new queries and an unchanged one the same, comparable ones.
    """
    from assetlib.library.demo.natural_queries import NATURAL_QUERIES

    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(NATURAL_QUERIES).encode())  # a changed natural set is a new query set
    for asset in sorted(assets, key=lambda a: a.asset_id):
        digest.update(f"{asset.asset_id}\t{asset.caption_en}\t{asset.caption_cn}\n".encode())
    folder = cache_root / f"queries-{digest.hexdigest()}-s{seed}-n{max_queries}"
    path = folder / "queries.json"
    if path.is_file():
        log.info("reusing the benchmark queries in %s", folder)
        return QuerySet.load(path), folder
    folder.mkdir(parents=True, exist_ok=True)
    return build_queries(assets, folder, seed=seed, max_queries=max_queries), folder


def judged_query_set(judged: Sequence[tuple[str, str, list[str], list[str]]]) -> QuerySet:
    """A query set from researchers' judgments: (query, language, relevant, judged) per query
    (`store.judgments.relevance_by_query`); assets nobody judged count as not relevant."""
    queries = [
        Query(
            qid=f"judged-{hashlib.blake2b(f'{lang}|{text}'.encode(), digest_size=6).hexdigest()}",
            kind="text",
            relevant=sorted(relevant),
            group=f"judged/{lang}",
            text=text,
            language=lang,
            query_set=JUDGED,
        )
        for text, lang, relevant, _ in judged
    ]
    return QuerySet(queries, seed=0, source="judgments")
