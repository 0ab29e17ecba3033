"""The training loop: minibatch Adam/AdamW on adjoint gradients, with checkpoints.

Reproducibility is by construction: the validation split is drawn from ``seed``, each
epoch's shuffle from ``(seed, epoch)``, and a checkpoint holds the parameters, the
optimiser's moments and the history exactly (float64, no pickle). Resuming from the
last checkpoint therefore continues bit-for-bit as the uninterrupted run would have.

Each step's gradient is computed in ``config.shards`` pieces
(:mod:`~kirchhoff_sim.training.data_parallel`), here or, with ``executor=`` a
:class:`~kirchhoff_sim.hardware.distributed.DaskRunner`, on a Dask cluster, with the same
result bit for bit. A cluster lost mid-epoch ends the run with
:class:`~kirchhoff_sim.errors.ClusterLostError` after writing a checkpoint of the last
finished step, from which ``resume=True`` continues, here or on another cluster, as the
uninterrupted run would have.

A step whose loss or gradient is not finite, or whose simulation fails, raises
:class:`~kirchhoff_sim.errors.TrainingDivergedError` naming the epoch and batch; the
parameters are left as they were before that step.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..checks import as_choice, as_int, as_positive, as_real
from ..errors import ClusterLostError, InputError, ModelFileError, SimulationError, TrainingDivergedError
from ..executors import as_runner
from ..inference import DEFAULT_CHUNK_SIZE, readouts
from ..modelfile import read_model_file, save_net
from ..solvers import default_solver_spec, make_solver
from ..solvers.precision import check_precision, require_float64
from .datasets import Dataset, minibatches, train_validation_split
from .constraints import HardwareConstraints
from .data_parallel import ShardedGradient
from .losses import FLOW_LOSSES, LOSSES, TRAINING_LOSSES, flow_loss
from .optim import Adam, AdamW, ConstantSchedule, CosineSchedule, StepSchedule

_OPTIMIZER_PREFIX = "optimizer/"   # checkpoint arrays holding the optimiser state
_LATENT_PREFIX = "latent/"         # ... and the latents of a constrained run
#: what a checkpoint written before TrainConfig.shards and TrainConfig.dtype ran with
_BEFORE_NEWER_FIELDS = {"shards": 1, "dtype": "float64"}
_FLOW_FLOAT64 = "its log-density sums a trace over every step"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint).

    ``solver`` is a spec for :func:`~kirchhoff_sim.solvers.make_solver`; the default is
    :data:`~kirchhoff_sim.solvers.DEFAULT_SOLVER` (Dopri5, rtol 1e-4, atol 1e-6).
    ``shards`` is the number of pieces each minibatch's gradient is computed in
    (:mod:`~kirchhoff_sim.training.data_parallel`), 1 to ``batch_size``: the jobs a
    cluster runs in parallel. It is part of the run (each piece gets its own adaptive
    step grid), so the same ``shards`` gives the same result wherever the pieces run.
    ``dtype`` ("float64" or "float32") is the working precision of every forward run and
    adjoint sweep (:mod:`~kirchhoff_sim.solvers.precision`); the parameters, their
    gradients and the optimiser's state stay float64 (the master copy), as mixed-precision
    training keeps them. Flow losses run in float64 only.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    step_size: int = 10
    gamma: float = 0.3
    validation_fraction: float = 0.1
    seed: int = 0
    loss: str = "cross_entropy"
    checkpoint_every: int = 1
    solver: dict = field(default_factory=default_solver_spec)
    #: :meth:`HardwareConstraints.to_dict` of a run trained against a technology profile
    constraints: dict | None = None
    shards: int = 1
    dtype: str = "float64"

    def __post_init__(self):
        as_choice(self.optimizer, "optimizer", ("adam", "adamw"))
        as_choice(self.schedule, "schedule", ("constant", "step", "cosine"))
        as_choice(self.loss, "loss", TRAINING_LOSSES)
        for name in ("epochs", "batch_size", "checkpoint_every", "step_size", "shards"):
            setattr(self, name, as_int(getattr(self, name), f"TrainConfig.{name}", minimum=1))
        if self.shards > self.batch_size:
            raise InputError(f"TrainConfig.shards ({self.shards}) cannot exceed the batch size ({self.batch_size}): "
                             f"every shard needs a sample")
        self.seed = as_int(self.seed, "TrainConfig.seed", minimum=0)
        self.lr = as_positive(self.lr, "TrainConfig.lr")
        self.weight_decay = as_real(self.weight_decay, "TrainConfig.weight_decay", minimum=0.0)
        self.gamma = as_real(self.gamma, "TrainConfig.gamma", minimum=0.0, maximum=1.0,
                             exclusive_minimum=True)
        self.validation_fraction = as_real(self.validation_fraction, "TrainConfig.validation_fraction",
                                           minimum=0.0, maximum=1.0)
        if self.validation_fraction >= 1.0:
            raise InputError(f"TrainConfig.validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not isinstance(self.solver, dict):
            raise InputError(f"TrainConfig.solver must be a dict for make_solver, got {self.solver!r}")
        try:
            solver = make_solver(**self.solver)     # fail now, not at the first batch
        except TypeError as exc:
            raise InputError(f"TrainConfig.solver {self.solver!r} is not a solver spec: {exc}") from None
        self.dtype = check_precision(solver, self.dtype).name
        if self.loss in FLOW_LOSSES:
            require_float64(self.dtype, f"a flow's loss ({self.loss})", _FLOW_FLOAT64)
        if isinstance(self.constraints, HardwareConstraints):
            self.constraints = self.constraints.to_dict()
        if self.constraints is not None:
            # validates, and normalises to the stored form so that resume compares like with like
            self.constraints = HardwareConstraints.from_dict(self.constraints).to_dict()

    def hardware(self) -> "HardwareConstraints | None":
        """The :class:`~kirchhoff_sim.training.constraints.HardwareConstraints`, if any."""
        return None if self.constraints is None else HardwareConstraints.from_dict(self.constraints)

    def make_optimizer(self, params):
        schedule = {"constant": ConstantSchedule(),
                    "step": StepSchedule(self.step_size, self.gamma),
                    "cosine": CosineSchedule(self.epochs)}[self.schedule]
        cls = AdamW if self.optimizer == "adamw" else Adam
        return cls(params, lr=self.lr, weight_decay=self.weight_decay, schedule=schedule)


def evaluate(net, X, y, loss: str = "cross_entropy", solver=None, batch_size: int = DEFAULT_CHUNK_SIZE,
             executor=None, dtype=None) -> dict:
    """Loss (and accuracy for classification) of ``net`` on ``(X, y)``.

    The read-out is simulated in chunks of ``batch_size`` samples
    (:func:`~kirchhoff_sim.inference.readouts`), here or on ``executor``'s cluster, with
    the same result, in the working precision ``dtype`` (flows: float64 only).

    Raises
    ------
    InputError
        Bad ``X``, ``y`` or ``loss``.
    SimulationError
        A chunk's simulation failed.
    ClusterLostError
        ``executor``'s cluster went away.
    """
    if loss not in TRAINING_LOSSES:
        raise InputError(f"unknown loss {loss!r}; use one of {list(TRAINING_LOSSES)}")
    if loss in FLOW_LOSSES:         # a flow: the data's negative log-likelihood or a reverse KL (y unused)
        require_float64(dtype, f"a flow's loss ({loss})", _FLOW_FLOAT64)
        return {"loss": flow_loss(net, loss, X, solver, max_batch=batch_size)}
    out = readouts(net, X, solver=solver, chunk_size=batch_size, executor=executor, dtype=dtype)
    value, _ = LOSSES[loss](out, y)
    result = {"loss": value}
    if loss == "cross_entropy":
        result["accuracy"] = float(np.mean(out.argmax(axis=1) == y))
    return result


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained net, one record per epoch, the config and
    the optimiser (its state is what a checkpoint stores to resume)."""

    net: object
    history: list
    config: TrainConfig
    optimizer: object = None
    epochs_run: int = 0          # epochs trained by this call (0: a resumed run was complete)
    checkpoint_arrays: dict = field(default_factory=dict)   # what else a checkpoint keeps (latents)
    #: where this call's steps spent their time: ``steps``, ``wall`` (seconds of the steps
    #: on the driver), ``compute`` (the slowest shard's job, summed over steps),
    #: ``compute_total`` (every shard's) and ``reduce`` (the driver's reductions)
    timing: dict = field(default_factory=dict)


