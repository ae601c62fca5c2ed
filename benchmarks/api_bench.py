"""API load benchmark: concurrent loopback clients against uvicorn; latency, throughput, queue/encode/DB time.

Starts `assetlib serve api` in a child process (so the clients do not share the server's
interpreter) over the configured database and encoders, or uses a server already running
(`--url`), then runs text and image searches from N concurrent clients for a fixed number of
requests each. Prints p50/p95 latency and requests/s per scenario, and the server-side queue,
encode and database times each response reports. Needs an embedded library first (`make demo`).

    python benchmarks/api_bench.py --algorithm siglip --clients 1 4 8   # SIGLIP_MODEL: the demo model
    python benchmarks/api_bench.py --url http://127.0.0.1:8000          # another server (older code…)
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from assetlib.config import Settings, load_settings, trained_model_dir
from assetlib.records import write_csv

SIZES = (("small", "小"), ("large", "大"), ("tall", "高"), ("tiny", "迷你"), ("big", "巨大"))


def distinct_queries(seed: int = 0) -> Iterator[str]:
    """Endless English and Chinese queries, none repeated for 8,640 requests: the server's query
    cache (search/query_cache.py) never answers them, so every request is encoded."""
    from assetlib.library.demo.generator import COLOURS, MATERIALS
    from assetlib.library.demo.objects import CATEGORIES

    combos = [
        text
        for (colour, (_, colour_zh)), (_, _, material, material_zh), cat, (
            size,
            size_zh,
        ) in itertools.product(COLOURS.items(), MATERIALS.values(), CATEGORIES, SIZES)
        for text in (
            f"a {size} {material} {colour} {cat.noun_en}",
            f"一{cat.measure_zh}{size_zh}的{material_zh}{colour_zh}{cat.noun_zh}",
        )
    ]
    random.Random(seed).shuffle(combos)
    return itertools.cycle(combos)


def demo_env(settings: Settings) -> dict[str, str]:
    """This environment, with the demo SigLIP (`trained:demo`) unless SIGLIP_MODEL names another."""
    env = dict(os.environ)
    if "SIGLIP_MODEL" not in env and (trained_model_dir(settings.home, "demo") / "model").is_dir():
        env["SIGLIP_MODEL"] = "trained:demo"
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_api(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int | None]]:
    """`assetlib serve api` in a child process on a free port: its URL and pid once /health answers."""
    port = _free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "assetlib", "serve", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                if child.poll() is not None:
                    raise SystemExit(f"the API exited with {child.returncode}; see {log_path}")
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"the API did not answer in 180 s; see {log_path}")
                time.sleep(0.2)
            yield base, child.pid
        finally:
            child.terminate()
            child.wait(timeout=30)


def _scenario(base: str, name: str, clients: int, per_client: int, send: object) -> dict:
    latencies: list[float] = []
    encode: list[float] = []
    queue: list[float] = []
    batch: list[float] = []
    db: list[float] = []
    cached: list[float] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(per_client):
                started = time.perf_counter()
                response = send(client, rng)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
                timings = response.json()["timings_ms"]
                encode.append(timings["encode_ms"])
                queue.append(timings.get("queue_ms", 0.0))  # older servers reported no queue
                batch.append(timings.get("batch", 1))
                db.append(timings["db_ms"])
                cached.append(timings.get("cached", 0))

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    wall = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20)
    return {
        "scenario": name,
        "clients": clients,
        "requests": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(q[18], 1),
        "req_per_s": round(len(latencies) / wall, 1),
        "queue_ms_p50": round(statistics.median(queue), 1),
        "encode_ms_p50": round(statistics.median(encode), 1),
        "batch_mean": round(statistics.fmean(batch), 2),
        "db_ms_p50": round(statistics.median(db), 1),
        "cached_share": round(statistics.fmean(cached), 2),
    }


def main() -> None:
    """Run the scenarios and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", default="siglip", choices=["siglip", "qwen", "e5", "e5lit"])
    p.add_argument(
        "--repeat-queries",
        action="store_true",
        help="ask four queries again and again (served from the query cache) instead of distinct ones",
    )
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=40, help="per client")
    p.add_argument("--image", type=Path, help="one query image (default: distinct views of the demo library)")
    p.add_argument("--url", help="benchmark this server instead of starting one")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/api_bench.csv"))
    args = p.parse_args()
    settings = load_settings()
    env = demo_env(settings)
    # Distinct views, so that image queries are encoded, not answered by the query cache.
    images = (
        [args.image]
        if args.image
        else sorted((settings.home / "libraries" / "demo" / "renders").rglob("*.png"))
    )
    random.Random(0).shuffle(images)
    server = serve_api(env, args.out.with_suffix(".server.log")) if args.url is None else given(args.url)
    with server as (base, _):
        rows = _run(base, args, images)
    write_csv(rows, args.out)
    print(f"wrote {args.out}")


@contextmanager
def given(url: str) -> Iterator[tuple[str, int | None]]:
    """A server started elsewhere: its URL, and no pid."""
    yield url.rstrip("/"), None


def _run(base: str, args: argparse.Namespace, images: list[Path]) -> list[dict]:
    algorithm = args.algorithm
    queries, lock = distinct_queries(), threading.Lock()
    views = itertools.cycle(images)
    repeated = ["a red chair", "一把红色的椅子", "a blue car", "一棵绿色的树"]

    def next_query(rng: random.Random) -> str:
        if args.repeat_queries:  # the cached path: a handful of queries asked again and again
            return rng.choice(repeated)
        with lock:
            return next(queries)

    def text_to_image(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.post(
            "/search/text",
            json={"query": next_query(rng), "algorithm": algorithm, "cross_modal": True, "top_k": 10},
        )

    def text_to_text(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.post(
            "/search/text", json={"query": next_query(rng), "algorithm": algorithm, "top_k": 10}
        )

    def image_to_image(client: httpx.Client, rng: random.Random) -> httpx.Response:
        with lock:
            payload = next(views).read_bytes()
        return client.post(
            "/search/image",
            params={"algorithm": algorithm, "top_k": 10},
            files={"file": ("q.png", payload, "image/png")},
        )

    rows: list[dict] = []
    with httpx.Client(base_url=base, timeout=120) as warm:
        for _ in range(5):  # load the encoder, fill the caches
            text_to_image(warm, random.Random(0)).raise_for_status()
            image_to_image(warm, random.Random(0)).raise_for_status()
    for clients in args.clients:
        for name, send in [
            ("text→image", text_to_image),
            ("text→text", text_to_text),
            ("image→image", image_to_image),
        ]:
            rows.append(_scenario(base, name, clients, args.requests, send))
            r = rows[-1]
            print(
                f"{r['scenario']:<12} clients {clients:>2}  p50 {r['p50_ms']:7.1f} ms  "
                f"p95 {r['p95_ms']:7.1f} ms  {r['req_per_s']:6.1f} req/s   "
                f"(server p50: queue {r['queue_ms_p50']} ms, encode {r['encode_ms_p50']} ms "
                f"in batches of {r['batch_mean']}, db {r['db_ms_p50']} ms; cached {r['cached_share']:.0%})"
            )
    return rows


if __name__ == "__main__":
    main()
