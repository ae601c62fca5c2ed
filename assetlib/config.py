"""Settings: environment variables, overridable by a params YAML file, validated in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from assetlib.model_specs import qwen_model_spec
from assetlib.vocab import MAX_INDEX_DIMS, MAX_TOP_K, ImageLayout, VectorStorage

# The source checkout assetlib runs from: notebooks/, outputs/ and node_modules/ live beside the package.
PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_TREE = PACKAGE_DIR.parent

# Keys of a params YAML that belong to the pipeline runner, not to Settings.
RUNNER_KEYS = frozenset({"stages", "run"})

# The output dimension of the published Qwen3-VL-Embedding checkpoints (their text hidden size), so
# that a configuration that cannot be stored is refused before their weights are downloaded.
QWEN3VL_DIMS = {"Qwen/Qwen3-VL-Embedding-2B": 2048, "Qwen/Qwen3-VL-Embedding-8B": 4096}


def trained_model_dir(home: Path, name: str, algorithm: str = "siglip") -> Path:
    """Where `assetlib train [--algorithm a] --name <name>` keeps a model (checkpoints, curves, `model/`)."""
    return home / "models" / f"{algorithm}-{name}"


class ConfigError(ValueError):
    """Invalid configuration; `problems` holds one plain message per invalid value."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class Settings(BaseModel):
    """Resolved configuration of one assetlib process."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    home: Path = Field(
        default=Path("~/.assetlib"),
        description="ASSETLIB_HOME: data, models and the embedded database live here",
    )
    db_host: str | None = Field(default=None, description="external PostgreSQL host; unset = embedded")
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_user: str = Field(default="postgres", min_length=1)
    db_password: SecretStr | None = None
    db_name: str = Field(default="assetlib", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    db_pool_size: int = Field(
        default=8, ge=1, le=64, description="connections per process (searches served at once)"
    )
    db_connect_timeout: int = Field(default=10, ge=1, le=600, description="seconds")
    db_pool_timeout: float = Field(
        default=0.75,
        gt=0,
        le=60,
        description="seconds a request waits for a pooled connection before answering 503",
    )
    db_outage_timeout: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="seconds a long job (load, evaluation) waits for a database that went away",
    )
    dashscope_api_key: SecretStr | None = None

    max_assets: int | None = Field(default=None, ge=1, description="limit on assets read; unset = no limit")
    model_url_template: str = Field(
        default="https://huggingface.co/datasets/allenai/objaverse/resolve/main/glbs/{path}",
        description="where an asset's GLB is fetched from when it is not on local disk ({path}: the index "
        "map's <shard>/<uid>.glb, {uid}); empty = no remote models",
    )
    fetch_workers: int = Field(default=4, ge=1, le=64, description="parallel downloads of fetch-models")
    translation_batch_size: int = Field(default=1000, ge=1, le=50_000, description="requests per batch file")
    translation_model: str = Field(
        default="qwen-plus", min_length=1, description="chat model that translates"
    )
    translation_poll_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="first wait between batch polls; backs off to 10 min"
    )
    translation_concurrency: int = Field(default=4, ge=1, le=64, description="requests in flight (real-time)")
    dashscope_compatible_url: str = Field(
        default="https://dashscope.aliyuncs.com/compatible-mode/v1",
        description="DashScope's OpenAI-compatible endpoint (Batch API and chat)",
    )
    embedding_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Chosen by benchmarks/embed_bench.py (README "Sizing a million assets").
    embedding_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="view loader processes (read, decode, composite, preprocess) beside the model; "
        "unset = one per core but one on a GPU machine, none on a CPU-only one",
    )
    embedding_engine: Literal["local", "ray"] = Field(
        default="local", description="local = this process; ray = shards as Ray Data tasks on a cluster"
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (host:port or ray://…); unset = start one here"
    )
    ray_actors: int | None = Field(
        default=None, ge=1, le=4096, description="model actors, one model each; unset = one per GPU, else 1"
    )
    views_per_asset: int = Field(
        default=8,
        ge=1,
        le=64,
        description="rendered views chosen per asset (evenly in azimuth), embedded and stored",
    )
    qwen_num_images: int = Field(
        default=8, ge=1, le=8, description="views sent in one fused Qwen request (the original knob)"
    )
    default_top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)

    # Encoders.
    siglip_model: str = Field(
        default="google/siglip-base-patch16-224",
        min_length=1,
        description="hub id, local directory, or trained:<name> (a model assetlib train wrote)",
    )
    e5lit_model: str = Field(
        default="trained:demo",
        min_length=1,
        description="the e5-aligned image tower: a directory, or trained:<name> (`assetlib train -a e5lit`)",
    )
    siglip_max_num_patches: int | None = Field(
        default=None,
        ge=16,
        le=4096,
        description="SigLIP 2 NaFlex: patches per image; unset = the checkpoint's",
    )
    qwen_model: str = Field(default="tongyi-embedding-vision-plus", min_length=1)
    qwen_dimension: int | None = Field(default=None, ge=64, le=4096, description="unset = the model's own")
    qwen_requests_per_minute: int = Field(default=120, ge=1, le=100_000)
    qwen_concurrency: int = Field(
        default=8, ge=1, le=256, description="DashScope embedding requests in flight at once"
    )
    qwen_tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000_000,
        description="the account's tokens per minute for the model (estimated per request); unset = none",
    )
    qwen_max_retries: int = Field(default=5, ge=0, le=20)
    qwen_timeout: float = Field(default=60.0, gt=0, le=600, description="seconds per request")
    qwen_image_url_base: str | None = Field(
        default=None,
        description="public URL at which QWEN_IMAGE_ROOT is served: views under it are sent to Qwen by "
        "URL instead of inline",
    )
    qwen_image_root: Path | None = Field(
        default=None, description="local folder published at QWEN_IMAGE_URL_BASE (the render root)"
    )
    dashscope_base_url: str | None = Field(default=None, description="unset = DashScope's own endpoint")
    qwen3vl_model: str = Field(
        default="Qwen/Qwen3-VL-Embedding-2B",
        min_length=1,
        description="Qwen3-VL-Embedding run here: a hub id (2B or 8B) or a local directory",
    )
    qwen3vl_dimension: int | None = Field(
        default=None,
        ge=64,
        le=4096,
        description="Matryoshka truncation (renormalised); unset = the model's own (2B 2048, 8B 4096: "
        "over halfvec's 4000, so the 8B needs one)",
    )
    qwen3vl_num_images: int = Field(
        default=8, ge=1, le=8, description="views fused into one Qwen3-VL-Embedding input per asset"
    )
    qwen3vl_batch_tokens: int = Field(
        default=16_384,
        ge=256,
        le=1_000_000,
        description="Qwen3-VL-Embedding: tokens per forward pass (padded length × inputs); an input "
        "longer than this goes alone",
    )
    embedding_shard_size: int = Field(default=256, ge=1, le=100_000, description="assets per shard")

    # Query encoding, chosen by benchmarks/api_bench.py (README "Serving under load").
    encode_threads: int = Field(
        default=0, ge=0, le=256, description="torch threads of the query encoder; 0 = half the cores"
    )
    query_batch_max: int = Field(
        default=32, ge=1, le=1024, description="queries encoded in one batch at most"
    )
    query_batch_window_ms: float = Field(
        default=1.0,
        ge=0,
        le=100,
        description="under concurrent load, how long the encoder waits for more queries to join a batch",
    )

    # Query by 3D model, chosen by benchmarks/model_query_bench.py (README "Query by 3D model").
    query_views: int = Field(
        default=4, ge=1, le=64, description="views rendered of an uploaded model (at the library's azimuths)"
    )
    query_render_size: int = Field(default=224, ge=32, le=1024, description="pixels per query view")
    query_max_vertices: int = Field(
        default=200_000, ge=1000, le=50_000_000, description="bigger uploaded models are decimated to this"
    )
    render_timeout_s: float = Field(
        default=20.0, gt=0, le=3600, description="time limit of one query render (the 4xx past it)"
    )
    reader_workers: int = Field(
        default=min(8, os.cpu_count() or 1),
        ge=1,
        le=64,
        description="processes scanning a render tree (listings, camera JSON, decode checks)",
    )
    render_workers: int = Field(
        default=1, ge=1, le=16, description="warm renderer processes serving query-by-model"
    )

    # Vector store layout, chosen by benchmarks/scale_bench.py (README "Search at a million assets").
    image_layout: ImageLayout = Field(
        default=ImageLayout.POOLED,
        description="per-view encoders: pooled = ANN over per-asset means, then an exact re-rank by "
        "view (no per-view index); views = an ANN index over every view",
    )
    vector_index: Literal["auto", "hnsw", "ivfflat"] = Field(
        default="auto",
        description="auto = HNSW, except IVFFlat on per-asset tables of IVFFLAT_MIN_ROWS or more",
    )
    # halfvec: half the memory of vector for the same recall@10 (measured at 100k); at 1M x 8 x 768
    # a `vector` view table alone (32 GB) would not fit a 24 GB machine.
    vector_storage: VectorStorage = VectorStorage.HALFVEC
    hnsw_m: int = Field(default=16, ge=2, le=100)
    hnsw_ef_construction: int = Field(default=64, ge=4, le=1000)
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000)
    ivfflat_lists: int | None = Field(default=None, ge=1, le=32768, description="unset = rows/1000")
    ivfflat_probes: int = Field(default=5, ge=1, le=32768)
    ivfflat_min_rows: int = Field(
        default=500_000, ge=1, description="auto: per-asset tables with this many rows get IVFFlat"
    )
    pooled_rerank_factor: int = Field(
        default=10,
        ge=1,
        le=100,
        description="pooled layout: per-asset candidates per result, re-ranked by view",
    )
    maintenance_work_mem: str = Field(default="2GB", pattern=r"^\d+\s*(kB|MB|GB)$")
    max_index_memory_fraction: float = Field(
        default=0.6, gt=0, le=0.95, description="refuse index builds larger than this share of RAM"
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("home", "qwen_image_root")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("siglip_model", "e5lit_model")
    @classmethod
    def _trained_model(cls, value: str, info: ValidationInfo) -> str:
        # "trained:<name>" names a model `assetlib train --name <name>` wrote under ASSETLIB_HOME, so
        # params files and the environment need no machine-specific path.
        if value.startswith("trained:"):
            home = info.data.get("home") or Path("~/.assetlib").expanduser()
            algorithm = "e5lit" if info.field_name == "e5lit_model" else "siglip"
            return str(trained_model_dir(Path(home), value.removeprefix("trained:"), algorithm) / "model")
        return value

    @field_validator(
        "db_host",
        "dashscope_api_key",
        "db_password",
        "max_assets",
        "qwen_dimension",
        "qwen3vl_dimension",
        "qwen_image_url_base",
        "qwen_image_root",
        "dashscope_base_url",
        "siglip_max_num_patches",
        "embedding_workers",
        "ray_address",
        "ray_actors",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # Environment variables cannot be "unset" from a .env or a shell script; "" and "none" mean unset.
        if isinstance(value, str) and value.strip().lower() in {"", "none", "null"}:
            return None
        return value

    @field_validator("image_layout")
    @classmethod
    def _a_configurable_layout(cls, value: ImageLayout) -> ImageLayout:
        # `asset` (the means alone) is a layout to compare in evaluations, not one to serve: its
        # recall stops near 0.63-0.77 at scale (README "Search at a million assets").
        if value is ImageLayout.ASSET:
            raise ValueError("IMAGE_LAYOUT is pooled or views; asset (means only) is for comparisons")
        return value

    @model_validator(mode="after")
    def _a_known_qwen_model_and_dimension(self) -> Settings:
        # Caught here, by `assetlib config`, rather than as a 400 from the provider mid-run.
        try:
            spec = qwen_model_spec(self.qwen_model)
        except ValueError as exc:
            raise ValueError(f"QWEN_MODEL: {exc}") from None
        try:
            spec.check_dimension(self.qwen_dimension)
        except ValueError as exc:
            raise ValueError(f"QWEN_DIMENSION: {exc}") from None
        return self

    @model_validator(mode="after")
    def _a_storable_qwen3vl_dimension(self) -> Settings:
        # pgvector indexes `vector` up to 2,000 dimensions and `halfvec` up to 4,000. Checked here
        # when the user chose the model or the dimension; the defaults of an algorithm not in use
        # never fail start-up (the registry reports them unusable, with this reason, instead).
        if not {"qwen3vl_model", "qwen3vl_dimension"} & self.model_fields_set:
            return self
        problem = qwen3vl_dimension_problem(
            self.qwen3vl_dimension, QWEN3VL_DIMS.get(self.qwen3vl_model), self.vector_storage
        )
        if problem:
            raise ValueError(f"QWEN3VL_DIMENSION: {problem}")
        return self

    @field_validator("model_url_template")
    @classmethod
    def _a_model_url_template(cls, value: str) -> str:
        # Checked here so a typo fails at start-up, not as a broken link in every result.
        from string import Formatter

        value = value.strip()
        if not value:
            return value
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL template, e.g. https://host/glbs/{path}")
        fields = {name for _, name, _, _ in Formatter().parse(value) if name is not None}
        if not fields or not fields <= {"path", "uid"}:
            raise ValueError(
                f"may name {{path}} and {{uid}} only, and at least one; it names {sorted(fields)}"
            )
        return value

    @field_validator("qwen_image_url_base")
    @classmethod
    def _a_public_url(cls, value: str | None) -> str | None:
        # Anything but an http(s) URL would be taken for a local file by the SDK, and uploaded.
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL at which the renders are served")
        return value

    @model_validator(mode="after")
    def _image_urls_need_their_root(self) -> Settings:
        # Without both, no view can be mapped to a public URL and every view would go inline anyway:
        # say so rather than accept a setting that does nothing.
        if (self.qwen_image_url_base is None) != (self.qwen_image_root is None):
            raise ValueError(
                "QWEN_IMAGE_URL_BASE and QWEN_IMAGE_ROOT go together: the public URL and the local "
                "folder it serves"
            )
        return self

    @property
    def embedded(self) -> bool:
        """True when no DB_HOST is set and the embedded PostgreSQL is used."""
        return self.db_host is None

    @property
    def pgdata(self) -> Path:
        """Data folder of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    def masked(self) -> dict[str, Any]:
        """All values as plain data, secrets shown only as set/unset."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = (
                    "****" + value.get_secret_value()[-2:] if len(value.get_secret_value()) > 8 else "****"
                )
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def qwen3vl_dimension_problem(
    dimension: int | None, model_dim: int | None, storage: VectorStorage | str
) -> str | None:
    """Why a Qwen3-VL-Embedding dimension cannot be used (None when it can): over the model's own
    (Matryoshka only truncates) or over what pgvector indexes for the storage type."""
    limit = MAX_INDEX_DIMS[VectorStorage(storage)]
    if dimension is not None and model_dim is not None and dimension > model_dim:
        return f"{dimension} is more than the model's {model_dim} dimensions (it can only be truncated)"
    wanted = dimension if dimension is not None else model_dim
    if wanted is not None and wanted > limit:
        what = f"{wanted}" if dimension is not None else f"the model's own {wanted}"
        other = "; or VECTOR_STORAGE=halfvec (up to 4000)" if storage == VectorStorage.VECTOR else ""
        return (
            f"pgvector indexes {VectorStorage(storage).value} up to {limit} dimensions, not {what}: set "
            f"QWEN3VL_DIMENSION to at most {limit} (Matryoshka truncation, renormalised){other}"
        )
    return None


def setting_default(field: str) -> Any:
    """The default of one setting, for code that takes its defaults from Settings (one home each)."""
    return Settings.model_fields[field].get_default(call_default_factory=True)


def env_name(field: str) -> str:
    """The environment variable that sets a Settings field."""
    return "ASSETLIB_HOME" if field == "home" else field.upper()


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in Settings.model_fields:
        name = env_name(field)
        if name in environ:
            values[field] = environ[name]
    return values


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict; raise ConfigError when it is not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError([f"params file not found: {path}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"params file {path} is not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"params file {path} must hold a mapping at the top, not {type(data).__name__}"])
    return data


def _settings_part(params: Mapping[str, Any], source: str) -> dict[str, Any]:
    problems = []
    values: dict[str, Any] = {}
    for key, value in params.items():
        if key in RUNNER_KEYS:
            continue
        field = key.lower()
        if field == "assetlib_home":
            field = "home"
        if field not in Settings.model_fields:
            problems.append(f"{key} (in {source}): unknown setting")
            continue
        values[field] = value
    if problems:
        raise ConfigError(problems)
    return values


def load_settings(
    params: str | Path | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Resolve Settings: defaults, then environment, then a params file (or mapping), then overrides."""
    environ = os.environ if environ is None else environ
    values = _from_environment(environ)
    if params is not None:
        mapping = read_params_file(params) if isinstance(params, (str, Path)) else params
        values.update(_settings_part(mapping, str(params) if isinstance(params, (str, Path)) else "params"))
    values.update(_settings_part(overrides, "arguments"))
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError([_describe(err) for err in exc.errors()]) from None


def _describe(err: Mapping[str, Any]) -> str:
    if not err.get("loc"):  # a rule across settings: its message names them (never echo the input)
        return str(err["msg"]).removeprefix("Value error, ")
    field = str(err["loc"][0])
    name = env_name(field) if field in Settings.model_fields else field
    shown = err.get("input")
    if field in {"db_password", "dashscope_api_key"}:
        shown = "****"
    return f"{name}: {str(err['msg']).removeprefix('Value error, ')} (got {shown!r})"


def settings_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that reproduce these settings in a child process (secrets included)."""
    out: dict[str, str] = {}
    for field, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[env_name(field)] = str(value)
    return out
