"""scikit-learn estimators: a KirchhoffNet that drops into ``Pipeline`` and
``cross_val_score``.

Every constructor argument is a plain hyper-parameter stored as given (scikit-learn's
contract, so ``get_params``/``set_params``/``clone`` work); ``fit`` checks them (through
:class:`~kirchhoff_sim.training.trainer.TrainConfig` and
:func:`~kirchhoff_sim.training.models.build_net`, which name the bad one), builds the net
and trains it with :func:`~kirchhoff_sim.training.trainer.train`.

Input data go through scikit-learn's ``validate_data``: any real ``X`` (float32 and
integers included) is cast to float64; complex, sparse, 1-D, empty or non-finite ``X``
and a feature count other than the fitted one are refused. Those refusals, and the
classifier's single-class ``y``, raise :class:`~kirchhoff_sim.errors.InputError` (a
``ValueError``) with scikit-learn's message; sparse and non-numeric input keep
scikit-learn's ``TypeError``.

``profile=`` trains against a technology profile, as ``kirchhoff-sim train --profile``
(:mod:`~kirchhoff_sim.training.constraints`): every conductance 0 or inside the window on
the programming grid, offsets within the rails, mismatch injected each step
(``constraints`` overrides :data:`~kirchhoff_sim.training.constraints.RECOMMENDED`); the
fitted estimator's ``profile_`` holds the profile with the V0 fitted to keep the net within
the rails and its current limit. The task presets pair it with layers of duration 0.05 (a
conductance of at least g_min is a time constant C/g ≤ 1).

``shards``, ``workers`` and ``scheduler`` train data-parallel
(:mod:`~kirchhoff_sim.training.data_parallel`): each minibatch's gradient in ``shards``
pieces, run on a local Dask cluster of ``workers`` processes or on the cluster of the
``scheduler`` address (one started and stopped per ``fit``), with the same result as
``shards`` pieces trained here. Prediction runs here.

Both estimators pass scikit-learn's ``parametrize_with_checks`` (``tests/test_estimators.py``)
with a fixed-step solver. With the default adaptive solver the step size is shared by the
batch, so a sample's prediction depends on the other samples in ``X`` at the level of
``rtol``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, DensityMixin, MultiOutputMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..errors import InputError, KirchhoffError
from ..flows import log_likelihood, sample
from ..solvers import DEFAULT_SOLVER, make_solver, simulate
from ..technology import as_profile
from .constraints import RECOMMENDED, HardwareConstraints
from .datasets import Dataset
from .losses import FLOW_LOSS
from .models import build_flow_net, build_net
from .trainer import TrainConfig, train


@contextmanager
def _refusals_as_input_errors():
    """Re-raise scikit-learn's ``ValueError`` for bad data as :class:`InputError`."""
    try:
        yield
    except ValueError as exc:
        if isinstance(exc, KirchhoffError):
            raise
        raise InputError(str(exc)) from exc


class _NetEstimator(BaseEstimator):
    """What every estimator holding a fitted ``net_`` shares: pickling without the
    net's cached assemblies, and the Dask runner of ``workers``/``scheduler``."""

    def __getstate__(self):
        # The fitted net caches its compiled layer assemblies, whose scratch arrays are
        # rewritten at every evaluation. Pickle a copy without them, so that a read-only
        # memory-mapped load (joblib.load(..., mmap_mode="r"), joblib's parallel workers)
        # rebuilds fresh, writable ones when it first predicts.
        state = dict(super().__getstate__())     # a copy: Python's is the live __dict__
        if "net_" in state:
            state["net_"] = state["net_"].with_parameters()
        return state

    @contextmanager
    def _executor(self):
        """The Dask runner ``workers``/``scheduler`` ask for, started for one ``fit``; None
        (train here) without either."""
        if self.workers is not None and self.scheduler is not None:
            raise InputError(f"{type(self).__name__}: workers= sizes a local Dask cluster; it cannot go "
                             f"with scheduler=")
        if self.workers is None and self.scheduler is None:
            yield None
            return
        from ..hardware.distributed import DaskRunner      # Dask imports slowly: only when asked for

        with DaskRunner(self.scheduler, n_workers=1 if self.workers is None else self.workers) as runner:
            yield runner


