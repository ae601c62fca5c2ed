"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_dashscope import FakeDashScopeServer

from assetlib.config import Settings, load_settings
from assetlib.library.asset import Asset
from assetlib.store.db import Database, stop_embedded


@pytest.fixture(scope="session")
def assetlib_home() -> Iterator[Path]:
    """A short ASSETLIB_HOME for the session (Unix socket paths are limited to ~100 characters)."""
    with tempfile.TemporaryDirectory(prefix="al-") as home:
        yield Path(home)
        # Stop the server before its data folder is deleted under it.
        stop_embedded(Path(home) / "pgdata")


@pytest.fixture
def settings(assetlib_home: Path) -> Settings:
    """Settings pointing at the session's embedded server and a database of this test's own."""
    return load_settings(
        environ={}, home=str(assetlib_home), db_name=f"t_{uuid.uuid4().hex[:12]}", db_connect_timeout=5
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """An open, migrated database used by this test only."""
    database = Database.open(settings)
    yield database
    database.close()


def make_assets(n: int, views: int = 8, high_quality_every: int = 3, prefix: str = "a") -> list[Asset]:
    """n catalog records with captions, `views` view paths and a quality flag on every k-th."""
    return [
        Asset(
            asset_id=f"{prefix}{i:05d}",
            objaverse_uid=f"uid{i:05d}",
            caption_en=f"a red chair number {i}",
            caption_cn=f"红色椅子 {i}",
            view_paths=tuple(Path(f"/views/{i}/{v:05d}.png") for v in range(views)),
            high_quality=(i % high_quality_every == 0),
        )
        for i in range(n)
    ]


@dataclass(frozen=True)
class DemoWorld:
    """A small demo library embedded with a tiny SigLIP, e5, Qwen (a fake DashScope), an e5-aligned
    tower and a tiny Qwen3-VL-Embedding, in the store."""

    tmp: Path
    assets: list[Asset]
    settings: Settings
    fake: FakeDashScopeServer


@pytest.fixture(scope="session")
def fake_dashscope() -> Iterator[FakeDashScopeServer]:
    """One fake DashScope for the session (its vectors depend on the content only, not the instance)."""
    with FakeDashScopeServer(dim=64) as fake:
        yield fake


@pytest.fixture(scope="session")
def demo_world(assetlib_home: Path, tmp_path_factory: pytest.TempPathFactory, fake_dashscope) -> DemoWorld:
    """The session's one embedded demo world: 24 assets, every algorithm, built once for every module."""
    tmp = tmp_path_factory.mktemp("world")
    assets, settings = embedded_library(
        tmp, assetlib_home, fake_dashscope.base_url, size=24, seed=5, prefix="world"
    )
    return DemoWorld(tmp, assets, settings, fake_dashscope)


def embedded_library(
    tmp: Path,
    home: Path,
    fake_base_url: str,
    size: int,
    seed: int,
    prefix: str,
    algorithms: tuple[str, ...] = ("siglip", "e5", "qwen", "e5lit", "qwen3vl"),
    **overrides: str,
):
    """A small demo library embedded with a tiny SigLIP, e5, Qwen (through a fake DashScope), a
    tiny e5-aligned image tower trained on it and a tiny random Qwen3-VL-Embedding (a directory,
    unless `qwen3vl_model` says otherwise): every algorithm, so no request meets a 503.

    Returns (assets, settings); the settings point at the session's embedded server and a fresh
    database, and at the fake server for Qwen.
    """
    from tiny_models import tiny_e5lit, tiny_qwen3vl, tiny_siglip

    from assetlib.embedding.local import embed_assets
    from assetlib.encoders.registry import get_encoder
    from assetlib.library.demo.generator import write_demo_library
    from assetlib.library.readers import LibrarySource, read_library
    from assetlib.media.render import RenderSettings
    from assetlib.store.populate import load_shards

    root = tmp / "lib"
    write_demo_library(
        root, size=size, seed=seed, render=RenderSettings(size=32, supersample=1), progress=False
    )
    assets = read_library(LibrarySource.at(root)).assets
    if "e5lit" in algorithms and "e5lit_model" not in overrides:
        overrides["e5lit_model"] = str(tiny_e5lit(tmp / "tiny-e5lit", assets))
    if "qwen3vl" in algorithms and "qwen3vl_model" not in overrides:
        overrides["qwen3vl_model"] = str(tiny_qwen3vl(tmp / "tiny-qwen3vl"))
    settings = load_settings(
        environ={},
        home=str(home),
        db_name=f"{prefix}_{uuid.uuid4().hex[:8]}",
        siglip_model=str(tiny_siglip(tmp / "tiny-siglip")),
        dashscope_api_key="sk-test",
        dashscope_base_url=fake_base_url,
        qwen_dimension=64,
        qwen_requests_per_minute=100_000,
        **overrides,
    )
    with Database.open(settings) as db:
        for algorithm in algorithms:
            encoder = get_encoder(algorithm, settings)
            embed_assets(assets, encoder, tmp / "run", shard_size=12, progress=False)
            load_shards(db, tmp / "run", encoder.info.name, assets, progress=False)
    return assets, settings
