"""Resumable, checksummed downloads of GLB files over plain HTTP(S).

Each file is written to `<dest>.part` first and moved onto `dest` with `os.replace` only once its
length, glTF magic and (when published) sha256 check out, so a reader never sees half a GLB under the
final name. A `.part` left by an interrupted transfer is resumed with a `Range` request, in the same
call (transient errors are retried) or in the next run. One bad file becomes a `Failure` row, never
an exception. httpx is imported only when a download runs (it comes with the `api` extra).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from assetlib.logs import progress
from assetlib.records import Failure

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

STAGE = "fetch-models"
GLTF_MAGIC = b"glTF"
# Retry delays: BACKOFF_BASE_S * 2**attempt, or the server's Retry-After; never more than the cap.
BACKOFF_BASE_S = 0.5
MAX_BACKOFF_S = 30.0

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")

Outcome = Literal["downloaded", "resumed", "present"]


@dataclass(frozen=True)
class ModelDownload:
    """One GLB to fetch: its asset, where from, where to, and its sha256 when the source publishes one."""

    asset_id: str
    url: str
    dest: Path
    sha256: str | None = None


@dataclass
class FetchReport:
    """What a fetch did: files downloaded, resumed, present, failed (Failure rows), bytes, seconds."""

    downloaded: int = 0
    resumed: int = 0
    present: int = 0
    failures: list[Failure] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        """The report as a plain dict for logs and JSON (bytes are those received over the network)."""
        mb = self.bytes / 1e6
        return {
            "downloaded": self.downloaded,
            "resumed": self.resumed,
            "present": self.present,
            "failed": len(self.failures),
            "bytes": self.bytes,
            "mb": round(mb, 3),
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(mb / self.seconds, 3) if self.seconds > 0 else 0.0,
            "failures": [asdict(f) for f in self.failures],
        }


def read_sha256_sums(path: Path) -> dict[str, str]:
    """`sha256sum`-style file ("<hex>  <relpath>" per line, '*' binary marker allowed) -> {relpath: hex}."""
    sums: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # GNU sha256sum starts a line with a backslash when it escaped "\" or a newline in the name.
        escaped = line.startswith("\\")
        match = _SUM_LINE.fullmatch(line[1:] if escaped else line)
        if match is None:
            raise ValueError(f"{path}:{number}: not a sha256sum line: {raw!r}")
        digest, name = match.groups()
        if escaped:
            name = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), name)
        sums[name.removeprefix("./")] = digest.lower()
    return sums


def fetch_models(
    downloads: Sequence[ModelDownload],
    workers: int = 4,
    timeout_s: float = 60.0,
    retries: int = 3,
    client: httpx.Client | None = None,
) -> FetchReport:
    """Fetch each file to its dest, resuming partials, checking size and sha256; one bad file never raises."""
    import httpx

    started = time.perf_counter()
    report = FetchReport()
    todo: list[ModelDownload] = []
    claimed: dict[Path, ModelDownload] = {}
    for item in dict.fromkeys(downloads):  # an identical entry twice is fetched once
        other = claimed.setdefault(Path(item.dest).absolute(), item)
        if other is item:
            todo.append(item)
        else:  # two different sources for one file would race on its .part
            report.failures.append(
                Failure(item.asset_id, STAGE, f"dest {item.dest} is also the dest of {other.url}")
            )
    own_client = client is None
    http = client if client is not None else httpx.Client(timeout=timeout_s, follow_redirects=True)
    bar = progress(total=len(downloads), desc="fetch models", unit="glb")
    bar.update(len(downloads) - len(todo))  # repeats and clashing dests need no request
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="fetch-models") as pool:
            futures = {pool.submit(_fetch_one, item, http, timeout_s, retries): item for item in todo}
            for future in as_completed(futures):
                item = futures[future]
                try:
                    outcome, received = future.result()
                except _FileFailed as exc:
                    report.failures.append(Failure(item.asset_id, STAGE, exc.reason))
                    report.bytes += exc.received
                    log.debug("%s: failed: %s", item.asset_id, exc.reason)
                else:
                    setattr(report, outcome, getattr(report, outcome) + 1)
                    report.bytes += received
                    log.debug("%s: %s (%d bytes) -> %s", item.asset_id, outcome, received, item.dest)
                bar.update(1)
    finally:
        bar.close()
        if own_client:
            http.close()
    report.seconds = time.perf_counter() - started
    summary = report.summary()
    log.info(
        "fetch models: %d downloaded, %d resumed, %d present, %d failed; %.1f MB in %.1f s (%.1f MB/s)",
        report.downloaded,
        report.resumed,
        report.present,
        len(report.failures),
        summary["mb"],
        report.seconds,
        summary["mb_per_s"],
    )
    if report.failures:
        shown = "; ".join(f"{f.asset_id}: {f.reason}" for f in report.failures[:3])
        more = f" (and {len(report.failures) - 3} more)" if len(report.failures) > 3 else ""
        log.warning("fetch models: %d file(s) failed: %s%s", len(report.failures), shown, more)
    return report


class _FileFailed(Exception):
    """This file is given up on: why, and how many bytes its attempts received."""

    def __init__(self, reason: str, received: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.received = received


class _Permanent(Exception):
    """An error that retrying will not fix (4xx, bad content)."""


class _Transient(Exception):
    """An error worth retrying (connection, timeout, 429, 5xx, short body); the .part is kept."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (an HTTP date is ignored: the exponential backoff applies then)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def _delay(attempt: int, retry_after: float | None) -> float:
    wait = retry_after if retry_after is not None else BACKOFF_BASE_S * 2**attempt
    return min(wait, MAX_BACKOFF_S)


