"""The query micro-batcher: concurrent queries share forward passes and get the vectors they would alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from PIL import Image
from tiny_models import tiny_siglip

from assetlib.encoders.base import EncoderError
from assetlib.encoders.siglip import SiglipEncoder
from assetlib.search.batching import EncodeBatcher


class CountingEncoder:
    """A real tiny SigLIP that records the size of every call made to it (and can be told to fail)."""

    def __init__(self, inner: SiglipEncoder) -> None:
        self.inner = inner
        self.info = inner.info
        self.calls: list[tuple[str, int]] = []
        self.roles: list[str] = []  # of each image call: the batcher encodes queries only
        self.gate = threading.Event()  # cleared: a text call waits inside the forward pass
        self.gate.set()
        self.entered = threading.Event()
        self.poison = "poison"

    def encode_texts(self, texts: Sequence[str], language: str = "en", role: str = "document") -> np.ndarray:
        self.entered.set()
        self.gate.wait()
        self.calls.append(("text", len(texts)))
        if self.poison in texts:
            raise EncoderError("this text cannot be embedded")
        return self.inner.encode_texts(texts, language, role)  # type: ignore[arg-type]

    def encode_images(self, images: Sequence[Image.Image], role: str = "document") -> np.ndarray:
        self.calls.append(("image", len(images)))
        self.roles.append(role)
        return self.inner.encode_images(images)

    def encode_asset_views(
        self, views: Sequence[Sequence[Image.Image]], role: str = "document"
    ) -> np.ndarray:
        self.calls.append(("views", len(views)))
        self.roles.append(role)
        return self.inner.encode_asset_views(views)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> SiglipEncoder:
    return SiglipEncoder(str(tiny_siglip(tmp_path_factory.mktemp("tiny") / "model")))


def _all_at_once(batcher: EncodeBatcher, counting: CountingEncoder, jobs: list) -> list:
    """Run jobs from their own threads while the worker is held inside a forward pass, so they queue."""
    results: list = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except Exception as exc:
            results[i] = exc

    counting.gate.clear()
    holder = threading.Thread(target=batcher.text, args=(counting, "hold the worker", "en"))
    holder.start()
    assert counting.entered.wait(60)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    while batcher._queue.qsize() < len(jobs):
        time.sleep(0.005)
    counting.gate.set()
    for t in [holder, *threads]:
        t.join(timeout=60)
    return results


def test_concurrent_texts_share_one_forward_pass_and_match_the_vectors_alone(encoder):
    counting = CountingEncoder(encoder)
    batcher = EncodeBatcher(max_batch=32)
    texts = [f"a red chair number {i}" for i in range(6)]
    try:
        results = _all_at_once(
            batcher, counting, [lambda t=t: batcher.text(counting, t, "en") for t in texts]
        )
    finally:
        batcher.close()
    assert ("text", len(texts)) in counting.calls  # the six waiting queries went as one batch
    alone = encoder.encode_texts(texts, "en", role="query")
    for i, result in enumerate(results):
        assert result.batch == len(texts)
        assert result.queue_ms > 0 and result.encode_ms > 0
        assert float(np.dot(result.vector, alone[i])) == pytest.approx(1.0, abs=1e-5)


def test_batches_are_split_by_language_and_kind(encoder):
    counting = CountingEncoder(encoder)
    batcher = EncodeBatcher(window_ms=50)
    red = Image.new("RGB", (40, 40), (200, 30, 30))
    blue = Image.new("RGB", (40, 40), (30, 30, 200))
    jobs = [
        lambda: batcher.text(counting, "a red chair", "en"),
        lambda: batcher.text(counting, "一把红色的椅子", "zh"),
        lambda: batcher.images(counting, [red]),
        lambda: batcher.images(counting, [blue]),
        lambda: batcher.images(counting, [red, blue]),  # the views of one object: pooled
    ]
    try:
        results = _all_at_once(batcher, counting, jobs)
    finally:
        batcher.close()
    assert not any(isinstance(r, Exception) for r in results), results
    assert float(np.dot(results[1].vector, encoder.encode_texts(["一把红色的椅子"], "zh")[0])) > 0.9999
    assert float(np.dot(results[4].vector, encoder.encode_asset_views([[red, blue]])[0])) > 0.9999
    kinds = {kind for kind, _ in counting.calls}
    assert kinds == {"text", "image", "views"}
    assert ("image", 2) in counting.calls  # the two single images went together
    assert counting.roles and set(counting.roles) == {"query"}  # image queries are queries


def test_a_failing_query_fails_alone_and_the_rest_of_its_batch_is_answered(encoder):
    counting = CountingEncoder(encoder)
    batcher = EncodeBatcher(window_ms=50)
    jobs = [lambda t=t: batcher.text(counting, t, "en") for t in ["a chair", "poison", "a car"]]
    try:
        results = _all_at_once(batcher, counting, jobs)
    finally:
        batcher.close()
    assert isinstance(results[1], EncoderError)
    assert results[0].vector.shape == results[2].vector.shape == (encoder.info.dim,)


def test_a_lone_query_does_not_wait_for_company(encoder):
    batcher = EncodeBatcher(window_ms=5000)
    try:
        for _ in range(3):
            result = batcher.text(encoder, "a red chair", "en")
            assert result.batch == 1
            assert result.queue_ms < 2500  # the 5 s window is for overlapping queries, not a lone one
    finally:
        batcher.close()
