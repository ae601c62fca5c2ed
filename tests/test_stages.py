"""Stage bodies (what the notebooks and the CLI both call): outcomes reach the stage metrics."""

from __future__ import annotations

import csv
import json
import uuid

from assetlib.pipeline.stages import StageName, embed, populate, read_stage_metrics
from assetlib.store.db import physical_memory
from assetlib.store.indexes import estimate_index_bytes


def test_an_index_the_memory_guard_refuses_is_in_the_stage_metrics(demo_world, tmp_path):
    """IMAGE_LAYOUT=views on a machine too small for the per-view index: loaded, refused, and said so."""
    from assetlib.encoders.registry import get_encoder

    views = len(demo_world.assets) * 8
    dim = get_encoder("siglip", demo_world.settings).info.dim
    view_index = estimate_index_bytes(views, dim, "halfvec")
    budget = view_index // 2  # room for the caption and asset indexes, not for the views'
    settings = demo_world.settings.model_copy(
        update={
            "db_name": f"guard_{uuid.uuid4().hex[:8]}",
            "image_layout": "views",
            "max_index_memory_fraction": budget / physical_memory(),
        }
    )
    stage = populate(
        settings,
        demo_world.tmp / "lib",
        demo_world.tmp / "run",
        ["siglip:tiny-test"],
        run_dir=tmp_path,
        progress=False,
    )
    [row] = stage.rows
    assert row["index_refused"] and "IMAGE_LAYOUT=pooled" in row["index_refused"]
    assert row["inserted"] > 0 and row["indexes_built"] >= 2  # captions and assets still indexed
    metrics = read_stage_metrics(tmp_path)
    assert metrics["stage"] == StageName.POPULATE and metrics["status"] == "done"
    assert metrics["refused"] == [f"siglip:tiny-test: {row['index_refused']}"]
    assert metrics["loads"][0]["index_refused"] == row["index_refused"]
    assert metrics["catalog"]["assets"] == len(demo_world.assets)


def test_embedding_writes_one_failures_table_and_skips_what_cannot_run(demo_world, tmp_path):
    keyless = demo_world.settings.model_copy(update={"dashscope_api_key": None})
    stage = embed(
        keyless, ["e5", "qwen"], demo_world.tmp / "lib", tmp_path / "shards", run_dir=tmp_path, progress=False
    )
    e5, qwen = stage.results
    assert e5["status"] == "done" and e5["failures"] == 0
    assert qwen == {
        "algorithm": "qwen",
        "status": "skipped",
        "reason": "skipped: no API key: set DASHSCOPE_API_KEY",
    }
    with open(e5["failures_csv"], newline="", encoding="utf-8") as fh:
        assert next(csv.reader(fh)) == ["asset_id", "stage", "reason"]  # one writer, header even when empty
    assert not list(tmp_path.glob("failures_*.csv"))  # no second copy in the run folder
    metrics = json.loads((tmp_path / "stage_metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["encoders"] == [e5["encoder"]]
