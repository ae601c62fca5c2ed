"""Research features over the real API: annotations, filters and facets, keyword and hybrid search,
remote models and fetch-models, comparison, judgments, export, and their evaluation rows."""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import replace

import httpx
import pytest
from conftest import make_assets
from file_host import FakeFiles, glb
from servers import ServedApp as Served

from assetlib.config import load_settings
from assetlib.faces.api.app import create_app
from assetlib.library.remote_models import cached_model_path
from assetlib.pipeline.fetch import fetch_selected
from assetlib.search.service import SearchService
from assetlib.store.db import Database
from assetlib.store.facets import face_bucket
from assetlib.store.filters import SearchFilters
from assetlib.store.keyword import chinese_terms, explain_keyword
from assetlib.store.load import load_catalog


@pytest.fixture(scope="module")
def world(demo_world):
    """The session's demo world served over HTTP."""
    with Served(create_app(demo_world.settings)) as base:
        yield base, demo_world.assets, demo_world.settings


def _passes(asset, wanted: SearchFilters) -> bool:
    """Brute-force filter check in Python, the definition the SQL must agree with."""
    return (
        (not wanted.categories or bool(set(asset.categories) & set(wanted.categories)))
        and (not wanted.lvis or bool(set(asset.lvis) & set(wanted.lvis)))
        and (not wanted.licenses or asset.license in wanted.licenses)
        and (not wanted.tags or bool(set(asset.tags) & set(wanted.tags)))
        and (wanted.face_min is None or (asset.face_count or 0) >= wanted.face_min)
        and (wanted.face_max is None or (asset.face_count or 0) <= wanted.face_max)
        and (not wanted.high_quality or asset.high_quality)
    )


def test_the_demo_library_is_read_with_its_objaverse_lvis_and_gobjaverse_annotations(world):
    _, assets, _ = world
    for asset in assets:
        category = asset.attributes["category"]
        assert asset.name and category in asset.name
        assert asset.license in {"by", "by-sa", "cc0", "by-nc", "by-nd"}
        assert asset.lvis == (category,)
        assert len(asset.categories) == 2  # Sketchfab's category, then G-Objaverse's label
        assert asset.face_count and asset.face_count > 0 and asset.vertex_count
        assert asset.glb_relpath and asset.glb_relpath.endswith(f"{asset.objaverse_uid}.glb")
        assert set(asset.tags) == {category, asset.attributes["colour"], asset.attributes["material"]}


@pytest.mark.parametrize(
    ("algorithm", "mode"), [("e5", "text_to_text"), ("siglip", "text_to_image"), ("qwen", "fused")]
)
def test_a_filtered_search_returns_k_results_that_satisfy_it_and_facets_count_the_candidates(
    world, algorithm, mode
):
    base, assets, _ = world
    licenses = sorted({a.license for a in assets})[:2]
    wanted = SearchFilters(licenses=tuple(licenses), face_min=100)
    passing = [a for a in assets if _passes(a, wanted)]
    k = min(5, len(passing))
    assert k >= 3
    body = {
        "query": "a wooden chair",
        "algorithm": algorithm,
        "mode": mode,
        "top_k": k,
        "facets": True,
        "filters": {"licenses": licenses, "face_min": 100},
    }
    data = httpx.post(f"{base}/search/text", json=body, timeout=60).json()
    hits = data["results"]
    assert len(hits) == k
    by_id = {a.asset_id: a for a in assets}
    assert all(_passes(by_id[h["asset_id"]], wanted) for h in hits)
    assert all(h["license"] in licenses and h["face_count"] >= 100 for h in hits)
    assert data["filters"] == {"licenses": licenses, "face_min": 100}
    # Facets are counted over the candidates (top 200): every passing asset in this small library.
    assert data["candidates"] == len(passing)
    brute: dict[str, dict[str, int]] = {}
    for asset in passing:
        for field, values in (
            ("categories", asset.categories),
            ("lvis", asset.lvis),
            ("tags", asset.tags),
            ("licenses", (asset.license,)),
        ):
            for value in values:
                brute.setdefault(field, {})[value] = brute.setdefault(field, {}).get(value, 0) + 1
    for field in ("categories", "lvis", "licenses"):
        assert {v["value"]: v["count"] for v in data["facets"][field]} == brute[field], field
    faces = {v["value"]: v["count"] for v in data["facets"]["faces"]}
    for label, count in faces.items():
        low, high = face_bucket(label)
        expected = sum(
            1
            for a in passing
            if (low is None or a.face_count >= low) and (high is None or a.face_count <= high)
        )
        assert count == expected
    assert sum(faces.values()) == len(passing)


