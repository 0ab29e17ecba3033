"""Batch inference in chunks: node voltages at ``T`` of data sets of any size.

:func:`iter_readouts` runs here or on a cluster. It splits the inputs into chunks of ``chunk_size`` samples, simulates
each as one job of a :class:`~kirchhoff_sim.executors.Runner` and yields the
results in order. Only a bounded window of chunks is out at once and each chunk is sliced
from ``X`` when its job is submitted, so a memory-mapped ``X``
(``numpy.load(path, mmap_mode="r")``) larger than memory streams through; the CLI's
``simulate`` writes the results to its ``.npy`` as they arrive
(:func:`~kirchhoff_sim.fileio.atomic_save_npy_chunks`).

Each chunk gets the adaptive solver's own step grid. That keeps the cost linear in the
number of samples (one grid for a whole large batch is set, step by step, by its hardest
sample), and makes the result depend on ``chunk_size`` at the level of the solver's
tolerance, not on where the chunks ran: a chunk's job depends only on the net, the
solver and the chunk, so a run on a Dask cluster equals the serial run with the same
``chunk_size`` bit for bit.
"""

from __future__ import annotations

import numpy as np

from .checks import as_int
from .errors import InputError
from .executors import as_runner
from .modelfile import received_net
from .network import as_batch, check_finite_inputs
from .solvers import samples_counted_from, simulate
from .solvers.precision import check_precision

__all__ = ["DEFAULT_CHUNK_SIZE", "check_inputs", "chunk_bounds", "iter_readouts", "readouts", "simulate_chunk"]

#: samples per chunk: large enough that numpy's per-call overheads are amortised over the
#: batch, small enough that one hard sample sets the step grid of few others
DEFAULT_CHUNK_SIZE = 512


def chunk_bounds(n_samples: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of consecutive chunks of at most ``chunk_size`` samples.

    Raises
    ------
    InputError
        ``chunk_size`` is not an integer ≥ 1.
    """
    chunk_size = as_int(chunk_size, "chunk_size", minimum=1)
    return [(a, min(a + chunk_size, n_samples)) for a in range(0, n_samples, chunk_size)]


def simulate_chunk(net, solver, all_nodes: bool, chunk: dict) -> np.ndarray:
    """The job of one chunk: ``(n, n_readout)`` read-out voltages at ``T`` of
    ``chunk["x"]`` ``(n, d)`` (``(n, N)`` every node's with ``all_nodes``).

    ``net`` is a KirchhoffNet or its model-file bytes; ``solver`` a solver object or None
    (the default); ``chunk["dtype"]`` (optional) the working precision's name.

    Raises
    ------
    InputError, SimulationError
        As :func:`~kirchhoff_sim.solvers.simulate`; a non-finite input is named by its row in
        the whole input (``chunk["start"]`` + its row in the chunk).
    """
    net = received_net(net)
    check_finite_inputs(chunk["x"], first_row=chunk["start"])   # messages name rows of the whole X
    with samples_counted_from(chunk["start"]):
        solution = simulate(net, chunk["x"], solver=solver, dtype=chunk.get("dtype"))
    return solution.final_state if all_nodes else solution.readout(net)


def iter_readouts(net, X, *, solver=None, chunk_size: int = DEFAULT_CHUNK_SIZE, executor=None,
                  all_nodes: bool = False, progress: bool = False, dtype=None):
    """Read-out voltages at ``T`` of ``X``, chunk by chunk, in order.

    Parameters
    ----------
    net : KirchhoffNet
    X : array_like, shape (B, d)
        Input voltages (normalised volts); a ``numpy.memmap`` is read a chunk at a time.
    solver : optional
        Any solver (default :func:`~kirchhoff_sim.Dopri5`).
    chunk_size : int
        Samples per job (≥ 1); also the unit of the solver's step grids (module docstring).
    executor : Runner, optional
        Where the chunks run (default here, one after the other; a
        :class:`~kirchhoff_sim.hardware.distributed.DaskRunner` for a cluster, which gets
        the net once and each chunk as its job is submitted).
    all_nodes : bool
        Yield every node's voltage ``(n, N)`` instead of the read-out ``(n, n_readout)``.
    progress : bool
        A tqdm bar over the samples done.
    dtype : {None, "float64", "float32"}
        Working precision of the runs (:func:`~kirchhoff_sim.solvers.simulate`).

    Returns
    -------
    iterator of ndarray, shape (n, n_readout) or (n, N)
        One per chunk, in the order of ``X``. ``X`` and ``chunk_size`` are checked when
        this is called, before a chunk is out.

    Raises
    ------
    InputError
        ``X`` is not ``(B, d)`` real numbers, or a bad ``chunk_size`` or ``executor``.
    SimulationError
        A chunk's simulation failed.
    ClusterLostError
        The executor's cluster went away.
    """
    X = check_inputs(net, X)
    chunk_bounds(len(X), chunk_size)          # a bad chunk_size is refused now, not at the first chunk
    dtype = check_precision(solver, dtype)     # refused now too
    return _iter_readouts(net, X, solver, chunk_size, executor, all_nodes, progress, dtype.name)


def check_inputs(net, X):
    """``X`` checked against ``net`` before any chunk is out: a real ``(B, d)`` array
    (a ``numpy.memmap`` is checked without reading it) that is as wide as the net's input.

    Returns
    -------
    ndarray or numpy.memmap, shape (B, d)

    Raises
    ------
    InputError
        ``X`` is not a ``(B, d)`` array of real numbers, or ``d`` does not fit the net.
    """
    if isinstance(X, np.memmap):
        if X.ndim != 2 or 0 in X.shape or not (np.issubdtype(X.dtype, np.floating)
                                                 or np.issubdtype(X.dtype, np.integer)):
            raise InputError(f"inputs must be a (batch, features) array of real numbers, got {X.dtype} {X.shape}")
    else:
        X = as_batch(X)
    net.check_input_width(X.shape[1])
    return X


def _iter_readouts(net, X, solver, chunk_size, executor, all_nodes, progress, dtype):
    """The generator behind :func:`iter_readouts` (whose checks run when it is called)."""
    bounds = chunk_bounds(len(X), chunk_size)
    runner = as_runner(executor)
    net_handle = runner.share_net(net)
    shared = (net_handle, runner.share(solver), bool(all_nodes))
    items = ({"x": np.ascontiguousarray(X[a:b], dtype=float), "start": a, "dtype": dtype} for a, b in bounds)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(X), unit="sample", desc="simulate", leave=False)
    try:
        for (a, b), out in zip(bounds, runner.imap(simulate_chunk, shared, items)):
            if bar is not None:
                bar.update(b - a)
            yield out
    finally:
        if bar is not None:
            bar.close()
        runner.release(*shared[:2])


def readouts(net, X, **options) -> np.ndarray:
    """:func:`iter_readouts` gathered into one ``(B, n_readout)`` array (or ``(B, N)``)."""
    return np.concatenate(list(iter_readouts(net, X, **options)))
