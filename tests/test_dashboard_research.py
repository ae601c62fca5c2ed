"""The dashboard's research tools: facets and filters, keyword and hybrid modes, judgments, downloads, the
comparison tab, and remote 3D models, first through its handlers, then in Voila driven through Chromium."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from file_host import FakeFiles
from servers import ServedApp

from assetlib.encoders.registry import get_encoder
from assetlib.faces.api.app import create_app
from assetlib.faces.api_client import ApiClient
from assetlib.faces.browser import dashboard_page, run_query, wait_for_viewer
from assetlib.faces.dashboard.app import Dashboard
from assetlib.faces.serve import dashboard_server, free_port
from assetlib.store.db import Database
from assetlib.store.populate import load_shards
from assetlib.vocab import MODE_TITLES, Mode

ARTIFACTS = Path(os.environ.get("ASSETLIB_TEST_ARTIFACTS", "outputs/test-artifacts")) / "dashboard"


@pytest.fixture(scope="module")
def api(demo_world):
    """The session's demo world (every algorithm, local GLBs) behind a served API."""
    with ServedApp(create_app(demo_world.settings)) as base:
        yield base, demo_world


@pytest.fixture
def dash(api, tmp_path):
    board = Dashboard(ApiClient(api[0]), outputs=tmp_path / "outputs")
    yield board
    board.client.close()


@pytest.fixture(scope="module")
def remote_world(demo_world):
    """The demo assets with no GLB on this machine: their models live on a local HTTP host standing in
    for Objaverse's, reached through MODEL_URL_TEMPLATE; e5 vectors only."""
    with FakeFiles() as host:
        shard = f"remote-{uuid.uuid4().hex[:6]}"  # a fresh cache path: nothing fetched before
        assets = [
            replace(a, glb_path=None, glb_relpath=f"{shard}/{a.objaverse_uid}.glb") for a in demo_world.assets
        ]
        for remote, local in zip(assets, demo_world.assets, strict=True):
            host.files[f"/glbs/{remote.glb_relpath}"] = local.glb_path.read_bytes()
        settings = demo_world.settings.model_copy(
            update={
                "db_name": f"remote_{uuid.uuid4().hex[:8]}",
                "model_url_template": host.url("/glbs/{path}"),
            }
        )
        with Database.open(settings) as db:
            name = get_encoder("e5", settings).info.name
            load_shards(db, demo_world.tmp / "run", name, assets, progress=False)
        with ServedApp(create_app(settings)) as base:
            yield base, assets, host, settings


def _data_uri_files(html: str) -> dict[str, bytes]:
    """The files inside the download links of some HTML, by file name."""
    found = re.findall(r'download="([^"]+)" href="data:[^;]+;charset=utf-8;base64,([^"]+)"', html)
    return {name: base64.b64decode(data) for name, data in found}


def _chips(board: Dashboard, field: str) -> list:
    rows = [r for r in board.filters.facets.children if f"al-facet-{field}" in r._dom_classes]
    return list(rows[0].children[1:]) if rows else []


def test_facet_chips_count_the_candidates_and_a_click_filters_the_results(dash, api):
    _, world = api
    dash.search_text("a chair")
    assert dash.error.value == "", dash.error.value
    chips = _chips(dash, "categories")
    assert chips, "no category facets shown"
    value, count = chips[0].description.rsplit("  ", 1)
    truth = sum(1 for a in world.assets if value in a.categories)
    assert int(count) == truth  # 200 candidates hold all 24 assets: the count is the library's
    chips[0].click()
    assert dash.error.value == "" and dash.last_response["filters"]["categories"] == [value]
    assert len(dash.results) == min(truth, dash.top_k.value)
    assert all(value in hit["categories"] for hit in dash.results)
    active = [c for c in dash.filters.active.children if "al-filter-chip" in c._dom_classes]
    assert [c.description for c in active] == [f"category: {value} ×"]
    assert "filtered" in dash.status.value

    faces = _chips(dash, "faces")
    assert faces
    faces[0].click()
    low, high = dash.filters.face_min.value, dash.filters.face_max.value
    assert all(low <= hit["face_count"] <= (high or 10**9) for hit in dash.results)
    assert all(value in hit["categories"] for hit in dash.results)  # filters add up

    clear = [c for c in dash.filters.active.children if "al-clear-chip" in c._dom_classes]
    clear[0].click()
    assert dash.last_response["filters"] == {} and len(dash.results) == dash.top_k.value


def test_keyword_and_hybrid_modes_from_the_mode_switch(dash):
    dash.mode.value = "keyword"
    dash.search_text("chair")
    assert dash.error.value == "" and dash.last_response["mode"] == "keyword"
    assert dash.results and all(
        "chair" in " ".join([h["caption_en"] or "", h["name"] or "", *h["tags"]]).lower()
        for h in dash.results
    )
    dash.mode.value = "hybrid"
    dash.search_text("chair")
    assert dash.error.value == "" and dash.last_response["mode"] == "hybrid"
    assert any("keyword" in h["matched_by"] for h in dash.results)
    dash.search_upload("image", "red.png", b"\x89PNG\r\n\x1a\n")
    assert "needs a text query" in dash.error.value


