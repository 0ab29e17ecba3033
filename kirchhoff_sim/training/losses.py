"""Losses on the read-out voltages: each returns ``(value, ∂value/∂readout)``.

The read-out voltages at ``T`` are the logits (classification) or the prediction
(regression). Both losses average over the batch, as torch's defaults do.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from ..errors import InputError
from ..flows import POTENTIALS, log_likelihood, nll_gradient, reverse_kl, reverse_kl_gradient


def cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean softmax cross-entropy of ``logits`` (B, K) against integer ``labels`` (B,)."""
    logits = np.asarray(logits, dtype=float)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InputError(f"cross_entropy needs logits (B, K) and labels (B,), got {logits.shape} and {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputError("labels must be integer class indices")
        labels = labels.astype(np.int64)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise InputError(f"labels must lie in 0..{logits.shape[1] - 1} (the read-out has {logits.shape[1]} nodes)")
    B = logits.shape[0]
    with np.errstate(under="ignore"):      # exp of a very negative logit is exactly 0 here
        logp = log_softmax(logits, axis=1)
        grad = softmax(logits, axis=1)
    value = -logp[np.arange(B), labels].mean()
    grad[np.arange(B), labels] -= 1.0
    return float(value), grad / B


def mean_squared_error(prediction: np.ndarray, target: np.ndarray):
    """Mean over all entries of ``(prediction − target)²``."""
    prediction = np.asarray(prediction, dtype=float)
    target = np.asarray(target, dtype=float)
    if target.ndim == 1 and prediction.ndim == 2 and prediction.shape[1] == 1:
        target = target[:, None]           # one output: a (B,) target is (B, 1)
    if target.shape != prediction.shape:
        raise InputError(f"target has shape {target.shape}, the prediction {prediction.shape}")
    diff = prediction - target
    return float(np.mean(diff ** 2)), 2.0 * diff / diff.size


#: the losses by the names a :class:`~kirchhoff_sim.training.trainer.TrainConfig` gives them
LOSSES = {"cross_entropy": cross_entropy, "mse": mean_squared_error}
#: a flow's negative log-likelihood (:func:`kirchhoff_sim.flows.nll_gradient`): a loss on
#: the whole run, not on the read-out, so it is not among :data:`LOSSES`
FLOW_LOSS = "nll"
#: a flow fitted to a potential by reverse KL (:func:`kirchhoff_sim.flows.reverse_kl_gradient`):
#: loss name → potential; its "data" are draws of the base density
KL_LOSSES = {f"reverse_kl:{name}": name for name in POTENTIALS}


def flow_loss_name(task: str) -> str:
    """The training loss of a flow on ``task``: a potential's reverse KL, else ``nll``."""
    return f"reverse_kl:{task}" if task in POTENTIALS else FLOW_LOSS
FLOW_LOSSES = (FLOW_LOSS, *KL_LOSSES)
TRAINING_LOSSES = tuple(LOSSES) + FLOW_LOSSES


def flow_loss_gradient(net, loss: str, x, solver, max_batch=None):
    """A flow loss of :data:`FLOW_LOSSES` on points ``x`` ``(B, N)`` (data for ``nll``,
    base draws for a reverse KL) and its exact gradient: a
    :class:`~kirchhoff_sim.flows.FlowGradient`."""
    if loss == FLOW_LOSS:
        return nll_gradient(net, x, solver=solver, max_batch=max_batch)
    return reverse_kl_gradient(net, KL_LOSSES[loss], x, solver=solver, max_batch=max_batch)


def flow_loss(net, loss: str, x, solver, max_batch=None) -> float:
    """The value of :func:`flow_loss_gradient`'s loss, without the gradient."""
    if loss == FLOW_LOSS:
        return -float(np.mean(log_likelihood(net, x, solver=solver, max_batch=max_batch)))
    return float(np.mean(reverse_kl(net, KL_LOSSES[loss], x, solver=solver, max_batch=max_batch)))


def bind(loss, target):
    """``loss`` with its target fixed: the ``readout -> (value, grad)`` form gradients take."""
    return lambda readout: loss(readout, target)
