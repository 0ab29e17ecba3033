"""Losses on the read-out voltages: each returns ``(value, ∂value/∂readout)``.

The read-out voltages at ``T`` are the logits (classification) or the prediction
(regression). Both losses average over the batch, as torch's defaults do.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax, softmax

from ..errors import InputError


def cross_entropy(logits: np.ndarray, labels: np.ndarray):
    """Mean softmax cross-entropy of ``logits`` (B, K) against integer ``labels`` (B,)."""
    logits = np.asarray(logits, dtype=float)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise InputError(f"cross_entropy needs logits (B, K) and labels (B,), got {logits.shape} and {labels.shape}")
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= logits.shape[1]:
        raise InputError(f"labels must lie in 0..{logits.shape[1] - 1} (the read-out has {logits.shape[1]} nodes)")
    B = logits.shape[0]
    logp = log_softmax(logits, axis=1)
    value = -logp[np.arange(B), labels].mean()
    grad = softmax(logits, axis=1)
    grad[np.arange(B), labels] -= 1.0
    return float(value), grad / B


def mean_squared_error(prediction: np.ndarray, target: np.ndarray):
    """Mean over all entries of ``(prediction − target)²``."""
    prediction = np.asarray(prediction, dtype=float)
    target = np.asarray(target, dtype=float).reshape(prediction.shape) if np.size(target) == prediction.size else None
    if target is None:
        raise InputError(f"target must have the prediction's shape {prediction.shape}")
    diff = prediction - target
    return float(np.mean(diff ** 2)), 2.0 * diff / diff.size


def bind(loss, target):
    """``loss`` with its target fixed: the ``readout -> (value, grad)`` form gradients take."""
    return lambda readout: loss(readout, target)