def test_judging_three_results_stores_three_rows_and_the_downloads_carry_them(dash):
    query = f"a wooden chair {uuid.uuid4().hex[:6]}"
    dash.search_text(query)
    assert dash.error.value == ""
    for index, relevant in ((0, True), (1, False), (2, True)):
        dash.judge(index, relevant)
    assert dash.error.value == ""
    stored = dash.client.judgments(query)
    assert sorted((j["rank"], j["relevant"]) for j in stored) == [(1, True), (2, False), (3, True)]
    assert {j["algorithm"] for j in stored} == {dash.last_response["algorithm"]}
    assert dash.cards[0].relevant.button_style == "success"
    assert dash.cards[1].irrelevant.button_style == "danger"
    assert "judged 3 of these: 2 relevant" in dash.downloads.value

    files = _data_uri_files(dash.downloads.value)
    rows = list(csv.DictReader(io.StringIO(next(v for k, v in files.items() if k.endswith(".csv")).decode())))
    assert [r["asset_id"] for r in rows] == [h["asset_id"] for h in dash.results]  # what is shown
    assert [r["relevant"] for r in rows[:4]] == ["True", "False", "True", ""]
    as_json = json.loads(next(v for k, v in files.items() if k.endswith(".json")))
    assert [r["similarity"] for r in as_json] == [h["similarity"] for h in dash.results]
    glbs = next(v for k, v in files.items() if k.endswith(".txt")).decode().split()
    assert glbs == [h["model_url"] for h in dash.results if h["model_url"]]

    dash.judge(1, False)  # the same mark again takes it back
    assert len(dash.client.judgments(query)) == 2 and dash.cards[1].irrelevant.button_style == ""
    dash.judge(1, True)
    dash.search_text("a red car")
    dash.search_text(query)  # the marks come back with the query
    assert [c.relevant.button_style for c in dash.cards[:3]] == ["success"] * 3

    dash.show_metrics()
    judged = [c for c in dash.metrics_box.children if "al-judged" in c._dom_classes]
    assert judged and dash.last_response["algorithm"] in judged[0].value
    assert "judged precision" in judged[0].value and "assetlib-judged.csv" in judged[0].value


def test_the_comparison_tab_shows_both_columns_and_what_each_found_alone(dash):
    panel = dash.compare_panel
    panel.a.algorithm.value, panel.a.mode.value = "e5", "text_to_text"
    panel.b.algorithm.value, panel.b.mode.value = "e5lit", "text_to_image"
    dash.compare("a red chair")
    assert dash.error.value == "", dash.error.value
    answer = dash.last_comparison
    assert answer["a"]["algorithm"] == "e5" and answer["b"]["mode"] == "text_to_image"
    k = dash.top_k.value
    assert len(panel.column_a.children) == len(panel.column_b.children) == k
    assert f"overlap@{k} = {answer['overlap_at_k']:.2f}" in panel.summary.value
    only = [
        h["asset_id"]
        for h, card in zip(answer["a"]["results"], panel.column_a.children, strict=True)
        if "al-card-only" in card._dom_classes
    ]
    assert only == answer["only_a"]
    assert len(answer["both"]) + len(answer["only_a"]) == k
    panel.b.mode.value = "keyword"
    dash.compare()
    assert dash.last_comparison["b"]["mode"] == "keyword"
    # Two layouts of one algorithm and mode.
    panel.a.algorithm.value = panel.b.algorithm.value = "siglip"
    panel.a.mode.value = panel.b.mode.value = "text_to_image"
    panel.a.layout.value, panel.b.layout.value = "views", "asset"
    dash.compare("a red chair")
    assert dash.error.value == "", dash.error.value
    answer = dash.last_comparison
    assert (answer["a"]["layout"], answer["b"]["layout"]) == ("views", "asset")
    assert "views" in panel.head_a.value and "asset" in panel.head_b.value


def test_a_remote_model_goes_to_the_browser_by_url(remote_world, tmp_path):
    base, _assets, host, _ = remote_world
    board = Dashboard(ApiClient(base), outputs=tmp_path)
    board.search_text("a chair")
    assert board.error.value == "" and board.results[0]["model_source"] == "remote"
    first = board.results[0]
    assert board.viewer.src == first["model_url"] and board.viewer.glb == b""
    assert first["model_url"].startswith(host.url("/glbs/"))
    assert "fetch-models --id" in board.viewer.hint
    assert "model on remote host" in board.cards[0].widget.children[1].value
    board.client.close()


def _wait_for_judgments(base: str, query: str, n: int) -> list[dict]:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = httpx.get(f"{base}/judgments", params={"query": query}).json()
        if len(found) >= n:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{n} judgments for {query!r} never arrived")


