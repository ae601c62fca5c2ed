"""Soak: many concurrent clients mixing every kind of request against one API for minutes, on loopback.

Starts `assetlib serve api` in a child process (or uses `--url`) over the demo library, then runs
`--clients` asyncio clients, each sending back to back for `--minutes`: text searches (English and
Chinese, same-modal and cross-modal), image searches, 3D-model searches (demo GLBs) and asset
requests (record, a view, the model file). Reports per kind the count, p50/p95 latency and every
failure (a 5xx, a dropped connection, an unexpected 4xx), and the server's memory (its process and
its renderer children) at the start and the end. Exits 1 on any failure. Needs `make demo` first.

    python benchmarks/soak.py --clients 50 --minutes 5
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from api_bench import demo_env, distinct_queries, given, serve_api

from assetlib.config import load_settings
from assetlib.records import write_csv

# How often each kind is sent, out of 100 (model searches render: the heaviest, the rarest).
MIX = {"text": 40, "text→image": 20, "image": 15, "model": 5, "asset": 20}


class Tally:
    """Latencies and failures per request kind."""

    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.failures: dict[str, list[str]] = defaultdict(list)

    def rows(self) -> list[dict]:
        """One row per kind: count, p50, p95, failures."""
        out = []
        for kind in MIX:
            ms = self.latency.get(kind, [])
            q = statistics.quantiles(ms, n=20) if len(ms) >= 2 else [0.0] * 19
            out.append(
                {
                    "kind": kind,
                    "requests": len(ms) + len(self.failures.get(kind, [])),
                    "p50_ms": round(statistics.median(ms), 1) if ms else None,
                    "p95_ms": round(q[18], 1),
                    "failures": len(self.failures.get(kind, [])),
                }
            )
        return out


def _memory_mb(pid: int) -> tuple[float, float]:
    """Resident MB of the server process and of all its children (the renderer processes)."""
    proc = psutil.Process(pid)
    children = sum(c.memory_info().rss for c in proc.children(recursive=True))
    return proc.memory_info().rss / 2**20, children / 2**20


async def _client(
    seed: int, base: str, until: float, tally: Tally, image: bytes, models: list[Path], assets: list[str]
) -> None:
    rng = random.Random(seed)
    kinds, weights = list(MIX), list(MIX.values())
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < until:
            kind = rng.choices(kinds, weights)[0]
            started = time.perf_counter()
            try:
                response = await _send(client, kind, rng, image, models, assets)
            except httpx.HTTPError as exc:  # a dropped or refused connection, a timeout
                tally.failures[kind].append(f"{type(exc).__name__}: {exc}")
                continue
            if response.status_code >= 300:
                tally.failures[kind].append(f"{response.status_code}: {response.text[:200]}")
                continue
            tally.latency[kind].append((time.perf_counter() - started) * 1000)


QUERIES = distinct_queries(seed=1)


async def _send(
    client: httpx.AsyncClient,
    kind: str,
    rng: random.Random,
    image: bytes,
    models: list[Path],
    assets: list[str],
) -> httpx.Response:
    if kind in ("text", "text→image"):
        # Distinct queries (one event loop, so no lock): each is encoded, none served from the cache.
        body = {"query": next(QUERIES), "top_k": 10, "cross_modal": kind == "text→image"}
        return await client.post("/search/text", json=body)
    if kind == "image":
        files = {"file": ("q.png", image, "image/png")}
        return await client.post("/search/image", params={"top_k": 10}, files=files)
    if kind == "model":
        path = rng.choice(models)
        files = {"file": (path.name, path.read_bytes(), "model/gltf-binary")}
        return await client.post("/search/model", params={"top_k": 10}, files=files)
    asset = rng.choice(assets)
    which = rng.random()
    if which < 0.5:
        return await client.get(f"/assets/{asset}")
    if which < 0.9:
        return await client.get(f"/assets/{asset}/views/0")
    return await client.get(f"/assets/{asset}/model")


async def _soak(base: str, clients: int, seconds: float, image: bytes, models: list[Path]) -> Tally:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        found = (await client.post("/search/text", json={"query": "a chair", "top_k": 100})).json()
    assets = [h["asset_id"] for h in found["results"]]
    tally = Tally()
    until = time.monotonic() + seconds
    await asyncio.gather(*(_client(i, base, until, tally, image, models, assets) for i in range(clients)))
    return tally


def main() -> None:
    """Run the soak and print the table; exit 1 on any failure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--url", help="soak this server instead of starting one (memory is then not reported)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench/soak.csv"))
    args = p.parse_args()
    settings = load_settings()
    env = demo_env(settings)
    library = settings.home / "libraries" / "demo"
    image = next((library / "renders").rglob("00000.png")).read_bytes()
    models = sorted((library / "glbs").rglob("*.glb"))[:20]
    if not models:
        raise SystemExit(f"no GLBs under {library / 'glbs'}: run `make demo` first")
    server = serve_api(env, args.out.with_suffix(".server.log")) if args.url is None else given(args.url)
    with server as (base, pid):
        # Warm every path once (encoders, renderer, caches) before memory is first read.
        asyncio.run(_soak(base, 4, 3.0, image, models))
        start_mem = _memory_mb(pid) if pid else None
        started = time.monotonic()
        tally = asyncio.run(_soak(base, args.clients, args.minutes * 60, image, models))
        wall = time.monotonic() - started
        end_mem = _memory_mb(pid) if pid else None
    rows = tally.rows()
    total = sum(r["requests"] for r in rows)
    print(f"{args.clients} clients for {wall:.0f} s: {total:,} requests, {total / wall:.1f} req/s")
    for r in rows:
        print(
            f"  {r['kind']:<11} {r['requests']:>7,} requests  p50 {r['p50_ms']} ms  p95 {r['p95_ms']} ms  "
            f"failures {r['failures']}"
        )
    if start_mem and end_mem:
        print(
            f"server memory: {start_mem[0]:.0f} → {end_mem[0]:.0f} MB (renderers {start_mem[1]:.0f} → "
            f"{end_mem[1]:.0f} MB)"
        )
        for r in rows:
            r.update(server_mb_start=round(start_mem[0]), server_mb_end=round(end_mem[0]))
    failures = [(k, f) for k, fs in tally.failures.items() for f in fs]
    for kind, failure in failures[:20]:
        print(f"  FAILED {kind}: {failure}")
    write_csv(rows, args.out)
    print(f"wrote {args.out}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