def _fetch_one(
    item: ModelDownload, http: httpx.Client, timeout_s: float, retries: int
) -> tuple[Outcome, int]:
    """Fetch one file with retries; return how it ended and the bytes received, or raise _FileFailed."""
    dest = Path(item.dest)
    part = _part_path(dest)
    want = item.sha256.strip().lower() if item.sha256 else None
    received = [0]
    try:
        if dest.is_file():
            if want is None or _sha256_of(dest) == want:
                return "present", 0
            log.debug("%s: %s fails its sha256, fetching it again", item.asset_id, dest)
            dest.unlink()
            part.unlink(missing_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        attempt = 0
        resumed = False
        while True:
            try:
                resumed = _attempt(item, http, part, want, timeout_s, received) or resumed
                break
            except _Transient as exc:
                if attempt >= retries:
                    raise _FileFailed(f"{exc} (gave up after {attempt + 1} attempts)", received[0]) from exc
                wait = _delay(attempt, exc.retry_after)
                log.debug("%s: %s; retry %d/%d in %.2f s", item.asset_id, exc, attempt + 1, retries, wait)
                time.sleep(wait)
                attempt += 1
            except _Permanent as exc:
                raise _FileFailed(str(exc), received[0]) from exc
        os.replace(part, dest)
        return ("resumed" if resumed else "downloaded"), received[0]
    except _FileFailed:
        raise
    except Exception as exc:  # a full disk, an unwritable folder, an invalid URL: this file only
        raise _FileFailed(f"{type(exc).__name__}: {exc} ({item.url})", received[0]) from exc


def _attempt(
    item: ModelDownload,
    http: httpx.Client,
    part: Path,
    want: str | None,
    timeout_s: float,
    received: list[int],
) -> bool:
    """One request: fill `part` (appending on 206) and verify it; True when it completed a resume."""
    import httpx

    offset = part.stat().st_size if part.is_file() else 0
    # identity: byte ranges must refer to the file itself, not to a compressed rendering of it.
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    resumed = False
    try:
        with http.stream("GET", item.url, headers=headers, timeout=timeout_s, follow_redirects=True) as resp:
            status = resp.status_code
            if status == 416 and offset:
                match = _UNSATISFIED_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                if match and int(match.group(1)) != offset:
                    part.unlink()
                    raise _Transient(f"partial file is {offset} bytes but {item.url} has {match.group(1)}")
                _verify(item, part, want, expected=offset)
                return True
            if status == 429 or status >= 500:
                raise _Transient(
                    f"HTTP {status} for {item.url}", _retry_after(resp.headers.get("retry-after"))
                )
            if status not in (200, 206):
                raise _Permanent(f"HTTP {status} for {item.url}")
            expected: int | None
            if status == 206 and offset:
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("content-range", "").strip())
                if match is None or int(match.group(1)) != offset:
                    part.unlink()  # not the range asked for: start over on the next attempt
                    raise _Transient(f"unexpected Content-Range {resp.headers.get('content-range')!r}")
                total = match.group(3)
                expected = int(total) if total != "*" else int(match.group(2)) + 1
                mode, resumed = "ab", True
            else:  # 200: the whole file (a server that ignores ranges too), so start over
                length = resp.headers.get("content-length")
                expected = int(length) if length and length.isdigit() else None
                mode = "wb"
            with part.open(mode) as fh:
                # Raw bytes as they arrive: no decoding (ranges count stored bytes) and no chunk
                # buffer, which would lose what arrived before a dropped connection.
                for chunk in resp.iter_raw():
                    fh.write(chunk)
                    received[0] += len(chunk)
    except httpx.UnsupportedProtocol as exc:
        raise _Permanent(f"{exc} ({item.url})") from exc
    except httpx.TransportError as exc:  # refused, reset, timed out, or dropped mid-body: keep the part
        raise _Transient(f"{type(exc).__name__} for {item.url}: {exc}") from exc
    _verify(item, part, want, expected)
    return resumed


def _verify(item: ModelDownload, part: Path, want: str | None, expected: int | None) -> None:
    """Length, glTF magic, sha256 of a finished part; a bad part is deleted (a short one is resumed)."""
    size = part.stat().st_size
    if expected is not None and size < expected:
        raise _Transient(f"got {size} of {expected} bytes from {item.url}")
    if expected is not None and size > expected:
        part.unlink()
        raise _Transient(f"got {size} bytes but {item.url} has {expected}")
    with part.open("rb") as fh:
        magic = fh.read(4)
    if magic != GLTF_MAGIC:
        part.unlink()
        raise _Permanent(f"not a glTF binary (starts with {magic!r}) from {item.url}")
    if want is not None:
        got = _sha256_of(part)
        if got != want:
            part.unlink()
            raise _Permanent(f"sha256 mismatch for {item.url}: expected {want}, got {got}")
