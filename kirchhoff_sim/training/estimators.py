"""scikit-learn estimators: a KirchhoffNet that drops into ``Pipeline`` and
``cross_val_score``.

Every constructor argument is a plain hyper-parameter stored as given (scikit-learn's
contract, so ``get_params``/``set_params``/``clone`` work); ``fit`` builds the net with
:func:`~kirchhoff_sim.training.models.build_net` and trains it with
:func:`~kirchhoff_sim.training.trainer.train`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from ..solvers import DEFAULT_SOLVER, make_solver, simulate
from .datasets import Dataset
from .models import build_net
from .trainer import TrainConfig, train


class _KirchhoffEstimator(BaseEstimator):
    _loss = "cross_entropy"

    def __init__(self, hidden=8, layers=2, duration=1.0, device="ShiftedReLU",
                 topology="fully_connected", image_shape=None, window=3, epochs=20,
                 batch_size=64, lr=1e-2, optimizer="adam", weight_decay=0.0, schedule="cosine",
                 method=DEFAULT_SOLVER["method"], rtol=DEFAULT_SOLVER["rtol"],
                 atol=DEFAULT_SOLVER["atol"], dt=None, validation_fraction=0.0,
                 seed=0, verbose=False):
        self.hidden, self.layers, self.duration, self.device = hidden, layers, duration, device
        self.topology, self.image_shape, self.window = topology, image_shape, window
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.optimizer, self.weight_decay, self.schedule = optimizer, weight_decay, schedule
        self.method, self.rtol, self.atol, self.dt = method, rtol, atol, dt
        self.validation_fraction, self.seed, self.verbose = validation_fraction, seed, verbose

    def _solver_spec(self):
        if self.dt is not None:
            return {"method": self.method, "dt": self.dt}
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol}

    def _fit(self, X, y_encoded, n_outputs, n_classes):
        self.net_ = build_net(X.shape[1], n_outputs, hidden=self.hidden, layers=self.layers,
                              duration=self.duration, device=self.device, topology=self.topology,
                              image_shape=self.image_shape, window=self.window, seed=self.seed)
        empty_y = y_encoded[:0]
        data = Dataset("fit", X, y_encoded, X[:0], empty_y, n_classes)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             optimizer=self.optimizer, weight_decay=self.weight_decay,
                             schedule=self.schedule, validation_fraction=self.validation_fraction,
                             seed=self.seed, loss=self._loss, solver=self._solver_spec())
        self.history_ = train(self.net_, data, config, progress=self.verbose,
                              log=print if self.verbose else None).history
        self.n_features_in_ = X.shape[1]
        return self

    def _readout(self, X):
        check_is_fitted(self, "net_")
        X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, the estimator was fitted with {self.n_features_in_}")
        return simulate(self.net_, X, solver=make_solver(**self._solver_spec())).readout(self.net_)


class KirchhoffClassifier(ClassifierMixin, _KirchhoffEstimator):
    """A KirchhoffNet classifier: one read-out node per class, softmax of the voltages.

    Parameters are those of :func:`~kirchhoff_sim.training.models.build_net` (net shape)
    and :class:`~kirchhoff_sim.training.trainer.TrainConfig` (training), plus the solver
    (``method``, ``rtol``/``atol`` or ``dt``).
    """

    def fit(self, X, y):
        X, y = check_X_y(X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("KirchhoffClassifier needs at least two classes")
        return self._fit(X, encoded.astype(np.int64), len(self.classes_), len(self.classes_))

    def decision_function(self, X):
        """Read-out voltages at ``T`` (the logits), ``(n_samples, n_classes)``."""
        return self._readout(X)

    def predict_proba(self, X):
        return softmax(self._readout(X), axis=1)

    def predict(self, X):
        scores = self._readout(X)        # checks fitting before classes_ is touched
        return self.classes_[scores.argmax(axis=1)]


class KirchhoffRegressor(RegressorMixin, _KirchhoffEstimator):
    """A KirchhoffNet regressor: the read-out voltages are the prediction (MSE loss)."""

    _loss = "mse"

    def fit(self, X, y):
        X, y = check_X_y(X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._single_output = y.ndim == 1
        Y = y.reshape(len(y), -1).astype(np.float64)
        return self._fit(X, Y, Y.shape[1], None)

    def predict(self, X):
        out = self._readout(X)
        return out[:, 0] if self._single_output else out
