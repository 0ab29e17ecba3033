"""Smoke test of bench_vs_ngspice's comparison on a tiny net (needs ngspice, not torch).

Not part of the main suite: `.venv/bin/python -m pytest benchmarks/test_bench_vs_ngspice.py`.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vs_ngspice import compare_net  # noqa: E402
from common import fully_connected_tanh  # noqa: E402



def test_matched_comparison_on_a_tiny_net():
    rng = np.random.default_rng(0)
    net = fully_connected_tanh(rng, nodes=4)
    X = rng.normal(size=(8, 4))
    result = compare_net(net, X, "tiny", ngspice_samples=2, grid=[(1e-3, 1e-1)], repeat=1)

    assert result["batch"] == 8 and result["ngspice_samples"] == 2 and result["all_matched"]
    assert result["reference"]["own_error"] < 1e-8
    (row,) = result["comparisons"]
    spice, ours = row["ngspice"], row["ours"]
    assert spice["samples"] == [0, 1] and len(spice["wall_seconds"]) == 2
    assert spice["analysis_seconds_mean"] is not None      # parsed from ngspice's log
    assert 0 < spice["error"] < 1e-1
    # matched agreement: ours no less accurate, over the whole batch
    assert ours["error"] <= spice["error"]
    assert ours["error_on_ngspice_samples"] <= ours["error"]
    assert row["ratio"] == pytest.approx(ours["samples_per_s"] / spice["samples_per_s"])
    # the chosen rung is the loosest that matches: every looser rung was tried and missed
    looser = [r for r in result["ours_by_tolerance"] if r["tol"] > ours["tol"]]
    assert all(r["error"] > spice["error"] for r in looser)
