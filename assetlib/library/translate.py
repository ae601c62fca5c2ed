"""English → Chinese caption translation through Qwen: DashScope's Batch API, or real time for small sets.

Batch mode writes JSONL files of `translation_batch_size` chat requests (custom_id = asset id),
uploads them, creates batches, polls them with backoff, downloads output and error files and merges
what validates. Everything needed to resume lives in the run folder:

- `state.json`: one record per batch job (local file, uploaded file id, batch id, status, attempt);
  saved after every step, so a restart polls the jobs it already has instead of paying again;
- `translations.jsonl`: every accepted translation, appended as it arrives; ids in it are skipped;
- `failed.json`: ids that failed in their follow-up batch too, with the reasons;
- the output, `text_captions_cap3d_cn.json` (same keys as the input, in its order).

A batch created but not yet recorded (a crash between the two) is found again by its metadata tag.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assetlib.config import Settings
from assetlib.logs import progress
from assetlib.records import write_text_atomic
from assetlib.vocab import cjk_count

log = logging.getLogger(__name__)

OUTPUT_NAME = "text_captions_cap3d_cn.json"
PROMPT_VERSION = "v1"
TERMINAL = ("completed", "failed", "expired", "cancelled")
MAX_ATTEMPTS = 2  # the first batch, then one follow-up batch for what failed
MAX_POLL_SECONDS = 600.0

# Terms 3D captions use often, translated one way everywhere (only the ones a caption contains go
# into its prompt, to keep requests short).
GLOSSARY = {
    "3d model": "3D模型",
    "low poly": "低多边形",
    "low-poly": "低多边形",
    "mesh": "网格",
    "texture": "纹理",
    "textured": "带纹理的",
    "render": "渲染图",
    "character": "角色",
    "figurine": "小雕像",
    "sculpture": "雕塑",
    "statue": "雕像",
    "cartoon": "卡通",
    "stylized": "风格化的",
    "metallic": "金属质感的",
    "matte": "哑光的",
    "glossy": "亮面的",
    "wooden": "木制的",
    "voxel": "体素",
    "rigged": "带骨骼绑定的",
    "scene": "场景",
    "building": "建筑",
    "vehicle": "载具",
    "weapon": "武器",
    "furniture": "家具",
}
SYSTEM_PROMPT = (
    "You translate short English descriptions of 3D models into Simplified Chinese. Translate "
    "faithfully: keep every object, part, colour, material, shape and count; add nothing, drop "
    "nothing, explain nothing. Reply with the Chinese translation only, on one line."
)


class TranslationError(RuntimeError):
    """A translation run that cannot go on (bad input, the service refusing every request)."""


def glossary_for(caption: str) -> dict[str, str]:
    """The glossary entries whose English term appears in a caption."""
    lower = caption.lower()
    return {en: zh for en, zh in GLOSSARY.items() if re.search(rf"\b{re.escape(en)}\b", lower)}


def messages_for(caption: str) -> list[dict[str, str]]:
    """The chat messages that translate one caption (system prompt, glossary, caption)."""
    terms = glossary_for(caption)
    user = caption.strip()
    if terms:
        listed = "; ".join(f"{en} = {zh}" for en, zh in terms.items())
        user = f"Use these terms: {listed}.\nTranslate: {user}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def request_line(asset_id: str, caption: str, model: str) -> dict:
    """One Batch API input line (OpenAI JSONL format)."""
    return {
        "custom_id": asset_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": messages_for(caption), "temperature": 0},
    }


def clean_translation(text: str) -> str:
    """Strip what models wrap a translation in (quotes, a 'translation:' prefix, whitespace)."""
    text = text.strip().strip('"“”「」').strip()
    text = re.sub(r"^(translation|译文|翻译)\s*[:：]\s*", "", text, flags=re.IGNORECASE)
    return text.strip()


def validate_translation(english: str, chinese: str) -> str | None:
    """Why a translation is refused (None when it is acceptable): empty, not Chinese, odd length."""
    if not chinese:
        return "empty translation"
    if "\n" in chinese:
        return "more than one line"
    cjk = cjk_count(chinese)
    if cjk == 0:
        return "no Chinese characters"
    letters = len(re.findall(r"[A-Za-z]", chinese))
    if letters > max(12, cjk):  # mostly English left untranslated
        return "mostly untranslated English"
    # Chinese runs about a third to two thirds of the English length in characters.
    if len(chinese) > 2 * len(english) + 20:
        return f"too long ({len(chinese)} characters for {len(english)})"
    if len(chinese) < max(2, len(english) // 12):
        return f"too short ({len(chinese)} characters for {len(english)})"
    return None


def estimate_tokens(captions: Mapping[str, str]) -> dict[str, int]:
    """Rough token counts for a dry run: ~4 English characters per token, ~1.5 Chinese per token."""
    prompt = math.ceil(len(SYSTEM_PROMPT) / 4) + 8
    input_tokens = sum(prompt + math.ceil(len(messages_for(c)[1]["content"]) / 4) for c in captions.values())
    output_tokens = sum(math.ceil(len(c) * 0.45 / 1.5) + 2 for c in captions.values())
    return {"input_tokens": input_tokens, "output_tokens": output_tokens}


# -- run-folder state ----------------------------------------------------------------------------
@dataclass
class Job:
    """One batch: its input file here, its ids there, and how far it got."""

    name: str
    attempt: int
    ids_path: str
    input_path: str
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str = "new"
    output_file_id: str | None = None
    error_file_id: str | None = None
    merged: bool = False

    @property
    def active(self) -> bool:
        """Submitted or to be submitted, and not merged yet."""
        return not self.merged


@dataclass
class State:
    """Everything a restart needs; written atomically after every change."""

    path: Path
    model: str
    jobs: list[Job] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, model: str) -> State:
        """Read state.json (a new state when there is none)."""
        if not path.is_file():
            return cls(path, model)
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("model") != model:
            log.warning("state.json was written for model %s; continuing with %s", data.get("model"), model)
        return cls(path, model, [Job(**j) for j in data.get("jobs", [])])

    def save(self) -> None:
        """Write state.json atomically (a crash leaves the old or the new one, never half)."""
        data = {"model": self.model, "prompt_version": PROMPT_VERSION, "jobs": [asdict(j) for j in self.jobs]}
        write_text_atomic(self.path, json.dumps(data, indent=1))


class Ledger:
    """translations.jsonl: accepted translations, appended and flushed one line at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash; its id is simply translated again
                self.done[record["id"]] = record["zh"]

    def add(self, asset_id: str, chinese: str) -> bool:
        """Record a translation; False (and nothing written) when the id already has one."""
        if asset_id in self.done:
            return False
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"id": asset_id, "zh": chinese}, ensure_ascii=False) + "\n")
        self.done[asset_id] = chinese
        return True


