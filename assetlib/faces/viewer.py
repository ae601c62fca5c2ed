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
  note.style.cssText =
    "position:absolute;left:10px;right:10px;bottom:8px;font:12px sans-serif;color:#555;";
  box.append(viewer, note);
  el.append(box);

  let url = null;
  const plain = note.style.cssText;
  const alarm = plain + "top:40%;bottom:auto;background:#fdecea;color:#8a1c12;border:1px solid #f2b8b0;" +
    "border-radius:6px;padding:8px 12px;font-size:13px;";
  function setStatus(status, text) {
    box.dataset.status = status;
    note.textContent = text === undefined ? "" : text;
    note.style.cssText = status === "error" ? alarm : plain;
    if (model.get("status") !== status) {
      model.set("status", status);
      model.save_changes();
    }
  }
  function show() {
    if (url) URL.revokeObjectURL(url);
    url = null;
    const remote = model.get("src");
    box.dataset.source = remote ? "remote" : "local";
    viewer.style.visibility = "visible";
    if (remote) {
      // A model on another host: the browser fetches it itself (the kernel never downloads it).
      if (viewer.getAttribute("src") === remote && viewer.loaded) {
        loaded(); // the same model again: model-viewer would not load it twice, nor say "load"
        return;
      }
      setStatus("loading", "loading from " + new URL(remote, location.href).host + "…");
      viewer.src = remote;
      return;
    }
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
  function loaded() {
    loads += 1;
    box.dataset.loads = String(loads);
    box.dataset.model = model.get("label");
    setStatus("loaded", hint);
  }
  viewer.addEventListener("load", loaded);
  viewer.addEventListener("error", (event) => {
    const kind = event.detail && event.detail.type ? event.detail.type : "unknown";
    const remote = model.get("src");
    if (remote) {
      const host = new URL(remote, location.href).host;
      box.dataset.model = model.get("label");
      viewer.style.visibility = "hidden"; // never leave the previous model under this one's failure
      setStatus("error", "this browser could not load the model from " + host + " (" + kind + "): " +
        "the host is unreachable from here or refuses cross-origin requests. " + model.get("hint"));
    } else {
      setStatus("error", "the model could not be shown (" + kind + ")");
    }
  });
  // One message per model (the kernel sets src/glb/label, then bumps `request`): no double loads.
  model.on("change:request", show);
  ensureLibrary(model.get("_library")).then(show, (err) => setStatus("error", String(err.message || err)));
  return () => {
    model.off("change:request", show);
    if (url) URL.revokeObjectURL(url);
  };
}
export default { render };
"""


class ModelViewer(anywidget.AnyWidget):
    """Rotate-and-zoom view of one GLB (bytes from the API, or a remote URL the browser loads itself);
    `status` reports back what the browser did (loaded, error)."""

    _esm = _ESM
    _library = traitlets.Unicode("").tag(sync=True)
    glb = traitlets.Bytes(b"").tag(sync=True)
    src = traitlets.Unicode("").tag(sync=True)  # a remote model's URL; empty: show `glb`
    hint = traitlets.Unicode("").tag(sync=True)  # what to do when a remote model cannot be loaded
    request = traitlets.Int(0).tag(sync=True)  # bumped once per model shown: the page's cue to load
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
        self._load(label=label, glb=data, src="", hint="")

    def show_url(self, url: str, label: str = "", hint: str = "") -> None:
        """Show a model the browser loads from `url` itself (a remote host); `hint` says what to do if
        it cannot (shown after the reason)."""
        self._load(label=label, glb=b"", src=url, hint=hint)

    def clear(self) -> None:
        """Show nothing."""
        self._load(label="", glb=b"", src="", hint="")

    def _load(self, **state: Any) -> None:
        with self.hold_sync():  # one message: the page sees the new state and the cue together
            for name, value in state.items():
                setattr(self, name, value)
            self.request += 1
