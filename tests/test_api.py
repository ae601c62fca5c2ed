"""The REST API over real HTTP: every mode and algorithm, every client error, and a schemathesis run."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image
from servers import ServedApp as Served

from assetlib.faces.api.app import create_app


@pytest.fixture(scope="module")
def world(demo_world):
    """The session's demo world (tiny SigLIP, e5 and Qwen through a fake DashScope) served over HTTP."""
    with Served(create_app(demo_world.settings)) as base:
        yield base, demo_world.assets, demo_world.settings, demo_world.fake


def _png(colour=(200, 30, 30, 255), size=(40, 40), mode="RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGBA" else colour[:3]).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("algorithm", "body", "mode"),
    [
        ("siglip", {}, "text_to_text"),
        ("siglip", {"cross_modal": True}, "text_to_image"),
        ("siglip", {"mode": "fused"}, "fused"),
        ("e5", {}, "text_to_text"),
        ("qwen", {}, "text_to_text"),
        ("qwen", {"cross_modal": True}, "text_to_image"),
        ("qwen", {"mode": "fused"}, "fused"),
    ],
)
@pytest.mark.parametrize("query", ["a red chair with four legs", "一把红色的椅子"])
def test_text_search_in_every_mode(world, algorithm, body, mode, query):
    base, assets, _, _ = world
    response = httpx.post(
        f"{base}/search/text", json={"query": query, "algorithm": algorithm, "top_k": 5, **body}
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["mode"] == mode and data["language"] == ("zh" if "椅" in query else "en")
    hits = data["results"]
    assert len(hits) == 5 and len({h["asset_id"] for h in hits}) == 5
    known = {a.asset_id for a in assets}
    for hit in hits:
        assert hit["asset_id"] in known
        assert {"asset_id", "similarity", "caption_en", "caption_cn", "objaverse_id", "model_url"} <= set(hit)
        assert hit["model_url"].endswith("/model") and hit["thumbnail_url"] and len(hit["view_urls"]) == 8
    scores = [h["similarity"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    if mode == "text_to_image" and algorithm == "siglip":
        assert all(h["matched_view"] is not None for h in hits)
    assert data["timings_ms"]["encode_ms"] >= 0 and data["timings_ms"]["db_ms"] > 0
    # Time queued for the encoder and the size of the batch the query was encoded in, reported apart.
    timings = data["timings_ms"]
    # An encoded query came in a batch of one or more; one asked before came from the cache (batch 0).
    assert timings["queue_ms"] >= 0 and (timings["batch"] >= 1) != bool(timings["cached"])


@pytest.mark.parametrize("algorithm", ["siglip", "qwen"])
@pytest.mark.parametrize("params", [{}, {"cross_modal": "true"}, {"mode": "fused"}])
def test_image_search_in_every_mode(world, algorithm, params):
    base, assets, _, _ = world
    view = assets[3].view_paths[0].read_bytes()
    response = httpx.post(
        f"{base}/search/image",
        params={"algorithm": algorithm, "top_k": 4, **params},
        files={"file": ("query.png", view, "image/png")},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["results"]
    assert len(hits) == 4
    if not params and algorithm == "siglip":  # a view of an indexed asset finds that asset first
        assert hits[0]["asset_id"] == assets[3].asset_id and hits[0]["similarity"] > 0.999


def test_search_by_3d_model(world):
    base, assets, _, _ = world
    glb = assets[5].glb_path.read_bytes()
    response = httpx.post(
        f"{base}/search/model",
        params={"top_k": 3},
        files={"file": ("thing.glb", glb, "model/gltf-binary")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert len(data["results"]) == 3 and data["timings_ms"]["render_ms"] > 0


def test_health_assets_views_and_models(world):
    base, assets, _, _ = world
    health = httpx.get(f"{base}/health").json()
    assert health["status"] == "ok" and health["database"] is True and health["counts"]["assets"] == 24
    algorithms = {a["algorithm"]: a for a in health["algorithms"]}
    assert algorithms["siglip"]["usable"] and algorithms["siglip"]["stored_encoders"] == ["siglip:tiny-test"]
    assert set(health["counts"]["vectors"]) == {
        "siglip:tiny-test",
        "e5:multilingual-e5-small",
        "qwen:tongyi-embedding-vision-plus@64",
        "e5lit:tiny-lit",
        "qwen3vl:tiny-qwen3vl",
    }
    asset = assets[0]
    record = httpx.get(f"{base}/assets/{asset.asset_id}").json()
    assert record["caption_en"] == asset.caption_en and len(record["view_urls"]) == 8
    view = httpx.get(record["view_urls"][2])
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(view.content)).size == (32, 32)
    model = httpx.get(record["model_url"])
    assert model.status_code == 200 and model.content[:4] == b"glTF"
    assert httpx.get(f"{base}/assets/no/such-asset").status_code == 404
    assert httpx.get(f"{base}/assets/{asset.asset_id}/views/99").status_code == 404


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query": ""}, "at least 1 character"),
        ({"query": "   \t "}, "the query is empty"),
        ({"query": "x" * 1001}, "at most 1000 characters"),
        ({"query": "chair", "algorithm": "clip"}, "'siglip', 'qwen', 'e5', 'e5lit' or 'qwen3vl'"),
        ({"query": "chair", "language": "french"}, "'auto', 'english' or 'chinese'"),
        (
            {"query": "chair", "mode": "image_to_image"},
            "'text_to_text', 'text_to_image', 'fused', 'keyword' or 'hybrid'",
        ),
        ({"query": "chair", "top_k": 0}, "greater than or equal to 1"),
        ({"query": "chair", "algorithm": "e5", "cross_modal": True}, "embeds text only"),
    ],
)
def test_bad_text_queries_get_422_with_the_valid_values(world, body, needle):
    base = world[0]
    response = httpx.post(f"{base}/search/text", json=body)
    assert response.status_code == 422, response.text
    assert needle in response.text


def test_bad_uploads_are_refused_with_the_right_status(world):
    base = world[0]

    def upload(path: str, content: bytes, name: str = "f.png", **params):
        return httpx.post(
            f"{base}{path}", params=params, files={"file": (name, content, "application/octet-stream")}
        )

    assert upload("/search/image", b"x" * (10 * 1024 * 1024 + 1)).status_code == 413
    assert upload("/search/image", b"%PDF-1.4 not an image").status_code == 415
    good = _png()
    assert upload("/search/image", good[: len(good) // 2]).status_code == 400  # truncated PNG
    assert upload("/search/image", b"").status_code == 400
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, format="PNG")
    response = upload("/search/image", bomb.getvalue())
    assert response.status_code == 400 and "pixel" in response.text
    assert upload("/search/image", good, algorithm="e5").status_code == 422  # e5 has no image tower
    assert upload("/search/image", good, algorithm="nope").status_code == 422
    assert upload("/search/model", b"solid x", name="thing.fbx").status_code == 415
    assert upload("/search/model", b"glTF\x02\x00\x00\x00garbage", name="thing.glb").status_code == 400


def test_unusable_algorithms_answer_503_with_the_reason(world, assetlib_home):
    _, _, settings, _ = world
    keyless = settings.model_copy(
        update={"dashscope_api_key": None, "db_name": f"empty_{uuid.uuid4().hex[:8]}"}
    )
    with Served(create_app(keyless)) as base:
        response = httpx.post(f"{base}/search/text", json={"query": "chair", "algorithm": "qwen"})
        assert response.status_code == 503 and "DASHSCOPE_API_KEY" in response.text
        response = httpx.post(f"{base}/search/text", json={"query": "chair", "algorithm": "siglip"})
        assert response.status_code == 503 and "no vectors in the database" in response.text


def test_concurrent_requests_share_one_service(world):
    base = world[0]
    queries = [f"a {c} chair" for c in ("red", "blue", "green", "white", "black", "pink")] * 3

    def ask(q: str) -> int:
        return httpx.post(
            f"{base}/search/text", json={"query": q, "top_k": 3, "cross_modal": True}
        ).status_code

    results: list[int] = []
    threads = [threading.Thread(target=lambda q=q: results.append(ask(q))) for q in queries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * len(queries)


@pytest.mark.slow
def test_openapi_schema_holds_under_generated_requests(world):
    """schemathesis, driven by the live server's own OpenAPI document: no 5xx, every answer as declared.

    Its pytest plugin does not load under this pytest, so its command line runs against the server.
    """
    base = world[0]
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--generation-database",
            "none",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    report = result.stdout[-4000:] + result.stderr[-2000:]
    print(report)
    assert result.returncode == 0, report
    assert "passed" in result.stdout.lower() or "no issues found" in result.stdout.lower(), report


@pytest.mark.parametrize("cross_modal", [False, True])
def test_high_quality_filter_keeps_only_flagged_assets(world, cross_modal):
    base, assets, _, _ = world
    flagged = {a.asset_id for a in assets if a.high_quality}
    body = {"query": "a chair", "top_k": 5, "high_quality_only": True, "cross_modal": cross_modal}
    hits = httpx.post(f"{base}/search/text", json=body).json()["results"]
    assert len(hits) == min(5, len(flagged))
    assert {h["asset_id"] for h in hits} <= flagged and all(h["high_quality"] for h in hits)


def test_a_server_fault_is_a_500_with_a_request_id_never_a_client_error(world, caplog):
    """A bug (here a ValueError deep in the service) must not pass for a bad request."""
    _, _, settings, _ = world
    from assetlib.search.service import SearchService

    service = SearchService(settings)

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the client's fault")

    service.search_text = broken  # type: ignore[method-assign]
    with (
        caplog.at_level("ERROR", logger="assetlib.faces.api.errors"),
        Served(create_app(service=service)) as base,
    ):
        response = httpx.post(f"{base}/search/text", json={"query": "chair"})
        client_id = httpx.post(
            f"{base}/search/text", json={"query": "chair"}, headers={"X-Request-ID": "client-42"}
        )
        ok = httpx.get(f"{base}/health")
    service.close()
    assert response.status_code == 500
    body = response.json()
    assert body["request_id"] and body["request_id"] in body["detail"]
    assert response.headers["x-request-id"] == body["request_id"]
    assert client_id.status_code == 500 and client_id.json()["request_id"] == "client-42"
    logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log, under that id
    assert ok.status_code == 200 and ok.headers["x-request-id"]  # and the service is still up