def test_bad_filters_get_422_not_500(world):
    base, _, _ = world
    for filters in (
        {"face_min": 10, "face_max": 5},
        {"face_min": -1},
        {"licenses": [""]},
        {"tags": ["x"] * 51},
    ):
        response = httpx.post(f"{base}/search/text", json={"query": "chair", "filters": filters})
        assert response.status_code == 422, (filters, response.text)


@pytest.mark.parametrize(("query", "language"), [("chair", "en"), ("椅子", "zh")])
def test_keyword_search_finds_assets_by_their_words(world, query, language):
    base, assets, _ = world
    data = httpx.post(f"{base}/search/text", json={"query": query, "mode": "keyword", "top_k": 3}).json()
    assert data["mode"] == "keyword" and data["algorithm"] == "keyword" and data["language"] == language
    chairs = {a.asset_id for a in assets if a.attributes["category"] == "chair"}
    assert data["results"], data
    assert {h["asset_id"] for h in data["results"]} <= chairs | {
        a.asset_id for a in assets if "椅" in (a.caption_cn or "")
    }
    assert data["results"][0]["asset_id"] in chairs and all(
        h["matched_by"] == ["keyword"] for h in data["results"]
    )


def test_a_chinese_keyword_query_matches_a_caption_that_words_it_differently(world):
    """Characters pairs, not whole-query trigrams: 红色的木椅子 finds 金属质感的红色椅子 (a word between)."""
    base, assets, _ = world
    red_chairs = {
        a.asset_id for a in assets if a.attributes["category"] == "chair" and "红色" in (a.caption_cn or "")
    }
    data = httpx.post(
        f"{base}/search/text", json={"query": "一把红色的木椅子", "mode": "keyword", "top_k": 5}
    ).json()
    assert data["language"] == "zh" and data["results"]
    if red_chairs:
        assert data["results"][0]["asset_id"] in red_chairs
    assert all(0 < h["similarity"] <= 1 for h in data["results"])
    assert chinese_terms("红色的 chair 椅") == ["红色", "色的", "椅", "chair"]


def test_hybrid_fuses_keyword_with_the_vector_rankings(world):
    base, _assets, _ = world
    data = httpx.post(
        f"{base}/search/text",
        json={"query": "red chair", "algorithm": "siglip", "mode": "hybrid", "top_k": 8},
    ).json()
    assert data["mode"] == "hybrid" and len(data["results"]) == 8
    sources = {s for h in data["results"] for s in h["matched_by"]}
    assert sources == {"keyword", "text_to_text", "text_to_image"}, sources
    chair = next(h for h in data["results"] if "keyword" in h["matched_by"])
    assert "chair" in chair["caption_en"] or "chair" in (chair["name"] or "")


def test_keyword_statements_are_served_by_their_gin_indexes(db):
    """EXPLAIN on 6,000 catalog rows: English full text through assets_words_en_idx, Chinese character
    pairs through assets_words_zh_idx."""
    assets = [
        replace(a, name=f"model {i}", tags=("chair",) if i % 50 == 0 else ("plant",))
        for i, a in enumerate(make_assets(6000))
    ]
    assets = [
        replace(a, caption_en=f"a potted plant {i}", caption_cn=f"一盆植物 {i}") if i % 50 else a
        for i, a in enumerate(assets)
    ]
    with db.connection() as conn:
        load_catalog(conn, assets, "b0")
        conn.execute("ANALYZE assets")
        english = explain_keyword(conn, "a chair for one person", "en", 10)
        chinese = explain_keyword(conn, "红色椅子", "zh", 10)
    assert "Bitmap Index Scan on assets_words_en_idx" in english, english
    assert "Bitmap Index Scan on assets_words_zh_idx" in chinese, chinese


def test_compare_reports_overlap_and_what_each_found_alone(world):
    base, _, _ = world
    body = {
        "query": "a red chair",
        "top_k": 6,
        "a": {"algorithm": "siglip", "mode": "text_to_image"},
        "b": {"algorithm": "e5", "mode": "text_to_text"},
    }
    data = httpx.post(f"{base}/search/compare", json=body, timeout=60).json()
    ids_a = [h["asset_id"] for h in data["a"]["results"]]
    ids_b = [h["asset_id"] for h in data["b"]["results"]]
    assert data["both"] == [x for x in ids_a if x in ids_b]
    assert data["only_a"] == [x for x in ids_a if x not in ids_b]
    assert data["only_b"] == [x for x in ids_b if x not in ids_a]
    assert data["overlap"] == len(data["both"]) and data["overlap_at_k"] == round(len(data["both"]) / 6, 4)
    same = httpx.post(f"{base}/search/compare", json={**body, "b": body["a"]}, timeout=60).json()
    assert same["overlap_at_k"] == 1.0 and same["only_a"] == same["only_b"] == []