def train(net, data: Dataset, config: TrainConfig | None = None, *, checkpoint=None,
          resume: bool = False, progress: bool = True, log=print, executor=None) -> TrainResult:
    """Train ``net`` on ``data.X_train``/``data.y_train``.

    Parameters
    ----------
    net : KirchhoffNet
        Updated in place.
    data : Dataset
    config : TrainConfig
    checkpoint : path, optional
        Model file written (atomically) every ``config.checkpoint_every`` epochs and at
        the end, with the optimiser state and history in it.
    resume : bool
        Continue from ``checkpoint`` if it exists (same config required).
    progress : bool
        Show a tqdm progress bar per epoch.
    log : callable or None
        Receives one line per epoch.
    executor : Runner, optional
        Where the shards of each step and the validation chunks run (default here; a
        started :class:`~kirchhoff_sim.hardware.distributed.DaskRunner` for a cluster).
        The result does not depend on it.

    Raises
    ------
    InputError
        The data do not fit the net, or ``resume`` from a checkpoint of another run.
    TrainingDivergedError
        A step's loss or gradient is not finite, or its simulation failed (the epoch and
        batch are named; the parameters are those before the step).
    ClusterLostError
        ``executor``'s cluster went away; with ``checkpoint``, the message names the
        checkpoint of the last finished step written before raising.
    """
    config = config or TrainConfig()
    solver = make_solver(**config.solver)
    runner = as_runner(executor)
    X_tr, y_tr, X_val, y_val = _split(data, config)
    if len(X_tr) == 0:
        raise InputError(f"data set {data.name!r} has no training samples"
                         + (" left after the validation split" if len(data.X_train) else ""))
    if net.input_width is not None and data.n_features != net.input_width:
        raise InputError(f"data set {data.name!r} has {data.n_features} features but the net takes "
                         f"{net.input_width} inputs")
    stepper = _stepper(net, config, runner)
    optimizer = config.make_optimizer(stepper.variables)
    history, start, partial = [], 0, None
    if resume and checkpoint is not None and Path(checkpoint).exists():
        start, history, partial = _restore(net, optimizer, checkpoint, config, stepper)
        if log:
            log(f"run complete: {checkpoint} holds all {config.epochs} epochs; nothing to do"
                if start >= config.epochs else
                f"resumed from {checkpoint} after batch {partial['batches_done']} of epoch {start + 1}"
                if partial else f"resumed from {checkpoint} after epoch {start}")
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            optimizer.set_epoch(epoch)
            rng = np.random.default_rng([config.seed, epoch])
            batches = minibatches(len(X_tr), config.batch_size, rng)
            progress_ = {"epoch": epoch, "batches_done": 0, "total": 0.0, "seen": 0, "correct": 0}
            if partial is not None and partial["epoch"] == epoch:
                progress_ = dict(partial)                     # resuming in the middle of this epoch
            todo = list(enumerate(batches))[progress_["batches_done"]:]
            bar = _progress(todo, epoch, config.epochs, progress)
            for b, idx in bar:
                xb, yb = X_tr[idx], y_tr[idx]
                try:
                    loss, grads, readout = stepper.gradient(xb, yb, epoch, b)
                except ClusterLostError as exc:
                    raise _kept_after_loss(exc, net, optimizer, checkpoint, config, history, data.name,
                                           stepper, progress_) from None
                optimizer.step(grads)
                stepper.after_step()
                progress_["total"] += loss * len(idx)
                progress_["seen"] += len(idx)
                progress_["batches_done"] = b + 1
                if config.loss == "cross_entropy":
                    progress_["correct"] += int(np.sum(readout.argmax(axis=1) == yb))
                if progress:
                    bar.set_postfix(loss=f"{progress_['total'] / progress_['seen']:.4f}")
            total, seen, correct = progress_["total"], progress_["seen"], progress_["correct"]
            record = {"epoch": epoch + 1, "lr": optimizer.lr, "train_loss": total / seen}
            if config.loss == "cross_entropy":
                record["train_accuracy"] = correct / seen
            if len(X_val):
                try:
                    val = evaluate(net, X_val, y_val, config.loss, solver, executor=runner, dtype=config.dtype)
                except ClusterLostError as exc:
                    raise _kept_after_loss(exc, net, optimizer, checkpoint, config, history, data.name,
                                           stepper, progress_) from None
                except SimulationError as exc:
                    raise TrainingDivergedError(f"epoch {epoch + 1}: validating the updated parameters "
                                                f"failed: {exc}; lower the learning rate") from exc
                record.update({f"val_{k}": v for k, v in val.items()})
            record["seconds"] = time.perf_counter() - t0
            history.append(record)
            if log:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            last = epoch + 1 == config.epochs
            if checkpoint is not None and ((epoch + 1) % config.checkpoint_every == 0 or last):
                save_checkpoint(net, optimizer, checkpoint, config, history, data.name, stepper=stepper)
    finally:
        stepper.close()
    return TrainResult(net, history, config, optimizer, epochs_run=max(config.epochs - start, 0),
                       checkpoint_arrays=stepper.checkpoint_arrays(), timing=dict(stepper.engine.timing))


