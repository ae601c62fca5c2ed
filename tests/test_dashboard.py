"""The dashboard: its handlers called directly, then the real thing in Voila driven through Chromium."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servers import ServedApp

from assetlib.config import settings_environment
from assetlib.faces.api.app import create_app
from assetlib.faces.api_client import ApiClient
from assetlib.faces.browser import dashboard_page, run_query, viewer_loads, viewer_model, wait_for_viewer
from assetlib.faces.dashboard.app import Dashboard
from assetlib.faces.serve import dashboard_server, free_port

ARTIFACTS = Path(os.environ.get("ASSETLIB_TEST_ARTIFACTS", "outputs/test-artifacts")) / "dashboard"


def _metrics(folder: Path) -> Path:
    """A small evaluation folder in the format `assetlib evaluate` writes (rows, curves, per category)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for algorithm, r10 in (("siglip", 0.8), ("qwen", 0.9)):
        rows.append(
            {
                "algorithm": algorithm,
                "kind": "text",
                "mode": "text_to_image",
                "layout": "views",
                "language": "en",
                "label": f"{algorithm} text_to_image views en",
                "queries": 10,
                "r@1": r10 / 2,
                "recall@1": 0.1,
                "r@5": r10 - 0.1,
                "recall@5": 0.3,
                "r@10": r10,
                "recall@10": 0.5,
                "mrr": 0.4,
                "map": 0.3,
                "ndcg@10": 0.45,
                "latency_p50_ms": 3.0,
                "latency_p95_ms": 5.0,
            }
        )
    curves = {r["label"]: list(np.linspace(r["r@1"], 1.0, 50)) for r in rows}
    per_category = {r["label"]: {"chair": r["r@10"], "car": 1.0} for r in rows}
    path = folder / "metrics.json"
    path.write_text(json.dumps({"rows": rows, "curves": curves, "per_category": per_category}))
    return path


@pytest.fixture(scope="module")
def world(demo_world, tmp_path_factory):
    """The session's 24-asset demo world served over HTTP, with an outputs folder of evaluations."""
    tmp = tmp_path_factory.mktemp("dash")
    _metrics(tmp / "outputs" / "run1" / "05_evaluate")
    with ServedApp(create_app(demo_world.settings)) as base:
        yield base, demo_world.assets, demo_world.settings, tmp


@pytest.fixture
def dash(world):
    base, _, _, tmp = world
    board = Dashboard(ApiClient(base), outputs=tmp / "outputs")
    yield board
    board.client.close()


