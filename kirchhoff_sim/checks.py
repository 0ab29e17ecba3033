"""Input checks shared by every module: numbers, counts, choices and real arrays.

Each helper returns the value in its canonical type or raises a typed error (by default
:class:`~kirchhoff_sim.errors.InputError`) whose message names the offending field, so
that a bad option is refused where it enters and never truncated, cast or clipped
silently: ``1.5`` is not a count, ``True`` is not a number, ``"64"`` is not a batch size
and a complex array is not a set of node voltages.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import InputError

__all__ = ["as_int", "as_real", "as_positive", "as_choice", "as_real_array"]


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None,
           error=InputError) -> int:
    """``value`` as an ``int`` within ``[minimum, maximum]``.

    Accepts Python and NumPy integers, and floats that are whole numbers (``2.0``);
    refuses booleans, fractions, strings, complex numbers and non-finite values.

    Raises
    ------
    error (default InputError)
        Naming ``name``, the bounds and the value given.
    """
    bounds = _bounds_text(minimum, maximum)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be an integer{bounds}, got {_describe(value)}")
    if isinstance(value, numbers.Integral):
        as_integer = int(value)
    else:
        as_float = float(value)
        if not math.isfinite(as_float) or as_float != math.floor(as_float):
            raise error(f"{name} must be an integer{bounds}, got {_describe(value)}")
        as_integer = int(as_float)
    if (minimum is not None and as_integer < minimum) or (maximum is not None and as_integer > maximum):
        raise error(f"{name} must be an integer{bounds}, got {_describe(value)}")
    return as_integer


def as_real(value, name: str, *, minimum: float | None = None, maximum: float | None = None,
            exclusive_minimum: bool = False, allow_inf: bool = False, error=InputError) -> float:
    """``value`` as a finite ``float`` within the bounds.

    ``minimum`` is inclusive unless ``exclusive_minimum``; ``maximum`` is inclusive.
    Booleans, strings, complex numbers and NaN are refused; ±inf only with ``allow_inf``.

    Raises
    ------
    error (default InputError)
        Naming ``name``, the bounds and the value given.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise error(f"{name} must be a number, got {_describe(value)}")
    as_float = float(value)
    below = minimum is not None and (as_float <= minimum if exclusive_minimum else as_float < minimum)
    above = maximum is not None and as_float > maximum
    if math.isnan(as_float) or (math.isinf(as_float) and not allow_inf) or below or above:
        bounds = _bounds_text(minimum, maximum, exclusive_minimum).strip()
        condition = ("finite" if not allow_inf else "") + (" and " if bounds and not allow_inf else "") + bounds
        raise error(f"{name} must be {condition or 'a number'}, got {_describe(value)}")
    return as_float


def as_positive(value, name: str, *, error=InputError) -> float:
    """``value`` as a finite ``float > 0`` (a unit, a time, a tolerance scale)."""
    return as_real(value, name, minimum=0.0, exclusive_minimum=True, error=error)


def as_choice(value, name: str, choices, *, error=InputError):
    """``value`` if it is one of ``choices`` (compared with ``==``, strings exactly)."""
    if not isinstance(value, (str, numbers.Number, type(None))) or value not in tuple(choices):
        raise error(f"unknown {name} {_describe(value)}; choose one of {tuple(choices)}")
    return value


def as_real_array(values, name: str, *, dtype=np.float64, ndim: int | None = None,
                  finite: bool = True, error=InputError) -> np.ndarray:
    """``values`` as a real floating array of ``dtype``.

    Refuses complex, boolean, object and string arrays, ragged nesting, and (with
    ``finite``) NaN or inf, instead of letting NumPy cast them silently.

    Raises
    ------
    error (default InputError)
        Naming ``name`` and what is wrong (kind, shape, position of a non-finite entry).
    """
    if isinstance(values, (str, bytes, dict)):
        raise error(f"{name} must be an array of real numbers, got {type(values).__name__}")
    try:
        raw = np.asarray(values)
    except (TypeError, ValueError):
        raise error(f"{name} must be a rectangular array of real numbers (ragged or mixed input)") from None
    if raw.dtype.kind == "c":
        raise error(f"{name} must be real, got a complex array")
    if raw.dtype.kind not in "iuf":
        raise error(f"{name} must be an array of real numbers, got dtype {raw.dtype}")
    array = raw.astype(dtype, copy=False)
    if ndim is not None and array.ndim != ndim:
        raise error(f"{name} must be {ndim}-dimensional, got shape {array.shape}")
    if finite and array.size and not np.isfinite(array).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise error(f"{name} must be finite; entry {where} is {array[where]}")
    return array


def _bounds_text(minimum, maximum, exclusive_minimum: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f" in {'(' if exclusive_minimum else '['}{minimum:g}, {maximum:g}]"
    if minimum is not None:
        return f" {'>' if exclusive_minimum else '>='} {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""