@pytest.mark.slow
def test_research_tools_in_chromium(remote_world, tmp_path):
    """Voila + Chromium on a library whose GLBs are remote: the viewer loads from the remote host,
    facets filter, three ✓/✗ clicks make three rows that an evaluation reports, the CSV download
    matches the cards, the comparison tab, and a remote host that went away, said in words."""
    from assetlib.pipeline.stages import evaluate

    base, _assets, host, settings = remote_world
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with (
        dashboard_server(base, "127.0.0.1", port, tmp_path / "logs", outputs).start(timeout=180),
        dashboard_page(f"http://127.0.0.1:{port}/", height=1300) as page,
    ):
        query = f"a chair {uuid.uuid4().hex[:4]}"
        status = run_query(page, query)
        assert "results" in status
        assert wait_for_viewer(page) == "loaded"
        viewer = page.locator(".assetlib-viewer")
        assert viewer.get_attribute("data-source") == "remote"
        fetched = [p for p, _ in host.requests if p.startswith("/glbs/")]
        assert fetched, "the browser did not load the model from the remote host"
        page.wait_for_timeout(800)
        page.screenshot(path=str(ARTIFACTS / "08_remote_model.png"), full_page=True)

        # Facets: a category chip filters the results, its filter chip shows.
        chip = page.locator(".al-facet-categories .al-facet-chip").first
        value = chip.inner_text().rsplit(" ", 1)[0].strip()
        chip.click()
        page.wait_for_selector(".al-filter-chip", timeout=60_000)
        page.wait_for_function(
            "() => document.querySelector('.al-status').innerText.includes('filtered')", timeout=60_000
        )
        assert value in page.inner_text(".al-active-filters")
        page.screenshot(path=str(ARTIFACTS / "05_facets.png"), full_page=True)
        page.locator(".al-clear-chip").click()
        page.wait_for_function(
            "() => !document.querySelector('.al-status').innerText.includes('filtered')", timeout=60_000
        )

        # Three judgments from the browser: three rows in the database.
        cards = page.locator(".al-card")
        for index, button in ((0, "✓"), (1, "✗"), (2, "✓")):
            cards.nth(index).get_by_role("button", name=button).click()
            page.wait_for_timeout(300)
        marks = _wait_for_judgments(base, query, 3)
        assert sorted((m["rank"], m["relevant"]) for m in marks) == [(1, True), (2, False), (3, True)]
        page.wait_for_function(
            "() => document.querySelector('.al-downloads').innerText.includes('judged 3')", timeout=60_000
        )
        shown = [c.split(" ")[0] for c in page.locator(".al-card .al-meta").all_inner_texts()]
        with page.expect_download() as download:
            page.locator(".al-download", has_text="CSV").first.click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert [r["asset_id"] for r in rows] == shown
        assert [r["relevant"] for r in rows[:3]] == ["True", "False", "True"]
        page.screenshot(path=str(ARTIFACTS / "07_judgments.png"), full_page=True)

        # The comparison tab.
        page.get_by_role("tab", name="Compare").click()
        page.locator(".al-side-a select").nth(1).select_option(label=MODE_TITLES[Mode.TEXT_TO_TEXT])
        page.locator(".al-side-b select").nth(1).select_option(label=MODE_TITLES[Mode.KEYWORD])
        page.fill("input[placeholder*='Compare two ways']", "a red chair")
        page.get_by_role("button", name="Compare").click()
        page.wait_for_function(
            "() => document.querySelector('.al-compare-summary').innerText.includes('overlap@')",
            timeout=60_000,
        )
        assert page.locator(".al-column-a .al-card").count() > 0
        assert page.locator(".al-column-b .al-card").count() > 0
        page.screenshot(path=str(ARTIFACTS / "06_compare.png"), full_page=True)

        # The metrics tab shows judged precision.
        page.get_by_role("tab", name="Metrics").click()
        page.get_by_role("button", name="Reload").click()
        page.wait_for_selector(".al-judged-table", timeout=60_000)
        assert "e5" in page.inner_text(".al-judged-table")
        page.screenshot(path=str(ARTIFACTS / "07b_judged_precision.png"), full_page=True)

        # The remote host goes away: the next model cannot be reached, and the page says so.
        page.get_by_role("tab", name="Search").click()
        host.stop()
        cards.nth(4).get_by_role("button", name="View in 3D").click()
        assert wait_for_viewer(page, 10**6) == "error"
        note = page.inner_text(".assetlib-viewer-note")
        assert "could not load the model from 127.0.0.1" in note and "fetch-models --id" in note
        page.locator(".assetlib-viewer").scroll_into_view_if_needed()
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / "09_remote_model_unreachable.png"))

    stage = evaluate(
        settings,
        run_dir=tmp_path / "eval",
        algorithms=["e5"],
        queries_file="judged",
        reuse=False,
        progress=False,
    )
    judged = [r for r in stage.report.rows if r["query_set"] == "judged"]
    assert judged and all(r["queries"] >= 1 for r in judged)
