"""Forward throughput of our batched solver against ngspice (one sample per run), at
matched agreement, both measured in this run.

Two nets:

1. the 32-node fully connected AffineTanh net of ``bench_forward.py`` (33·32 = 1,056
   edges a layer, 2 layers of 0.5; :func:`common.fully_connected_tanh`), a batch of 256
   random inputs;
2. the trained digits classifier (``--digits-model``, default
   ``netlists/models/digits.npz``: 94 nodes, 2 × 6,620 ShiftedReLU edges) on its whole
   test split (450 images).

**Matched agreement.** Every contender is measured against one tight reference: our
Dopri5 at rtol 1e-9, atol 1e-11 on the same inputs (its own error, against a run 10×
tighter, is printed: ~1e-8 of the swing or less, far below anything it judges). A sample's error is
``max_n |v_n(T) − v_ref,n(T)|`` over *all* node voltages at T, divided by the sample's
swing (largest minus smallest node voltage of the reference waveform, as
:func:`kirchhoff_sim.spice.validate` divides). For each ngspice option set of a small grid
(``reltol`` × ``max_step_fraction``), ngspice runs a few samples serially, one netlist and
one ``ngspice -b`` process per sample, and its error is the worst over those samples.
Our Dopri5 then walks a tolerance ladder (rtol = atol, loose to tight) and takes the
loosest rung whose error — the worst over the **whole timed batch**, not only ngspice's
samples — is no larger than ngspice's. So we never win by being less accurate; the
comparison is if anything tilted against us (worst of 256–450 samples against worst of
3). Each rung's error is printed; so is the reference's own error (against a run 10×
tighter on ngspice's samples).

Throughput: ours = batch / median wall time of ``simulate`` (one warm-up, then 3 runs);
ngspice = 1 / mean wall time of one subprocess ngspice run per sample (process start,
parsing, the transient and reading the raw file, through
:func:`kirchhoff_sim.spice.roundtrip.run_compiled`; ngspice's own "Total analysis time"
is recorded beside it). Compiling the netlist (``to_netlist``) is timed
separately and *not* charged to ngspice. Both run on one CPU thread each. The target of
the issue is ≥ 1000× ngspice's throughput at every option set.

``--mnist`` also runs ONE sample of the MNIST-sized net (834 nodes, 2 × 230,068 edges;
:func:`common.mnist_sized_net`) to T in ngspice at the loosest option set and records its
time (tens of minutes); without the flag the JSON has no such entry.

A full run takes about 10 minutes on two cores, much of it the digits reference (Dopri5
at 1e-9 steps finely over the ReLU kinks, and the batch shares its steps); ``--quick``
(FC-32 batch 64, digits batch 32, one ngspice sample at the loosest option set) about 45
seconds. Both write ``results/bench_vs_ngspice.json``.

Run:  .venv/bin/python benchmarks/bench_vs_ngspice.py [--quick] [--mnist]
          [--digits-model PATH] [--ngspice-samples 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kirchhoff_sim as ks  # noqa: E402
from common import fully_connected_tanh, mnist_sized_net, timed, write_results  # noqa: E402

from kirchhoff_sim.training.datasets import dataset_of_model  # noqa: E402
from kirchhoff_sim.errors import SpiceError  # noqa: E402
from kirchhoff_sim.modelfile import read_model_file  # noqa: E402
from kirchhoff_sim.spice import PhysicalScale, SpiceOptions, to_netlist  # noqa: E402
from kirchhoff_sim.spice.roundtrip import run_compiled  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DIGITS_MODEL = REPO / "netlists" / "models" / "digits.npz"

REFERENCE_RTOL, REFERENCE_ATOL = 1e-9, 1e-11
REFERENCE_CHECK_FACTOR = 10.0     # the reference's own error: against a run this much tighter
SWING_POINTS = 201                # reference waveform points the swing is taken over
# ngspice option sets: (reltol, max_step_fraction of the shortest layer); the rest are
# SpiceOptions' defaults (trap, trtol 1, tolerances scaled to the circuit's units)
NGSPICE_GRID = [(1e-3, 1e-1), (1e-4, 1e-1), (1e-3, 1e-2), (1e-4, 1e-2)]
QUICK_NGSPICE_GRID = NGSPICE_GRID[:1]
# our Dopri5 tolerance ladder (rtol = atol), loose to tight
LADDER = [1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7, 1e-7, 3e-8, 1e-8]
TARGET_RATIO = 1000.0
NGSPICE_TIMEOUT = 3600.0          # seconds per sample (FC-32 and digits)
MNIST_TIMEOUT = 4 * 3600.0
_ANALYSIS_TIME = re.compile(r"Total analysis time \(seconds\)\s*=\s*([0-9.eE+-]+)")
_ELAPSED_TIME = re.compile(r"Total elapsed time \(seconds\)\s*=\s*([0-9.eE+-]+)")


# ---------------------------------------------------------------- reference and errors
class Reference:
    """Our Dopri5 at (REFERENCE_RTOL, REFERENCE_ATOL) on a batch: final voltages and swings.

    Attributes
    ----------
    final : ndarray, shape (B, N)
        Node voltages at T (normalised).
    swing : ndarray, shape (B,)
        Per sample, max − min node voltage over the waveform (``SWING_POINTS`` times).
    seconds : float
        Wall time of the reference run.
    """

    def __init__(self, net, X):
        started = time.perf_counter()
        sol = ks.simulate(net, X, solver=ks.Dopri5(rtol=REFERENCE_RTOL, atol=REFERENCE_ATOL),
                          save_at=np.linspace(0.0, net.T, SWING_POINTS))
        self.seconds = time.perf_counter() - started
        self.fevals = sol.stats.n_fevals
        self.final = sol.final_state
        swing = np.ptp(sol.node_voltages, axis=(0, 2))
        self.swing = np.where(swing > 0, swing, 1.0)     # a constant waveform: relative to 1 V0
        self.readout = net.readout - 1

    def errors(self, final, rows=slice(None)) -> np.ndarray:
        """Per-sample ``max_n |v_n(T) − v_ref,n(T)| / swing`` of ``final`` (B', N) = rows of the batch."""
        return np.abs(final - self.final[rows]).max(axis=1) / self.swing[rows]

    def readout_errors(self, final, rows=slice(None)) -> np.ndarray:
        diff = np.abs(final[:, self.readout] - self.final[rows][:, self.readout])
        return diff.max(axis=1) / self.swing[rows]

    def classes(self, rows=slice(None)) -> np.ndarray:
        return np.argmax(self.final[rows][:, self.readout], axis=1)


def reference_self_check(net, X, reference, rows) -> float:
    """The reference's own error on ``rows``: against a run ``REFERENCE_CHECK_FACTOR`` tighter."""
    tighter = ks.simulate(net, X[rows], solver=ks.Dopri5(rtol=REFERENCE_RTOL / REFERENCE_CHECK_FACTOR,
                                                          atol=REFERENCE_ATOL / REFERENCE_CHECK_FACTOR))
    return float(reference.errors(tighter.final_state, rows).max())


# ---------------------------------------------------------------- ngspice
def _log_seconds(pattern, log):
    match = pattern.search(log)
    return float(match.group(1)) if match else None


def ngspice_sample(net, x, options, timeout=NGSPICE_TIMEOUT):
    """Compile and run one sample; returns (final voltages (N,) normalised, timings dict).

    The round trip of :mod:`kirchhoff_sim.spice.roundtrip` with the compile step timed on
    its own (it is not charged to ngspice); a run that stops before T raises.
    """
    started = time.perf_counter()
    netlist = to_netlist(net, x, options=options)
    compile_s = time.perf_counter() - started
    run = run_compiled(netlist, backend="subprocess", timeout=timeout)
    log = run.result.log
    timings = {"compile_seconds": compile_s, "wall_seconds": run.elapsed,
               "analysis_seconds": _log_seconds(_ANALYSIS_TIME, log),
               "ngspice_elapsed_seconds": _log_seconds(_ELAPSED_TIME, log),
               "time_points": len(run.result.time), "netlist_lines": netlist.num_lines}
    return run.final_voltages, timings


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def ngspice_row(net, X, reference, rows, reltol, max_step_fraction):
    """ngspice on ``rows`` of X, serially, one run per sample, at one option set."""
    options = SpiceOptions(reltol=reltol, max_step_fraction=max_step_fraction)
    finals, timings = [], []
    for b in rows:
        final, timing = ngspice_sample(net, X[b], options)
        finals.append(final)
        timings.append(timing)
        print(f"    ngspice sample {b}: {timing['wall_seconds']:.2f} s wall "
              f"(analysis {timing['analysis_seconds']} s, compile {timing['compile_seconds']:.3f} s, "
              f"{timing['time_points']} time points)", flush=True)
    finals = np.array(finals)
    errors = reference.errors(finals, rows)
    wall = statistics.fmean(t["wall_seconds"] for t in timings)
    return {
        "reltol": reltol, "max_step_fraction": max_step_fraction, "options": options.to_dict(),
        "samples": [int(b) for b in rows],
        "seconds_per_sample": wall,
        "samples_per_s": 1.0 / wall,
        "wall_seconds": [t["wall_seconds"] for t in timings],
        "analysis_seconds_mean": _mean([t["analysis_seconds"] for t in timings]),
        "ngspice_elapsed_seconds_mean": _mean([t["ngspice_elapsed_seconds"] for t in timings]),
        "compile_seconds_mean": statistics.fmean(t["compile_seconds"] for t in timings),
        "time_points_mean": statistics.fmean(t["time_points"] for t in timings),
        "netlist_lines": timings[0]["netlist_lines"],
        "error": float(errors.max()),
        "errors": errors.tolist(),
        "readout_error": float(reference.readout_errors(finals, rows).max()),
        "classes_agree": int(np.sum(np.argmax(finals[:, reference.readout], axis=1)
                                    == reference.classes(rows))),
    }


# ---------------------------------------------------------------- ours
class Ladder:
    """Our Dopri5's error on the whole batch at each rung of ``LADDER`` (computed once)."""

    def __init__(self, net, X, reference, ngspice_rows):
        self.net, self.X, self.reference, self.ngspice_rows = net, X, reference, list(ngspice_rows)
        self.rungs = {}

    def error_at(self, tol) -> dict:
        if tol not in self.rungs:
            sol = ks.simulate(self.net, self.X, solver=ks.Dopri5(rtol=tol, atol=tol))
            errors = self.reference.errors(sol.final_state)
            self.rungs[tol] = {
                "tol": tol, "error": float(errors.max()),
                "error_on_ngspice_samples": float(errors[self.ngspice_rows].max()),
                "readout_error": float(self.reference.readout_errors(sol.final_state).max()),
                "classes_agree": float(np.mean(np.argmax(sol.final_state[:, self.reference.readout], axis=1)
                                               == self.reference.classes())),
                "fevals": sol.stats.n_fevals,
            }
            print(f"    ours rtol=atol={tol:g}: error {self.rungs[tol]['error']:.2e} over the batch "
                  f"({sol.stats.n_fevals} f-evals)", flush=True)
        return self.rungs[tol]

    def matched(self, target):
        """The loosest rung whose error over the whole batch is <= target, or None."""
        for tol in LADDER:
            if self.error_at(tol)["error"] <= target:
                return self.rungs[tol]
        return None


def compare_net(net, X, label, ngspice_samples, grid, repeat):
    """Reference, then per ngspice option set: ngspice's runs, our matched tolerance, timings."""
    print(f"\n{label}: {net.num_nodes} nodes, {len(net.layers)} layers, {net.num_edges} edges, "
          f"batch {len(X)}", flush=True)
    rows = list(range(min(ngspice_samples, len(X))))
    reference = Reference(net, X)
    print(f"  reference dopri5 rtol {REFERENCE_RTOL:g} atol {REFERENCE_ATOL:g}: {reference.seconds:.1f} s, "
          f"{reference.fevals} f-evals; swing {reference.swing.min():.3g}..{reference.swing.max():.3g}",
          flush=True)
    self_error = reference_self_check(net, X, reference, rows)
    print(f"  reference's own error (vs {REFERENCE_CHECK_FACTOR:g}x tighter, ngspice's samples): "
          f"{self_error:.1e}", flush=True)
    ladder = Ladder(net, X, reference, rows)
    comparisons = []
    for reltol, fraction in grid:
        print(f"  ngspice reltol={reltol:g}, max_step_fraction={fraction:g}:", flush=True)
        try:
            spice = ngspice_row(net, X, reference, rows, reltol, fraction)
        except SpiceError as exc:
            print(f"    ngspice failed: {exc}", flush=True)
            comparisons.append({"ngspice": {"reltol": reltol, "max_step_fraction": fraction,
                                            "failed": str(exc)}})
            continue
        rung = ladder.matched(spice["error"])
        row = {"ngspice": spice}
        if rung is None:
            print(f"    no rung of our ladder reaches ngspice's error {spice['error']:.1e}", flush=True)
            row["ours"] = None
            row["ratio"] = None
        else:
            tol = rung["tol"]
            seconds, _ = timed(lambda: ks.simulate(net, X, solver=ks.Dopri5(rtol=tol, atol=tol)), repeat)
            row["ours"] = {**rung, "rtol": tol, "atol": tol, "seconds": seconds,
                           "samples_per_s": len(X) / seconds}
            row["ratio"] = row["ours"]["samples_per_s"] / spice["samples_per_s"]
        comparisons.append(row)
        _print_row(row)
    ratios = [r["ratio"] for r in comparisons if r.get("ratio") is not None]
    return {
        "label": label, "nodes": net.num_nodes, "layers": len(net.layers), "edges": net.num_edges,
        "edges_per_layer": [layer.num_edges for layer in net.layers], "T": net.T,
        "batch": len(X), "ngspice_samples": len(rows),
        "reference": {"rtol": REFERENCE_RTOL, "atol": REFERENCE_ATOL, "seconds": reference.seconds,
                      "fevals": reference.fevals, "own_error": self_error,
                      "swing_min": float(reference.swing.min()), "swing_max": float(reference.swing.max())},
        "comparisons": comparisons,
        "ours_by_tolerance": [ladder.rungs[t] for t in LADDER if t in ladder.rungs],
        "min_ratio": min(ratios) if ratios else None,
        "all_matched": len(ratios) == len(grid),
    }


def _print_row(row):
    s, o = row["ngspice"], row["ours"]
    text = (f"    → ngspice {s['seconds_per_sample']:.2f} s/sample ({s['samples_per_s']:.3g} samples/s), "
            f"error {s['error']:.1e}")
    if o is not None:
        text += (f" | ours rtol=atol={o['tol']:g}: {o['samples_per_s']:.0f} samples/s, error {o['error']:.1e} "
                 f"(batch), {o['error_on_ngspice_samples']:.1e} (ngspice's samples) → {row['ratio']:,.0f}×")
    print(text, flush=True)


def print_table(nets):
    head = (f"{'net':<8} {'ngspice options':<24} {'ngspice s/smp':>13} {'(analysis)':>10} "
            f"{'ng err':>8} {'our tol':>8} {'our err':>8} {'ours smp/s':>10} {'ng smp/s':>9} {'ratio':>9}")
    print("\n" + head + "\n" + "-" * len(head))
    for short, result in nets.items():
        for row in result["comparisons"]:
            s, o = row["ngspice"], row.get("ours")
            opts = f"reltol={s['reltol']:g} step=T/{1 / s['max_step_fraction']:g}"
            if "failed" in s:
                print(f"{short:<8} {opts:<24} failed: {s['failed'].splitlines()[0]}")
                continue
            analysis = f"{s['analysis_seconds_mean']:.2f}" if s["analysis_seconds_mean"] is not None else "-"
            ours = (f"{o['tol']:>8.0e} {o['error']:>8.1e} {o['samples_per_s']:>10.0f}" if o
                    else f"{'-':>8} {'-':>8} {'-':>10}")
            ratio = f"{row['ratio']:>8,.0f}×" if row["ratio"] is not None else f"{'-':>9}"
            print(f"{short:<8} {opts:<24} {s['seconds_per_sample']:>13.2f} {analysis:>10} "
                  f"{s['error']:>8.1e} {ours} {s['samples_per_s']:>9.3g} {ratio}")
    print("errors: max over nodes of |v(T) − reference| / swing; ours over the whole batch, ngspice over "
          "its samples; 'step=T/k' is max_step_fraction of a layer")


# ---------------------------------------------------------------- MNIST-sized, one sample
def mnist_one_sample(grid):
    """One sample of the MNIST-sized net to T in ngspice (loosest option set), timed."""
    net = mnist_sized_net()
    x = np.random.default_rng(0).uniform(size=784)
    reltol, fraction = grid[0]
    options = SpiceOptions(reltol=reltol, max_step_fraction=fraction)
    print(f"\nMNIST-sized: {net.num_nodes} nodes, {net.num_edges} edges; one ngspice run at reltol={reltol:g}, "
          f"max_step_fraction={fraction:g} (tens of minutes)", flush=True)
    _, timings = ngspice_sample(net, x, options, timeout=MNIST_TIMEOUT)
    out = {"nodes": net.num_nodes, "edges": net.num_edges, "T": net.T, "reltol": reltol,
           "max_step_fraction": fraction, **timings}
    print(f"  ngspice: {out['wall_seconds']:.0f} s wall (analysis {out['analysis_seconds']} s), "
          f"compile {out['compile_seconds']:.1f} s, {out['time_points']} time points", flush=True)
    return out


# ---------------------------------------------------------------- main
def main(argv=None):
    ks.tune_allocator()   # the benchmark owns its process (kirchhoff_sim.allocator)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small batches, one ngspice sample at the loosest option set, one repeat")
    parser.add_argument("--mnist", action="store_true",
                        help="also time ONE sample of the MNIST-sized net in ngspice (tens of minutes)")
    parser.add_argument("--digits-model", type=Path, default=DEFAULT_DIGITS_MODEL,
                        help=f"trained digits model file (default {DEFAULT_DIGITS_MODEL.relative_to(REPO)})")
    parser.add_argument("--ngspice-samples", type=int, default=None,
                        help="samples ngspice runs per option set (default 3, 1 with --quick)")
    args = parser.parse_args(argv)
    if not args.digits_model.is_file():
        parser.error(f"no digits model at {args.digits_model}; train one (kirchhoff-sim train --task digits) "
                     f"or pass --digits-model PATH")
    quick = args.quick
    samples = args.ngspice_samples if args.ngspice_samples is not None else (1 if quick else 3)
    if samples < 1:
        parser.error("--ngspice-samples must be >= 1")
    grid = QUICK_NGSPICE_GRID if quick else NGSPICE_GRID
    repeat = 1 if quick else 3
    wall_start = time.perf_counter()
    load = [os.getloadavg()[0]]

    results = {
        "matched_agreement": (
            "error = max over all nodes of |v(T) − v_ref(T)| / swing (swing: max − min node voltage of the "
            f"reference waveform), reference = our dopri5 at rtol {REFERENCE_RTOL:g}, atol {REFERENCE_ATOL:g}; "
            "ngspice's error is its worst over its samples, ours the worst over the whole timed batch, and "
            "ours is the loosest dopri5 rtol = atol on the ladder with error <= ngspice's"),
        "ngspice": {"backend": "subprocess", "version": _ngspice_version(), "timeout_s": NGSPICE_TIMEOUT,
                    "scale": PhysicalScale.default().to_dict(),
                    "per_sample": "one netlist and one ngspice -b process per sample, serial; compile time "
                                  "not charged"},
        "ladder": LADDER, "target_ratio": TARGET_RATIO, "quick": quick,
    }
    nets = {}
    rng = np.random.default_rng(0)      # the same net and inputs as bench_forward.py
    fc = fully_connected_tanh(rng)
    X_fc = rng.normal(size=(64 if quick else 256, 32))
    nets["fc32"] = compare_net(fc, X_fc, "32-node fully connected, AffineTanh", samples, grid, repeat)
    load.append(os.getloadavg()[0])

    digits, meta, _ = read_model_file(args.digits_model)
    X_digits = dataset_of_model(meta).X_test
    if quick:
        X_digits = X_digits[:32]
    nets["digits"] = compare_net(digits, X_digits, f"digits classifier ({args.digits_model.name}), test split",
                                 samples, grid, repeat)
    nets["digits"]["model"] = str(args.digits_model)
    load.append(os.getloadavg()[0])
    results["fully_connected_32"], results["digits"] = nets["fc32"], nets["digits"]

    print_table(nets)
    ratios = [r["min_ratio"] for r in nets.values()]
    met = all(r is not None and r >= TARGET_RATIO for r in ratios) and all(r["all_matched"] for r in nets.values())
    results["target_met"] = met
    print(f"smallest ratio: FC-32 {_fmt_ratio(ratios[0])}, digits {_fmt_ratio(ratios[1])} — target "
          f"≥ {TARGET_RATIO:,.0f}× {'met' if met else 'NOT met'} at every option set")

    if args.mnist:
        results["mnist_one_sample"] = mnist_one_sample(NGSPICE_GRID)
        load.append(os.getloadavg()[0])
    results["load_average_1min"] = load
    results["total_seconds"] = time.perf_counter() - wall_start
    print(f"total {results['total_seconds']:.0f} s; 1-min load average {', '.join(f'{v:.2f}' for v in load)}")
    write_results("bench_vs_ngspice", results)
    return results


def _fmt_ratio(ratio):
    return f"{ratio:,.0f}×" if ratio is not None else "unmatched"


def _ngspice_version():
    import subprocess

    try:
        out = subprocess.run(["ngspice", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"ngspice-(\S+)", out)
    return match.group(1) if match else None


if __name__ == "__main__":
    main()