def test_exports_parse_and_match_the_results(world):
    base, _, _ = world
    body = {"query": "a blue car", "algorithm": "siglip", "mode": "text_to_image", "top_k": 7}
    shown = httpx.post(f"{base}/search/text", json=body).json()["results"]
    as_csv = httpx.post(f"{base}/search/text", params={"format": "csv"}, json=body)
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["asset_id"] for r in rows] == [h["asset_id"] for h in shown]
    assert [r["objaverse_uid"] for r in rows] == [h["objaverse_id"] for h in shown]
    assert [float(r["similarity"]) for r in rows] == [h["similarity"] for h in shown]
    assert [r["caption_cn"] for r in rows] == [h["caption_cn"] for h in shown]
    as_rows = httpx.post(f"{base}/search/text", params={"format": "rows"}, json=body).json()
    assert [r["model_url"] for r in as_rows] == [h["model_url"] for h in shown]
    listed = httpx.post(f"{base}/search/text", params={"format": "glb-list"}, json=body).text.splitlines()
    assert listed == [h["model_url"] for h in shown]
    assert httpx.get(listed[0]).content[:4] == b"glTF"


def test_judgments_are_stored_summarised_exported_and_evaluated(world, tmp_path):
    from assetlib.pipeline.stages import evaluate

    base, _assets, settings = world
    query = f"a chair to judge {uuid.uuid4().hex[:6]}"
    shown = httpx.post(
        f"{base}/search/text", json={"query": query, "algorithm": "e5", "mode": "text_to_text", "top_k": 4}
    ).json()["results"]
    marks = [True, False, True]
    sent = []
    for rank, (hit, relevant) in enumerate(zip(shown, marks, strict=False), start=1):
        mark = {
            "query": query,
            "language": "en",
            "algorithm": "e5",
            "mode": "text_to_text",
            "asset_id": hit["asset_id"],
            "relevant": relevant,
            "rank": rank,
        }
        assert httpx.post(f"{base}/judgments", json=mark).status_code == 201
        sent.append(mark)
    again = {**sent[1], "relevant": True}
    assert httpx.post(f"{base}/judgments", json=again).json()["relevant"] is True  # re-judged: replaced
    stored = httpx.get(f"{base}/judgments", params={"query": query}).json()
    assert len(stored) == 3 and [j["relevant"] for j in stored].count(True) == 3
    bad = httpx.post(f"{base}/judgments", json={**sent[0], "asset_id": "no/such"})
    assert bad.status_code == 422 and "no asset" in bad.text
    precision = httpx.get(f"{base}/judgments/precision").json()
    e5 = next(p for p in precision if p["algorithm"] == "e5" and p["mode"] == "text_to_text")
    assert e5["judged"] >= 3 and 0 < e5["judged_precision"] <= 1
    exported = list(
        csv.DictReader(io.StringIO(httpx.get(f"{base}/judgments/export", params={"query": query}).text))
    )
    assert [r["asset_id"] for r in exported] == [h["asset_id"] for h in shown[:3]]
    assert {r["relevant"] for r in exported} == {"True"}
    query_set = httpx.get(f"{base}/judgments/query-set").json()
    mine = next(q for q in query_set["queries"] if q["text"] == query)
    assert sorted(mine["relevant"]) == sorted(h["asset_id"] for h in shown[:3])
    stage = evaluate(
        settings,
        run_dir=tmp_path / "eval",
        algorithms=["e5"],
        queries_file="judged",
        reuse=False,
        progress=False,
    )
    judged_rows = [r for r in stage.report.rows if r["query_set"] == "judged" and r["mode"] == "text_to_text"]
    assert judged_rows and judged_rows[0]["algorithm"] == "e5"
    assert {"keyword", "hybrid"} <= {r["mode"] for r in stage.report.rows}


