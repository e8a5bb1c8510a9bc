"""benchmarks/_protocol.py: interleaving order, paired ratios, and no headline when the machine was loaded."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_protocol.py"
_spec = importlib.util.spec_from_file_location("bench_protocol", _PATH)
protocol = importlib.util.module_from_spec(_spec)
sys.modules["bench_protocol"] = protocol  # dataclasses look their module up there
_spec.loader.exec_module(protocol)


def test_rounds_interleave_abba_and_ratio_is_paired(monkeypatch):
    order: list[str] = []
    clock = iter(range(1000))
    monkeypatch.setattr(protocol.time, "perf_counter", lambda: float(next(clock)))
    monkeypatch.setattr(protocol, "load_1m", lambda: 0.5)

    def path(name: str, items: int):
        def run() -> int:
            order.append(name)
            return items
        return run

    il = protocol.Interleaved({"a": path("a", 4), "b": path("b", 2)}, rounds=4).run()
    assert order == ["a", "b", "b", "a", "a", "b", "b", "a"]  # ABBA: a linear drift in load hits both alike
    assert il.rate("a") == [4.0] * 4 and il.rate("b") == [2.0] * 4  # each call took one fake second
    assert il.ratio("a", "b")["paired"]["median"] == 2.0
    assert il.loads == [0.5] * 5


@pytest.mark.parametrize("loads, quiet", [([0.4, 1.9, 1.2], True), ([0.4, 2.5, 1.2], False), ([3.0, 0.1], False)])
def test_headline_refused_when_load_exceeds_cores(loads, quiet):
    verdict = protocol.load_verdict(loads, cores=2)
    assert verdict["quiet"] is quiet and verdict["load_1m_max"] == max(loads)
    text = protocol.headline(verdict, "x is 2.0x y")
    assert (text == "x is 2.0x y") if quiet else (text is None and "no headline" in verdict["refused_because"])


def test_spread_median_range_iqr():
    s = protocol.spread([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["iqr"] == [2.0, 4.0]
