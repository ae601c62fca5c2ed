"""Stage notebooks execute top to bottom under papermill with their parameters injected."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _execute(notebook: str, out: Path, cwd: Path, /, **parameters: object) -> Path:
    """Run a stage notebook under papermill with parameters; return the executed copy."""
    pm.execute_notebook(
        str(NOTEBOOKS / notebook),
        str(out),
        parameters=parameters,
        execution_timeout=600,
        progress_bar=False,
        cwd=str(cwd),
    )
    return out


def _errors(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [
        f"{o.ename}: {o.evalue}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.output_type == "error"
    ]


def test_parameters_cells_hold_literals_papermill_can_read():
    params = pm.inspect_notebook(str(NOTEBOOKS / "00_build_library.ipynb"))
    assert {"source", "library_root", "size", "seed", "image_size", "run_dir"} <= set(params)
    # Views per asset and the asset cap are settings (VIEWS_PER_ASSET, MAX_ASSETS) that every stage
    # reads the library with, not parameters of this stage alone.
    assert not {"num_views", "max_assets"} & set(params)


@pytest.mark.slow
def test_build_library_notebook_builds_a_small_demo_and_shows_the_grid(tmp_path):
    out = _execute(
        "00_build_library.ipynb",
        tmp_path / "00_build_library.ipynb",
        tmp_path,
        size=24,
        image_size=64,
        library_root=str(tmp_path / "lib"),
        run_dir=str(tmp_path),
    )
    assert _errors(out) == []
    nb = nbformat.read(out, as_version=4)
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 1  # the preview grid is shown
    counts = json.loads((tmp_path / "library_counts.json").read_text())
    assert counts["counts"]["assets"] == 24


@pytest.mark.slow
def test_train_notebook_trains_briefly_and_shows_curves_and_metrics(tmp_path):
    _execute(
        "00_build_library.ipynb",
        tmp_path / "00.ipynb",
        tmp_path,
        size=24,
        image_size=32,
        library_root=str(tmp_path / "lib"),
        run_dir=str(tmp_path),
    )
    out = _execute(
        "02a_train_siglip.ipynb",
        tmp_path / "02a.ipynb",
        tmp_path,
        library_root=str(tmp_path / "lib"),
        name="nb-test",
        steps=4,
        batch_size=8,
        out_dir=str(tmp_path / "model"),
        run_dir=str(tmp_path / "run"),
    )
    assert _errors(out) == []
    assert (tmp_path / "run" / "training_curves.png").exists()
    metrics = json.loads((tmp_path / "run" / "train_metrics.json").read_text())
    assert "text_to_image_object_r@10_zh" in metrics


def test_evaluate_notebook_declares_its_parameters():
    params = pm.inspect_notebook(str(NOTEBOOKS / "05_evaluate.ipynb"))
    assert {"library_root", "run_dir", "algorithms", "seed", "max_queries"} <= set(params)