class _KirchhoffEstimator(_NetEstimator):
    _loss = "cross_entropy"
    dtype = "float64"           # what an estimator pickled before ``dtype`` existed runs in

    def __init__(self, hidden=8, layers=2, duration=1.0, device="ShiftedReLU",
                 topology="fully_connected", image_shape=None, window=3, epochs=20,
                 batch_size=64, lr=1e-2, optimizer="adam", weight_decay=0.0, schedule="cosine",
                 method=DEFAULT_SOLVER["method"], rtol=DEFAULT_SOLVER["rtol"],
                 atol=DEFAULT_SOLVER["atol"], dt=None, validation_fraction=0.0,
                 seed=0, verbose=False, profile=None, constraints=None, shards=1, workers=None,
                 scheduler=None, dtype="float64"):
        self.hidden, self.layers, self.duration, self.device = hidden, layers, duration, device
        self.topology, self.image_shape, self.window = topology, image_shape, window
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.optimizer, self.weight_decay, self.schedule = optimizer, weight_decay, schedule
        self.method, self.rtol, self.atol, self.dt = method, rtol, atol, dt
        self.validation_fraction, self.seed, self.verbose = validation_fraction, seed, verbose
        self.profile, self.constraints = profile, constraints
        self.shards, self.workers, self.scheduler = shards, workers, scheduler
        self.dtype = dtype

    def _train_config(self) -> TrainConfig:
        """The training run the hyper-parameters describe (InputError names a bad one)."""
        solver = ({"method": self.method, "dt": self.dt} if self.dt is not None
                  else {"method": self.method, "rtol": self.rtol, "atol": self.atol})
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, weight_decay=self.weight_decay,
                           schedule=self.schedule, validation_fraction=self.validation_fraction,
                           seed=self.seed, loss=self._loss, solver=solver, constraints=self._hardware(),
                           shards=self.shards, dtype=self.dtype)

    def _hardware(self) -> HardwareConstraints | None:
        """The constraints ``profile``/``constraints`` describe (InputError names a bad one)."""
        if self.profile is None:
            if self.constraints is not None:
                raise InputError(f"{type(self).__name__}: constraints={self.constraints!r} need a profile "
                                 f"(profile='default', a profile file or a TechnologyProfile)")
            return None
        profile = as_profile(self.profile, f"{type(self).__name__}.profile")
        if self.constraints is not None and not isinstance(self.constraints, dict):
            raise InputError(f"{type(self).__name__}.constraints must be a dict of HardwareConstraints "
                             f"options, got {type(self.constraints).__name__}")
        options = {**RECOMMENDED, **(self.constraints or {})}
        if "profile" in options:
            raise InputError(f"{type(self).__name__}.constraints: give the profile as profile=, not in "
                             f"constraints")
        unknown = sorted(str(key) for key in set(options) - set(HardwareConstraints.__dataclass_fields__))
        if unknown:
            raise InputError(f"{type(self).__name__}.constraints: unknown option(s) {unknown}")
        return HardwareConstraints(profile=profile, **options)

    def _fit(self, config, X, y_encoded, n_outputs, n_classes):
        """Build the net for ``X`` ``(n_samples, n_features)`` and train it on ``y_encoded``."""
        for stale in ("profile_", "voltage_unit_note_"):      # a refit without a profile has none
            self.__dict__.pop(stale, None)
        self.net_ = build_net(X.shape[1], n_outputs, hidden=self.hidden, layers=self.layers,
                              duration=self.duration, device=self.device, topology=self.topology,
                              image_shape=self.image_shape, window=self.window, seed=config.seed)
        data = Dataset("fit", X, y_encoded, X[:0], y_encoded[:0], n_classes)
        with self._executor() as runner:
            self.history_ = train(self.net_, data, config, progress=self.verbose,
                                  log=print if self.verbose else None, executor=runner).history
        self.solver_spec_ = dict(config.solver)
        self.dtype_ = config.dtype
        hardware = config.hardware()
        if hardware is not None:
            from ..hardware.fit import fit_voltage_unit     # the hardware package imports slowly

            self.profile_, self.voltage_unit_note_ = fit_voltage_unit(self.net_, X, hardware.profile)
        return self

    def _readout(self, X) -> np.ndarray:
        """Read-out voltages at ``T``, ``(n_samples, n_outputs)``, for ``X`` ``(n_samples, n_features_in_)``."""
        check_is_fitted(self, "net_")
        with _refusals_as_input_errors():
            X = validate_data(self, X, reset=False, dtype=np.float64)
        # in the precision it was fitted in (one fitted before dtype_ existed: float64)
        return simulate(self.net_, X, solver=make_solver(**self.solver_spec_),
                        dtype=getattr(self, "dtype_", "float64")).readout(self.net_)


