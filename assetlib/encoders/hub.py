"""Model weights from the Hugging Face Hub or a local folder: resolved to a local folder and its identity.

A hub id already in the cache resolves without touching the network (transformers' own
from_pretrained(hub id) retries the network for minutes on a machine without it before falling back
to the cache). One that is not cached is downloaded (only the files a model needs, with a progress
bar) when the hub answers, and refused at once, saying how to get it, when it does not.
The identity of the weights is the snapshot's commit, or a content hash for a local folder, so new
weights under the same name never reuse old vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from assetlib.encoders.base import EncoderUnavailable

log = logging.getLogger(__name__)

# What a transformers model needs: config, safetensors weights, tokenizer and processor files.
# Not the duplicate .bin / .h5 / .msgpack / ONNX copies some repos also carry (gigabytes each).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "*.tiktoken",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "processor_config.json",
    "video_preprocessor_config.json",
    "chat_template*",
    "README.md",
)
PROBE_TIMEOUT_S = 5.0
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → content digest, per process


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are on disk and what identifies those exact weights."""

    source: str  # as the user named it: a hub id or a directory
    path: Path
    revision: str  # snapshot commit (hub) or content hash (directory)
    hub_id: str | None = None


def is_local(source: str) -> bool:
    """Whether a model source names a local directory (absolute, relative, ~) rather than a hub id."""
    path = Path(source).expanduser()
    return path.is_dir() or path.is_absolute() or source.startswith((".", "~"))


def hub_cache() -> str | None:
    """The hub cache folder (HF_HUB_CACHE or HF_HOME/hub), read now, not when the library was imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def hub_endpoint() -> str | None:
    """The hub's URL (HF_ENDPOINT, e.g. a mirror), read now; None for the library's default."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE: the user says there is no hub; never try it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def fetch_instructions(hub_id: str, setting: str = "SIGLIP_MODEL") -> str:
    """How to get a hub model onto this machine, for error messages (`setting` names the model)."""
    cache = hub_cache() or "~/.cache/huggingface/hub"
    return (
        f"fetch it with `assetlib models fetch {hub_id}` (or `huggingface-cli download {hub_id}`) on a "
        f"machine with hub access (it goes to the Hugging Face cache, {cache}; copy that folder here, "
        f"or set HF_HUB_CACHE to it), or point {setting} at a local directory with the weights; set "
        "HF_HUB_OFFLINE=1 where there is no hub"
    )


def cached_snapshot(hub_id: str) -> Path | None:
    """The cached snapshot folder of a hub id (refs/main), without any network; None when not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                hub_id, cache_dir=hub_cache(), local_files_only=True, allow_patterns=list(MODEL_FILES)
            )
        )
    except LocalEntryNotFoundError:
        return None
    except Exception as exc:  # an id that is not a valid repo id, an unreadable cache
        raise EncoderUnavailable(
            f"{hub_id!r} is neither a local directory nor a usable hub id ({exc})"
        ) from exc


def _hub_reachable(hub_id: str) -> str | None:
    """None when the hub answers about this repo, else why not (in a few seconds, never minutes)."""
    import httpx

    endpoint = (hub_endpoint() or "https://huggingface.co").rstrip("/")
    try:
        answer = httpx.head(f"{endpoint}/api/models/{hub_id}", timeout=PROBE_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"the hub at {endpoint} is not reachable ({type(exc).__name__})"
    if answer.status_code == 404:
        return f"the hub at {endpoint} has no model {hub_id!r}"
    if answer.status_code >= 500:
        return f"the hub at {endpoint} answered {answer.status_code}"
    return None


def download(hub_id: str) -> Path:
    """Download a hub model's files into the cache (the library's progress bars); return the snapshot."""
    from huggingface_hub import snapshot_download

    why = _hub_reachable(hub_id)
    if why is not None:
        raise EncoderUnavailable(f"cannot download {hub_id}: {why}; {fetch_instructions(hub_id)}")
    started = time.perf_counter()
    folder = Path(
        snapshot_download(
            hub_id,
            cache_dir=hub_cache(),
            endpoint=hub_endpoint(),
            allow_patterns=list(MODEL_FILES),
        )
    )
    log.info("downloaded %s (snapshot %s) in %.1fs", hub_id, folder.name, time.perf_counter() - started)
    return folder


def content_hash(folder: Path) -> str:
    """A digest of a folder's weight files' bytes (memoised per size and mtime), so copies agree."""
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))
    if not files:
        raise EncoderUnavailable(f"{folder} has no weights (*.safetensors or *.bin)")
    digest = hashlib.blake2b(digest_size=10)
    for path in files:
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _HASHES:
            part = hashlib.blake2b(digest_size=16)
            with path.open("rb") as fh:
                while chunk := fh.read(8 * 1024 * 1024):
                    part.update(chunk)
            _HASHES[key] = part.hexdigest()
        digest.update(f"{path.name}:{_HASHES[key]}".encode())
    return digest.hexdigest()


def resolve(source: str, allow_download: bool = True, setting: str = "SIGLIP_MODEL") -> ResolvedModel:
    """A model source as a local folder and its identity: a directory, a cached hub id, or a download
    (`setting` is the setting that names it, for the message saying how to get it)."""
    if is_local(source):
        folder = Path(source).expanduser()
        if not (folder / "config.json").is_file():
            why = "does not exist" if not folder.exists() else "has no config.json"
            raise EncoderUnavailable(f"model directory {folder} {why}")
        return ResolvedModel(source, folder, content_hash(folder))
    snapshot = cached_snapshot(source)
    if snapshot is None:
        if hub_offline() or not allow_download:
            state = "HF_HUB_OFFLINE is set" if hub_offline() else "downloads are off here"
            raise EncoderUnavailable(
                f"weights for {source} are not in the Hugging Face cache and {state}: "
                f"{fetch_instructions(source, setting)}"
            )
        snapshot = download(source)
    return ResolvedModel(source, snapshot, snapshot.name, hub_id=source)


def describe_cached(source: str) -> dict | None:
    """The config.json of a local or cached model (no download, no weights loaded); None when absent."""
    import json

    folder = Path(source).expanduser() if is_local(source) else cached_snapshot(source)
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
