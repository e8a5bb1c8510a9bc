"""Time `breastclip demo` offline from a cold start (empty embedding cache), as a new user would run it.

Target (issue 6): under 5 minutes on a 2-core CPU. Runs the demo in a subprocess with a fresh HOME-like cache
(BREASTCLIP_CACHE in a temporary folder) and BREASTCLIP_OFFLINE=1, on BreastMNIST when ``--data`` names a local
``breastmnist.npz`` (else the bundled synthetic set), then a second time to show the cached rerun. Prints a few
lines and, last, ONE JSON object.

    python benchmarks/demo_cpu.py --data ../shared/data/breastmnist/original/breastmnist.npz
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "breastclip", "demo", "--offline", "-q", *args], env=env,
                          capture_output=True, text=True, check=False)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return secs, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="a local breastmnist.npz (default: the synthetic set)")
    a = ap.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "BREASTCLIP_CACHE": f"{tmp}/cache", "BREASTCLIP_OFFLINE": "1",
               "MEDMNIST_ROOT": f"{tmp}/medmnist", "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        extra = ["--data", a.data] if a.data else []
        cold, out = run_once([*extra, "-o", f"{tmp}/demo"], env)
        warm, _ = run_once([*extra, "-o", f"{tmp}/demo"], env)  # a new timestamped folder, cached embeddings
    data = "breastmnist" if a.data else "synthetic"
    print(f"demo offline on {data}: cold {cold:.1f} s, cached rerun {warm:.1f} s, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.2f}")
    print(json.dumps({"benchmark": "demo_cpu", "data": data, "cold_s": round(cold, 1), "cached_s": round(warm, 1),
                      "target_s": 300, "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
                      "under_target": cold < 300}))


if __name__ == "__main__":
    main()
