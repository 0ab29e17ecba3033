"""Training a KINN: mini-batch Adam on the exact discrete-adjoint gradient.

The gradient is :func:`~.transient.gradient` (the explicit solver's discrete adjoint of
the circuit, exact for the forward run's step grid); the optimiser and the losses are
the package's own (:class:`~kirchhoff_sim.training.optim.Adam` with a cosine schedule,
:mod:`kirchhoff_sim.training.losses`), so a KINN trains exactly as a KirchhoffNet does.
"""

from __future__ import annotations

import time

import numpy as np

from ..checks import as_int, as_real_array
from ..network import as_batch
from ..errors import InputError, TrainingDivergedError
from ..training.losses import LOSSES, bind
from ..training.optim import Adam, CosineSchedule
from .transient import gradient, outputs

__all__ = ["fit", "predict", "profile_limits"]


#: the share of the rails training aims at: the penalty is soft and the training samples
#: are not the test samples, so the trained net keeps a margin (as training/constraints.py)
RAIL_MARGIN = 0.9


def profile_limits(net, profile, margin: float = 1.0) -> tuple[float, tuple[float, float]]:
    """``(rail, (log_g_min, log_g_max))`` of a technology profile in the net's normalised
    units: ``margin`` times the smaller rail over ``V0``, and the leak conductance window
    over ``G0``."""
    scale = profile.scale
    rail = margin * min(-profile.rail_low_v, profile.rail_high_v) / scale.V0
    return rail, (float(np.log(profile.conductance_min_s / scale.G0)),
                  float(np.log(profile.conductance_max_s / scale.G0)))


def fit(net, X, Y, *, loss: str = "cross_entropy", epochs: int = 10, batch_size: int = 64,
        lr: float = 1e-2, solver=None, seed: int = 0, progress: bool = False, profile=None,
        rail_weight: float = 1.0, rail_margin: float = RAIL_MARGIN) -> list[dict]:
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
        adjoint, and the leak conductances are projected into the profile's conductance
        window before the first step and after every step (a projected gradient method). The rail aimed at is
        ``rail_margin`` (default :data:`RAIL_MARGIN`) of the profile's.

    Returns
    -------
    list of dict
        One record per epoch: ``epoch``, ``loss`` (mean over its batches), ``seconds``.

    Raises
    ------
    InputError
        Unknown loss, bad sizes, ``X`` not a non-empty ``(n, d)`` real array of the net's
        width, or targets that do not fit (checked before the first step).
    TrainingDivergedError
        A step's loss or gradient is not finite (the parameters are left as they were
        before that step).
    """
    if loss not in LOSSES:
        raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    epochs = as_int(epochs, "epochs", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    X = as_batch(X)
    net.check_input_width(X.shape[1])
    Y = _checked_targets(net, Y, loss, len(X))
    rail, window = (None, None) if profile is None else profile_limits(net, profile, rail_margin)
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


def _checked_targets(net, Y, loss: str, n: int) -> np.ndarray:
    """``Y`` checked whole before any step, so that a bad label cannot stop a run that
    has already changed the net: ``(n,)`` class indices of the read-out for
    cross-entropy, ``(n, n_out)`` real targets for the squared error."""
    Y = np.asarray(Y)
    if len(Y) != n:
        raise InputError(f"X has {n} samples but Y has {len(Y)}")
    if loss == "mse":
        Y = as_real_array(Y, "targets Y")
        if Y.shape != (n, net.num_outputs):
            raise InputError(f"targets Y must be ({n}, {net.num_outputs}) for the read-out, got {Y.shape}")
        return Y
    if Y.ndim != 1 or Y.dtype.kind not in "iu" and not (
            Y.dtype.kind == "f" and np.all(np.isfinite(Y)) and np.all(Y == np.round(Y))):
        raise InputError(f"labels Y must be ({n},) integer class indices, got {Y.dtype} {Y.shape}")
    Y = Y.astype(np.int64)
    if Y.min() < 0 or Y.max() >= net.num_outputs:
        raise InputError(f"labels must lie in 0..{net.num_outputs - 1} (the read-out has {net.num_outputs} "
                         f"channels), got {Y.min()}..{Y.max()}")
    return Y


def predict(net, X, solver=None, batch_size: int = 512) -> np.ndarray:
    """The read-out ``(n, n_out)`` of ``X`` ``(n, d)``, in batches of ``batch_size``.

    Raises
    ------
    InputError
        ``X`` not a non-empty ``(n, d)`` real array of the net's width, or a bad
        ``batch_size``.
    """
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    X = as_batch(X)
    net.check_input_width(X.shape[1])
    return np.concatenate([outputs(net, X[a:a + batch_size], solver=solver)
                           for a in range(0, len(X), batch_size)])