class KirchhoffClassifier(ClassifierMixin, _KirchhoffEstimator):
    """A KirchhoffNet classifier: one read-out node per class, softmax of the voltages.

    Parameters are those of :func:`~kirchhoff_sim.training.models.build_net` (net shape)
    and :class:`~kirchhoff_sim.training.trainer.TrainConfig` (training), plus the solver
    (``method``, ``rtol``/``atol`` or ``dt``), and to train against a technology profile
    ``profile`` (``"default"``, a profile file or a
    :class:`~kirchhoff_sim.technology.TechnologyProfile`) with ``constraints`` (a dict of
    :class:`~kirchhoff_sim.training.constraints.HardwareConstraints` options over
    :data:`~kirchhoff_sim.training.constraints.RECOMMENDED`); ``shards`` (TrainConfig's),
    ``workers`` (int) or ``scheduler`` (an address) to train on Dask (module docstring);
    ``dtype`` ("float64" or "float32", TrainConfig's) the working precision of training
    and of every prediction.

    Attributes
    ----------
    classes_ : ndarray, shape (n_classes,)
        The labels seen in ``fit``, sorted; read-out node ``k`` scores ``classes_[k]``.
    net_ : KirchhoffNet
        The trained net.
    history_ : list of dict
        One record per epoch (see :func:`~kirchhoff_sim.training.trainer.train`).
    solver_spec_ : dict
        The solver of training, used by every prediction.
    dtype_ : str
        The working precision of training, used by every prediction.
    profile_ : TechnologyProfile
        Only with ``profile``: the profile with the V0 fitted to the trained net
        (:func:`~kirchhoff_sim.hardware.fit.fit_voltage_unit`); ``voltage_unit_note_`` says
        how it was chosen.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, shape (n_features_in_,)
        Only when ``X`` had string column names (a DataFrame).
    """

    def fit(self, X, y):
        """Train a net with one read-out node per class.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Real features; float32 or integer values are cast to float64.
        y : array-like, shape (n_samples,)
            Class labels of any sortable kind (ints, strings), at least two distinct.

        Returns
        -------
        self : KirchhoffClassifier

        Raises
        ------
        InputError
            A bad hyper-parameter (named), bad data, or fewer than two classes in ``y``.
        TrainingDivergedError
            The loss or its gradient stopped being finite.
        """
        config = self._train_config()
        with _refusals_as_input_errors():
            X, y = validate_data(self, X, y, dtype=np.float64)
            check_classification_targets(y)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise InputError(f"KirchhoffClassifier needs at least two classes; y has 1 class "
                             f"({self.classes_[0]!r})")
        n_classes = len(self.classes_)
        return self._fit(config, X, encoded.astype(np.int64), n_classes, n_classes)

    def decision_function(self, X):
        """Class scores: the read-out voltages at ``T`` (the logits).

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features_in_)

        Returns
        -------
        scores : ndarray, shape (n_samples,) for two classes, else (n_samples, n_classes)
            For two classes, scikit-learn's binary convention: the score of
            ``classes_[1]``, its logit minus that of ``classes_[0]`` (the log-odds;
            positive means ``classes_[1]``), so that ``roc_auc`` scoring works.
        """
        logits = self._readout(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X):
        """Softmax of the logits: ``(n_samples, n_classes)``, rows summing to 1."""
        return softmax(self._readout(X), axis=1)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed stably: ``(n_samples, n_classes)``."""
        return log_softmax(self._readout(X), axis=1)

    def predict(self, X):
        """The label of the largest logit, ``(n_samples,)``, drawn from ``classes_``."""
        logits = self._readout(X)        # checks fitting before classes_ is touched
        return self.classes_[logits.argmax(axis=1)]


class KirchhoffRegressor(MultiOutputMixin, RegressorMixin, _KirchhoffEstimator):
    """A KirchhoffNet regressor: the read-out voltages are the prediction (MSE loss).

    One read-out node per target column; parameters (``dtype`` too) as
    :class:`KirchhoffClassifier`.

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.
    net_, history_, solver_spec_, dtype_, n_features_in_, feature_names_in_
        As :class:`KirchhoffClassifier`.
    """

    _loss = "mse"

    def fit(self, X, y):
        """Train a net with one read-out node per target.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Real features; float32 or integer values are cast to float64.
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
            Real targets.

        Returns
        -------
        self : KirchhoffRegressor

        Raises
        ------
        InputError
            A bad hyper-parameter (named) or bad data.
        TrainingDivergedError
            The loss or its gradient stopped being finite.
        """
        config = self._train_config()
        with _refusals_as_input_errors():
            X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._single_output = y.ndim == 1
        Y = y.reshape(len(y), -1).astype(np.float64)
        self.n_outputs_ = Y.shape[1]
        return self._fit(config, X, Y, self.n_outputs_, None)

    def predict(self, X):
        """Read-out voltages at ``T``: ``(n_samples,)`` if ``y`` was 1-D in ``fit``, else
        ``(n_samples, n_outputs_)``."""
        out = self._readout(X)
        return out[:, 0] if self._single_output else out


class KirchhoffFlow(DensityMixin, _NetEstimator):
    """A KirchhoffNet continuous normalising flow: a density estimator
    (:mod:`kirchhoff_sim.flows`), trained by maximum likelihood with the exact discrete
    adjoint of its log-density.

    Parameters are those of :func:`~kirchhoff_sim.training.models.build_flow_net` (``layers``,
    ``duration``, ``device``, ``repeat``: one node per feature, fully connected with
    ground) and of :class:`~kirchhoff_sim.training.trainer.TrainConfig`, plus the solver
    (an explicit method: ``method``, ``rtol``/``atol`` or ``dt``) and, as the other
    estimators, ``shards``/``workers``/``scheduler`` to train on Dask. The defaults are
    the reference's toy-density flow (:data:`~kirchhoff_sim.training.tasks.FLOW_TASK`).

    Attributes
    ----------
    net_ : KirchhoffNet
    history_ : list of dict
        One record per epoch (``train_loss`` is the negative log-likelihood, nats per point).
    solver_spec_ : dict
    n_features_in_ : int
    """

    def __init__(self, layers=2, duration=0.5, device="AffineTanh", repeat=(25, 25), epochs=30,
                 batch_size=256, lr=5e-3, optimizer="adam", weight_decay=0.0, schedule="cosine",
                 method="dopri5", rtol=1e-4, atol=1e-6, dt=None, seed=0, verbose=False, shards=1,
                 workers=None, scheduler=None):
        self.layers, self.duration, self.device, self.repeat = layers, duration, device, repeat
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.optimizer, self.weight_decay, self.schedule = optimizer, weight_decay, schedule
        self.method, self.rtol, self.atol, self.dt = method, rtol, atol, dt
        self.seed, self.verbose = seed, verbose
        self.shards, self.workers, self.scheduler = shards, workers, scheduler

    def fit(self, X, y=None):
        """Train a flow on the points ``X`` ``(n_samples, n_features)`` (``y`` is ignored).

        Raises
        ------
        InputError
            A bad hyper-parameter (named), bad data, or an implicit solver.
        TrainingDivergedError
            The likelihood or its gradient stopped being finite.
        """
        solver = ({"method": self.method, "dt": self.dt} if self.dt is not None
                  else {"method": self.method, "rtol": self.rtol, "atol": self.atol})
        if getattr(make_solver(**solver), "implicit", False):
            raise InputError(f"KirchhoffFlow needs an explicit method (dopri5, rk4, heun, euler), got {self.method!r}")
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                             weight_decay=self.weight_decay, schedule=self.schedule, validation_fraction=0.0,
                             seed=self.seed, loss=FLOW_LOSS, solver=solver, shards=self.shards)
        with _refusals_as_input_errors():
            X = validate_data(self, X, dtype=np.float64)
        self.net_ = build_flow_net(X.shape[1], layers=self.layers, duration=self.duration, device=self.device,
                                   repeat=self.repeat, seed=self.seed)
        no_targets = np.zeros((len(X), 0))
        data = Dataset("fit", X, no_targets, X[:0], no_targets[:0], None)
        with self._executor() as runner:
            self.history_ = train(self.net_, data, config, progress=self.verbose,
                                  log=print if self.verbose else None, executor=runner).history
        self.solver_spec_ = dict(config.solver)
        return self

    def score_samples(self, X):
        """``log p(x)`` of each point (natural log), ``(n_samples,)``."""
        check_is_fitted(self, "net_")
        with _refusals_as_input_errors():
            X = validate_data(self, X, reset=False, dtype=np.float64)
        return log_likelihood(self.net_, X, solver=make_solver(**self.solver_spec_))

    def score(self, X, y=None):
        """Mean log-likelihood of ``X`` (nats per point)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """``n_samples`` points of the flow, ``(n_samples, n_features_in_)``: base points from
        ``N(0, I)`` (``random_state``: a seed or a Generator) run forward."""
        check_is_fitted(self, "net_")
        return sample(self.net_, n_samples, rng=random_state, solver=make_solver(**self.solver_spec_))[0]
