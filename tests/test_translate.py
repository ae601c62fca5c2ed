"""Caption translation against a local fake of the Batch API: restarts, failures, expiries, no double pay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fake_batch import FakeBatchApi, FakeBatchServer

from assetlib.config import load_settings
from assetlib.library.translate import (
    OUTPUT_NAME,
    BatchTranslator,
    State,
    TranslationError,
    clean_translation,
    glossary_for,
    messages_for,
    read_captions,
    translate_captions,
    validate_translation,
)

SUBJECTS = ["chair", "wooden table", "low poly tree", "metallic robot", "red car", "glossy vase"]


def _captions(n: int) -> dict[str, str]:
    return {f"uid{i:05d}": f"a {SUBJECTS[i % len(SUBJECTS)]} number {i} with {i % 7} parts" for i in range(n)}


def _settings(tmp: Path, base_url: str, **extra):
    return load_settings(
        environ={},
        home=str(tmp / "home"),
        dashscope_api_key="sk-test",
        dashscope_compatible_url=base_url,
        translation_batch_size=extra.pop("batch_size", 1000),
        translation_poll_seconds=0.01,
        qwen_max_retries=3,
        **extra,
    )


def _write(tmp: Path, captions: dict[str, str]) -> Path:
    path = tmp / "text_captions_cap3d.json"
    path.write_text(json.dumps(captions))
    return path


def no_sleep(_: float) -> None:
    """Polls advance the fake server; waiting between them would only slow the test."""


def test_prompt_keeps_content_and_uses_the_glossary_only_where_it_applies():
    assert glossary_for("A low poly wooden chair, metallic legs") == {
        "low poly": "低多边形",
        "metallic": "金属质感的",
        "wooden": "木制的",
    }
    plain = messages_for("a red chair")
    assert plain[1]["content"] == "a red chair" and "add nothing" in plain[0]["content"]
    assert "low poly = 低多边形" in messages_for("a low poly tree")[1]["content"]
    assert glossary_for("a meshed fence") == {}  # whole words only


@pytest.mark.parametrize(
    ("english", "chinese", "problem"),
    [
        ("a red chair", "一把红色的椅子", None),
        ("a red chair", "", "empty"),
        ("a red chair", "a red chair", "no Chinese"),
        ("a red chair", "一把\n红色的椅子", "more than one line"),
        ("a red chair", "红" * 60, "too long"),
        ("a very long caption " * 10, "椅", "too short"),
        ("a red chair", "红 a red chair with four legs and a tall back", "untranslated"),
    ],
)
def test_translations_are_validated(english, chinese, problem):
    found = validate_translation(english, chinese)
    assert (found is None) if problem is None else (problem in found)


def test_wrappers_are_stripped():
    assert clean_translation(' "一把红色的椅子" ') == "一把红色的椅子"
    assert clean_translation("Translation: 一把椅子") == "一把椅子"
    assert clean_translation("译文：一把椅子") == "一把椅子"


def test_dry_run_counts_requests_and_tokens_and_submits_nothing(tmp_path):
    with FakeBatchServer() as fake:
        settings = _settings(tmp_path, fake.base_url)
        report = translate_captions(
            _write(tmp_path, _captions(2500)), tmp_path / "run", settings, dry_run=True
        )
        assert fake.api.requests == []
    plan = report.dry_run
    assert plan["requests"] == 2500 and plan["batch_files"] == 3 and plan["already_translated"] == 0
    assert plan["input_tokens"] > 2500 * 30 and 0 < plan["output_tokens"] < plan["input_tokens"]
    assert report.output is None and not (tmp_path / OUTPUT_NAME).exists()


def test_2500_captions_through_failure_expiry_and_a_restart_are_translated_exactly_once(tmp_path):
    captions = _captions(2500)
    path = _write(tmp_path, captions)
    ids = list(captions)
    api = FakeBatchApi(
        outcomes=["complete", "fail", "expire"],  # batch 2 fails, batch 3 expires half done
        bad_once={ids[5], ids[17], ids[999]},  # error lines in batch 1; fine in the follow-up
        english_once={ids[42]},  # an answer in English: refused, asked again
    )
    with FakeBatchServer(api) as fake:
        settings = _settings(tmp_path, fake.base_url)
        run = tmp_path / "run"
        first = translate_captions(
            path, run, settings, max_wait=0, sleep=no_sleep
        )  # then "the machine restarts"
        assert first.output is None and first.batches == 3
        state = State.load(run / "state.json", settings.translation_model)
        assert [len(json.loads(Path(j.ids_path).read_text())) for j in state.jobs] == [1000, 1000, 500]
        assert all(j.batch_id for j in state.jobs) and len(api.batches) == 3 and api.uploads == 3

        second = translate_captions(path, run, settings, sleep=no_sleep)

    assert second.complete and second.failed == {}
    output = json.loads((tmp_path / OUTPUT_NAME).read_text())
    assert list(output) == ids  # same keys, same order
    assert all(api.delivered[i] == 1 for i in ids), "a caption was translated (and paid for) twice"
    assert sum(api.delivered.values()) == 2500
    # 3 first batches, then follow-ups for: batch 1's 4 refused lines, batch 2's 1000, batch 3's 250
    assert len(api.batches) == api.uploads == 6
    ledger = [json.loads(x)["id"] for x in (run / "translations.jsonl").read_text().splitlines()]
    assert len(ledger) == len(set(ledger)) == 2500
    assert all("一个" in output[i] for i in (ids[5], ids[42], ids[1500], ids[2499]))

    with FakeBatchServer() as fake:  # a third run has nothing left to do and asks nothing
        again = translate_captions(path, run, _settings(tmp_path, fake.base_url), sleep=no_sleep)
        assert fake.api.requests == [] and again.translated == 0 and again.already == 2500


def test_a_batch_created_but_not_recorded_is_found_again_not_paid_twice(tmp_path):
    captions = _captions(30)
    with FakeBatchServer() as fake:
        settings = _settings(tmp_path, fake.base_url, batch_size=10)
        translator = BatchTranslator(
            translate_client(settings), tmp_path / "run", settings.translation_model, 10, 0.01, no_sleep
        )
        translator.plan(captions, attempt=1)
        for job in translator.state.jobs:
            translator.submit(job)
        translator.state.jobs[1].batch_id = None  # the crash: created on the server, not saved here
        translator.state.save()
        report = translate_captions(_write(tmp_path, captions), tmp_path / "run", settings, sleep=no_sleep)
        assert report.complete and len(fake.api.batches) == 3 and fake.api.uploads == 3
        assert all(fake.api.delivered[i] == 1 for i in captions)


def translate_client(settings):
    """The SDK client the module builds, for driving BatchTranslator directly."""
    from assetlib.library.translate import openai_client

    return openai_client(settings)


def test_ids_that_fail_twice_are_listed_and_the_rest_written(tmp_path):
    captions = _captions(40)
    hopeless = {"uid00003", "uid00031"}
    with FakeBatchServer(FakeBatchApi(always_bad=hopeless)) as fake:
        settings = _settings(tmp_path, fake.base_url, batch_size=25)
        report = translate_captions(_write(tmp_path, captions), tmp_path / "run", settings, sleep=no_sleep)
        assert len(fake.api.batches) == 4  # 2 first batches, one follow-up for each
    assert set(report.failed) == hopeless and not report.complete
    assert all("scripted bad request" in reason for reason in report.failed.values())
    assert json.loads((tmp_path / "run" / "failed.json").read_text()).keys() == hopeless
    output = json.loads((tmp_path / OUTPUT_NAME).read_text())
    assert set(output) == set(captions) - hopeless


def test_realtime_mode_retries_429_and_5xx(tmp_path):
    captions = _captions(12)
    with FakeBatchServer(FakeBatchApi(chat_script=[429, 500, 503])) as fake:
        settings = _settings(tmp_path, fake.base_url, translation_concurrency=3)
        report = translate_captions(_write(tmp_path, captions), tmp_path / "run", settings, mode="realtime")
        chats = [r for r in fake.api.requests if r.endswith("/chat/completions")]
    assert report.complete and len(chats) == 15  # 12 answers + 3 scripted errors retried by the SDK
    assert set(json.loads((tmp_path / OUTPUT_NAME).read_text())) == set(captions)


def test_bad_input_and_missing_key_are_clear(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(TranslationError, match="JSON object"):
        read_captions(bad)
    with pytest.raises(TranslationError, match="cannot read"):
        read_captions(tmp_path / "missing.json")
    keyless = load_settings(environ={}, home=str(tmp_path / "home"))
    with pytest.raises(TranslationError, match="DASHSCOPE_API_KEY"):
        translate_captions(_write(tmp_path, _captions(3)), tmp_path / "run", keyless)
    with pytest.raises(TranslationError, match="valid: batch, realtime"):
        translate_captions(_write(tmp_path, _captions(3)), tmp_path / "run", keyless, mode="stream")


@pytest.mark.slow
def test_cli_dry_run(tmp_path):
    path = _write(tmp_path, _captions(25))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "assetlib",
            "translate",
            str(path),
            "--run-dir",
            str(tmp_path / "run"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        env={
            "ASSETLIB_HOME": str(tmp_path / "home"),
            "PATH": "/usr/bin:/bin",
            "TRANSLATION_BATCH_SIZE": "10",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "25 requests in 3 batch files" in result.stdout and "estimated tokens" in result.stdout


@pytest.mark.slow
def test_notebook_translates_through_the_fake_and_skips_without_a_key(tmp_path, monkeypatch):
    import papermill as pm

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "01_translate_captions.ipynb"
    assert {"captions_path", "run_dir", "mode", "dry_run", "output_path", "max_wait_seconds"} <= set(
        pm.inspect_notebook(str(notebook))
    )
    path = _write(tmp_path, _captions(30))
    for name in ("DASHSCOPE_API_KEY", "DASHSCOPE_COMPATIBLE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSETLIB_HOME", str(tmp_path / "home"))
    params = {"captions_path": str(path), "run_dir": str(tmp_path / "skip")}
    pm.execute_notebook(str(notebook), str(tmp_path / "skip.ipynb"), parameters=params, execution_timeout=300)
    skipped = json.loads((tmp_path / "skip" / "stage_metrics.json").read_text())
    assert skipped["status"] == "skipped" and "no API key" in skipped["reason"]

    with FakeBatchServer() as fake:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test")
        monkeypatch.setenv("DASHSCOPE_COMPATIBLE_URL", fake.base_url)
        monkeypatch.setenv("TRANSLATION_POLL_SECONDS", "0.05")
        params = {"captions_path": str(path), "run_dir": str(tmp_path / "run")}
        pm.execute_notebook(
            str(notebook), str(tmp_path / "run.ipynb"), parameters=params, execution_timeout=300
        )
    done = json.loads((tmp_path / "run" / "stage_metrics.json").read_text())
    assert done["status"] == "done" and done["translated"] == 30 and done["failed"] == 0
    assert set(json.loads((tmp_path / OUTPUT_NAME).read_text())) == set(_captions(30))