@dataclass
class TranslationReport:
    """What a run did: counts, the batches, what failed and where the output is."""

    total: int
    already: int
    translated: int
    failed: dict[str, str]
    batches: int
    output: Path | None
    dry_run: dict | None = None

    @property
    def complete(self) -> bool:
        """Every input caption has a translation."""
        return self.output is not None and not self.failed


# -- the batch path ------------------------------------------------------------------------------
class BatchTranslator:
    """Runs the Batch API jobs of one run folder to the end, resuming whatever is recorded there."""

    def __init__(
        self,
        client: Any,
        run_dir: Path,
        model: str,
        batch_size: int,
        poll_seconds: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.run_dir = run_dir
        self.model = model
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        (run_dir / "requests").mkdir(parents=True, exist_ok=True)
        (run_dir / "downloads").mkdir(parents=True, exist_ok=True)
        self.state = State.load(run_dir / "state.json", model)
        self.ledger = Ledger(run_dir / "translations.jsonl")
        self.failures: dict[str, str] = {}
        self._last_reasons: dict[str, str] = {}
        self.run_tag = _run_tag(run_dir)

    # jobs ----------------------------------------------------------------------------------------
    def plan(self, captions: Mapping[str, str], attempt: int) -> None:
        """Write request files for ids neither translated nor already in an active job."""
        pending = {i for j in self.state.jobs if j.active for i in _read_ids(Path(j.ids_path))}
        todo = [i for i in captions if i not in self.ledger.done and i not in pending]
        if not todo:
            return
        start = len(self.state.jobs)
        for n, first in enumerate(range(0, len(todo), self.batch_size)):
            ids = todo[first : first + self.batch_size]
            name = f"batch_{start + n + 1:04d}_a{attempt}"
            input_path = self.run_dir / "requests" / f"{name}.jsonl"
            ids_path = self.run_dir / "requests" / f"{name}.ids.json"
            lines = (json.dumps(request_line(i, captions[i], self.model), ensure_ascii=False) for i in ids)
            write_text_atomic(input_path, "\n".join(lines) + "\n")
            write_text_atomic(ids_path, json.dumps(ids))
            self.state.jobs.append(Job(name, attempt, str(ids_path), str(input_path)))
            log.info("planned %s: %d requests (attempt %d)", name, len(ids), attempt)
        self.state.save()

    def submit(self, job: Job) -> None:
        """Upload the job's file and create its batch, saving after each step (never twice)."""
        if job.batch_id is None:
            found = self._find_created(job)
            if found is not None:
                job.batch_id, job.status = found.id, found.status
                log.info("%s: found batch %s created before a restart", job.name, found.id)
                self.state.save()
                return
        if job.input_file_id is None:
            with open(job.input_path, "rb") as f:
                uploaded = self.client.files.create(file=f, purpose="batch")
            job.input_file_id = uploaded.id
            self.state.save()
            log.info("%s: uploaded as %s", job.name, uploaded.id)
        if job.batch_id is None:
            batch = self.client.batches.create(
                input_file_id=job.input_file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={"assetlib_job": f"{self.run_tag}/{job.name}"},
            )
            job.batch_id, job.status = batch.id, batch.status
            self.state.save()
            log.info("%s: batch %s created (%s)", job.name, batch.id, batch.status)

    def _find_created(self, job: Job) -> Any | None:
        if job.input_file_id is None:
            return None  # nothing was uploaded, so nothing can have been created
        tag = f"{self.run_tag}/{job.name}"
        for batch in self.client.batches.list(limit=100):
            if (batch.metadata or {}).get("assetlib_job") == tag:
                return batch
        return None

    def poll(self, job: Job) -> bool:
        """Refresh a job's status; True when it has ended (completed, failed, expired, cancelled)."""
        batch = self.client.batches.retrieve(job.batch_id)
        if batch.status != job.status:
            counts = getattr(batch, "request_counts", None)
            log.info(
                "%s (%s): %s → %s%s",
                job.name,
                job.batch_id,
                job.status,
                batch.status,
                f" ({counts.completed}/{counts.total} done, {counts.failed} failed)" if counts else "",
            )
        job.status = batch.status
        job.output_file_id = batch.output_file_id
        job.error_file_id = batch.error_file_id
        if batch.status in ("failed",) and getattr(batch, "errors", None):
            log.warning("%s failed: %s", job.name, batch.errors)
        self.state.save()
        return batch.status in TERMINAL

    def merge(self, job: Job, captions: Mapping[str, str]) -> list[str]:
        """Take the accepted translations of an ended job; returns the ids that need another try."""
        ids = _read_ids(Path(job.ids_path))
        reasons: dict[str, str] = {}
        for file_id, kind in ((job.output_file_id, "output"), (job.error_file_id, "errors")):
            if not file_id:
                continue
            target = self.run_dir / "downloads" / f"{job.name}.{kind}.jsonl"
            if not target.is_file():
                write_text_atomic(target, self.client.files.content(file_id).text)
            for line in target.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    self._take_line(json.loads(line), captions, reasons)
        retry = [i for i in ids if i not in self.ledger.done]
        for i in retry:
            reasons.setdefault(i, f"no answer (batch {job.status})")
        job.merged = True
        self.state.save()
        log.info(
            "%s merged: %d of %d translated, %d to retry",
            job.name,
            len(ids) - len(retry),
            len(ids),
            len(retry),
        )
        self._last_reasons = {i: reasons[i] for i in retry}
        return retry

    def _take_line(self, line: dict, captions: Mapping[str, str], reasons: dict[str, str]) -> None:
        asset_id = line.get("custom_id")
        if not isinstance(asset_id, str) or asset_id not in captions:
            return
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code", 200) >= 400:
            error = line.get("error") or response.get("body", {}).get("error") or response.get("status_code")
            reasons[asset_id] = f"request failed: {error}"
            return
        try:
            text = response["body"]["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            reasons[asset_id] = "malformed response"
            return
        chinese = clean_translation(text or "")
        problem = validate_translation(captions[asset_id], chinese)
        if problem:
            reasons[asset_id] = f"refused: {problem}"
            return
        self.ledger.add(asset_id, chinese)

    # the whole run -------------------------------------------------------------------------------
    def run(self, captions: Mapping[str, str], max_wait: float | None = None) -> dict[str, str]:
        """Plan, submit, poll and merge until every caption is translated or failed twice.

        `max_wait` (seconds) stops polling early, leaving the jobs recorded for a later run; the
        returned dict holds the ids that failed for good, with reasons.
        """
        started = time.monotonic()
        if not any(j.active for j in self.state.jobs):
            self.plan(captions, attempt=1)
        bar = progress(total=len(captions), initial=len(self.ledger.done), desc="translated", unit="caption")
        try:
            wait = self.poll_seconds
            while True:
                active = [j for j in self.state.jobs if j.active]
                if not active:
                    break
                for job in active:
                    if job.batch_id is None:
                        self.submit(job)
                ended = [j for j in active if j.status in TERMINAL or self.poll(j)]
                for job in ended:
                    retry = self.merge(job, captions)
                    bar.update(len(self.ledger.done) - bar.n)
                    if not retry:
                        continue
                    if job.attempt < MAX_ATTEMPTS:
                        self.plan({i: captions[i] for i in retry}, attempt=job.attempt + 1)
                    else:
                        self.failures.update(self._last_reasons)
                if ended:
                    wait = self.poll_seconds
                    continue
                if max_wait is not None and time.monotonic() - started >= max_wait:
                    log.info(
                        "stopping after %.0f s; %d jobs still running are recorded", max_wait, len(active)
                    )
                    break
                self.sleep(wait)
                wait = min(wait * 1.5, MAX_POLL_SECONDS)
        finally:
            bar.close()
        return self.failures


def _run_tag(run_dir: Path) -> str:
    """A stable tag for this run folder (in batch metadata, to find batches created before a crash)."""
    import hashlib

    return hashlib.blake2b(str(run_dir.resolve()).encode(), digest_size=6).hexdigest()


def _read_ids(path: Path) -> list[str]:
    return json.loads(path.read_text(encoding="utf-8"))


# -- the real-time path --------------------------------------------------------------------------
def translate_realtime(
    client: Any, captions: Mapping[str, str], ledger: Ledger, model: str, concurrency: int
) -> dict[str, str]:
    """Translate through chat completions, `concurrency` at a time; two tries each; failures returned."""
    todo = [i for i in captions if i not in ledger.done]
    failures: dict[str, str] = {}

    def one(asset_id: str) -> tuple[str, str | None, str | None]:
        problem = "no attempt"
        for _ in range(MAX_ATTEMPTS):
            try:
                answer = client.chat.completions.create(
                    model=model, messages=messages_for(captions[asset_id]), temperature=0
                )
                chinese = clean_translation(answer.choices[0].message.content or "")
            except Exception as exc:  # the SDK has already retried 429/5xx; report what is left
                problem = f"request failed: {exc}"
                continue
            problem = validate_translation(captions[asset_id], chinese) or ""
            if not problem:
                return asset_id, chinese, None
            problem = f"refused: {problem}"
        return asset_id, None, problem

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for asset_id, chinese, problem in progress(pool.map(one, todo), total=len(todo), desc="translated"):
            if chinese is not None:
                ledger.add(asset_id, chinese)
            else:
                failures[asset_id] = problem or "unknown"
                log.warning("could not translate %s: %s", asset_id, problem)
    return failures


# -- entry point ---------------------------------------------------------------------------------
def read_captions(path: Path) -> dict[str, str]:
    """English captions {asset id: caption}; TranslationError on a file that is not that."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TranslationError(f"cannot read captions from {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise TranslationError(f"{path} must hold a JSON object {{asset id: caption}}")
    bad = [k for k, v in data.items() if not isinstance(v, str) or not v.strip()]
    if bad:
        log.warning("%d captions are empty or not text and are skipped (first: %s)", len(bad), bad[:3])
    return {k: v.strip() for k, v in data.items() if k not in set(bad)}


def openai_client(settings: Settings) -> Any:
    """The openai SDK client for DashScope's OpenAI-compatible endpoint."""
    if settings.dashscope_api_key is None:
        raise TranslationError("no API key: set DASHSCOPE_API_KEY (or use --dry-run to see the plan)")
    from openai import OpenAI

    return OpenAI(
        api_key=settings.dashscope_api_key.get_secret_value(),
        base_url=settings.dashscope_compatible_url,
        max_retries=settings.qwen_max_retries,
        timeout=settings.qwen_timeout,
    )


def translate_captions(
    captions_path: Path,
    run_dir: Path,
    settings: Settings,
    mode: str = "batch",
    dry_run: bool = False,
    output: Path | None = None,
    client: Any | None = None,
    max_wait: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> TranslationReport:
    """Translate a captions file into `<output>` (default: beside the input), resuming from run_dir."""
    if mode not in ("batch", "realtime"):
        raise TranslationError(f"unknown mode {mode!r}; valid: batch, realtime")
    captions = read_captions(captions_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    output = output or captions_path.with_name(OUTPUT_NAME)
    ledger = Ledger(run_dir / "translations.jsonl")
    todo = {i: c for i, c in captions.items() if i not in ledger.done}
    if dry_run:
        plan = {
            "captions": len(captions),
            "already_translated": len(captions) - len(todo),
            "requests": len(todo),
            "batch_files": math.ceil(len(todo) / settings.translation_batch_size) if mode == "batch" else 0,
            "model": settings.translation_model,
            **estimate_tokens(todo),
        }
        log.info("dry run: %s", plan)
        return TranslationReport(len(captions), len(captions) - len(todo), 0, {}, 0, None, dry_run=plan)
    client = client or openai_client(settings)
    started = time.perf_counter()
    already = len(captions) - len(todo)
    log.info("translating %d captions (%d already done) in %s mode", len(todo), already, mode)
    if mode == "batch":
        translator = BatchTranslator(
            client,
            run_dir,
            settings.translation_model,
            settings.translation_batch_size,
            settings.translation_poll_seconds,
            sleep,
        )
        failed = translator.run(captions, max_wait=max_wait)
        ledger, batches = translator.ledger, len(translator.state.jobs)
    else:
        batches = 0
        failed = translate_realtime(
            client, captions, ledger, settings.translation_model, settings.translation_concurrency
        )
    write_text_atomic(run_dir / "failed.json", json.dumps(failed, ensure_ascii=False, indent=1))
    done = {i: ledger.done[i] for i in captions if i in ledger.done}
    finished = len(done) + len(failed) == len(captions)
    if finished:
        write_text_atomic(output, json.dumps(done, ensure_ascii=False, indent=1))
        log.info(
            "wrote %d translations to %s (%d failed, listed in failed.json)", len(done), output, len(failed)
        )
    seconds = time.perf_counter() - started
    log.info(
        "translation: %d new, %d failed, %d batches, %.1f s",
        len(done) - already,
        len(failed),
        batches,
        seconds,
    )
    return TranslationReport(
        len(captions), already, len(done) - already, failed, batches, output if finished else None
    )


def write_captions(path: Path, captions: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write {asset id: caption} JSON (UTF-8, Chinese unescaped)."""
    write_text_atomic(path, json.dumps(dict(captions), ensure_ascii=False, indent=1))
