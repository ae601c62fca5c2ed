"""A run's logging: kernel lines relayed by papermill get their own level and logger back; the terminal
keeps milestones, summaries, warnings and progress; run.log keeps everything."""

from __future__ import annotations

import io
import logging

from assetlib.logs import configure_logging
from assetlib.pipeline.run_log import run_logging


def test_the_terminal_shows_summaries_and_warnings_and_run_log_everything(tmp_path, monkeypatch):
    configure_logging("INFO")
    terminal = io.StringIO()
    monkeypatch.setattr("sys.stderr", terminal)
    papermill = logging.getLogger("papermill")
    with run_logging(tmp_path) as path:
        papermill.info("Executing Cell 3---------------------------------------")
        papermill.warning("2026-12-02 12:55:36,360 INFO    assetlib.pipeline.stages: 00_build_library: done ")
        papermill.warning(
            "2026-12-02 12:55:36,360 INFO    assetlib.procs: library-render-0: process 26 up in 1.8s"
        )
        papermill.warning(
            "2026-12-02 12:55:37,000 WARNING assetlib.evaluation.run: evaluation skips qwen: no key"
        )
        papermill.info("failures 0")  # a table the kernel printed
        papermill.warning("render:  40%|████      | 192/480 [00:30<00:45, 6.4asset/s]")
        papermill.warning("Loading weights: 100%|██████████| 136/136 [00:00<00:00, 9000.51it/s]")
        logging.getLogger("assetlib.pipeline.runner").info("05_evaluate: done in 12.0 s")
    shown = terminal.getvalue()
    assert "INFO    assetlib.pipeline.stages: 00_build_library: done" in shown  # its own level and name
    assert "WARNING papermill" not in shown  # kernel log lines and progress bars are not warnings
    assert "WARNING assetlib.evaluation.run: evaluation skips qwen" in shown
    assert "render:  40%" in shown and "05_evaluate: done in 12.0 s" in shown
    for hidden in ("Executing Cell", "process 26 up", "failures 0", "Loading weights"):
        assert hidden not in shown, hidden
    logged = path.read_text()
    for line in ("Executing Cell 3", "process 26 up in 1.8s", "failures 0", "00_build_library: done"):
        assert line in logged, line
    assert not any(getattr(h, "baseFilename", None) == str(path) for h in logging.getLogger().handlers)
    papermill.warning("after the run")
    assert "after the run" in terminal.getvalue()  # the filters went with the run
