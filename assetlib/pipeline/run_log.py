"""A pipeline run's logging: everything into the run folder's run.log, summaries and progress on the terminal.

papermill relays each line a kernel writes: stderr as WARNING and stdout as INFO on its own
`papermill` logger, so a stage's own INFO line arrived as "WARNING papermill: <time> INFO
assetlib…: …", with "Executing Cell 3…" lines between. Here a kernel's log line gets its own
level and logger name back, the cell chatter and printed tables go to run.log only, and the terminal
keeps warnings, errors, progress and the stages' milestones and summaries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assetlib.logs import FORMAT

RUN_LOG = "run.log"

# A kernel's line as assetlib.logs.FORMAT writes it: "<date> <time>,<ms> LEVEL logger: message".
_KERNEL_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+)\s+(?P<name>[\w.\[\]-]+): (?P<msg>.*)$", re.S
)
# Loggers whose INFO lines are milestones and summaries worth a line on the terminal.
_TERMINAL_INFO = (
    "assetlib.pipeline",
    "assetlib.train",
    "assetlib.evaluation.run",
    "assetlib.embedding.local",
    "assetlib.store.populate",
    "assetlib.library.readers",
)
_PROGRESS = re.compile(r"\d+%\|")  # a tqdm bar's text
# transformers' weight-loading bars say nothing a person needs.
_NOISE = ("Loading weights", "Writing model shards")


class KernelLineRelay(logging.Filter):
    """On the `papermill` logger: a relayed kernel log line becomes a record of its own level and logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops one."""
        text = record.getMessage().strip()
        match = _KERNEL_LINE.match(text)
        if match is None and _PROGRESS.search(text):
            record.levelno, record.levelname = logging.INFO, "INFO"  # a progress bar is not a warning
        if match:
            level = logging.getLevelName(match["level"])
            if isinstance(level, int):
                record.levelno, record.levelname = level, match["level"]
            record.name, record.msg, record.args = match["name"], match["msg"], ()
            record.kernel = True
        return True


class TerminalFilter(logging.Filter):
    """What a person watching a run sees: warnings and errors, progress bars, milestones, summaries."""

    def filter(self, record: logging.LogRecord) -> bool:
        """True to print the record on the terminal (run.log gets every record either way)."""
        text = record.getMessage().strip()
        if not text:
            return False
        if record.name == "papermill":
            # What is left under papermill's name is not a kernel log line: its own cell chatter and
            # the kernel's printed tables (INFO), and stderr text such as warnings and tqdm bars.
            if text.startswith(_NOISE):
                return False
            return record.levelno >= logging.WARNING or bool(_PROGRESS.search(text))
        return record.levelno >= logging.WARNING or record.name.startswith(_TERMINAL_INFO)


@contextmanager
def run_logging(run_dir: Path) -> Iterator[Path]:
    """Log a run into run_dir/run.log and filter the terminal for its duration; yields the log's path."""
    path = Path(run_dir) / RUN_LOG
    root = logging.getLogger()
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter(FORMAT))
    relay, terminal = KernelLineRelay(), TerminalFilter()
    papermill = logging.getLogger("papermill")
    papermill.addFilter(relay)
    terminals = [h for h in root.handlers if getattr(h, "_assetlib", False)]
    for handler in terminals:
        handler.addFilter(terminal)
    root.addHandler(file_handler)
    try:
        yield path
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        for handler in terminals:
            handler.removeFilter(terminal)
        papermill.removeFilter(relay)
