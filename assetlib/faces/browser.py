"""Drive the dashboard in Debian's Chromium with Playwright: the browser tests and the demo's screenshots.

Playwright's own browser download is never used (no internet here): it launches /usr/bin/chromium.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
QUERY_BOX = "input[placeholder*='Describe an asset']"
TIMEOUT_MS = 120_000


class BrowserUnavailable(RuntimeError):
    """No Chromium to drive."""


def chromium_path() -> str:
    """Debian's Chromium ($ASSETLIB_CHROMIUM overrides); BrowserUnavailable when there is none."""
    path = os.environ.get("ASSETLIB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        raise BrowserUnavailable(
            "chromium not found: install Debian's chromium (scripts/install-system-deps.sh)"
        )
    return path


@contextmanager
def dashboard_page(url: str, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A Playwright page with the dashboard loaded and ready for a query."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda exc: log.warning("page error: %s", exc))
            page.goto(url, timeout=TIMEOUT_MS)
            page.wait_for_selector(QUERY_BOX, timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def status_text(page: Any) -> str:
    """The dashboard's status line."""
    return page.inner_text(".al-status")


def run_query(page: Any, query: str, press_enter: bool = True) -> str:
    """Type a query, submit it (Enter or the button) and wait for its results; returns the status line."""
    page.fill(QUERY_BOX, query)
    if press_enter:
        page.press(QUERY_BOX, "Enter")
    else:
        page.get_by_role("button", name="Search").click()
    page.wait_for_function(
        "q => { const s = document.querySelector('.al-status'); "
        "return s && s.innerText.includes(q) && s.innerText.includes('results'); }",
        arg=query,
        timeout=TIMEOUT_MS,
    )
    return status_text(page)


def viewer_loads(page: Any) -> int:
    """How many models the 3D viewer has loaded so far."""
    return int(page.get_attribute(".assetlib-viewer", "data-loads") or 0)


def viewer_model(page: Any) -> str | None:
    """The label (asset id) of the model the 3D viewer shows."""
    return page.get_attribute(".assetlib-viewer", "data-model")


def wait_for_viewer(page: Any, loads_before: int = 0, timeout_ms: int = TIMEOUT_MS) -> str:
    """Wait until the 3D viewer has loaded one more model than `loads_before` (or failed); its status."""
    page.wait_for_function(
        "n => { const v = document.querySelector('.assetlib-viewer'); return v && "
        "(Number(v.dataset.loads || 0) > n || v.dataset.status === 'error'); }",
        arg=loads_before,
        timeout=timeout_ms,
    )
    return page.get_attribute(".assetlib-viewer", "data-status")


# Asked the way people type, searched text → image with the dashboard's default algorithm.
SCREENSHOT_QUERIES = ("a seat for one person", "能在天上飞的东西")


def take_dashboard_screenshots(
    url: str, out_dir: Path, queries: tuple[str, ...] = SCREENSHOT_QUERIES, mode: str = "cross-modal"
) -> dict[str, Path]:
    """Screenshots for a run folder: after each text query (in `mode`), and with the 3D viewer open on a
    result of the last one. The first query's is dashboard_query.png, the next dashboard_query_2.png…"""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ["dashboard_query", *(f"dashboard_query_{i}" for i in range(2, len(queries) + 1))]
    shots = {name: out_dir / f"{name}.png" for name in names} | {"viewer": out_dir / "dashboard_viewer.png"}
    with dashboard_page(url) as page:
        page.get_by_role("button", name=mode).click()
        for name, query in zip(names, queries, strict=True):
            loads = viewer_loads(page)
            run_query(page, query)
            wait_for_viewer(page, loads, timeout_ms=15_000)  # the first result opens by itself
            page.screenshot(path=str(shots[name]), full_page=True)
            log.info("screenshot of %r: %s", query, shots[name].name)
        loads = viewer_loads(page)
        page.locator(".al-card").nth(1).get_by_role("button", name="View in 3D").click()
        status = wait_for_viewer(page, loads)
        page.wait_for_timeout(1500)  # let auto-rotate turn the model a little
        page.locator(".assetlib-viewer").scroll_into_view_if_needed()
        page.screenshot(path=str(shots["viewer"]), full_page=False)
    log.info("dashboard screenshots (viewer %s): %s", status, ", ".join(str(p) for p in shots.values()))
    return shots