def _png(colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_text_search_in_english_and_chinese_fills_the_grid_and_opens_the_first(dash):
    dash.search_text("a red chair")
    assert dash.error.value == "", dash.error.value
    assert len(dash.results) == 12 and len(dash.grid.children) == 12
    assert "12 results" in dash.status.value and "English" in dash.language_label.value
    assert dash.last_response["language"] == "en" and dash.last_response["mode"] == "text_to_text"
    assert dash.selected == 0 and dash.viewer.glb[:4] == b"glTF"
    assert len(dash.views_strip.children) == 8  # every view of the opened asset
    card = dash.grid.children[0]
    assert card.children[0].value[:8] == b"\x89PNG\r\n\x1a\n"  # its thumbnail came through the API

    dash.mode.value = "cross"
    dash.search_text("一把红色的椅子")
    assert dash.error.value == "" and "中文" in dash.language_label.value
    assert dash.last_response["language"] == "zh" and dash.last_response["mode"] == "text_to_image"
    assert all(hit["matched_view"] is not None for hit in dash.results)


def test_selecting_a_result_shows_its_own_model_and_views(dash, world):
    _, assets, _, _ = world
    dash.search_text("a chair")
    dash.select(3)
    chosen = dash.results[3]["asset_id"]
    asset = next(a for a in assets if a.asset_id == chosen)
    assert dash.viewer.glb == asset.glb_path.read_bytes()
    assert "al-selected" in dash.grid.children[3]._dom_classes
    assert "al-selected" not in dash.grid.children[0]._dom_classes


def test_algorithms_options_and_their_errors(dash):
    assert {n: b.disabled for n, b in dash.algorithm_buttons.items()} == {
        "e5lit": False,
        "siglip": False,
        "qwen": False,
        "e5": False,
        "qwen3vl": False,  # the world's tiny random Qwen3-VL-Embedding
    }
    dash.algorithm_buttons["qwen"].value = True
    assert dash.algorithm == "qwen" and not dash.algorithm_buttons["siglip"].value  # exactly one chosen
    dash.mode.value = "fused"
    dash.high_quality.value = True
    dash.top_k.value = 5
    dash.search_text("a blue car")
    assert dash.error.value == "" and dash.last_response["mode"] == "fused"
    assert len(dash.results) <= 5 and all(hit["high_quality"] for hit in dash.results)
    before = list(dash.results)

    dash.algorithm_buttons["e5"].value = True
    dash.mode.value = "cross"
    dash.search_text("a blue car")  # e5 has no image tower: the API says so, the page shows it
    assert "text only" in dash.error.value and "failed" in dash.status.value
    assert dash.results == before  # an error does not wipe what was there

    dash.search_text("   ")
    assert "type a query first" in dash.error.value


def test_uploads_search_and_bad_files_are_explained(dash, world):
    _, assets, _, _ = world
    target = assets[4]
    dash.search_upload("image", "view.png", target.view_paths[0].read_bytes())
    assert dash.error.value == "" and dash.results[0]["asset_id"] == target.asset_id
    assert dash.last_response["mode"] == "image_to_image" and dash.query_preview.layout.display == "block"

    # Through the FileUpload widget's own value, as a browser sets it.
    dash.image_upload.value = (
        {
            "name": "red.png",
            "type": "image/png",
            "size": 10,
            "content": memoryview(_png()),
            "last_modified": datetime.now(UTC),
        },
    )
    assert dash.error.value == "" and "red.png" in dash.status.value and dash.image_upload.value == ()

    dash.search_upload("image", "broken.png", _png()[:60])
    assert "al-error" in dash.error.value and "image" in dash.error.value.lower()
    dash.search_upload("image", "huge.png", b"\x89PNG" + b"0" * (10 * 1024 * 1024 + 1))
    assert "limit for a image is 10 MB" in dash.error.value
    dash.search_upload("image", "notes.pdf", b"%PDF-1.4")
    assert "not a supported image file" in dash.error.value
    dash.search_upload("model", "empty.glb", b"")
    assert "empty.glb is empty" in dash.error.value

    dash.search_upload("model", "thing.glb", target.glb_path.read_bytes())
    assert dash.error.value == "" and len(dash.results) == 12
    assert "render" in dash.last_response["timings_ms"].__repr__()


def test_an_unreachable_api_is_reported_not_swallowed(tmp_path):
    board = Dashboard(ApiClient(f"http://127.0.0.1:{free_port()}"), outputs=tmp_path)
    assert "not reachable" in board.error.value and "assetlib serve api" in board.error.value
    board.search_text("a chair")
    assert "no usable algorithm" in board.error.value
    assert "no evaluation found" in board.metrics_box.children[0].value
    board.client.close()


def test_unusable_algorithms_are_disabled_with_the_reason(world):
    _, _, settings, _ = world
    keyless = settings.model_copy(update={"dashscope_api_key": None})
    with ServedApp(create_app(keyless)) as base:
        board = Dashboard(ApiClient(base))
        assert board.algorithm_buttons["qwen"].disabled
        assert "DASHSCOPE_API_KEY" in board.algorithm_buttons["qwen"].tooltip
        assert "qwen</b> unavailable" in board.algorithm_notes.value
        assert not board.algorithm_buttons["siglip"].disabled and board.algorithm == "siglip"
        board.client.close()
    empty = settings.model_copy(update={"db_name": f"dash_empty_{uuid.uuid4().hex[:8]}"})
    with ServedApp(create_app(empty)) as base:
        board = Dashboard(ApiClient(base))
        assert all(b.disabled for b in board.algorithm_buttons.values())
        assert "no vectors in the database yet" in board.error.value
        board.client.close()


def test_the_metrics_tab_shows_the_newest_evaluation(dash, world):
    tmp = world[3]
    html = dash.metrics_box.children[1].value
    assert "al-table" in html and html.count("<tr") == 3 and "qwen" in html
    rows = {r.split("<td>")[1].split("<")[0]: r for r in html.split("<tr")[2:]}
    assert "al-best" in rows["qwen"] and "al-best" not in rows["siglip"]  # the best r@10 stands out
    images = [c for c in dash.metrics_box.children if hasattr(c, "format") and c.format == "png"]
    assert len(images) == 2 and all(i.value[:4] == b"\x89PNG" for i in images)
    newer = _metrics(tmp / "outputs" / "run2" / "05_evaluate")
    manifest = {
        "run": "run2",
        "status": "done",
        "encoders": ["siglip:demo"],
        "stages": [
            {"name": "02_embed_siglip", "status": "done", "seconds": 12.5},
            {"name": "03_embed_qwen", "status": "skipped", "reason": "skipped: no API key"},
        ],
    }
    (tmp / "outputs" / "run2" / "manifest.json").write_text(json.dumps(manifest))
    dash.show_metrics()
    assert str(newer.parent) in dash.metrics_box.children[0].value
    runs = dash.metrics_box.children[-2].value  # the pipeline run, above the reload button
    assert "pipeline run run2" in runs and "skipped: no API key" in runs and "12.5 s" in runs


def _not_blank(png: bytes) -> float:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(pixels.std())


@pytest.mark.slow
def test_the_dashboard_in_chromium(world, tmp_path):
    """Voila + the API + Chromium: English and Chinese queries, the 3D viewer, an upload, metrics."""
    base, assets, _, tmp = world
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with dashboard_server(base, "127.0.0.1", port, tmp_path / "logs", tmp / "outputs").start(timeout=180):
        outside: list[str] = []
        with dashboard_page(f"http://127.0.0.1:{port}/") as page:
            page.on(
                "request",
                lambda r: (
                    outside.append(r.url)
                    if not r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                    else None
                ),
            )
            status = run_query(page, "a red chair", press_enter=True)
            assert "12 results" in status and "English" in status
            assert page.locator(".al-card").count() == 12
            assert wait_for_viewer(page) == "loaded"
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / "01_english_query.png"), full_page=True)
            canvas = page.locator(".assetlib-viewer").screenshot()
            assert _not_blank(canvas) > 5.0  # the model was drawn, not an empty box

            loads = viewer_loads(page)
            status = run_query(page, "一把红色的椅子", press_enter=False)
            assert "中文" in status and page.locator(".al-card").count() == 12
            assert wait_for_viewer(page, loads) == "loaded"  # the first result opens by itself
            loads = viewer_loads(page)
            third = page.locator(".al-card").nth(2)
            third_id = third.locator(".al-meta").inner_text().split(" ")[0]
            third.get_by_role("button", name="View in 3D").click()
            assert wait_for_viewer(page, loads) == "loaded" and viewer_model(page) == third_id
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / "02_chinese_query_viewer.png"), full_page=True)

            with page.expect_file_chooser() as chooser:
                page.get_by_role("button", name="Image…").click()
            chooser.value.set_files(str(assets[7].view_paths[0]))
            page.wait_for_function(
                "() => document.querySelector('.al-status').innerText.includes('results for image')",
                timeout=120_000,
            )
            assert assets[7].asset_id in page.locator(".al-card").first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "03_image_query.png"), full_page=True)

            page.get_by_role("tab", name="Metrics").click()
            page.wait_for_selector(".al-table", timeout=60_000)
            assert "qwen" in page.inner_text(".al-table")
            page.screenshot(path=str(ARTIFACTS / "04_metrics.png"), full_page=True)
        assert outside == [], f"the dashboard reached outside this machine: {outside}"


