"""Interactive 3D viewer widget: Google's <model-viewer> (installed from npm, no CDN) in an anywidget."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from assetlib.config import SOURCE_TREE

# The UMD build bundles three.js, so one file is all the browser needs.
VIEWER_JS_RELATIVE = Path("node_modules/@google/model-viewer/dist/model-viewer-umd.min.js")
MAX_MODEL_BYTES = 50 * 1024 * 1024  # larger GLBs make the browser crawl; the views strip still shows them


class ViewerUnavailable(RuntimeError):
    """The viewer's JavaScript is not installed."""


def viewer_script_path() -> Path:
    """Where model-viewer's script is: $ASSETLIB_VIEWER_JS, or node_modules beside the source tree."""
    configured = os.environ.get("ASSETLIB_VIEWER_JS")
    if configured:
        return Path(configured).expanduser()
    return SOURCE_TREE / VIEWER_JS_RELATIVE


def load_viewer_script() -> str:
    """The viewer's JavaScript source, or ViewerUnavailable saying how to install it."""
    path = viewer_script_path()
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ViewerUnavailable(
            f"the 3D viewer's script is not installed ({path}): run scripts/bootstrap.sh, which runs "
            "`npm ci` (needs Node.js and npm), or set ASSETLIB_VIEWER_JS to model-viewer-umd.min.js"
        ) from exc


_ESM = r"""
function ensureLibrary(code) {
  if (customElements.get("model-viewer")) return Promise.resolve();
  if (!code) return Promise.reject(new Error("the viewer's script is missing"));
  if (!window.__assetlibModelViewerLoading) {
    window.__assetlibModelViewerLoading = true;
    // The UMD bundle registers itself as an AMD module when a loader is present; hide it so the
    // custom element is defined globally. Inline scripts run synchronously on insertion.
    const define = window.define;
    window.define = undefined;
    const script = document.createElement("script");
    script.textContent = code;
    document.head.appendChild(script);
    window.define = define;
  }
  return customElements.whenDefined("model-viewer");
}

function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "assetlib-viewer";
  box.style.position = "relative";
  const viewer = document.createElement("model-viewer");
  viewer.setAttribute("camera-controls", "");
  viewer.setAttribute("auto-rotate", "");
  viewer.setAttribute("auto-rotate-delay", "1500");
  viewer.setAttribute("shadow-intensity", "0.8");
  viewer.setAttribute("interaction-prompt", "none");
  viewer.setAttribute("exposure", "1.1");
  viewer.style.width = "100%";
  viewer.style.height = model.get("height");
  viewer.style.background = "radial-gradient(circle at 50% 35%, #ffffff 0%, #e9edf2 100%)";
  viewer.style.borderRadius = "6px";
  const note = document.createElement("div");
  note.className = "assetlib-viewer-note";
  note.style.cssText = "position:absolute;left:10px;bottom:8px;font:12px sans-serif;color:#555;";
  box.append(viewer, note);
  el.append(box);

  let url = null;
  function setStatus(status, text) {
    box.dataset.status = status;
    note.textContent = text === undefined ? "" : text;
    if (model.get("status") !== status) {
      model.set("status", status);
      model.save_changes();
    }
  }
  function show() {
    if (url) URL.revokeObjectURL(url);
    url = null;
    const data = model.get("glb");
    if (!data || data.byteLength === 0) {
      viewer.removeAttribute("src");
      setStatus("empty", "select a result to see it in 3D");
      return;
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    url = URL.createObjectURL(new Blob([bytes], { type: "model/gltf-binary" }));
    setStatus("loading", "loading…");
    viewer.src = url;
  }
  const hint = "drag to rotate · scroll to zoom · right-drag to pan";
  let loads = 0; // counted so that a page (or a test) can wait for the next model, not the last one
  viewer.addEventListener("load", () => {
    loads += 1;
    box.dataset.loads = String(loads);
    box.dataset.model = model.get("label");
    setStatus("loaded", hint);
  });
  viewer.addEventListener("error", (event) => {
    const kind = event.detail && event.detail.type ? event.detail.type : "unknown";
    setStatus("error", "the model could not be shown (" + kind + ")");
  });
  model.on("change:glb", show);
  ensureLibrary(model.get("_library")).then(show, (err) => setStatus("error", String(err.message || err)));
  return () => {
    model.off("change:glb", show);
    if (url) URL.revokeObjectURL(url);
  };
}
export default { render };
"""


class ModelViewer(anywidget.AnyWidget):
    """Rotate-and-zoom view of one GLB; `status` reports back what the browser did (loaded, error)."""

    _esm = _ESM
    _library = traitlets.Unicode("").tag(sync=True)
    glb = traitlets.Bytes(b"").tag(sync=True)
    height = traitlets.Unicode("420px").tag(sync=True)
    status = traitlets.Unicode("empty").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)  # what is shown (an asset id), set on the page when loaded

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(_library=load_viewer_script(), **kwargs)

    def show(self, data: bytes, label: str = "") -> None:
        """Show a GLB (bytes) under a label; refuses files over MAX_MODEL_BYTES with ValueError."""
        if len(data) > MAX_MODEL_BYTES:
            raise ValueError(
                f"the model is {len(data) / 2**20:.0f} MB, over the viewer's "
                f"{MAX_MODEL_BYTES // 2**20} MB limit"
            )
        self.label = label
        if data == self.glb:
            self.glb = (
                b""  # the same bytes again would not reach the page; a reload keeps the page's count true
            )
        self.glb = data

    def clear(self) -> None:
        """Show nothing."""
        self.glb = b""
