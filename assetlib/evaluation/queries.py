"""Benchmark query sets: built once from a library, saved (queries.json), reused so runs stay comparable.

- Demo library (ground-truth attributes): one English and one Chinese text query per
  (category, colour) group, phrased from the attributes ("a red chair", "一把红色的椅子"), relevant =
  every asset of that group; image queries are held-out views (rendered at another elevation and
  azimuth than the indexed views) of one asset per group, relevant = its group.
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

from assetlib.library.asset import Asset
from assetlib.library.demo.generator import short_phrases
from assetlib.records import write_json

log = logging.getLogger(__name__)


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


def _held_out_view(asset: Asset, out_dir: Path, seed: int) -> Path | None:
    """A view of the asset that the index does not hold: an unselected render, else one rendered now."""
    indexed = {p.resolve() for p in asset.view_paths}
    if asset.view_paths:
        folder = asset.view_paths[0].parent.parent
        others = sorted(p for p in folder.glob("*/*.png") if p.resolve() not in indexed)
        if others:
            return random.Random(f"{seed}/{asset.asset_id}").choice(others)
    if asset.glb_path is None:
        return None
    from PIL import Image

    from assetlib.media.render import Renderer, RenderSettings, render_mesh_file

    target = out_dir / "query_views" / (asset.asset_id.replace("/", "__") + ".png")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Between two indexed azimuths and higher than them: a viewpoint the index never saw.
        settings = RenderSettings(views=1, size=256, elevation_deg=38.0, start_azimuth_deg=52.5)
        renderer = Renderer(settings)
        try:
            rgba, _ = render_mesh_file(renderer, asset.glb_path)[0][0]
        finally:
            renderer.close()
        Image.fromarray(rgba, "RGBA").save(target)
    return target


def build_queries(assets: Sequence[Asset], out_dir: Path, seed: int = 0, max_queries: int = 200) -> QuerySet:
    """Benchmark queries for a library (see the module docstring); saved to out_dir/queries.json."""
    rng = random.Random(seed)
    by_group: dict[str, list[Asset]] = {}
    for asset in sorted(assets, key=lambda a: a.asset_id):
        group = _group(asset)
        if group:
            by_group.setdefault(group, []).append(asset)
    queries: list[Query] = []
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
            view = _held_out_view(probe, out_dir, seed)
            if view is not None:
                queries.append(
                    Query(f"i-{group}", "image", members, group, image=str(view), source_asset=probe.asset_id)
                )
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
            view = _held_out_view(asset, out_dir, seed)
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
    digest = hashlib.blake2b(digest_size=8)
    for asset in sorted(assets, key=lambda a: a.asset_id):
        digest.update(f"{asset.asset_id}\t{asset.caption_en}\t{asset.caption_cn}\n".encode())
    folder = cache_root / f"queries-{digest.hexdigest()}-s{seed}-n{max_queries}"
    path = folder / "queries.json"
    if path.is_file():
        log.info("reusing the benchmark queries in %s", folder)
        return QuerySet.load(path), folder
    folder.mkdir(parents=True, exist_ok=True)
    return build_queries(assets, folder, seed=seed, max_queries=max_queries), folder
