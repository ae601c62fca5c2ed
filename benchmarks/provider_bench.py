"""DashScope throughput at the provider's limit: the Qwen client against a rate-limited local fake.

Starts the fake DashScope of the tests (`tests/fake_dashscope.py`) enforcing a sliding-window
limit of L requests per minute, scaled to a shorter window so a run takes seconds rather than
minutes (by default 200 requests in any 10 s = 1200/min), with a fixed answer latency standing in
for the network. Then embeds N assets (8 views each, one fused request per asset) and N captions
(8 per request) through one QwenEncoder, twice: (a) the client told the true limit
(QWEN_REQUESTS_PER_MINUTE = L) and (b) told twice the limit, so the server throttles and the
client's AIMD limiter must find the rate itself. Over a short run the ratio includes the slack of the
first, empty window. Prints, per run: achieved answered requests per
minute over the limit, 429s, requests lost (items left without a vector) and wall time. Batches go
in chunks as the embedding engine sends them; a chunk that finally fails counts all its items lost.

    python benchmarks/provider_bench.py [--limit 1200] [--window 10] [--assets 600] [--texts 600]
        [--concurrency 8] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_dashscope import FakeDashScopeServer

from assetlib.encoders.base import EncoderError
from assetlib.encoders.qwen import QwenEncoder

DIM = 64
CHUNK = 256  # assets per encoder call: the embedding engine hands over a shard (EMBEDDING_SHARD_SIZE)


def _assets(n: int, offset: int) -> list[list[Image.Image]]:
    """n assets of 8 small, distinct views."""
    return [
        [
            Image.new("RGB", (16, 16), ((i + offset) % 251, (i + offset) // 251 % 251, v * 30))
            for v in range(8)
        ]
        for i in range(n)
    ]


def _good(vectors: np.ndarray) -> int:
    """Rows that are real (unit-norm) vectors."""
    return int((np.abs(np.linalg.norm(vectors, axis=1) - 1.0) < 1e-3).sum())


def run(label: str, client_rpm: int, args: argparse.Namespace) -> None:
    """One run against a fresh server; prints one block of figures."""
    limit_per_window = round(args.limit * args.window / 60)
    with FakeDashScopeServer(dim=DIM) as server:
        server.state.limit(limit_per_window, window=args.window)
        server.state.latency = args.latency
        encoder = QwenEncoder(
            "tongyi-embedding-vision-plus",
            "sk-bench",
            dimension=DIM,
            base_url=server.base_url,
            requests_per_minute=client_rpm,
            concurrency=args.concurrency,
        )
        allowed: list[float] = []
        done = threading.Event()

        def watch() -> None:  # the allowed rate, sampled, to show the AIMD saw-tooth
            while not done.wait(0.25):
                allowed.append(encoder.limiter.rate)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        items = embedded = 0
        failed_calls = 0
        started = time.monotonic()
        for offset in range(0, args.assets, CHUNK):
            batch = _assets(min(CHUNK, args.assets - offset), offset)
            items += len(batch)
            try:
                embedded += _good(encoder.encode_asset_views(batch))
            except EncoderError as exc:
                failed_calls += 1
                print(f"  a chunk of {len(batch)} assets failed: {exc}")
        texts = [f"a small wooden object, number {i}" for i in range(args.texts)]
        for offset in range(0, len(texts), CHUNK):
            batch_texts = texts[offset : offset + CHUNK]
            items += len(batch_texts)
            try:
                embedded += _good(encoder.encode_texts(batch_texts, "en"))
            except EncoderError as exc:
                failed_calls += 1
                print(f"  a chunk of {len(batch_texts)} texts failed: {exc}")
        wall = time.monotonic() - started
        done.set()
        watcher.join()
        encoder.close()
        state = server.state
        achieved = state.answered * 60.0 / wall
        stats = encoder.stats()
        print(
            f"{label}: server limit {args.limit}/min ({limit_per_window} per {args.window:g} s sliding), "
            f"client QWEN_REQUESTS_PER_MINUTE={client_rpm}, QWEN_CONCURRENCY={args.concurrency}"
        )
        print(
            f"  wall {wall:.1f} s; requests answered {state.answered}, received {state.received}, "
            f"429s {state.throttled}; most in flight {state.max_in_flight}"
        )
        print(f"  achieved {achieved:.0f} answered/min = {achieved / args.limit:.2f} x the limit")
        lost = items - embedded
        print(f"  items {items}, with a vector {embedded}, lost {lost} ({failed_calls} calls failed)")
        if allowed:
            print(
                f"  client allowed rate/min: min {min(allowed):.0f}, max {max(allowed):.0f}, "
                f"end {allowed[-1]:.0f}; cuts {encoder.limiter.cuts}"
            )
        print(f"  client stats() {stats}")


def main() -> None:
    """Parse arguments, run both configurations."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=1200, help="server limit L, requests per minute")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of the server's sliding window")
    parser.add_argument("--assets", type=int, default=600)
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds the fake takes per answer")
    args = parser.parse_args()
    requests = args.assets + -(-args.texts // 8)
    print(
        f"{args.assets} assets (1 request each) + {args.texts} texts (8 per request) = {requests} requests\n"
    )
    # One request at a time cannot beat 60/latency a minute.
    ceiling = 60 / args.latency
    print(f"serial ceiling at {args.latency:g} s per answer (computed, not run): {ceiling:.0f}/min\n")
    run("(a) client at the limit", args.limit, args)
    print()
    run("(b) client at twice the limit", 2 * args.limit, args)


if __name__ == "__main__":
    main()
