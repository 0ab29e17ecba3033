"""Training a KINN: mini-batch Adam on the exact discrete-adjoint gradient.

The gradient is :func:`~.transient.gradient` (the explicit solver's discrete adjoint of
the circuit, exact for the forward run's step grid); the optimiser and the losses are
the package's own (:class:`~kirchhoff_sim.training.optim.Adam` with a cosine schedule,
:mod:`kirchhoff_sim.training.losses`), so a KINN trains exactly as a KirchhoffNet does.
"""

from __future__ import annotations

import time

import numpy as np

from ..checks import as_choice, as_int, as_real, as_real_array
from ..errors import InputError, TrainingDivergedError
from ..technology import as_profile
from ..training.losses import LOSSES, bind
from ..training.optim import Adam, CosineSchedule
from .network import require_kinn
from .transient import _explicit, gradient, outputs

__all__ = ["fit", "predict", "profile_limits", "checked_labels"]


#: the share of the rails training aims at: the penalty is soft and the training samples
#: are not the test samples, so the trained net keeps a margin (as training/constraints.py)
RAIL_MARGIN = 0.9


def profile_limits(net, profile, margin: float = 1.0) -> tuple[float, tuple[float, float]]:
    """``(rail, (log_g_min, log_g_max))`` of a technology profile in the net's normalised
    units: ``margin`` times the smaller rail over ``V0``, and the leak conductance window
    over ``G0``.

    Raises
    ------
    InputError
        ``profile`` is not a profile (:func:`~kirchhoff_sim.technology.as_profile`: a
        built-in name, a profile file or a TechnologyProfile), or ``margin`` is not in
        ``(0, 1]``.
    """
    profile = as_profile(profile)
    margin = as_real(margin, "rail_margin", minimum=0.0, exclusive_minimum=True, maximum=1.0)
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
        Seeds the shuffling (≥ 0).
    progress : bool
        A tqdm bar over the epochs.
    profile : TechnologyProfile or str, optional
        A profile, a built-in profile's name or a profile file
        (:func:`~kirchhoff_sim.technology.as_profile`). Train within the technology's
        limits: every node voltage (stages, output and
        drive summing nodes) is held inside the rails by the running cost
        :func:`~.transient.rail_penalty` (``rail_weight``) in the loss and its exact
        adjoint, and the leak conductances are projected into the profile's conductance
        window before the first step and after every step (a projected gradient method). The rail aimed at is
        ``rail_margin`` (in ``(0, 1]``, default :data:`RAIL_MARGIN`) of the profile's.
    rail_weight : float
        Weight of the rail cost (finite, ≥ 0).

    Returns
    -------
    list of dict
        One record per epoch: ``epoch``, ``loss`` (mean over its batches), ``seconds``.

    Raises
    ------
    InputError
        ``net`` not a KinnNet; unknown loss; bad sizes, seed, solver, profile,
        ``rail_weight`` or ``rail_margin``; ``X`` not a non-empty ``(n, d)`` array of
        finite real numbers of the net's width (the message names the row of ``X``); or
        targets that do not fit (the row of ``Y``). All are checked before the net changes.
    TrainingDivergedError
        A step's loss or gradient is not finite (the parameters are left as they were
        before that step).
    """
    # every argument is checked before anything changes the net (the log_g projection
    # below, the first step), so that a refused call leaves the net as it was
    require_kinn(net, "kinn.fit", "kirchhoff_sim.training.train")
    as_choice(loss, "loss", LOSSES)
    epochs = as_int(epochs, "epochs", minimum=1)
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    seed = as_int(seed, "seed", minimum=0)
    rail_weight = as_real(rail_weight, "rail_weight", minimum=0.0)
    rail_margin = as_real(rail_margin, "rail_margin", minimum=0.0, exclusive_minimum=True, maximum=1.0)
    _explicit(solver)
    X = net.checked_inputs(X)
    Y = _checked_targets(net, Y, loss, len(X))
    rail, window = (None, None) if profile is None else profile_limits(net, profile, rail_margin)
    optimiser = Adam(net.parameters, lr=lr, schedule=CosineSchedule(epochs))
    if window is not None:
        np.clip(net.log_g, *window, out=net.log_g)
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
            where = f"KINN training: epoch {epoch}, batch {a // batch_size}"
            try:
                grad = gradient(net, X[batch], bind(LOSSES[loss], Y[batch]), solver=solver, rail=rail,
                                rail_weight=rail_weight)
            except TrainingDivergedError as exc:
                raise TrainingDivergedError(f"{where}: {exc}") from None
            if not np.isfinite(grad.value) or not all(np.all(np.isfinite(g)) for g in grad.grads):
                raise TrainingDivergedError(f"{where}: the loss or its gradient is not finite")
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
    cross-entropy (:func:`checked_labels`), ``(n, n_out)`` finite real targets for the
    squared error. A bad entry is named by its row."""
    if loss != "mse":
        return checked_labels(Y, n, net.num_outputs)
    Y = as_real_array(Y, "targets Y")
    if Y.shape != (n, net.num_outputs):
        raise InputError(f"targets Y must be ({n}, {net.num_outputs}) for the read-out, got {Y.shape}")
    return Y


def checked_labels(y, n: int, classes: int, name: str = "Y") -> np.ndarray:
    """Class labels ``name`` of ``n`` samples as int64 ``(n,)``, each in ``0..classes−1``.

    As the data sets' labels (:mod:`kirchhoff_sim.training.datasets`): integers or
    whole-valued floats, a column ``(n, 1)`` taken as ``(n,)``; booleans, strings, NaN,
    fractions and labels outside the read-out are refused, naming the first bad row.

    Raises
    ------
    InputError
        As above, or not ``n`` labels.
    """
    try:
        y = np.asarray(y)
    except (TypeError, ValueError):
        raise InputError(f"labels {name} must be a (n,) array of integer class indices (ragged or mixed input)") from None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]                        # a column of labels is still one label per sample
    if y.ndim != 1:
        raise InputError(f"labels {name} must be ({n},) integer class indices, got shape {y.shape}")
    if len(y) != n:
        raise InputError(f"X has {n} samples but {name} has {len(y)}")
    if y.dtype.kind not in "iuf":
        raise InputError(f"labels {name} must be ({n},) integer class indices, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if bad.size:
            raise InputError(f"labels {name} must be integer class indices; row {bad[0]} is {y[bad[0]]}")
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if bad.size:
        raise InputError(f"labels must lie in 0..{classes - 1} (the read-out has {classes} channels); "
                         f"row {bad[0]} of {name} is {y[bad[0]]}")
    return y.astype(np.int64)


def predict(net, X, solver=None, batch_size: int = 512) -> np.ndarray:
    """The read-out ``(n, n_out)`` of ``X`` ``(n, d)``, in batches of ``batch_size``.

    Raises
    ------
    InputError
        ``net`` not a KinnNet, ``X`` not a non-empty ``(n, d)`` array of finite real
        numbers of the net's width (the message names the row of ``X``, whatever the
        batch), or a bad ``batch_size``.
    SimulationError
        As :func:`~.transient.simulate`.
    """
    require_kinn(net, "kinn.fit.predict", "kirchhoff_sim.inference.readouts")
    batch_size = as_int(batch_size, "batch_size", minimum=1)
    X = net.checked_inputs(X)
    return np.concatenate([outputs(net, X[a:a + batch_size], solver=solver)
                           for a in range(0, len(X), batch_size)])
