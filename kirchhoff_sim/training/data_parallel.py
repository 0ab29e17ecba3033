"""Data-parallel training: a minibatch's loss and gradient computed shard by shard.

Every training step of :func:`~kirchhoff_sim.training.trainer.train` goes through
:class:`ShardedGradient`. It splits the minibatch into ``shards`` contiguous pieces
(``numpy.array_split``, so their sizes differ by at most one), computes each piece's mean
loss and adjoint gradient (:func:`~kirchhoff_sim.sensitivity.gradient`) as one job of a
:class:`~kirchhoff_sim.executors.Runner`, and reduces them on the driver in
shard order::

    L = Σ_s (n_s / B) · L_s,      ∂L/∂θ = Σ_s (n_s / B) · ∂L_s/∂θ

which is the minibatch's mean loss, since both losses average over their samples.

Why a run on a Dask cluster equals the serial run with the same ``shards`` **bit for
bit**: a shard's job depends only on its arguments (the net's model-file bytes, sent
once per run; the parameters as one flat float64 vector, sent once per step; the shard's
inputs and targets; the loss, solver and rail-cost settings as plain data), it runs the
same float64 code wherever it runs, and the reduction happens here, in one fixed order,
in both cases. The number of shards is part of :class:`TrainConfig` for that reason:
each shard gets the adaptive solver's own step grid, so a run with 2 shards and a run
with 1 differ at the level of the solver's tolerance, like any two batchings.
``shards=1`` is the unsharded step exactly (the weight is 1.0).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, SimulationError, TrainingDivergedError
from ..executors import as_runner
from ..modelfile import received_net
from ..network import KirchhoffNet
from ..sensitivity import gradient
from ..solvers import make_solver
from .constraints import rail_running_cost
from .losses import FLOW_LOSSES, LOSSES, TRAINING_LOSSES, bind, flow_loss_gradient

__all__ = ["ShardedGradient", "ShardResult", "StepGradient", "shard_bounds", "shard_gradient"]

_local = threading.local()       # per worker thread: its own net whose parameters jobs overwrite


def shard_bounds(batch: int, shards: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the non-empty shards of a batch of ``batch`` samples, in order
    (the sizes of ``numpy.array_split``: the first ``batch % shards`` one larger)."""
    size, extra = divmod(batch, shards)
    bounds, start = [], 0
    for s in range(shards):
        stop = start + size + (1 if s < extra else 0)
        if stop > start:
            bounds.append((start, stop))
        start = stop
    return bounds


@dataclass
class ShardResult:
    """One shard's contribution: its mean loss, the flat gradient of that mean
    ``(num_params,)`` (ordered like :meth:`KirchhoffNet.get_flat_params`), its read-out
    ``(n_s, n_readout)`` and the seconds its job computed for."""

    loss: float
    flat_gradient: np.ndarray
    readout: np.ndarray
    seconds: float


def _working_net(net, params):
    """The net a job simulates: ``net`` itself when ``params`` is None (a serial job on
    the driver's net), else this thread's copy of the net in ``net``'s model-file bytes
    with ``params`` written into it (rebuilt only when the bytes change)."""
    if params is None:
        return received_net(net)
    cached = getattr(_local, "net", None)
    if cached is None or cached[0] is not net and cached[0] != net:
        cached = (net, received_net(net).with_parameters())
        _local.net = cached
    work = cached[1]
    work.set_flat_params(params)
    return work


def shard_gradient(net, params, settings: dict, shard: dict) -> ShardResult:
    """The job of one shard: loss and adjoint gradient of its samples.

    Parameters
    ----------
    net : KirchhoffNet or bytes
        The net, or its model-file bytes (:func:`~kirchhoff_sim.modelfile.net_to_bytes`).
    params : ndarray, shape (num_params,), or None
        The parameters to simulate with (None: those ``net`` holds).
    settings : dict
        ``loss`` (a name of :data:`~kirchhoff_sim.training.losses.TRAINING_LOSSES`: a
        read-out loss, or a flow's loss — negative log-likelihood or reverse KL — whose
        "read-out" is then the points' log-densities ``(n_s, 1)``), ``solver``
        (a spec for :func:`~kirchhoff_sim.solvers.make_solver`), ``dtype`` (the working
        precision's name; float64 when absent) and ``rails``
        (``[low, high, weight]`` of :func:`~kirchhoff_sim.training.constraints.rail_running_cost`,
        the weight per minibatch before it is divided by the shard's size, or None).
    shard : dict
        ``x`` ``(n_s, d)`` input voltages and ``target`` (labels ``(n_s,)`` or targets
        ``(n_s, K)``).

    Raises
    ------
    SimulationError
        The shard's simulation failed (the trainer names the epoch and batch).
    """
    start = time.perf_counter()
    work = _working_net(net, params)
    x, target = shard["x"], shard["target"]
    rails = settings.get("rails")
    running_cost = None if rails is None else rail_running_cost(rails[0], rails[1], rails[2] / len(x))
    # overflow anywhere in the step shows up as a non-finite loss or gradient, which the
    # driver reports
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if settings["loss"] in FLOW_LOSSES:
            g = flow_loss_gradient(work, settings["loss"], x, make_solver(**settings["solver"]))
            return ShardResult(g.loss, g.flat, g.log_likelihood[:, None], time.perf_counter() - start)
        g = gradient(work, x, bind(LOSSES[settings["loss"]], target),
                     solver=make_solver(**settings["solver"]), running_cost=running_cost,
                     dtype=settings.get("dtype"))
    return ShardResult(float(g.loss), g.flat, g.solution.readout(work), time.perf_counter() - start)


