"""Settings: environment, params YAML overrides, one clear message per invalid value, masked secrets."""

from __future__ import annotations

import json

import pytest

from assetlib.config import ConfigError, load_settings
from assetlib.faces.cli import main


def test_defaults_match_the_original_system():
    s = load_settings(environ={})
    assert (s.max_assets, s.translation_batch_size, s.embedding_batch_size) == (None, 1000, 100)
    assert (s.qwen_num_images, s.default_top_k) == (8, 10)
    assert s.embedded and s.db_name == "assetlib"


def test_environment_then_params_file_then_overrides(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("max_assets: 50\nembedding_batch_size: 7\nstages: {00_build_library: {size: 3}}\n")
    env = {
        "MAX_ASSETS": "10",
        "EMBEDDING_BATCH_SIZE": "20",
        "DB_HOST": "db.example",
        "ASSETLIB_HOME": "/data/al",
    }
    s = load_settings(params, environ=env, embedding_batch_size=9)
    assert s.max_assets == 50  # the params file overrides the environment
    assert s.embedding_batch_size == 9  # explicit arguments override both
    assert s.db_host == "db.example" and not s.embedded
    assert str(s.home) == "/data/al"
    assert load_settings(environ={"MAX_ASSETS": "none", "DB_HOST": ""}).max_assets is None


def test_every_invalid_value_is_reported_at_once(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("qwen_num_images: 9\nmystery_knob: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(params, environ={})
    assert caught.value.problems == [f"mystery_knob (in {params}): unknown setting"]
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={"DB_PORT": "abc", "QWEN_NUM_IMAGES": "9", "DEFAULT_TOP_K": "0", "VECTOR_INDEX": "annoy"}
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert any(p.startswith("DB_PORT:") and "'abc'" in p for p in problems)
    assert any(p.startswith("QWEN_NUM_IMAGES:") and "8" in p for p in problems)
    assert any(p.startswith("VECTOR_INDEX:") and "hnsw" in p for p in problems)


def test_bad_params_files_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml", environ={})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(tmp_path / "list.yaml", environ={})
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(tmp_path / "broken.yaml", environ={})


def test_cli_config_masks_secrets_and_fails_on_bad_values(monkeypatch, capsys):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-verysecretkey42")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    assert main(["config", "--json"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert "verysecret" not in out and "hunter2" not in out
    assert shown["dashscope_api_key"].startswith("****") and shown["db_password"] == "****"
    monkeypatch.setenv("DB_PORT", "99999")
    monkeypatch.setenv("EMBEDDING_BATCH_SIZE", "lots")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "DB_PORT:" in err and "EMBEDDING_BATCH_SIZE:" in err
