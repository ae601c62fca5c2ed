"""Serving the two faces as processes: the API (uvicorn) and the dashboard (Voila) beside it."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

from assetlib.config import PACKAGE_DIR, SOURCE_TREE

log = logging.getLogger(__name__)

# Uploads reach the dashboard kernel as one websocket message; tornado's default cap (10 MiB)
# drops larger ones silently, so the dashboard's server raises it to the model upload limit.
WEBSOCKET_MAX_BYTES = 64 * 1024 * 1024
TEMPLATES = PACKAGE_DIR / "share"


class ServeError(RuntimeError):
    """A server that did not start, with the end of its log."""


def dashboard_notebook() -> Path:
    """The dashboard notebook shipped in the source tree (notebooks/dashboard.ipynb)."""
    path = SOURCE_TREE / "notebooks" / "dashboard.ipynb"
    if not path.is_file():
        raise ServeError(f"{path} is missing: the dashboard is served from a source checkout")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Served:
    """A server in a child process, started and waited for; stopped on exit (a context manager)."""

    def __init__(self, name: str, command: list[str], ready_url: str, log_path: Path, env: dict) -> None:
        self.name, self.command, self.ready_url, self.log_path, self.env = (
            name,
            command,
            ready_url,
            log_path,
            env,
        )
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> Served:
        """Start the process and wait until `ready_url` answers (ServeError with its log otherwise)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        self.process = subprocess.Popen(self.command, stdout=log_file, stderr=subprocess.STDOUT, env=self.env)
        log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.ready_url, timeout=5).status_code < 500:
                    log.info("%s ready at %s (log: %s)", self.name, self.ready_url, self.log_path)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise ServeError(
            f"{self.name} did not answer {self.ready_url} in {timeout:.0f} s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Terminate the process (kill it if it does not stop in 10 s)."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Served:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def api_server(host: str, port: int, log_dir: Path, env: dict | None = None) -> Served:
    """`assetlib serve api` as a child process."""
    command = [
        sys.executable,
        "-m",
        "assetlib.faces.cli",
        "serve",
        "api",
        "--host",
        host,
        "--port",
        str(port),
    ]
    return Served(
        "API", command, f"http://{host}:{port}/health", log_dir / "api.log", env or dict(os.environ)
    )


def dashboard_server(
    api_url: str, host: str, port: int, log_dir: Path, outputs: Path, env: dict | None = None
) -> Served:
    """Voila serving notebooks/dashboard.ipynb as a child process, its kernels pointed at the API."""
    env = dict(env or os.environ)
    env.update(ASSETLIB_API_URL=api_url, ASSETLIB_OUTPUTS=str(outputs))
    # Our Voila template (the lab one without its CDN stylesheet links) lives in the package.
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(TEMPLATES), env.get("JUPYTER_PATH")]))
    command = [
        sys.executable,
        "-m",
        "voila",
        str(dashboard_notebook()),
        "--no-browser",
        f"--port={port}",
        f"--Voila.ip={host}",
        "--theme=light",
        "--template=assetlib",
        "--show_tracebacks=True",
        f"--Voila.tornado_settings={{'websocket_max_message_size': {WEBSOCKET_MAX_BYTES}}}",
    ]
    return Served("dashboard", command, f"http://{host}:{port}/", log_dir / "dashboard.log", env)


def warm_up(api_url: str) -> None:
    """Load each searchable algorithm's encoder in the API now, so the first visitor does not wait."""
    try:
        algorithms = httpx.get(f"{api_url}/health", timeout=30).json().get("algorithms", [])
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("warm-up skipped: %s", exc)
        return
    for entry in algorithms:
        if entry["usable"] and entry.get("stored_encoders"):
            started = time.perf_counter()
            answer = httpx.post(
                f"{api_url}/search/text",
                json={"query": "warm up", "algorithm": entry["algorithm"], "top_k": 1},
                timeout=300,
            )
            log.info(
                "warmed %s in %.1f s (HTTP %d)",
                entry["algorithm"],
                time.perf_counter() - started,
                answer.status_code,
            )


def screenshot_in_background(url: str, out_dir: Path) -> threading.Thread:
    """Take the dashboard screenshots (after a query, with the 3D viewer open) without blocking serving."""

    def take() -> None:
        from assetlib.faces.browser import BrowserUnavailable, take_dashboard_screenshots

        try:
            shots = take_dashboard_screenshots(url, out_dir)
            print(f"screenshots: {', '.join(str(p) for p in shots.values())}", flush=True)
        except BrowserUnavailable as exc:
            log.warning("no screenshots: %s", exc)
        except Exception:
            log.exception("the dashboard screenshots failed (the servers keep running)")

    thread = threading.Thread(target=take, name="screenshots", daemon=True)
    thread.start()
    return thread


def serve_dashboard(
    host: str,
    port: int,
    api_port: int,
    api_url: str | None,
    log_dir: Path,
    outputs: Path,
    env: dict | None = None,
    screenshots: Path | None = None,
) -> int:
    """Start the API (unless `api_url` names a running one) and the dashboard; serve until Ctrl-C."""
    servers: list[Served] = []
    env = dict(env or os.environ)
    # Ctrl-C and a `kill` (SIGTERM) both stop the children instead of orphaning them; SIGINT is set
    # explicitly because a process started in the background by a script inherits it ignored.
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if api_url is None:
            api = api_server(host, api_port, log_dir, env).start(timeout=300)
            servers.append(api)
            api_url = f"http://{host}:{api_port}"
            warm_up(api_url)
        dashboard = dashboard_server(api_url, host, port, log_dir, outputs, env).start()
        servers.append(dashboard)
        print(f"API:       {api_url}  (docs: {api_url}/docs)")
        print(f"dashboard: http://{host}:{port}/")
        print(f"logs:      {log_dir}   (Ctrl-C stops both)", flush=True)
        if screenshots is not None:
            screenshot_in_background(f"http://{host}:{port}/", screenshots)
        while all(s.process and s.process.poll() is None for s in servers):
            time.sleep(1)
        dead = next(s for s in servers if s.process and s.process.poll() is not None)
        print(f"{dead.name} stopped unexpectedly:\n{dead.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for server in reversed(servers):
            server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