def _split(data, config):
    X, y = data.X_train, data.y_train
    if config.validation_fraction > 0:
        return train_validation_split(X, y, config.validation_fraction, config.seed)
    return X, y, X[:0], y[:0]


def _settings(config) -> dict:
    """What every shard's job needs of the run besides its samples."""
    return {"loss": config.loss, "solver": dict(config.solver), "dtype": config.dtype}


class _PlainStep:
    """One training step on the net's own parameters."""

    def __init__(self, net, config, runner):
        self.net = net
        self.variables = net.parameters
        self.engine = ShardedGradient(net, _settings(config), config.shards, runner)

    def gradient(self, xb, yb, epoch, batch):
        step = self.engine.gradient(xb, yb, epoch, batch)
        return step.loss, step.params, step.readout

    def after_step(self):
        pass

    def checkpoint_arrays(self) -> dict:
        return {}

    def restore(self, extras, path):
        pass

    def close(self):
        self.engine.close()


class _ConstrainedStep:
    """One training step against a technology profile (:mod:`.constraints`): the
    optimiser moves latents ``u``; the forward pass runs on the realisable parameters
    ``P(θ(u))``, with this step's mismatch and kT/C noise; the gradient comes back through
    the noise exactly, through ``P`` straight-through and through ``θ(u)`` exactly."""

    def __init__(self, net, config, runner, hardware):
        hardware.check_net(net)
        self.net, self.config, self.hw = net, config, hardware
        self.variables = hardware.initial_latents(net)
        self.after_step()
        # the net the steps simulate: the same topology, its parameters written in place
        # each step (its compiled assembly is kept); with kT/C noise every node is an input
        every_node = np.arange(1, net.num_nodes + 1) if hardware.ktc else None
        self.work = net.with_parameters(input_nodes=every_node)
        self.engine = ShardedGradient(self.work, _settings(config), config.shards, runner)
        self.rails = None if hardware.rail_weight == 0 else (*hardware.rails(), hardware.rail_weight)

    def gradient(self, xb, yb, epoch, batch):
        hw, net = self.hw, self.net
        theta, slopes = hw.params_from_latent(net, self.variables)
        used = hw.realisable(net, theta)
        factors = None
        if hw.mismatch_sigma > 0:
            factors = hw.mismatch_factors(net, hw.step_generator(self.config.seed, epoch, batch, "mismatch"))
            used = [p * f for p, f in zip(used, factors)]
        for group, p in zip(self.work.groups, used):
            group.params[...] = p
        x = xb
        if hw.ktc:
            x = net.initial_state(xb)[1:].T + hw.initial_noise(
                net, hw.step_generator(self.config.seed, epoch, batch, "ktc"), len(xb))
        step = self.engine.gradient(x, yb, epoch, batch, rails=self.rails)
        grads = step.params if factors is None else [d * f for d, f in zip(step.params, factors)]
        loss = step.loss
        if hw.sparsity > 0:
            penalty, penalty_grads = hw.sparsity_penalty(net, hw.realisable(net, theta))
            loss += penalty
            grads = [d + q for d, q in zip(grads, penalty_grads)]
        return loss, [d * s for d, s in zip(grads, slopes)], step.readout

    def after_step(self):
        """The net holds the nominal realisable parameters of the current latents."""
        theta, _ = self.hw.params_from_latent(self.net, self.variables)
        for group, p in zip(self.net.groups, self.hw.realisable(self.net, theta)):
            group.params[...] = p

    def checkpoint_arrays(self) -> dict:
        return {f"{_LATENT_PREFIX}{i}": u for i, u in enumerate(self.variables)}

    def restore(self, extras, path):
        for i, u in enumerate(self.variables):
            key = f"{_LATENT_PREFIX}{i}"
            if key not in extras or extras[key].shape != u.shape:
                raise ModelFileError(f"cannot resume from {path}: its latent parameters {key!r} are "
                                     f"missing or of another shape")
            u[...] = extras[key]
        self.after_step()

    def close(self):
        self.engine.close()