@dataclass
class StepGradient:
    """A minibatch's reduced loss, gradient (one array per group, like
    ``net.parameters``) and read-out ``(B, n_readout)``, and where the step's time went."""

    loss: float
    params: list
    readout: np.ndarray
    compute_seconds: list       # per shard, as its job measured it
    wall_seconds: float         # the whole step on the driver
    reduce_seconds: float       # the reduction on the driver


class ShardedGradient:
    """Loss and gradient of minibatches, in ``shards`` jobs of ``executor``.

    Parameters
    ----------
    net : KirchhoffNet
        The net the steps simulate, its parameters updated in place between steps. Its
        structure is shared with the executor once, here.
    settings : dict
        ``loss`` and ``solver`` as :func:`shard_gradient` takes them.
    shards : int
        Pieces per minibatch (≥ 1).
    executor : Runner, optional
        Default :class:`~kirchhoff_sim.executors.SerialRunner`.

    Call :meth:`close` (or use it as a context manager) to drop the shared net.
    """

    def __init__(self, net: KirchhoffNet, settings: dict, shards: int = 1, executor=None):
        if settings.get("loss") not in TRAINING_LOSSES:
            raise InputError(f"ShardedGradient: unknown loss {settings.get('loss')!r}; "
                             f"use one of {list(TRAINING_LOSSES)}")
        self.net, self.settings, self.shards = net, dict(settings), int(shards)
        self.runner = as_runner(executor)
        self._net_handle = self.runner.share_net(net)         # the net's structure goes once
        self.local = self._net_handle is net                   # jobs run on this net itself
        #: seconds summed over this engine's steps: ``wall`` (the steps on the driver),
        #: ``compute`` (each step's slowest shard), ``compute_total`` (every shard) and
        #: ``reduce`` (the reductions); ``steps`` counts them
        self.timing = {"steps": 0, "wall": 0.0, "compute": 0.0, "compute_total": 0.0, "reduce": 0.0}

    def close(self) -> None:
        if not self.local:
            self.runner.release(self._net_handle)

    def __enter__(self) -> "ShardedGradient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def gradient(self, x, target, epoch: int, batch: int, rails=None) -> StepGradient:
        """Loss, gradient and read-out of one minibatch at the net's current parameters.

        Parameters
        ----------
        x : ndarray, shape (B, d)
            Input voltages (or, for kT/C-noise training, every node's initial voltage).
        target : ndarray, shape (B,) or (B, K)
        epoch, batch : int
            Where the step is, for the error messages (0-based).
        rails : sequence of 3 floats, optional
            ``[low, high, weight]`` of the rail running cost, weight per minibatch.

        Raises
        ------
        TrainingDivergedError
            A shard's simulation failed, or the loss or gradient is not finite; names the
            epoch and batch.
        ClusterLostError
            From a distributed executor whose cluster went away.
        """
        start = time.perf_counter()
        settings = {**self.settings, "rails": None if rails is None else [float(r) for r in rails]}
        bounds = shard_bounds(len(x), self.shards)
        items = [{"x": x[a:b], "target": target[a:b]} for a, b in bounds]
        params = None if self.local else self.runner.share(self.net.get_flat_params())
        try:
            results = list(self.runner.imap(shard_gradient, (self._net_handle, params, settings), items,
                                            window=len(items)))
        except SimulationError as exc:
            raise TrainingDivergedError(f"epoch {epoch + 1}, batch {batch}: the simulation failed: {exc}") from exc
        finally:
            if params is not None:
                self.runner.release(params)
        reduce_start = time.perf_counter()
        loss, flat = 0.0, np.zeros(self.net.num_params)
        for (a, b), result in zip(bounds, results):      # one fixed order, wherever the jobs ran
            weight = (b - a) / len(x)
            loss += weight * result.loss
            flat += weight * result.flat_gradient
        if not np.isfinite(loss) or not np.isfinite(flat).all():
            raise TrainingDivergedError(f"epoch {epoch + 1}, batch {batch}: loss {loss} or its gradient is not "
                                        f"finite; lower the learning rate")
        grads, offset = [], 0
        for p in self.net.parameters:
            grads.append(flat[offset:offset + p.size].reshape(p.shape))
            offset += p.size
        readout = np.concatenate([r.readout for r in results])
        end = time.perf_counter()
        compute = [r.seconds for r in results]
        for key, value in (("steps", 1), ("wall", end - start), ("compute", max(compute)),
                           ("compute_total", sum(compute)), ("reduce", end - reduce_start)):
            self.timing[key] += value
        return StepGradient(loss, grads, readout, [r.seconds for r in results], end - start, end - reduce_start)
