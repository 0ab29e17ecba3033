"""Transient solvers: one entry point, :func:`simulate`, and strategy objects.

Explicit Runge–Kutta (:func:`Euler`, :func:`Heun`, :func:`RK4`, :func:`Dopri5`) and
implicit SPICE-style methods (:func:`BackwardEuler`, :func:`Trapezoidal`,
:func:`BDF2`), each with a fixed (``dt=``) or adaptive (``rtol=``, ``atol=``) step.
"""

from .base import VOLTAGE_LIMIT, AdaptiveStep, FixedStep, Stats
from .explicit import RK4, ButcherTableau, Dopri5, Euler, Heun, RungeKutta
from .implicit import BDF2, BackwardEuler, Implicit, Trapezoidal
from .resources import ResourceEstimate, ResourceLimits, estimate_resources
from .simulate import Solution, samples_counted_from, simulate
from ..errors import InputError

METHODS = {
    "dopri5": Dopri5, "rk4": RK4, "heun": Heun, "euler": Euler,
    "be": BackwardEuler, "trap": Trapezoidal, "bdf2": BDF2,
}
_FIXED_ONLY = {"rk4", "heun", "euler"}

#: The one default solver of training and of everything that evaluates a trained net
#: (evaluation, Monte Carlo, the chip report): Dopri5 at rtol 1e-4, atol 1e-6. Use
#: :func:`default_solver_spec` for a copy that may be changed.
DEFAULT_SOLVER = {"method": "dopri5", "rtol": 1e-4, "atol": 1e-6}


def default_solver_spec() -> dict:
    """A fresh copy of :data:`DEFAULT_SOLVER` (a spec for :func:`make_solver`)."""
    return dict(DEFAULT_SOLVER)


def make_solver(method: str = "dopri5", dt=None, rtol=None, atol=None):
    """A solver by name: ``method`` in :data:`METHODS`, a fixed ``dt`` or ``rtol``/``atol``.

    ``make_solver(**solver_spec(s))`` rebuilds ``s``; model files and checkpoints store
    that spec.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in _FIXED_ONLY:
        if dt is None:
            raise InputError(f"method {method} has a fixed step: give dt")
        return METHODS[method](dt)
    if dt is not None:
        return METHODS[method](dt=dt)
    return METHODS[method](rtol=rtol, atol=atol)


def solver_spec(solver) -> dict:
    """JSON-able description of a solver made by :func:`make_solver` (or a named constructor)."""
    name = getattr(solver, "method", None) or solver.tableau.name.lower()
    step = solver.step
    if isinstance(step, FixedStep):
        return {"method": name, "dt": step.dt}
    if isinstance(step, AdaptiveStep):
        return {"method": name, "rtol": step.rtol, "atol": step.atol}
    raise InputError(f"cannot describe a solver with step {step!r}")

__all__ = [
    "simulate", "samples_counted_from", "make_solver", "solver_spec", "default_solver_spec", "DEFAULT_SOLVER", "METHODS", "Solution", "Stats", "FixedStep", "AdaptiveStep", "ButcherTableau",
    "RungeKutta", "Euler", "Heun", "RK4", "Dopri5",
    "Implicit", "BackwardEuler", "Trapezoidal", "BDF2",
    "ResourceLimits", "ResourceEstimate", "estimate_resources", "VOLTAGE_LIMIT",
]