def _stepper(net, config, runner):
    hardware = config.hardware()
    if hardware is None:
        return _PlainStep(net, config, runner)
    return _ConstrainedStep(net, config, runner, hardware)


def _kept_after_loss(lost, net, optimizer, checkpoint, config, history, dataset_name, stepper,
                     progress) -> ClusterLostError:
    """The error to raise for a cluster lost mid-epoch: with a ``checkpoint`` path, one
    written first, of the state after the last finished step (``progress`` of its epoch
    in it), that ``resume`` continues from bit for bit."""
    if checkpoint is None:
        return lost
    save_checkpoint(net, optimizer, checkpoint, config, history, dataset_name, stepper=stepper,
                    epoch_progress=progress)
    where = (f"after batch {progress['batches_done']} of epoch {progress['epoch'] + 1}" if progress["batches_done"]
             else f"after epoch {progress['epoch']}")
    return ClusterLostError(f"{lost}; kept a checkpoint {where} in {checkpoint} (continue with --resume, "
                            f"on any cluster or none)", address=lost.address, finished_jobs=lost.finished_jobs,
                            total_jobs=lost.total_jobs, first_unfinished_trial=lost.first_unfinished_trial)


def _progress(batches, epoch, epochs, enabled):
    if not enabled:
        return batches
    from tqdm import tqdm

    return tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, unit="batch")


