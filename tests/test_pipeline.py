"""The pipeline runner: params validation, the smoke pipeline end to end, and a failure resumed."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import nbformat
import pytest
import yaml

from assetlib.pipeline.runner import STAGE_NAMES, PipelineError, PipelineParams, run_pipeline, validate_params
from assetlib.store.db import Database

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.mark.parametrize("name", ["demo", "smoke", "full"])
def test_shipped_params_files_are_valid(name):
    params = PipelineParams.read(PARAMS / f"{name}.yaml")
    assert validate_params(params, []) == []
    settings = params.settings()
    assert settings.siglip_model  # every file resolves to usable settings
    assert set(params.stages) <= set(STAGE_NAMES)


def _params(tmp: Path, edit=None) -> Path:
    data = yaml.safe_load((PARAMS / "smoke.yaml").read_text())
    if edit:
        edit(data)
    path = tmp / f"params_{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_invalid_params_are_all_named_before_anything_runs(tmp_path):
    def break_it(data):
        data["stages"]["00_build_library"]["sise"] = 24  # a typo
        data["stages"]["02a_train_siglip"]["steps"] = "four"  # wrong type
        data["stages"]["05_evaluate"]["run_dir"] = "/tmp/x"  # the runner's to set
        data["stages"]["06_publish"] = {}
        data["run"]["parallel"] = True

    with pytest.raises(PipelineError) as caught:
        run_pipeline(_params(tmp_path, break_it), tmp_path / "out", stages=["07_nothing"])
    message = str(caught.value)
    for needle in (
        "00_build_library: unknown parameter 'sise'",
        "source, library_root, size",  # the notebook's own parameters are listed
        "02a_train_siglip.steps: expected int, got str",
        "05_evaluate.run_dir: set by the runner",
        "unknown stage '06_publish'",
        "--stages: unknown stage '07_nothing'",
        "run: unknown options ['parallel']",
    ):
        assert needle in message, message
    assert not (tmp_path / "out").exists()  # nothing ran, no run folder


@pytest.fixture
def pipeline_env(assetlib_home, monkeypatch):
    """The session's embedded PostgreSQL, a fresh database, no API key."""
    monkeypatch.setenv("ASSETLIB_HOME", str(assetlib_home))
    monkeypatch.setenv("DB_NAME", f"pipe_{uuid.uuid4().hex[:8]}")
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    return assetlib_home


def _errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [
        o.ename
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_then_a_failure_resumed(pipeline_env, tmp_path, monkeypatch):
    outputs = tmp_path / "outputs"
    manifest = run_pipeline(_params(tmp_path), outputs)

    run_dir = manifest.path.parent
    assert (outputs / "latest").resolve() == run_dir
    data = json.loads(manifest.path.read_text())
    status = {s["name"]: (s["status"], s.get("reason")) for s in data["stages"]}
    assert status == {
        "00_build_library": ("done", None),
        "01_translate_captions": ("skipped", "skipped: no API key"),
        "02a_train_siglip": ("done", None),
        "02b_train_e5lit": ("done", None),
        "02_embed_siglip": ("done", None),
        "03_embed_qwen": ("skipped", "skipped: no API key"),
        "04_populate_database": ("done", None),
        "05_evaluate": ("done", None),
    }
    assert data["status"] == "done" and len(data["git"]["commit"] or "") == 40
    assert data["versions"]["assetlib"] and data["versions"]["papermill"] and data["versions"]["torch"]
    assert data["encoders"] == ["e5:multilingual-e5-small", "e5lit:smoke", "siglip:smoke"]
    assert data["params"]["stages"]["00_build_library"]["size"] == 24
    stages = {s["name"]: s for s in data["stages"]}
    for name, stage in stages.items():
        if stage["status"] == "done":
            assert (run_dir / f"{name}.ipynb").is_file() and _errors(run_dir / f"{name}.ipynb") == []
            assert stage["seconds"] > 0 and stage["metrics"]["stage"] == name
    assert stages["00_build_library"]["metrics"]["counts"]["assets"] == 24
    assert stages["02a_train_siglip"]["metrics"]["steps"] == 4
    best = stages["05_evaluate"]["metrics"]["best_r_at_10"]
    assert set(best) >= {
        "siglip text",
        "siglip image",
        "e5 text",
        "e5lit text",
        "e5lit text natural",
    } and all(0 <= v <= 1 for v in best.values())
    assert (run_dir / "05_evaluate" / "metrics.json").is_file()  # the evaluation itself
    with Database.open(PipelineParams.read(_params(tmp_path)).settings()) as db, db.connection() as conn:
        assert conn.execute("SELECT count(*) FROM assets").fetchone()[0] == 24

    # A stage made to fail: its notebook is kept, the run stops with a message, --resume finishes it.
    broken = _params(tmp_path, lambda d: d["stages"]["05_evaluate"].update(algorithms="siglip,clip"))
    with pytest.raises(PipelineError) as caught:
        run_pipeline(broken, outputs, stages=["04_populate_database", "05_evaluate"])
    assert "stage 05_evaluate failed" in str(caught.value) and "--resume" in str(caught.value)
    failed_dir = (outputs / "latest").resolve()
    failed = json.loads((failed_dir / "manifest.json").read_text())
    record = {s["name"]: s for s in failed["stages"]}
    assert failed["status"] == "failed" and record["05_evaluate"]["status"] == "failed"
    assert "clip" in record["05_evaluate"]["error"]
    assert _errors(failed_dir / "05_evaluate.ipynb")  # the partial notebook with its traceback
    first_04 = record["04_populate_database"]["finished"]

    fixed = _params(tmp_path)
    resumed = run_pipeline(
        fixed, outputs, stages=["04_populate_database", "05_evaluate"], resume=failed_dir.name
    )
    assert resumed.path.parent == failed_dir and resumed.data["status"] == "done"
    again = {s["name"]: s for s in resumed.data["stages"]}
    assert again["04_populate_database"]["finished"] == first_04  # done before: not run again
    assert again["05_evaluate"]["status"] == "done" and _errors(failed_dir / "05_evaluate.ipynb") == []
    assert stages["05_evaluate"]["metrics"]["reused"] is False
    assert again["05_evaluate"]["metrics"]["reused"] is True  # same queries, vectors and indexes: reused
    assert again["00_build_library"]["reason"] == "skipped: not selected (--stages)"
    assert len(resumed.data["resumed"]) == 1


@pytest.mark.slow
def test_cli_reports_invalid_params_and_exits_nonzero(tmp_path):
    bad = _params(tmp_path, lambda d: d["stages"]["02_embed_siglip"].update(baseline_e5="yes"))
    result = subprocess.run(
        [sys.executable, "-m", "assetlib", "run", str(bad), "--outputs", str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "02_embed_siglip.baseline_e5: expected bool, got str" in result.stderr
