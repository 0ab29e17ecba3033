"""Working precision: the floating types a transient runs in, and what each can resolve.

A run in ``float32`` keeps its node voltages, device currents, stage derivatives, the
adjoint's cotangents and the parameter gradients in single precision, as a GPU or JAX's
default would; the net's parameters stay ``float64`` (the master copy an optimiser
updates, and what a model file stores) and are rounded to the working type at the start
of every run. ``float64`` is the default and the reference the kernels are tested against.

Every accepted step rounds the state to ``eps/2`` of its size (``eps`` the type's unit
round-off) and its stages add a few ``eps`` more, so a step cannot be made more accurate
than a few ``eps`` of the state however small it is: below :data:`TOLERANCE_FLOOR_EPS`
``× eps`` a relative tolerance asks for an accuracy the arithmetic does not carry (the
controller would chase round-off down to its step floor). Such a request is refused
before any work, with the figures: rtol ≥ 4.8e-7 in float32, ≥ 8.9e-16 in float64.

The implicit methods run in ``float64`` only: their Newton iteration's convergence test
and the LU factorisation's pivoting are tuned for double precision, and single precision
would need its own analysis of both.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["DTYPES", "TOLERANCE_FLOOR_EPS", "as_dtype", "check_precision", "require_float64", "tolerance_floor"]

#: the working types, by the name the CLI and the model-file metadata use
DTYPES = {"float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}
#: the smallest rtol an adaptive run may ask of a type, in units of its round-off eps
TOLERANCE_FLOOR_EPS = 4.0


def as_dtype(dtype) -> np.dtype:
    """``dtype`` as one of the two working types, a native-endian numpy dtype.

    Parameters
    ----------
    dtype : None, str, type or numpy.dtype
        ``None`` (float64), a name of :data:`DTYPES` ("float64", "float32"),
        ``np.float64`` / ``np.float32`` (or ``float``), or the numpy dtype of one of them.

    Raises
    ------
    InputError
        Anything else: another type, a byte-swapped dtype, another spelling of a name, a
        value instead of a type.
    """
    if dtype is None:
        return DTYPES["float64"]
    if isinstance(dtype, str):
        resolved = DTYPES.get(dtype)
    elif isinstance(dtype, np.dtype):
        resolved = DTYPES.get(dtype.name) if dtype.isnative else None
    elif any(dtype is t for t in (float, np.float64, np.float32)):
        resolved = np.dtype(dtype)
    else:
        resolved = None
    if resolved is None:
        raise InputError(f"dtype must be one of {', '.join(DTYPES)} (or np.float64, np.float32), got {dtype!r}")
    return DTYPES[resolved.name]


def require_float64(dtype, what: str, why: str) -> None:
    """Refuse a working type other than float64 for ``what`` (``why`` says why).

    Raises
    ------
    InputError
        ``dtype`` is not float64 (or is not a working type at all).
    """
    dtype = as_dtype(dtype)
    if dtype != DTYPES["float64"]:
        raise InputError(f"{what} runs in float64 only ({why}), got dtype {dtype.name}")


def tolerance_floor(dtype) -> float:
    """The smallest rtol an adaptive method can meet in ``dtype``:
    :data:`TOLERANCE_FLOOR_EPS` × its unit round-off (4.8e-7 in float32, 8.9e-16 in float64)."""
    return TOLERANCE_FLOOR_EPS * float(np.finfo(as_dtype(dtype)).eps)


def check_precision(solver, dtype) -> np.dtype:
    """Refuse a solver that cannot run in ``dtype``; return the dtype.

    ``solver`` None is :func:`~kirchhoff_sim.solvers.simulate`'s default, Dopri5 at rtol
    1e-7 — below float32's floor, so a float32 run names its solver.

    Raises
    ------
    InputError
        An implicit method in float32, or an adaptive step asking a relative tolerance
        below :func:`tolerance_floor` of ``dtype`` (the message gives both figures).
    """
    from .explicit import Dopri5

    solver = Dopri5() if solver is None else solver
    dtype = as_dtype(dtype)
    if getattr(solver, "implicit", False):
        name = getattr(solver, "method", None) or type(solver).__name__
        require_float64(dtype, f"the implicit method {name}", "its Newton test and LU pivoting are tuned for "
                        "double precision: use an explicit method (Dopri5, RK4, ...) in float32")
    step = getattr(solver, "step", None)
    rtol = getattr(step, "rtol", None)
    floor = tolerance_floor(dtype)
    if rtol is not None and 0 < rtol < floor:       # rtol 0: a purely absolute tolerance, atol's scale
        raise InputError(f"rtol {rtol:g} cannot be met in {dtype.name}: its round-off eps is "
                         f"{np.finfo(dtype).eps:.3g} and every step rounds the state by a few eps, so no "
                         f"step is more accurate than {TOLERANCE_FLOOR_EPS:g}·eps = {floor:.2g} of it; use "
                         f"rtol >= {floor:.2g} or dtype=float64")
    return dtype