def training_settings(meta: dict) -> tuple[dict, str]:
    """``(solver spec, loss name)`` a model was trained with, from its metadata.

    A model file without training metadata gets :data:`~kirchhoff_sim.solvers.DEFAULT_SOLVER`
    and cross-entropy.

    Raises
    ------
    ModelFileError
        The training metadata is there but malformed (wrong types, an unknown loss, a
        solver spec :func:`~kirchhoff_sim.solvers.make_solver` refuses).
    """
    training = meta.get("training") if isinstance(meta, dict) else None
    if training is None:
        return default_solver_spec(), "cross_entropy"
    config = training.get("config", {}) if isinstance(training, dict) else None
    if not isinstance(config, dict):
        raise ModelFileError(f"the model's training metadata is malformed: {training!r:.80}")
    solver, loss = config.get("solver", default_solver_spec()), config.get("loss", "cross_entropy")
    if not isinstance(loss, str) or loss not in TRAINING_LOSSES:
        raise ModelFileError(f"the model's training loss {loss!r} is not one of {list(TRAINING_LOSSES)}")
    if not isinstance(solver, dict):
        raise ModelFileError(f"the model's training solver {solver!r} is not a solver spec (a dict)")
    try:
        make_solver(**solver)
    except (TypeError, InputError) as exc:
        raise ModelFileError(f"the model's training solver {solver!r} is not valid: {exc}") from None
    return dict(solver), loss


