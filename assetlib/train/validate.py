"""Held-out retrieval recall of an image-text model, from its vectors (relevant = same group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from assetlib.train.data import group_key


def _hit_rate(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Share of queries (rows) with at least one relevant item among their k best-scored columns."""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.take_along_axis(relevant, top, axis=1).any(axis=1).mean())


def retrieval_recall(
    view_vectors: np.ndarray,
    view_owner: np.ndarray,
    text_vectors: dict[str, np.ndarray],
    has_text: dict[str, np.ndarray],
    groups: Sequence[str],
    k: int = 10,
) -> dict[str, float]:
    """Recall@k ("a relevant item in the top k") for text→image (per view and per object), image→image
    and image→text, per caption language, plus the chance level of the per-object task.
    """
    groups_arr = np.asarray(groups)
    n_assets = len(groups_arr)
    same = groups_arr[:, None] == groups_arr[None, :]  # asset × asset relevance
    view_group_rel = same[:, view_owner]  # asset × view
    out: dict[str, float] = {}
    # Per-object image vectors: the normalised mean of each asset's views.
    objects = np.stack([view_vectors[view_owner == a].mean(axis=0) for a in range(n_assets)])
    objects /= np.linalg.norm(objects, axis=1, keepdims=True)
    for language, texts in text_vectors.items():
        rows = np.flatnonzero(has_text[language])
        if len(rows) == 0:
            continue
        t = texts[rows]
        out[f"text_to_image_view_r@{k}_{language}"] = _hit_rate(t @ view_vectors.T, view_group_rel[rows], k)
        out[f"text_to_image_object_r@{k}_{language}"] = _hit_rate(t @ objects.T, same[rows], k)
        # image→text: each view ranks this language's captions.
        out[f"image_to_text_r@{k}_{language}"] = _hit_rate(view_vectors @ t.T, same[view_owner][:, rows], k)
    # image→image: a view finds views of relevant assets among all other views.
    scores = view_vectors @ view_vectors.T
    np.fill_diagonal(scores, -np.inf)
    out[f"image_to_image_r@{k}"] = _hit_rate(scores, same[view_owner][:, view_owner], k)
    sizes = same.sum(axis=1)
    misses = [np.clip((n_assets - sizes - i) / (n_assets - i), 0, 1) for i in range(min(k, n_assets))]
    out[f"chance_object_r@{k}"] = float(np.mean(1 - np.prod(misses, axis=0)))
    return out


def encoder_recall(encoder: Any, assets: Sequence[Any], languages: Sequence[str]) -> dict[str, float]:
    """`retrieval_recall` of assets computed through an encoder's own serving path (its loading,
    preprocessing and text handling): views as files, captions per language, relevant = same group."""
    views, owners = [], []
    for index, asset in enumerate(assets):
        for path in asset.view_paths:
            views.append(path)
            owners.append(index)
    view_vectors = encoder.encode_images(views)
    texts, has = {}, {}
    for language in languages:
        captions = [a.caption(language) for a in assets]
        has[language] = np.array([bool(c) for c in captions])
        vectors = np.zeros((len(assets), encoder.info.dim), np.float32)
        rows = [c for c in captions if c]
        if rows:
            vectors[has[language]] = encoder.encode_texts(rows, language)
        texts[language] = vectors
    return retrieval_recall(view_vectors, np.array(owners), texts, has, [group_key(a) for a in assets])
