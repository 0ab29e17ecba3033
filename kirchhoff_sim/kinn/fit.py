"""Training a KINN: mini-batch Adam on the exact discrete-adjoint gradient.

The gradient is :func:`~.transient.gradient` (the explicit solver's discrete adjoint of
the circuit, exact for the forward run's step grid); the optimiser and the losses are
the package's own (:class:`~kirchhoff_sim.training.optim.Adam` with a cosine schedule,
:mod:`kirchhoff_sim.training.losses`), so a KINN trains exactly as a KirchhoffNet does.
"""

from __future__ import annotations

import time

import numpy as np

from ..checks import as_int
from ..errors import InputError, TrainingDivergedError
from ..training.losses import LOSSES, bind
from ..training.optim import Adam, CosineSchedule
from .transient import gradient, outputs

__all__ = ["fit", "predict", "profile_limits"]


def profile_limits(net, profile) -> tuple[float, tuple[float, float]]:
    """``(rail, (log_g_min, log_g_max))`` of a technology profile in the net's normalised
    units: the smaller rail over ``V0``, and the leak conductance window over ``G0``."""
    scale = profile.scale
    rail = min(-profile.rail_low_v, profile.rail_high_v) / scale.V0
    return rail, (float(np.log(profile.conductance_min_s / scale.G0)),
                  float(np.log(profile.conductance_max_s / scale.G0)))


def fit(net, X, Y, *, loss: str = "cross_entropy", epochs: int = 10, batch_size: int = 64,
        lr: float = 1e-2, solver=None, seed: int = 0, progress: bool = False, profile=None,
        rail_weight: float = 1.0) -> list[dict]:
    """Train ``net`` in place on ``X`` ``(n, d)`` and targets ``Y``.

    Parameters
    ----------
    loss : {"cross_entropy", "mse"}
        ``Y`` is ``(n,)`` class indices for cross-entropy on the read-out (logits), or
        ``(n, n_out)`` targets for the mean squared error.
    epochs, batch_size : int
        Passes over the shuffled data and samples per step (≥ 1).
    lr : float
        Adam's base rate, cosine-annealed to 0 over ``epochs``.
    solver : optional
        An explicit solver (default Dopri5, rtol 1e-7).
    seed : int
        Seeds the shuffling.
    progress : bool
        A tqdm bar over the epochs.
    profile : TechnologyProfile, optional
        Train within the technology's limits: every node voltage (stages, output and
        drive summing nodes) is held inside the rails by the running cost
        :func:`~.transient.rail_penalty` (``rail_weight``) in the loss and its exact
        adjoint, and after every step the leak conductances are projected into the
        profile's conductance window (a projected gradient step).

    Returns
    -------
    list of dict
        One record per epoch: ``epoch``, ``loss`` (mean over its batches), ``seconds``.

    Raises
    ------
    InputError
        Unknown loss, bad sizes, or ``X`` and ``Y`` of different lengths.
    TrainingDivergedError
        A step's loss or gradient is not finite (the parameters are left as they were
        before that step).
    """
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    epochs = as_int(epochs, "epochs", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y)
    if len(X) != len(Y):
        raise InputError(f"X has {len(X)} samples but Y has {len(Y)}")
    rail, window = (None, None) if profile is None else profile_limits(net, profile)
    if window is not None:
        np.clip(net.log_g, *window, out=net.log_g)
    optimiser = Adam(net.parameters, lr=lr, schedule=CosineSchedule(epochs))
    rng = np.random.default_rng(seed)
    history = []
    epochs_iter = range(epochs)
    if progress:
        from tqdm import tqdm

        epochs_iter = tqdm(epochs_iter, desc="KINN", unit="epoch", leave=False)
    for epoch in epochs_iter:
        optimiser.set_epoch(epoch)
        start, losses = time.perf_counter(), []
        order = rng.permutation(len(X))
        for a in range(0, len(X), batch_size):
            batch = order[a:a + batch_size]
            grad = gradient(net, X[batch], bind(LOSSES[loss], Y[batch]), solver=solver, rail=rail,
                            rail_weight=rail_weight)
            if not np.isfinite(grad.value) or not all(np.all(np.isfinite(g)) for g in grad.grads):
                raise TrainingDivergedError(f"KINN training: epoch {epoch}, batch {a // batch_size}: "
                                            f"the loss or its gradient is not finite")
            optimiser.step(grad.grads)
            if window is not None:
                np.clip(net.log_g, *window, out=net.log_g)
            losses.append(grad.value)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - start})
    return history


def predict(net, X, solver=None, batch_size: int = 512) -> np.ndarray:
    """The read-out ``(n, n_out)`` of ``X`` ``(n, d)``, in batches of ``batch_size``."""
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    X = np.asarray(X, dtype=float)
    return np.concatenate([outputs(net, X[a:a + batch_size], solver=solver)
                           for a in range(0, len(X), batch_size)])
