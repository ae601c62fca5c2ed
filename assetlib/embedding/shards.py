"""Embedding shards on disk: one folder per encoder, `shard_NNNNN.npy` + `.parquet`, a done marker last.

This is the contract between every embedding engine (which writes shards) and the store (which
loads them): a shard without its done marker does not exist.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from assetlib.embedding.plan import Row, RowKey
from assetlib.encoders.base import EncoderInfo
from assetlib.records import Failure, write_json
from assetlib.vocab import VectorKind

log = logging.getLogger(__name__)

COLUMNS = ["kind", "asset_id", "language", "view_index", "input_hash"]
CARD = "encoder.json"


def encoder_dir(shard_root: Path, encoder_name: str) -> Path:
    """Folder of one encoder's shards under a shard root."""
    return Path(shard_root) / "embeddings" / encoder_name.replace(":", "__").replace("/", "_")


@dataclass(frozen=True)
class EncoderCard:
    """What the store needs to know about the encoder behind a shard folder (encoder.json)."""

    name: str
    dim: int
    fused_views: bool
    per_view: bool
    languages: tuple[str, ...]

    @classmethod
    def of(cls, info: EncoderInfo, per_view: bool) -> EncoderCard:
        """The card of an encoder about to write shards."""
        return cls(info.name, info.dim, info.fused_views, per_view, tuple(info.languages))

    def write(self, folder: Path) -> None:
        """Write encoder.json into the shard folder."""
        write_json(folder / CARD, asdict(self), indent=2)

    @classmethod
    def read(cls, folder: Path) -> EncoderCard:
        """Read a shard folder's encoder.json."""
        data = json.loads((folder / CARD).read_text(encoding="utf-8"))
        return cls(
            data["name"], int(data["dim"]), bool(data["fused_views"]), bool(data["per_view"]),
            tuple(data["languages"]),
        )  # fmt: skip


class ShardFiles:
    """One shard's three files; the done marker is written last, so a half-written shard never counts."""

    def __init__(self, folder: Path, number: int) -> None:
        self.vectors = folder / f"shard_{number:05d}.npy"
        self.meta = folder / f"shard_{number:05d}.parquet"
        self.done = folder / f"shard_{number:05d}.done.json"

    def fingerprint(self) -> str | None:
        """The input fingerprint of a finished shard, or None."""
        if not self.done.exists():
            return None
        try:
            return str(json.loads(self.done.read_text())["fingerprint"])
        except (OSError, ValueError, KeyError):
            return None

    def previous(self) -> dict[RowKey, tuple[str, np.ndarray]]:
        """Rows of an earlier finished version of this shard: key → (input hash, vector)."""
        if self.fingerprint() is None or not self.vectors.exists() or not self.meta.exists():
            return {}
        meta = pd.read_parquet(self.meta)
        vectors = np.load(self.vectors)
        out = {}
        for i, r in enumerate(meta.to_dict("records")):
            view = None if pd.isna(r["view_index"]) else int(r["view_index"])
            language = None if r["language"] is None or pd.isna(r["language"]) else str(r["language"])
            out[(str(r["kind"]), str(r["asset_id"]), language, view)] = (str(r["input_hash"]), vectors[i])
        return out

    def write(
        self, rows: Sequence[Row], vectors: np.ndarray, fingerprint: str, failures: list[Failure]
    ) -> None:
        """Write vectors, metadata, then the done marker (each atomically)."""
        meta = pd.DataFrame(
            [(r.kind.value, r.asset_id, r.language, r.view_index, r.input_hash) for r in rows],
            columns=COLUMNS,
        ).astype({"view_index": "Int16"})
        tmp = self.vectors.with_suffix(".tmp.npy")
        np.save(tmp, vectors.astype(np.float32))
        tmp.replace(self.vectors)
        tmp_meta = self.meta.with_suffix(".tmp.parquet")
        meta.to_parquet(tmp_meta, index=False)
        tmp_meta.replace(self.meta)
        marker = {"fingerprint": fingerprint, "rows": len(rows), "failures": [asdict(f) for f in failures]}
        write_json(self.done, marker, indent=None)


@dataclass
class ShardPart:
    """The vectors of one kind in one finished shard, as the store loads them."""

    batch_key: str  # "<shard stem>:<kind>", the load record's key
    kind: VectorKind
    asset_ids: list[str]
    sub_keys: list | None  # view indices (views), languages (captions), None (asset vectors)
    vectors: np.ndarray


def finished_shards(folder: Path) -> list[Path]:
    """The done markers of an encoder's finished shards, in order."""
    return sorted(folder.glob("shard_*.done.json"))


def read_shard(done: Path) -> Iterator[ShardPart]:
    """The parts of one finished shard, one per vector kind it holds."""
    stem = done.name.removesuffix(".done.json")
    frame = pd.read_parquet(done.parent / f"{stem}.parquet")
    vectors = np.load(done.parent / f"{stem}.npy")
    for kind in VectorKind:
        mask = (frame["kind"] == kind.value).to_numpy()
        if not mask.any():
            continue
        part = frame[mask]
        sub: list | None = None
        if kind is VectorKind.VIEW:
            sub = part["view_index"].astype(int).tolist()
        elif kind is VectorKind.CAPTION:
            sub = part["language"].tolist()
        yield ShardPart(f"{stem}:{kind.value}", kind, part["asset_id"].tolist(), sub, vectors[mask])


def stored_shard_encoders(shard_root: Path) -> list[str]:
    """Names of the encoders with shards under a shard root (from each folder's encoder.json)."""
    names = []
    for card in sorted((Path(shard_root) / "embeddings").glob(f"*/{CARD}")):
        try:
            names.append(EncoderCard.read(card.parent).name)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring %s: %s", card, exc)
    return names