@pytest.mark.slow
def test_serve_dashboard_starts_both_and_stops_on_a_signal(world, tmp_path):
    """`assetlib serve dashboard`: the API and Voila come up, their URLs are printed, a signal stops both."""
    _, _, settings, tmp = world
    api_port, port = free_port(), free_port()
    env = {**os.environ, **settings_environment(settings)}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "assetlib", "serve", "dashboard", "--port", str(port)),
            *("--api-port", str(api_port), "--outputs", str(tmp / "outputs"), "--log-dir", str(tmp_path)),
            *("--screenshots", str(tmp_path / "shots")),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    seen: list[str] = []

    def read_until(marker: str, seconds: float = 240) -> str:
        """The output so far, once a line starts with `marker` (a hang fails the test, never blocks it)."""
        deadline = time.monotonic() + seconds
        while not any(x.startswith(marker) for x in seen) and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                if process.poll() is not None:
                    break
        return "".join(seen)

    try:
        printed = read_until("logs:")
        assert f"dashboard: http://127.0.0.1:{port}/" in printed and f"http://127.0.0.1:{api_port}" in printed
        assert "warmed siglip" in printed  # the first visitor does not wait for the model to load
        assert httpx.get(f"http://127.0.0.1:{api_port}/health").json()["counts"]["assets"] == 24
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=60).status_code == 200
        printed = read_until("screenshots:")  # they come once the page has answered a query
        assert "screenshots:" in printed, printed
        for name in ("dashboard_query.png", "dashboard_viewer.png"):
            assert Image.open(tmp_path / "shots" / name).size[0] >= 1200
    finally:
        process.send_signal(signal.SIGTERM)  # `kill`; Ctrl-C (SIGINT) takes the same path
        assert process.wait(timeout=60) == 0, "".join(seen)
    for url in (f"http://127.0.0.1:{api_port}/health", f"http://127.0.0.1:{port}/"):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url)


def test_the_dashboard_kernel_imports_no_store_no_torch_no_mesh_library():
    """What notebooks/dashboard.ipynb imports stays a thin client of the API."""
    probe = (
        "import sys, assetlib.faces.dashboard.app as d; "
        "print(' '.join(m for m in ('psycopg', 'psycopg_pool', 'torch', 'trimesh', 'pyrender', "
        "'transformers', 'assetlib.store', 'assetlib.search', 'assetlib.encoders', "
        "'assetlib.library.demo') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "", f"the dashboard imports {loaded.stdout.strip()}"
