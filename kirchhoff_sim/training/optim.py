r"""Numpy optimisers (Adam, AdamW) and per-epoch learning-rate schedules.

Adam (Kingma & Ba, 2015), bias-corrected. For each parameter array :math:`\theta` with
gradient :math:`g_t` at step :math:`t = 1, 2, \dots`, learning rate :math:`\eta`:

.. math::

    m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
    \theta_t &= \theta_{t-1} - \frac{\eta}{1 - \beta_1^t}\,
        \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

with :math:`m_0 = v_0 = 0`. The update is evaluated in this order (ε added after the
bias correction of :math:`v`), as ``torch.optim.Adam`` does, so the two agree to
rounding. Weight decay :math:`\lambda` enters in one of two ways, which is the only
difference between the two classes:

* :class:`Adam` — L2 regularisation, coupled: :math:`g_t \leftarrow g_t + \lambda\theta_{t-1}`
  before the moments, so the decay is rescaled by :math:`1/\sqrt{v_t}` like the loss
  gradient.
* :class:`AdamW` — decoupled (Loshchilov & Hutter, 2019):
  :math:`\theta \leftarrow \theta\,(1 - \eta\lambda)` before the Adam step, the same
  relative shrink for every weight.

:math:`\eta` is the *scheduled* rate ``schedule.lr(base_lr, epoch)``. Schedules act per
epoch, like torch's ``StepLR`` and ``CosineAnnealingLR`` stepped once per epoch: the
training loop calls :meth:`Adam.set_epoch` at the start of each epoch.

An optimiser's whole state — moments, step count, epoch, hyper-parameters — round-trips
through :meth:`Adam.state_dict` / :meth:`Adam.load_state_dict` as numpy arrays and
plain scalars, so it can be stored in an ``.npz`` without pickle, and a resumed run
continues bit for bit like an uninterrupted one.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import InputError, TrainingDivergedError

# torch.optim.Adam / AdamW defaults, so results carry over from the reference code
DEFAULT_LR = 1e-3
DEFAULT_BETAS = (0.9, 0.999)
DEFAULT_EPS = 1e-8
ADAMW_WEIGHT_DECAY = 1e-2
STEP_SCHEDULE_GAMMA = 0.1  # torch.optim.lr_scheduler.StepLR's default


# ----------------------------------------------------------------------- schedules
class Schedule(Protocol):
    """Maps the base learning rate and the epoch (0-based) to the rate used in it."""

    def lr(self, base_lr: float, epoch: int) -> float: ...


@dataclass(frozen=True)
class ConstantSchedule:
    """The base learning rate in every epoch."""

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr


@dataclass(frozen=True)
class StepSchedule:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs (torch's ``StepLR``).

    ``lr(epoch) = base_lr * gamma ** (epoch // step_size)``.
    """

    step_size: int
    gamma: float = STEP_SCHEDULE_GAMMA

    def __post_init__(self):
        if not _is_int(self.step_size) or self.step_size < 1:
            raise InputError(
                f"StepSchedule: step_size must be an integer >= 1, got {self.step_size!r}"
            )
        if not (_is_real(self.gamma) and math.isfinite(self.gamma) and self.gamma > 0):
            raise InputError(f"StepSchedule: gamma must be a finite number > 0, got {self.gamma!r}")

    def lr(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine annealing from the base rate to ``eta_min`` over ``t_max`` epochs.

    ``lr(epoch) = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2``,
    the closed form of torch's ``CosineAnnealingLR``. As there, the cosine is not
    clamped: past ``t_max`` the rate climbs back, so set ``t_max`` to the number of
    epochs.
    """

    t_max: int
    eta_min: float = 0.0

    def __post_init__(self):
        if not _is_int(self.t_max) or self.t_max < 1:
            raise InputError(f"CosineSchedule: t_max must be an integer >= 1, got {self.t_max!r}")
        if not (_is_real(self.eta_min) and math.isfinite(self.eta_min) and self.eta_min >= 0):
            raise InputError(
                f"CosineSchedule: eta_min must be a finite number >= 0, got {self.eta_min!r}"
            )

    def lr(self, base_lr: float, epoch: int) -> float:
        half_cosine = (1 + math.cos(math.pi * epoch / self.t_max)) / 2  # 1 -> 0 over t_max
        return self.eta_min + (base_lr - self.eta_min) * half_cosine


# ----------------------------------------------------------------------- optimisers
class Adam:
    """Adam with bias correction and optional L2 weight decay, like ``torch.optim.Adam``.

    Parameters
    ----------
    params : list of ndarray
        Floating-point arrays of any shapes, updated in place by :meth:`step`.
    lr : float
        Base learning rate, scaled per epoch by ``schedule``.
    betas : (float, float)
        Decay rates of the first and second moment averages, each in [0, 1).
    eps : float
        Added to the bias-corrected root of the second moment (>= 0).
    weight_decay : float
        ``λ`` (>= 0); see the module docstring for how it enters.
    schedule : Schedule or None
        Per-epoch learning-rate schedule; ``None`` keeps the rate constant.

    Raises
    ------
    InputError
        Empty or non-float ``params``, or a hyper-parameter out of range.
    """

    decoupled_weight_decay = False  # AdamW flips this; the update code is shared

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float = DEFAULT_LR,
        betas: tuple[float, float] = DEFAULT_BETAS,
        eps: float = DEFAULT_EPS,
        weight_decay: float = 0.0,
        schedule: Schedule | None = None,
    ):
        self.params = _checked_params(params)
        self.base_lr, self.betas, self.eps, self.weight_decay = _checked_hyperparameters(
            lr, betas, eps, weight_decay
        )
        self.schedule = ConstantSchedule() if schedule is None else schedule
        self.epoch = 0
        self.n_steps = 0  # t in the bias corrections
        self.exp_avg = [np.zeros_like(p) for p in self.params]  # m
        self.exp_avg_sq = [np.zeros_like(p) for p in self.params]  # v

    # ------------------------------------------------------------------ schedule
    def set_epoch(self, epoch: int) -> None:
        """Tell the optimiser which epoch (0-based) the next steps belong to."""
        if not _is_int(epoch) or epoch < 0:
            raise InputError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    @property
    def lr(self) -> float:
        """Learning rate of the current epoch, after the schedule."""
        return self.schedule.lr(self.base_lr, self.epoch)

    # ------------------------------------------------------------------ the update
    def step(self, grads: list[np.ndarray]) -> None:
        """Update every parameter in place from its gradient.

        Parameters
        ----------
        grads : list of ndarray
            ``grads[i]`` has the shape of ``params[i]``.

        Raises
        ------
        InputError
            Wrong number of gradients or a shape mismatch.
        TrainingDivergedError
            A gradient has NaN/inf entries, or the update would make a parameter
            non-finite. Parameters and state are left unchanged in both cases, so the
            caller may lower the rate and retry.
        """
        grads = self._checked_grads(grads)
        t, lr = self.n_steps + 1, self.lr
        # Overflow or 0/0 (eps = 0) must not trip np.seterr(all="raise") half-way through;
        # the result is checked for finiteness below, before anything is committed.
        with np.errstate(all="ignore"):
            updates = [
                self._adam_update(p, g, m, v, t, lr)
                for p, g, m, v in zip(self.params, grads, self.exp_avg, self.exp_avg_sq)
            ]
        for i, (new_param, _, _) in enumerate(updates):
            if not np.isfinite(new_param).all():
                raise TrainingDivergedError(
                    f"{type(self).__name__} step {t}: params[{i}] would become non-finite "
                    f"(lr={lr:g}); parameters left unchanged"
                )
        for i, (new_param, new_m, new_v) in enumerate(updates):
            self.params[i][...] = new_param
            self.exp_avg[i][...] = new_m
            self.exp_avg_sq[i][...] = new_v
        self.n_steps = t

    def _adam_update(self, param, grad, exp_avg, exp_avg_sq, t, lr):
        """New (param, m, v) for one array at step t and rate lr; inputs are not modified."""
        wd = self.weight_decay
        beta1, beta2 = self.betas
        if wd != 0:
            if self.decoupled_weight_decay:
                param = param * (1 - lr * wd)
            else:
                grad = grad + wd * param
        exp_avg = beta1 * exp_avg + (1 - beta1) * grad
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * (grad * grad)
        step_size = lr / (1 - beta1**t)
        denom = np.sqrt(exp_avg_sq) / (1 - beta2**t) ** 0.5 + self.eps
        return param - step_size * (exp_avg / denom), exp_avg, exp_avg_sq

    def _checked_grads(self, grads) -> list[np.ndarray]:
        name = type(self).__name__
        if isinstance(grads, np.ndarray) or not hasattr(grads, "__len__"):
            raise InputError(
                f"{name}.step: grads must be a list of arrays, got {type(grads).__name__}"
            )
        if len(grads) != len(self.params):
            raise InputError(
                f"{name}.step: got {len(grads)} gradients for {len(self.params)} parameter arrays"
            )
        checked = []
        for i, (g, p) in enumerate(zip(grads, self.params)):
            g = np.asarray(g)
            if g.shape != p.shape:
                raise InputError(
                    f"{name}.step: grads[{i}] has shape {g.shape} but params[{i}] has shape {p.shape}"
                )
            if g.dtype.kind not in "iuf":
                raise InputError(f"{name}.step: grads[{i}] must be real, got dtype {g.dtype}")
            n_bad = g.size - np.count_nonzero(np.isfinite(g))
            if n_bad:
                raise TrainingDivergedError(
                    f"{name} step {self.n_steps + 1}: grads[{i}] has {n_bad} NaN/inf "
                    f"entries (of {g.size}); parameters left unchanged"
                )
            checked.append(g)
        return checked

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """The optimiser's state as numpy arrays and JSON-able scalars.

        Returns
        -------
        dict
            ``step``, ``epoch``, ``n_params`` (int); ``lr`` (the base rate), ``beta1``,
            ``beta2``, ``eps``, ``weight_decay`` (float); ``decoupled_weight_decay``
            (bool); ``exp_avg_<i>`` and ``exp_avg_sq_<i>`` (copies of the moment
            arrays, shaped like ``params[i]``). ``np.savez(f, **state)`` stores it
            without pickle. The schedule is configuration, not state: give the resumed
            optimiser the same one.
        """
        state = {
            "decoupled_weight_decay": self.decoupled_weight_decay,
            "step": self.n_steps,
            "epoch": self.epoch,
            "n_params": len(self.params),
            "lr": self.base_lr,
            "beta1": self.betas[0],
            "beta2": self.betas[1],
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }
        for i, (m, v) in enumerate(zip(self.exp_avg, self.exp_avg_sq)):
            state[f"exp_avg_{i}"] = m.copy()
            state[f"exp_avg_sq_{i}"] = v.copy()
        return state

    def load_state_dict(self, state) -> None:
        """Restore a state from :meth:`state_dict`, e.g. ``dict(np.load(f))``.

        The hyper-parameters are restored too (as torch does), so the run continues
        exactly as it would have. The parameters themselves are not part of the state:
        restore them before the next :meth:`step`.

        Raises
        ------
        InputError
            A missing key, a state from the other variant (Adam vs AdamW), or moment
            arrays whose number or shapes do not match the parameters.
        """
        name = type(self).__name__
        missing = [k for k in _STATE_SCALARS if k not in state]
        if missing:
            raise InputError(f"{name}.load_state_dict: missing key(s) {', '.join(missing)}")
        if bool(state["decoupled_weight_decay"]) != self.decoupled_weight_decay:
            other = "AdamW" if state["decoupled_weight_decay"] else "Adam"
            raise InputError(f"{name}.load_state_dict: the state was saved by {other}")
        if int(state["n_params"]) != len(self.params):
            raise InputError(
                f"{name}.load_state_dict: state has {int(state['n_params'])} parameter arrays, "
                f"optimiser has {len(self.params)}"
            )
        moments = [
            (
                _checked_moment(state, f"exp_avg_{i}", p, name),
                _checked_moment(state, f"exp_avg_sq_{i}", p, name),
            )
            for i, p in enumerate(self.params)
        ]
        hyper = _checked_hyperparameters(
            float(state["lr"]), (float(state["beta1"]), float(state["beta2"])),
            float(state["eps"]), float(state["weight_decay"]),
        )
        step, epoch = int(state["step"]), int(state["epoch"])
        if step < 0 or epoch < 0:
            raise InputError(f"{name}.load_state_dict: negative step ({step}) or epoch ({epoch})")
        # everything checked: commit
        self.base_lr, self.betas, self.eps, self.weight_decay = hyper
        self.n_steps, self.epoch = step, epoch
        self.exp_avg = [m for m, _ in moments]
        self.exp_avg_sq = [v for _, v in moments]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), like ``torch.optim.AdamW``.

    Same parameters as :class:`Adam`; only the default ``weight_decay`` differs
    (``1e-2``, torch's), and the decay shrinks the weights by ``1 - lr * weight_decay``
    each step instead of being added to the gradient.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: list[np.ndarray],
        lr: float = DEFAULT_LR,
        betas: tuple[float, float] = DEFAULT_BETAS,
        eps: float = DEFAULT_EPS,
        weight_decay: float = ADAMW_WEIGHT_DECAY,
        schedule: Schedule | None = None,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, schedule)


_STATE_SCALARS = (
    "decoupled_weight_decay",
    "step",
    "epoch",
    "n_params",
    "lr",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
)


# ----------------------------------------------------------------------- checks
def _checked_params(params) -> list[np.ndarray]:
    if isinstance(params, np.ndarray) or not hasattr(params, "__len__"):
        raise InputError(f"params must be a list of arrays, got {type(params).__name__}")
    params = list(params)
    if not params:
        raise InputError("params is empty: nothing to optimise")
    for i, p in enumerate(params):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise InputError(
                f"params[{i}] must be a floating-point numpy array, got {_describe(p)}"
            )
        if not p.flags.writeable:
            raise InputError(f"params[{i}] is read-only; the optimiser updates parameters in place")
    if len({id(p) for p in params}) != len(params):
        raise InputError("params lists the same array twice; it would be updated twice per step")
    return params


def _checked_hyperparameters(lr, betas, eps, weight_decay):
    """(lr, (beta1, beta2), eps, weight_decay) as floats, with the ranges torch enforces."""
    if not (_is_real(lr) and math.isfinite(lr) and lr >= 0):
        raise InputError(f"lr must be a finite number >= 0, got {lr!r}")
    if len(betas) != 2 or not all(_is_real(b) and 0 <= b < 1 for b in betas):
        raise InputError(f"betas must be two numbers in [0, 1), got {betas!r}")
    if not (_is_real(eps) and math.isfinite(eps) and eps >= 0):
        raise InputError(f"eps must be a finite number >= 0, got {eps!r}")
    if not (_is_real(weight_decay) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise InputError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    return float(lr), (float(betas[0]), float(betas[1])), float(eps), float(weight_decay)


def _checked_moment(state, key: str, param: np.ndarray, name: str) -> np.ndarray:
    if key not in state:
        raise InputError(f"{name}.load_state_dict: missing key {key}")
    moment = np.asarray(state[key])
    if moment.shape != param.shape:
        raise InputError(
            f"{name}.load_state_dict: {key} has shape {moment.shape}, "
            f"the parameter has {param.shape}"
        )
    return np.array(moment, dtype=param.dtype)  # a private copy: later steps update it


def _describe(x) -> str:
    if isinstance(x, np.ndarray):
        return f"dtype {x.dtype}"
    return type(x).__name__


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
