"""One training step (loss + gradient) of kirchhoff_sim against PyTorch + torchdiffeq.

The baseline is the reference implementation's method: ``torchdiffeq.odeint_adjoint``
with ``dopri5`` (the continuous adjoint, integrated backwards in time). Both sides run
the same net, batch, tolerance and float64, in the same process:

* the digits classifier we train (8×8 neighbour-window topology, 20 hidden + 10 read-out
  nodes, ShiftedReLU — the paper's classifier device — 2 layers of duration 1), batch 64,
  dopri5 at rtol 1e-4 / atol 1e-6 (our training tolerance);
* the same topology with AffineTanh (the paper's generative device), for contrast.

torch is timed with 1 and with 2 intra-op threads and the faster counts.
Parameters are drawn from N(0, 0.3²) (a mid-training scale; the reference's Kaiming
initialisation, N(0, 2/E), gives near-trivial dynamics on 6,620 edges).

For each stack it prints the time of one step, the work done, and the gradient's error
against central finite differences of that stack's own forward pass, and against the
gradient of the ODE itself (approximated by our adjoint at a 1000× tighter tolerance).

Run:  .venv/bin/python benchmarks/bench_train.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kirchhoff_sim as ks  # noqa: E402
from common import full_input, timed, torch_layers, write_results  # noqa: E402
from kirchhoff_sim.sensitivity import gradient, replay_solver  # noqa: E402
from kirchhoff_sim.training.datasets import load_dataset  # noqa: E402
from kirchhoff_sim.training.losses import bind, cross_entropy  # noqa: E402
from kirchhoff_sim.training.models import build_net  # noqa: E402
from torch_reference import TorchKirchhoffNet  # noqa: E402

FD_EPS = 1e-5
N_FD_PARAMS = 6


def torch_step(net, x, y, rtol, atol):
    """Loss and gradient by odeint_adjoint; returns (loss, flat gradient, forward nfe, total nfe)."""
    tnet = TorchKirchhoffNet(torch_layers(net), net.num_nodes)
    xt = torch.as_tensor(full_input(net, x))
    out = tnet(xt, method="dopri5", rtol=rtol, atol=atol, adjoint=True)
    forward_nfe = tnet.nfe
    loss = torch.nn.functional.cross_entropy(out[:, torch.as_tensor(net.readout - 1)], torch.as_tensor(np.array(y)))
    loss.backward()
    flat = torch.cat([layer.param.grad.reshape(-1) for layer in tnet.layers]).numpy()
    return float(loss.detach()), flat, forward_nfe, tnet.nfe


def torch_loss(net, x, y, rtol, atol):
    tnet = TorchKirchhoffNet(torch_layers(net), net.num_nodes)
    with torch.no_grad():
        out = tnet(torch.as_tensor(full_input(net, x)), method="dopri5", rtol=rtol, atol=atol)
        return float(torch.nn.functional.cross_entropy(out[:, torch.as_tensor(net.readout - 1)],
                                                       torch.as_tensor(np.array(y))))


def fd_gradient(net, indices, loss_at):
    """Central differences of ``loss_at()`` in the flat parameters ``indices``."""
    flat = net.get_flat_params()
    out = []
    for i in indices:
        values = []
        for sign in (1, -1):
            shifted = flat.copy()
            shifted[i] += sign * FD_EPS
            net.set_flat_params(shifted)
            values.append(loss_at())
        out.append((values[0] - values[1]) / (2 * FD_EPS))
    net.set_flat_params(flat)
    return np.array(out)


def relative(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def compare(device, x, y, rtol, atol, repeat):
    net = build_net(64, 10, hidden=20, topology="neighbour_window", image_shape=(8, 8), window=3,
                    device=device)
    rng = np.random.default_rng(0)
    for group in net.groups:
        group.params[...] = rng.normal(0.0, 0.3, group.params.shape)
    loss = bind(cross_entropy, y)
    indices = np.sort(rng.choice(net.num_params, N_FD_PARAMS, replace=False))
    # the ODE's own gradient, approximated by our adjoint at a 1000× tighter tolerance
    # (ReLU kinks make much tighter runs impractically slow)
    exact = gradient(net, x, loss, solver=ks.Dopri5(rtol=rtol * 1e-3, atol=atol * 1e-3)).flat

    row = {"device": device, "batch": len(x), "rtol": rtol, "atol": atol, "edges": net.num_edges,
           "params": net.num_params}
    for norm in ("sample", "batch"):
        solver = ks.Dopri5(rtol=rtol, atol=atol, norm=norm)
        seconds, g = timed(lambda: gradient(net, x, loss, solver=solver), repeat)
        replay = replay_solver(g.solution)
        fd = fd_gradient(net, indices, lambda: loss(ks.simulate(net, x, solver=replay).readout(net))[0])
        row[f"ours_{norm}"] = {
            "seconds": seconds, "forward_fevals": g.solution.stats.n_fevals,
            "backward_fevals": g.stats.n_fevals, "vjps": g.stats.n_vjps, "loss": g.loss,
            "error_vs_fd_same_discretisation": relative(g.flat[indices], fd),
            "error_vs_ode_gradient": relative(g.flat, exact)}
    # torch's intra-op threads fight other processes on a shared 2-core machine: time it
    # with 1 and with 2 threads and keep the faster, so the baseline is its best
    thread_seconds = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = time.perf_counter()
        t_loss, t_grad, f_nfe, total_nfe = torch_step(net, x, y, rtol, atol)
        thread_seconds[threads] = time.perf_counter() - t
    t_seconds = min(thread_seconds.values())
    t_fd = fd_gradient(net, indices, lambda: torch_loss(net, x, y, rtol, atol))
    row["torch_odeint_adjoint"] = {
        "seconds": t_seconds, "seconds_by_threads": thread_seconds, "forward_nfe": f_nfe,
        "total_nfe": total_nfe, "loss": t_loss,
        "error_vs_fd_own_forward": relative(t_grad[indices], t_fd),
        "error_vs_ode_gradient": relative(t_grad, exact)}
    for norm in ("sample", "batch"):
        row[f"speedup_ours_{norm}"] = t_seconds / row[f"ours_{norm}"]["seconds"]
    o, b, tr = row["ours_sample"], row["ours_batch"], row["torch_odeint_adjoint"]
    print(f"{device}: ours {o['seconds']:.2f} s (per-sample norm; {o['forward_fevals']} + "
          f"{o['backward_fevals']} f-evals, {o['vjps']} VJPs), {b['seconds']:.2f} s (batch norm) | "
          f"torch odeint_adjoint {tr['seconds']:.2f} s ({tr['forward_nfe']} forward / {tr['total_nfe']} "
          f"total nfe) → {row['speedup_ours_sample']:.1f}× / {row['speedup_ours_batch']:.1f}×", flush=True)
    print(f"    gradient error vs finite differences: ours {o['error_vs_fd_same_discretisation']:.1e} "
          f"(same discretisation), torch {tr['error_vs_fd_own_forward']:.1e} (its own forward); "
          f"vs the ODE's gradient: ours {o['error_vs_ode_gradient']:.1e}, "
          f"torch {tr['error_vs_ode_gradient']:.1e}", flush=True)
    return row


def main():
    ks.tune_allocator()   # the benchmark owns its process (kirchhoff_sim.allocator)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, the ShiftedReLU net only")
    args = parser.parse_args()
    data = load_dataset("digits")
    x, y = data.X_train[:64], data.y_train[:64]
    repeat = 1 if args.quick else 3
    devices = ["ShiftedReLU"] if args.quick else ["ShiftedReLU", "AffineActivation"]
    results = {"rows": [compare(d, x, y, 1e-4, 1e-6, repeat) for d in devices]}
    write_results("bench_train", results)


if __name__ == "__main__":
    main()
