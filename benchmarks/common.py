"""Shared pieces of the benchmark scripts: timing, the torch baseline's view of a net,
and writing results as JSON next to the scripts (benchmarks/results/)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

import kirchhoff_sim as ks
from kirchhoff_sim.fileio import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn, repeat: int = 3, warmup: int = 1):
    """Run ``fn`` ``warmup`` times, then ``repeat`` times; returns (median seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def fully_connected_tanh(rng, nodes: int = 32, weight_std: float = 0.5):
    """The reference two-moons-sized comparison net: ``nodes`` nodes fully connected
    (ground included, so (nodes+1)·nodes AffineTanh edges a layer: 1,056 for 32), two
    layers of 0.5, parameters drawn from ``rng`` as N(0, weight_std²) — large enough
    that the dynamics are not trivial."""
    net = ks.KirchhoffNet([ks.Layer(ks.topology.fully_connected(nodes + 1, repeat=(1, 0)), ks.AffineTanh(), 0.5)
                           for _ in range(2)], seed=0, init="normal")
    for group in net.groups:
        group.params[...] = rng.normal(0.0, weight_std, group.params.shape)
    return net


def mnist_sized_net():
    """The MNIST-sized topology (28×28 image, 4×4 neighbour windows, 50 projection nodes:
    834 nodes, 2 × 230,068 ShiftedReLU edges), random (kaiming, seed 0) parameters."""
    return ks.KirchhoffNet([ks.Layer(ks.topology.neighbour_window(28, 28, 4, 50), ks.ShiftedReLU(), 1.0)
                            for _ in range(2)], readout=10, seed=0)


def torch_family(device) -> str:
    """The torch reference's family name for a kirchhoff_sim device."""
    name = type(device).__name__
    simple = {"Conductance": "conductance", "ShiftedReLU": "shifted_relu",
              "ShiftedLeakyReLU": "shifted_leaky_relu"}
    if name in simple:
        return simple[name]
    if name == "AffineActivation":
        return "affine_" + device.activation.name
    if name == "DifferenceActivation":
        return "difference_" + device.activation.name
    raise ValueError(f"the torch reference has no {name}")


def torch_layers(net) -> list[dict]:
    """The net's layers as the torch reference takes them (one device family per layer)."""
    layers = []
    for layer in net.layers:
        if len(layer.groups) != 1:
            raise ValueError("the torch reference takes one device family per layer")
        g = layer.groups[0]
        layers.append({"src": g.src, "dst": g.dst, "params": g.params,
                       "family": torch_family(g.device), "duration": layer.duration})
    return layers


def full_input(net, x) -> np.ndarray:
    """The torch reference's state at t=0, (B, N): x on nodes 1..d, zeros elsewhere."""
    return net.initial_state(x)[1:].T.copy()


def machine_load() -> dict:
    """The 1, 5 and 15-minute load averages (runnable processes; 2 cores here)."""
    one, five, fifteen = os.getloadavg()
    return {"load_1min": one, "load_5min": five, "load_15min": fifteen}


def write_results(name: str, payload: dict) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically, with the machine and its load
    at the end of the run."""
    payload = {"benchmark": name, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                              "numpy": np.__version__, **machine_load()}, **payload}
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
    print(f"wrote {path}")
    return path
