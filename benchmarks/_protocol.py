"""The benchmark protocol every speed figure in RESULTS.md goes through.

Why: a comparison timed once per path, in sequence, on a shared machine measures the load as much as the code (the
old "3.6x" of embed_cpu.py was taken while seven other jobs loaded the 2-core machine; rerun quietly it was 1.31x).
So:

* the compared paths run **interleaved in repeated rounds** (A B B A, A B B A, ...; the ABBA order cancels a linear
  drift in load), each round timing every path on the same work;
* each path is summarised by its **median** throughput with the spread (min, max, interquartile range) over rounds;
* the **load average** is read at the start, after every round and at the end;
* a **headline is refused** (``"headline": null`` with the reason) when the load average exceeded the number of usable
  cores at any reading: the figures are still printed and recorded, labelled as taken under load;
* CPU throughput is also expressed as a **fraction of the machine's fp32 peak**, measured in the same run with a
  large matmul (the best of several timings, so it is the peak this machine reached today, with the same threads).

Pure standard library plus torch (only for the matmul); no timed assertions anywhere.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_1m() -> float:
    return round(os.getloadavg()[0], 2)


def spread(values: Sequence[float]) -> dict:
    """Median, min, max and interquartile range of ``values`` (rounded for printing)."""
    v = sorted(values)
    if len(v) >= 2:
        q = statistics.quantiles(v, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    else:
        q1 = q3 = v[0]
    return {"median": round(statistics.median(v), 3), "min": round(v[0], 3), "max": round(v[-1], 3),
            "iqr": [round(q1, 3), round(q3, 3)], "n": len(v)}


def fp32_peak_gflops(threads: int | None = None, n: int = 2048, repeats: int = 7) -> dict:
    """This machine's fp32 matmul throughput now: best and median GFLOP/s of ``repeats`` n x n @ n x n products."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    torch.mm(a, b)  # warm-up (oneDNN / BLAS initialisation)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return {"best_gflops": round(max(rates), 1), "median_gflops": round(statistics.median(rates), 1),
            "matmul_n": n, "repeats": repeats, "threads": torch.get_num_threads()}


@dataclass
class Interleaved:
    """Run named paths in ABBA-interleaved rounds; each path callable does one unit of work and returns how many
    items it processed (images). Throughput per round = items / seconds."""

    paths: dict[str, Callable[[], int]]
    rounds: int = 5
    log: Callable[[str], None] | None = None
    seconds: dict[str, list[float]] = field(default_factory=dict)
    items: dict[str, list[int]] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)

    def run(self) -> Interleaved:
        names = list(self.paths)
        self.loads.append(load_1m())
        for r in range(self.rounds):
            order = names if r % 2 == 0 else names[::-1]
            for name in order:
                t = time.perf_counter()
                k = self.paths[name]()
                dt = time.perf_counter() - t
                self.seconds.setdefault(name, []).append(dt)
                self.items.setdefault(name, []).append(k)
                if self.log:
                    self.log(f"round {r + 1}/{self.rounds} {name}: {k} in {dt:.2f} s ({k / dt:.2f}/s), "
                             f"load {load_1m()}")
            self.loads.append(load_1m())
        return self

    def rate(self, name: str) -> list[float]:
        return [k / s for k, s in zip(self.items[name], self.seconds[name], strict=True)]

    def summary(self) -> dict:
        return {name: {"per_s": spread(self.rate(name)), "seconds": [round(s, 3) for s in self.seconds[name]]}
                for name in self.paths}

    def ratio(self, fast: str, slow: str) -> dict:
        """Speedup of ``fast`` over ``slow``: per-round ratios (paired, same load) summarised, and the ratio of
        medians."""
        per_round = [f / s for f, s in zip(self.rate(fast), self.rate(slow), strict=True)]
        med = statistics.median(self.rate(fast)) / statistics.median(self.rate(slow))
        return {"paired": spread(per_round), "of_medians": round(med, 3)}


def load_verdict(loads: Sequence[float], cores: int | None = None) -> dict:
    """Whether a headline may be printed: refused when any load reading exceeded the usable core count."""
    cores = cores or usable_cores()
    worst = max(loads)
    ok = worst <= cores
    return {"cores": cores, "load_1m_start": loads[0], "load_1m_end": loads[-1], "load_1m_max": worst,
            "load_1m_readings": list(loads), "quiet": ok,
            "refused_because": None if ok else
            f"1-minute load reached {worst} on {cores} cores: figures taken under load, no headline"}


def headline(verdict: dict, text: str) -> str | None:
    return text if verdict["quiet"] else None
