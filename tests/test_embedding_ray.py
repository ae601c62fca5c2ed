"""The Ray engine on a local 2-CPU Ray cluster: the local engine's shards, bit for bit; a run killed
midway (driver and cluster alike) finished by the next with exactly one vector per key."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
from small_demo import small_demo_library
from tiny_models import tiny_siglip

from assetlib.embedding.local import embed_assets
from assetlib.embedding.shards import encoder_dir, finished_shards
from assetlib.encoders.siglip import SiglipEncoder
from assetlib.store.populate import load_shards
from assetlib.store.schema import encoder_tables
from assetlib.vocab import VectorKind

pytestmark = pytest.mark.slow
N_ASSETS = 12


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    root = tmp_path_factory.mktemp("lib")
    return root, small_demo_library(root, N_ASSETS, seed=7)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip")


def _rows(folder):
    """Every finished shard of a folder: metadata and vectors, concatenated in shard order."""
    metas, vectors = [], []
    for done in finished_shards(folder):
        stem = done.name.removesuffix(".done.json")
        metas.append(pd.read_parquet(folder / f"{stem}.parquet"))
        vectors.append(np.load(folder / f"{stem}.npy"))
    return pd.concat(metas, ignore_index=True), np.concatenate(vectors)


def _local_single_threaded(assets, model, out):
    # Ray's actors run one intra-op thread (num_cpus=1); the same count here gives the same float
    # summation order, so the comparison can be exact rather than within 2e-7.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return embed_assets(
            assets, SiglipEncoder(str(model), batch_size=7), out, shard_size=5, progress=False
        )
    finally:
        torch.set_num_threads(threads)


def test_the_ray_engine_writes_what_the_local_engine_writes(library, model, tmp_path):
    import ray

    from assetlib.embedding.ray_engine import embed_assets_ray

    _, assets = library
    local = _local_single_threaded(assets, model, tmp_path / "local")
    try:
        factory = functools.partial(SiglipEncoder, str(model), batch_size=7)
        summary = embed_assets_ray(
            assets, factory, tmp_path / "ray", shard_size=5, progress=False, num_cpus=2, actors=2
        )
        again = embed_assets_ray(
            assets, factory, tmp_path / "ray", shard_size=5, progress=False, num_cpus=2, actors=2
        )
    finally:
        ray.shutdown()
    assert (summary.engine, summary.shards, summary.rows_computed) == ("ray", 3, local.rows_computed)
    assert (again.shards_skipped, again.rows_computed) == (3, 0)  # done markers hold across engines
    meta_l, vec_l = _rows(encoder_dir(tmp_path / "local", local.encoder))
    meta_r, vec_r = _rows(encoder_dir(tmp_path / "ray", summary.encoder))
    pd.testing.assert_frame_equal(meta_l, meta_r)
    np.testing.assert_array_equal(vec_l, vec_r)
    assert summary.steps.views["model"] == N_ASSETS * 8 and summary.steps.bound() is not None
    card = json.loads((encoder_dir(tmp_path / "ray", summary.encoder) / "encoder.json").read_text())
    assert card == json.loads((encoder_dir(tmp_path / "local", local.encoder) / "encoder.json").read_text())


DRIVER = textwrap.dedent(
    """
    import functools, sys, time
    from assetlib.embedding.ray_engine import embed_assets_ray
    from assetlib.encoders.siglip import SiglipEncoder
    from assetlib.library.readers import LibrarySource, read_library

    def slow_encoder(model, pause):
        # Defined in __main__, so Ray ships it to the actors by value.
        encoder = SiglipEncoder(model, batch_size=4)
        embed = encoder.embed_pixels
        def slowly(batch):
            time.sleep(pause)
            return embed(batch)
        encoder.embed_pixels = slowly
        return encoder

    if __name__ == "__main__":
        root, model, run_dir, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
        assets = read_library(LibrarySource.at(root)).assets
        summary = embed_assets_ray(
            assets, functools.partial(slow_encoder, model, pause), run_dir,
            shard_size=1, progress=False, num_cpus=2, actors=2,
        )
        print("done", summary.shards_skipped, summary.rows_computed, flush=True)
    """
)


def test_a_ray_run_killed_midway_is_finished_with_one_vector_per_key(library, model, tmp_path, db):
    root, assets = library
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    run_dir = tmp_path / "run"
    folder = encoder_dir(run_dir, "siglip:tiny-test")
    args = [sys.executable, str(script), str(root), str(model), str(run_dir)]
    # Its own session: the kill takes the driver and the Ray cluster it started, as a crash would.
    proc = subprocess.Popen([*args, "1.0"], start_new_session=True, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while len(list(folder.glob("*.done.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # Actors outside the group see their raylet die and exit; one may finish its shard first.
    finished_before, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 3 and time.monotonic() < deadline:
        count = len(list(folder.glob("*.done.json")))
        if count != finished_before:
            finished_before, stable_since = count, time.monotonic()
        time.sleep(0.2)
    assert 3 <= finished_before < N_ASSETS  # killed midway: some shards done, some not

    rerun = subprocess.run([*args, "0"], capture_output=True, text=True, timeout=300, start_new_session=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    done_line = next(ln for ln in rerun.stdout.splitlines() if ln.startswith("done"))
    skipped, computed = map(int, done_line.split()[1:])
    assert skipped == finished_before  # the finished shards were not computed again
    assert computed == (N_ASSETS - finished_before) * 11
    meta, vectors = _rows(folder)
    assert not meta.duplicated(["kind", "asset_id", "language", "view_index"]).any()
    assert len(meta) == len(vectors) == N_ASSETS * 11
    load_shards(db, run_dir, "siglip:tiny-test", assets, progress=False)
    with db.connection() as conn:
        table = encoder_tables(conn, "siglip:tiny-test").table(VectorKind.VIEW)
        total, distinct = conn.execute(
            f"SELECT count(*), count(DISTINCT (asset_id, view_index, encoder)) FROM {table}"
        ).fetchone()
    assert total == distinct == N_ASSETS * 8
