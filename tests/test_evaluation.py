"""Evaluation end to end: saved query sets, every usable algorithm and mode, figures, reproducibility."""

from __future__ import annotations

import json

import pytest
from fake_dashscope import FakeDashScopeServer

from assetlib.evaluation.queries import QuerySet, build_queries
from assetlib.evaluation.report import comparison_table
from assetlib.evaluation.run import evaluate
from assetlib.search.service import SearchService


@pytest.fixture(scope="module")
def setup(demo_world, tmp_path_factory):
    return tmp_path_factory.mktemp("eval"), demo_world.assets, demo_world.settings


@pytest.mark.slow
def test_query_sets_are_built_from_ground_truth_and_saved(setup):
    tmp, assets, _ = setup
    queries = build_queries(assets, tmp / "out", seed=1)
    groups = {f"{a.attributes['category']}/{a.attributes['colour']}" for a in assets}
    texts = [q for q in queries.queries if q.kind == "text" and q.query_set == "in-grammar"]
    images = [q for q in queries.queries if q.kind == "image"]
    assert queries.source == "attributes" and len(texts) == 2 * len(groups) and len(images) == len(groups)
    natural = [q for q in queries.queries if q.query_set == "natural"]
    categories = {a.attributes["category"] for a in assets}
    assert natural and all(q.kind == "text" and q.language in ("en", "zh") for q in natural)
    for q in natural:  # relevant = every asset of the categories the query describes
        named = set(q.group.split("+")) & categories
        assert set(q.relevant) == {a.asset_id for a in assets if a.attributes["category"] in named}
    chair = next(q for q in texts if q.language == "zh" and q.group.startswith("chair/"))
    assert chair.text.startswith("一把") and chair.text.endswith("的椅子")
    for q in [*texts, *images]:
        members = {
            a.asset_id for a in assets if f"{a.attributes['category']}/{a.attributes['colour']}" == q.group
        }
        assert set(q.relevant) == members
    for q in images:  # held-out views: rendered now, never indexed
        assert "query_views" in q.image and all(q.image not in map(str, a.view_paths) for a in assets)
    again = QuerySet.load(tmp / "out" / "queries.json")
    assert [q.qid for q in again.queries] == [q.qid for q in queries.queries]


@pytest.mark.slow
def test_comparison_covers_every_usable_algorithm_mode_and_language(setup):
    tmp, assets, settings = setup
    queries = build_queries(assets, tmp / "cmp", seed=1)
    with FakeDashScopeServer(dim=64) as fake:
        live = settings.model_copy(update={"dashscope_base_url": fake.base_url})
        with SearchService(live) as service:
            first = evaluate(service, queries, ["siglip", "qwen", "e5"], tmp / "cmp", progress=False)
            second = evaluate(service, queries, ["siglip", "qwen", "e5"], tmp / "cmp2", progress=False)
    labels = {r["label"] for r in first.rows}
    for language in ("en", "zh"):
        assert {
            f"siglip text_to_text {language}",
            f"siglip text_to_image views {language}",
            f"siglip text_to_image pooled {language}",
            f"siglip text_to_image asset {language}",
            f"siglip fused views {language}",
            f"siglip fused pooled {language}",
            f"qwen text_to_image asset {language}",
            f"qwen fused asset {language}",
            f"e5 text_to_text {language}",
        } <= labels
    assert {
        "siglip image_to_image views",
        "siglip image_to_image pooled",
        "siglip image_to_image asset",
        "siglip image_to_text",  # captions: no image layout
        "siglip fused views",
        "siglip fused pooled",
        "qwen image_to_image asset",
        "qwen fused asset",
    } <= labels
    # e5 embeds text only: captions, and captions fused with keywords.
    assert {r["mode"] for r in first.rows if r["algorithm"] == "e5"} == {"text_to_text", "hybrid"}
    for row in first.rows:
        assert 0 <= row["r@1"] <= row["r@5"] <= row["r@10"] <= 1
        assert row["recall@10"] <= row["r@10"] and row["latency_p50_ms"] > 0
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("latency")} for r in rows]  # noqa: E731
    assert strip(first.rows) == strip(second.rows)  # same queries, same index: the same numbers
    metrics = json.loads((tmp / "cmp" / "metrics.json").read_text())
    assert metrics["query_source"] == "attributes" and len(metrics["rows"]) == len(first.rows)
    assert (tmp / "cmp" / "recall_at_k.png").stat().st_size > 10_000
    assert (tmp / "cmp" / "per_category.png").exists() and (tmp / "cmp" / "results.csv").exists()
    assert "| siglip | text | in-grammar | fused |" in comparison_table(first.rows)
    assert "| siglip | text | natural | fused |" in comparison_table(first.rows)