def test_a_mark_is_taken_back_by_what_it_is_about(world):
    """DELETE /judgments needs only which result (no relevant/rank), and finds a query stored stripped."""
    base, _assets, _settings = world
    query = f"a lamp to take back {uuid.uuid4().hex[:6]}"
    shown = httpx.post(
        f"{base}/search/text", json={"query": query, "algorithm": "e5", "mode": "text_to_text", "top_k": 1}
    ).json()["results"]
    key = {
        "query": query,
        "language": "en",
        "algorithm": "e5",
        "mode": "text_to_text",
        "asset_id": shown[0]["asset_id"],
    }
    assert (
        httpx.post(f"{base}/judgments", json={**key, "query": f"  {query} ", "relevant": True}).status_code
        == 201
    )
    assert len(httpx.get(f"{base}/judgments", params={"query": query}).json()) == 1
    assert len(httpx.get(f"{base}/judgments", params={"query": f" {query} "}).json()) == 1  # read as stored
    gone = httpx.request("DELETE", f"{base}/judgments", json={**key, "query": f"{query}  "})
    assert gone.status_code == 200 and gone.json() == {"deleted": True}
    assert httpx.get(f"{base}/judgments", params={"query": query}).json() == []
    again = httpx.request("DELETE", f"{base}/judgments", json=key)
    assert again.json() == {"deleted": False}
    incomplete = httpx.request("DELETE", f"{base}/judgments", json={"query": query})
    assert incomplete.status_code == 422


def test_remote_models_then_fetch_models_then_the_api_serves_the_local_copy(assetlib_home, tmp_path):
    """An asset without a local GLB: model_url points at the remote host (a local HTTP server); fetch-models
    downloads it (resuming a dropped transfer), after which the API serves the cached file."""
    with FakeFiles() as host:
        settings = load_settings(
            environ={},
            home=str(assetlib_home),
            db_name=f"r_{uuid.uuid4().hex[:10]}",
            model_url_template=host.url("/glbs/{path}"),
        )
        assets = [
            replace(a, glb_relpath=f"000-00{i % 2}/{a.objaverse_uid}.glb", name="red chair", tags=("chair",))
            for i, a in enumerate(make_assets(4))
        ]
        payload = {a.asset_id: glb(i, 20_000) for i, a in enumerate(assets)}
        for a in assets:
            host.files[f"/glbs/{a.glb_relpath}"] = payload[a.asset_id]
        host.scripts[f"/glbs/{assets[1].glb_relpath}"] = [("drop", 7000)]  # the transfer breaks midway
        with Database.open(settings) as db:
            with db.connection() as conn:
                load_catalog(conn, assets, "b0")
            for asset in assets:
                cached = cached_model_path(settings.home, asset.glb_relpath or "")
                if cached is not None and cached.exists():
                    cached.unlink()
            with SearchService(settings, db) as service, Served(create_app(settings, service)) as base:
                hit = httpx.post(f"{base}/search/text", json={"query": "chair", "mode": "keyword"}).json()[
                    "results"
                ]
                remote = {h["asset_id"]: h for h in hit}
                assert remote[assets[1].asset_id]["model_source"] == "remote"
                assert remote[assets[1].asset_id]["model_url"] == host.url(f"/glbs/{assets[1].glb_relpath}")
                record = httpx.get(f"{base}/assets/{assets[1].asset_id}").json()
                assert record["model_url"] == remote[assets[1].asset_id]["model_url"]
                missing = httpx.get(f"{base}/assets/{assets[1].asset_id}/model")
                assert missing.status_code == 404 and "fetch-models" in missing.text

                _plan, report = fetch_selected(
                    settings, [a.asset_id for a in assets[:2]], run_dir=tmp_path, db=db
                )
                # One came whole, one was resumed after the drop (each file counts once).
                assert (report.downloaded, report.resumed, report.failures) == (1, 1, []), report.summary()
                ranges = [r for p, r in host.requests if p == f"/glbs/{assets[1].glb_relpath}"]
                assert ranges == [None, "bytes=7000-"]  # resumed where the drop left it
                written = json.loads((tmp_path / "fetch_report.json").read_text())
                assert (written["downloaded"], written["resumed"]) == (1, 1)

                served = httpx.get(f"{base}/assets/{assets[1].asset_id}/model")
                assert served.status_code == 200 and served.content == payload[assets[1].asset_id]
                after = httpx.post(f"{base}/search/text", json={"query": "chair", "mode": "keyword"}).json()
                sources = {h["asset_id"]: h["model_source"] for h in after["results"]}
                assert sources[assets[0].asset_id] == sources[assets[1].asset_id] == "local"
                assert sources[assets[2].asset_id] == "remote"
                plan, again = fetch_selected(settings, [a.asset_id for a in assets[:2]], db=db)
                assert (plan.local, len(plan.downloads), again.downloaded) == (2, 0, 0)  # nothing twice