def save_checkpoint(net, optimizer, path, config, history, dataset_name, metadata: dict | None = None,
                    stepper=None, arrays: dict | None = None, epoch_progress: dict | None = None):
    """Write a resumable checkpoint: the net, ``metadata["training"]`` (config, history,
    data set, epochs done) and the optimiser state as ``extra/optimizer/<key>`` arrays.

    A finished run's model file is a checkpoint too, so ``--resume`` on it knows that the
    run is complete. ``metadata`` adds further top-level entries (the CLI's ``source``
    and ``test`` figures). ``epoch_progress`` marks a checkpoint taken in the middle of
    an epoch: ``epoch`` (0-based), ``batches_done`` and the running ``total`` loss,
    ``seen`` and ``correct`` counts of that epoch.
    """
    extra = arrays or {}
    arrays = {f"{_OPTIMIZER_PREFIX}{k}": np.asarray(v) for k, v in optimizer.state_dict().items()}
    if stepper is not None:
        arrays.update(stepper.checkpoint_arrays())
    arrays.update(extra)
    meta = {"training": {"config": asdict(config), "history": history, "dataset": dataset_name,
                         "epochs_done": len(history),
                         **({"epoch_progress": epoch_progress} if epoch_progress else {})},
            **(metadata or {})}
    return save_net(net, path, metadata=meta, arrays=arrays)


def _restore(net, optimizer, path, config, stepper):
    saved, meta, extras = read_model_file(path)
    training = meta.get("training")
    if not training:
        raise ModelFileError(f"{path} is a model file but not a training checkpoint")
    saved_config = {**_BEFORE_NEWER_FIELDS, **training["config"]}   # a checkpoint older than those fields
    if saved_config != json.loads(json.dumps(asdict(config))):
        diff = {k: (v, asdict(config).get(k)) for k, v in saved_config.items() if asdict(config).get(k) != v}
        raise InputError(f"cannot resume from {path}: its training config differs: {diff}")
    if saved.num_params != net.num_params:
        raise InputError(f"cannot resume from {path}: it has {saved.num_params} parameters, the net {net.num_params}")
    net.set_flat_params(saved.get_flat_params())
    state = {k[len(_OPTIMIZER_PREFIX):]: (v if v.ndim else v.item())
             for k, v in extras.items() if k.startswith(_OPTIMIZER_PREFIX)}
    if not state:
        raise ModelFileError(f"cannot resume from {path}: it holds no optimiser state (a model file "
                             f"written without it); train again without --resume")
    optimizer.load_state_dict(state)
    stepper.restore(extras, path)
    partial = training.get("epoch_progress")
    if partial is not None and not _valid_progress(partial, len(training["history"])):
        raise ModelFileError(f"cannot resume from {path}: its epoch progress {partial!r:.120} is malformed")
    return int(training["epochs_done"]), list(training["history"]), partial


def _valid_progress(partial, epochs_done: int) -> bool:
    """Whether a checkpoint's ``epoch_progress`` is one :func:`save_checkpoint` wrote."""
    counts = ("batches_done", "seen", "correct")
    return (isinstance(partial, dict) and set(partial) == {"epoch", "total", *counts}
            and partial["epoch"] == epochs_done and isinstance(partial["total"], float)
            and all(isinstance(partial[k], int) and not isinstance(partial[k], bool) and partial[k] >= 0
                    for k in counts))
