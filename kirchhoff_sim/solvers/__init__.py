"""Transient solvers: one entry point, :func:`simulate`, and strategy objects.

Explicit Runge–Kutta (:func:`Euler`, :func:`Heun`, :func:`RK4`, :func:`Dopri5`) and
implicit SPICE-style methods (:func:`BackwardEuler`, :func:`Trapezoidal`,
:func:`BDF2`), each with a fixed (``dt=``) or adaptive (``rtol=``, ``atol=``) step.
"""

from .base import AdaptiveStep, FixedStep, Stats
from .explicit import RK4, ButcherTableau, Dopri5, Euler, Heun, RungeKutta
from .implicit import BDF2, BackwardEuler, Implicit, Trapezoidal
from .simulate import Solution, simulate

__all__ = [
    "simulate", "Solution", "Stats", "FixedStep", "AdaptiveStep", "ButcherTableau",
    "RungeKutta", "Euler", "Heun", "RK4", "Dopri5",
    "Implicit", "BackwardEuler", "Trapezoidal", "BDF2",
]
