"""API load benchmark: concurrent loopback clients against uvicorn; latency, throughput, encoder vs DB time.

Starts the API in-process (uvicorn, one worker) over the configured database and encoders, then
runs text and image searches from N concurrent clients for a fixed number of requests each.
Prints p50/p95 latency and requests/s per scenario, and the server-side encode and database times
reported in each response. Needs an embedded library first (`make demo`).

    python benchmarks/api_bench.py --algorithm siglip --clients 1 4 8   # SIGLIP_MODEL: the demo model
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

from assetlib.config import load_settings
from assetlib.faces.api.app import create_app
from assetlib.records import write_csv

QUERIES = [
    "a red chair with four legs",
    "一把红色的椅子",
    "a blue car shaped like a van",
    "一棵绿色的松树",
    "a glossy white mug with a handle",
    "一座两层的房子",
    "a metallic rocket with three fins",
    "一个粉色的蘑菇",
]


def _serve(settings: object) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


def _scenario(base: str, name: str, clients: int, per_client: int, send: object) -> dict:
    latencies, encode, db = [], [], []

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
                db.append(timings["db_ms"])

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
        "encode_ms_p50": round(statistics.median(encode), 1),
        "db_ms_p50": round(statistics.median(db), 1),
    }


def main() -> None:
    """Run the scenarios and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm", default="siglip", choices=["siglip", "qwen", "e5"])
    p.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--requests", type=int, default=40, help="per client")
    p.add_argument("--image", type=Path, help="query image (default: a view of the demo library)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/api_bench.csv"))
    args = p.parse_args()
    settings = load_settings()
    demo_model = settings.home / "models" / "siglip-demo" / "model"
    if "SIGLIP_MODEL" not in os.environ and demo_model.is_dir():
        settings = load_settings(siglip_model=str(demo_model))
    image = args.image or next((settings.home / "libraries" / "demo" / "renders").rglob("00000.png"))
    payload = image.read_bytes()
    server, base = _serve(settings)
    algorithm = args.algorithm

    def text_to_image(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.post(
            "/search/text",
            json={"query": rng.choice(QUERIES), "algorithm": algorithm, "cross_modal": True, "top_k": 10},
        )

    def text_to_text(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.post(
            "/search/text", json={"query": rng.choice(QUERIES), "algorithm": algorithm, "top_k": 10}
        )

    def image_to_image(client: httpx.Client, rng: random.Random) -> httpx.Response:
        return client.post(
            "/search/image",
            params={"algorithm": algorithm, "top_k": 10},
            files={"file": ("q.png", payload, "image/png")},
        )

    rows = []
    try:
        text_to_image(httpx.Client(base_url=base, timeout=120), random.Random(0))  # load the encoder once
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
                    f"(server: encode {r['encode_ms_p50']} ms, db {r['db_ms_p50']} ms, p50)"
                )
    finally:
        server.should_exit = True
    write_csv(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
