"""Fused compiled KCL kernels (issue #14, first part: the right-hand side).

The NumPy path of :class:`~kirchhoff_sim.assembly.LayerAssembly` evaluates a layer's
currents chunk by chunk as a sparse gather, the device response on an ``(E_c, B)``
temporary, and a sparse scatter. This module does the same in **one compiled loop** per
chunk — gather, response and scatter, edge by edge, no ``(E_c, B)`` temporary — with
numba (``nopython``, ``cache=True``; ``parallel`` over blocks of batch columns, so no
two threads ever write the same memory).

Every family whose current is ``i = A·act(B·(z + C) + D)`` of its input
``z = w_src·v_src + w_dst·v_dst + bias`` runs here: Conductance (``A = g``, identity),
ShiftedReLU / ShiftedLeakyReLU (``A = gain``, ``C = −shift``), DifferenceActivation
(``B = gain``, ``D = bias``), AffineActivation (its weights in ``z``) and TanhCell
(``A`` the amplitude, ``B = β(A)``, ``C = −offset``). The per-edge coefficients are
computed in NumPy once per call (O(E)); they are written so that the kernel repeats the
NumPy reference's own floating-point operations on ``z`` and on the response, and only
the summation order of the scatter differs (edge by edge into the node instead of one
sparse product a chunk): the two agree to a few ulps of the largest edge current
(tests/test_kernels.py). The Diode's implicit law (a Lambert-W solve) stays on NumPy.

**Threads.** numba's thread count — ``NUMBA_NUM_THREADS`` in the environment before the
first import, or :func:`set_threads` at run time — sets how many column blocks run at
once. Each batch column is computed by one thread in a fixed edge order, so the result
is bit-identical for any thread count.

**Opt-in.** The kernels run when ``KIRCHHOFF_SIM_KERNELS=numba`` is set or after
:func:`use` ``("numba")``; the NumPy path stays the default and the reference the
kernels are tested against until the vector–Jacobian and Jacobian–vector products and
the Newton stamps have kernels too (the rest of issue #14).
"""

from __future__ import annotations

import os

import numpy as np

from . import devices as _devices
from .errors import InputError

__all__ = ["BACKENDS", "use", "backend", "set_threads", "threads", "supports", "coefficients",
           "rhs_into", "COLUMN_BLOCK"]

BACKENDS = ("numpy", "numba")
#: the fewest batch columns a parallel block takes (8 doubles: one 64-byte cache line of a
#: node's row); a batch is otherwise split into one block per thread, so that each thread
#: streams the edge arrays once and runs a long inner loop over its columns
COLUMN_BLOCK = 8
#: activation codes of the kernel
_ACT_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "softplus": 4}

_state = {"backend": os.environ.get("KIRCHHOFF_SIM_KERNELS", "numpy")}
if _state["backend"] not in BACKENDS:
    raise InputError(f"KIRCHHOFF_SIM_KERNELS must be one of {', '.join(BACKENDS)}, got {_state['backend']!r}")


def use(name: str) -> None:
    """Choose the right-hand-side backend: ``"numpy"`` (the reference) or ``"numba"``.

    Raises
    ------
    InputError
        Another name.
    """
    if name not in BACKENDS:
        raise InputError(f"kernel backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    _state["backend"] = name


def backend() -> str:
    """The backend in use."""
    return _state["backend"]


def set_threads(n: int) -> None:
    """Run the kernels on ``n`` threads (1 … ``NUMBA_NUM_THREADS``); the result does not
    depend on ``n``.

    Raises
    ------
    InputError
        ``n`` outside that range.
    """
    import numba

    from .checks import as_int

    numba.set_num_threads(as_int(n, "threads", minimum=1, maximum=numba.config.NUMBA_NUM_THREADS))


def threads() -> int:
    """The kernels' thread count."""
    import numba

    return numba.get_num_threads()


def supports(device) -> bool:
    """Whether ``device``'s family runs in the kernel (every family but the Diode)."""
    if isinstance(device, (_devices.Conductance, _devices._ShiftedRectifier, _devices.TanhCell)):
        return True
    if isinstance(device, (_devices.DifferenceActivation, _devices.AffineActivation)):
        return device.activation.name in _ACT_CODES
    return False


def coefficients(device, p: np.ndarray):
    """The kernel's per-edge arrays of one chunk's devices, parameters ``p`` ``(n_params, E_c)``.

    Returns
    -------
    (act, w_src, w_dst, bias, A, B, C, D)
        ``act`` the activation code; each array ``(E_c,)`` float64.
    """
    n = p.shape[1]
    one, zero = np.ones(n), np.zeros(n)
    w_src, w_dst, bias = one, -one, zero
    if isinstance(device, _devices.Conductance):
        return _ACT_CODES["identity"], w_src, w_dst, bias, p[0], one, zero, zero
    if isinstance(device, _devices._ShiftedRectifier):
        return _ACT_CODES[device._act.name], w_src, w_dst, bias, p[1], one, -p[0], zero
    if isinstance(device, _devices.TanhCell):
        beta, _ = device._slope(p[1])
        return _ACT_CODES["tanh"], w_src, w_dst, bias, p[1], np.asarray(beta, float), -p[0], zero
    if isinstance(device, _devices.DifferenceActivation):
        return _ACT_CODES[device.activation.name], w_src, w_dst, bias, one, p[1], zero, p[0]
    if isinstance(device, _devices.AffineActivation):
        return _ACT_CODES[device.activation.name], p[0], p[1], p[2], one, one, zero, zero
    raise InputError(f"{type(device).__name__} has no kernel (use the NumPy path)")


_KERNEL = None


def _kernel():
    """Compile (or load from numba's cache) the fused kernel on first use."""
    global _KERNEL
    if _KERNEL is None:
        from ._rhs_kernel import fused_rhs

        _KERNEL = fused_rhs
    return _KERNEL


def rhs_into(out: np.ndarray, V: np.ndarray, src, dst, device, p) -> None:
    """Add one chunk's node currents ``Aᵀ i(V)`` to ``out`` ``(N+1, B)`` in place.

    ``V`` ``(N+1, B)`` C-contiguous float64; ``src``, ``dst`` ``(E_c,)``; ``p`` the
    chunk's parameters ``(n_params, E_c)``.
    """
    act, w_src, w_dst, bias, A, B, C, D = coefficients(device, p)
    leaky = _devices.LEAKY_SLOPE
    block = max(COLUMN_BLOCK, -(-V.shape[1] // threads()))
    _kernel()(out, V, src.astype(np.int64, copy=False), dst.astype(np.int64, copy=False),
              np.ascontiguousarray(w_src, dtype=float), np.ascontiguousarray(w_dst, dtype=float),
              np.ascontiguousarray(bias, dtype=float), np.ascontiguousarray(A, dtype=float),
              np.ascontiguousarray(B, dtype=float), np.ascontiguousarray(C, dtype=float),
              np.ascontiguousarray(D, dtype=float), act, leaky, block)
