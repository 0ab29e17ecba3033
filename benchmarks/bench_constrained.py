"""Nets that can be built (issue #10): the unconstrained classifiers against the ones
trained on the default technology profile, and a passive-only digits net.

The models are the committed ones in ``netlists/models/``:

* ``moons.npz``, ``digits.npz`` — ``kirchhoff-sim train --task NAME`` (the baseline);
* ``moons_constrained.npz``, ``digits_constrained.npz`` — ``kirchhoff-sim train --task
  NAME --profile default`` (the task's constrained preset, ``training/tasks.py``);
* ``digits_passive.npz`` — the same against a profile that builds passive families only
  (``{"device_families": "passive"}``) with ``--device Conductance``.

Each model is mapped onto its own technology profile — the one it was trained against with
its fitted ``V0``, else the default profile, as ``kirchhoff-sim report MODEL`` does — and
measured here in one run with :func:`~kirchhoff_sim.hardware.report.chip_report`
(``spice_check=False``: the energy is the solver's, which the README's ngspice check
matches to ~1e-7): test accuracy on the whole test split, the feasibility findings by
severity (and the errors and acceptance-relevant warnings by name), energy per inference,
latency, and on the report's 100 test samples the accuracy under log-normal mismatch at
σ = 5 % and 10 % (20 trials, seed 0) and with 4- and 6-bit parameters (the report's
symmetric per-group quantiser). Training times are the models' own records (the sum of
their epochs' seconds). Run:

    .venv/bin/python benchmarks/bench_constrained.py [--models NAME ...] [--trials 20]

It prints the table, the machine load, and writes ``benchmarks/results/bench_constrained.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

from kirchhoff_sim.hardware.report import chip_report  # noqa: E402
from kirchhoff_sim.modelfile import read_model_file  # noqa: E402
from kirchhoff_sim.solvers import make_solver  # noqa: E402
from kirchhoff_sim.technology import profile_of_model  # noqa: E402
from kirchhoff_sim.training.datasets import dataset_of_model  # noqa: E402
from kirchhoff_sim.training.trainer import evaluate, training_settings  # noqa: E402

MODELS = Path(__file__).resolve().parent.parent / "netlists" / "models"
#: (label, model file, the baseline it is compared with)
ROWS = [("moons", "moons.npz", None),
        ("moons, constrained", "moons_constrained.npz", "moons"),
        ("digits", "digits.npz", None),
        ("digits, constrained", "digits_constrained.npz", "digits"),
        ("digits, passive (Conductance)", "digits_passive.npz", "digits")]
SIGMAS = (0.05, 0.1)
BITS = (4, 6)
SAMPLES = 100          # the chip report's default
#: findings the acceptance of issue #10 rules out (besides any error)
RULED_OUT = ("voltage_rails", "conductance_range", "precision_floor")


def conductance_stats(net) -> dict:
    """How many conductance-like parameters are on (non-zero), negative, and their range."""
    from kirchhoff_sim.devices import CONDUCTANCE, rows_with_role

    values = np.concatenate([g.params[rows_with_role(g.device, CONDUCTANCE)].ravel() for g in net.groups])
    on = values != 0
    return {"parameters": int(values.size), "on": int(on.sum()), "negative": int((values < 0).sum()),
            "min_on": float(np.abs(values[on]).min()) if on.any() else 0.0, "max": float(np.abs(values).max())}


def measure(label, path, trials) -> dict:
    started = time.perf_counter()
    net, meta, _ = read_model_file(path)
    data = dataset_of_model(meta, None, None)
    solver_spec, loss = training_settings(meta)
    test = evaluate(net, data.X_test, data.y_test, loss, make_solver(**solver_spec))
    profile = profile_of_model(meta)
    report = chip_report(net, data.X_test, data.y_test, profile, spice_check=False, mc_sigma=SIGMAS[-1],
                         mc_trials=trials, bits=BITS[-1], samples=SAMPLES, solver=solver_spec,
                         sweep_sigmas=SIGMAS, sweep_bits=BITS, seed=0)
    r = report.to_dict()
    robust = r["robustness"]
    sweep = {f"{row['sigma']:g}": row for row in robust["mismatch_sweep"]}
    bits = {row["bits"]: row["accuracy"] for row in robust["quantisation_sweep"]}
    history = meta.get("training", {}).get("history", [])
    findings = r["findings"]
    out = {
        "label": label, "model": str(path.relative_to(MODELS.parent.parent)), "net": r["net"],
        "training": {"epochs": len(history), "seconds": float(sum(h.get("seconds", 0.0) for h in history)),
                     "config": meta.get("training", {}).get("config")},
        "test_accuracy": test.get("accuracy"), "test_samples": len(data.X_test),
        "V0": profile.scale.V0, "voltage_unit": (meta.get("technology") or {}).get("voltage_unit"),
        "findings_summary": r["findings_summary"],
        "findings": [{"check": f["check"], "severity": f["severity"]} for f in findings],
        "ruled_out_found": sorted({f["check"] for f in findings if f["check"] in RULED_OUT}),
        "energy_per_inference_j": r["energy"]["total_drawn_j"]["mean"],
        "average_power_w": r["energy"]["average_power_w"]["mean"],
        "latency_s": r["timing"]["latency_s"],
        "conductances": conductance_stats(net),
        "report_samples": r["samples"], "nominal_accuracy": robust["nominal_accuracy"],
        "mismatch": {s: {"mean": sweep[f"{s:g}"]["mean"], "std": sweep[f"{s:g}"]["std"],
                         "drop": sweep[f"{s:g}"]["drop"]} for s in SIGMAS},
        "bits": {b: bits[b] for b in BITS}, "trials": trials,
        "seconds": time.perf_counter() - started,
    }
    return out


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f} %"


def _si(value, unit):
    from kirchhoff_sim.units import format_si

    return format_si(value, unit)


def table(rows) -> str:
    head = ("| net | test accuracy | findings (error / warning / info) | ruled-out findings | energy / inference "
            "| latency | σ = 5 % | σ = 10 % | 4 bits | 6 bits | devices on | training |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        c = r["findings_summary"]
        m = r["mismatch"]
        lines.append(
            f"| {r['label']} | {_pct(r['test_accuracy'])} | {c['error']} / {c['warning']} / {c['info']} "
            f"| {', '.join(r['ruled_out_found']) or 'none'} | {_si(r['energy_per_inference_j'], 'J')} "
            f"| {_si(r['latency_s'], 's')} | {m[0.05]['mean']:.3f} ({m[0.05]['drop']:+.3f}) "
            f"| {m[0.1]['mean']:.3f} ({m[0.1]['drop']:+.3f}) | {r['bits'][4]:.3f} | {r['bits'][6]:.3f} "
            f"| {r['conductances']['on']:,} / {r['conductances']['parameters']:,} "
            f"| {r['training']['seconds'] / 60:.1f} min |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="labels' model files to measure (default: all present)")
    parser.add_argument("--trials", type=int, default=20, help="Monte Carlo trials per σ (default 20)")
    args = parser.parse_args()
    rows = []
    for label, name, _ in ROWS:
        path = MODELS / name
        if args.models and name not in args.models:
            continue
        if not path.exists():
            print(f"skipping {label}: {path} does not exist")
            continue
        load = os.getloadavg()[0]
        row = measure(label, path, args.trials)
        row["load_1min_before"] = load
        rows.append(row)
        print(f"{label}: test {_pct(row['test_accuracy'])}, findings {row['findings_summary']}, "
              f"ruled out {row['ruled_out_found'] or 'none'}, nominal {row['nominal_accuracy']:.3f}, "
              f"σ=10 % {row['mismatch'][0.1]['mean']:.3f}, 6 bits {row['bits'][6]:.3f} "
              f"({row['seconds']:.0f} s, load {load:.1f})", flush=True)
    by_label = {row["label"]: row for row in rows}
    for label, _, baseline in ROWS:       # each constrained net against its unconstrained baseline
        if baseline in by_label and label in by_label:
            r, b = by_label[label], by_label[baseline]
            print(f"{label} vs {baseline}: test accuracy {100 * (r['test_accuracy'] - b['test_accuracy']):+.1f} pt, "
                  f"energy / inference {b['energy_per_inference_j'] / r['energy_per_inference_j']:.1f}x less, "
                  f"latency {b['latency_s'] / r['latency_s']:.0f}x shorter")
    print()
    print(table(rows))
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min)")
    write_results("bench_constrained", {"samples": SAMPLES, "sigmas": list(SIGMAS), "bits": list(BITS),
                                        "trials": args.trials, "rows": rows, "table": table(rows)})


if __name__ == "__main__":
    main()
