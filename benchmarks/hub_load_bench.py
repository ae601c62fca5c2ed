"""How long a SigLIP named by a cached hub id takes to load, and how often it asks the hub.

Builds a tiny random checkpoint in google/siglip-base-patch16-224's hub layout in a fresh cache
(the test suite's `tests/tiny_google.py`) and times the encoder's load in a child process, with
HF_HUB_OFFLINE unset (as on a user's machine that never set it), against a local stand-in for
the hub (`tests/fake_hub.py`) that answers every request after `--delay` seconds, as a hub behind
a slow or dropping link does. It prints the hub requests the load made, and the time:

    .venv/bin/python benchmarks/hub_load_bench.py
    .venv/bin/python benchmarks/hub_load_bench.py --source /path/to/another/checkout   # compare code
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

REPO = "google/siglip-base-patch16-224"
LOAD = "from assetlib.encoders.siglip import SiglipEncoder; SiglipEncoder({repo!r})"


def main() -> None:
    """Print the load time and hub requests of a cached hub id with this checkout (or --source)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(ROOT), help="checkout whose assetlib is timed")
    parser.add_argument("--delay", type=float, default=5.0, help="seconds the hub takes per answer")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    from fake_hub import FakeHub
    from tiny_google import build_siglip, place_in_hub_cache

    with tempfile.TemporaryDirectory() as tmp, FakeHub() as hub:
        model = build_siglip(Path(tmp) / "model")
        place_in_hub_cache(model, REPO, Path(tmp) / "hf" / "hub")
        hub.add_repo(REPO, model)
        hub.delay = args.delay
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(
            HF_HOME=str(Path(tmp) / "hf"),
            HF_HUB_CACHE=str(Path(tmp) / "hf" / "hub"),
            HF_ENDPOINT=hub.endpoint,
            PYTHONPATH=args.source,
        )
        started = time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, "-c", LOAD.format(repo=REPO)],
                env=env,
                cwd=tmp,  # not the checkout: `python -c` would import ./assetlib before PYTHONPATH
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            outcome = "loaded" if done.returncode == 0 else f"failed: {last}"
        except subprocess.TimeoutExpired:
            outcome = f"still loading after {args.timeout:.0f} s"
        seconds = time.perf_counter() - started
        print(f"{REPO} from the cache, HF_HUB_OFFLINE unset, a hub answering in {args.delay:.0f} s")
        print(f"  code from {args.source}: {seconds:.1f} s, {outcome}, {len(hub.requests)} hub requests")
        print("  (the time includes the child's Python, torch and transformers imports, about 5 s)")


if __name__ == "__main__":
    main()
