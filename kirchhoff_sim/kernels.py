"""Fused compiled KCL kernels (issue #14): the right-hand side, its vector–Jacobian and
Jacobian–vector products, and the Newton stamps.

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

The vector–Jacobian product of the adjoints (:meth:`LayerAssembly.vjp
<kirchhoff_sim.assembly.LayerAssembly.vjp>`) is fused the same way: per edge and column
``λ = ν[dst] − ν[src]``, ``μ = λ·∂i/∂z`` scattered through the input weights, and six
sums over the batch from which :func:`parameter_cotangents` forms every family's
``(∂F/∂θ)ᵀν`` by the chain rule. Its column blocks have a fixed width
(:data:`VJP_BLOCK`), and the blocks' sums are added in block order, so its result too is
independent of the thread count. It agrees with the NumPy path to 1e-13 of the largest
entry (only the order of the sums differs). The Jacobian–vector product of the forward
sensitivities is the transposed map (:func:`coefficient_directions`), column-parallel as
the right-hand side. So are the Newton stamps of the implicit solvers
(:meth:`LayerAssembly.stamps <kirchhoff_sim.assembly.LayerAssembly.stamps>`): each edge's
current and its four conductance entries, written straight into the slots of the
per-sample matrices (:attr:`StampPattern.edge_slots
<kirchhoff_sim.assembly.StampPattern>`).

**Threads.** numba's thread count — ``NUMBA_NUM_THREADS`` in the environment before the
first import (an integer from 1 to :data:`MAX_THREADS`, checked once), or :func:`set_threads` at run
time — sets how many column blocks run at once. Each batch column is computed by one
thread in a fixed edge order, so the result is bit-identical for any thread count.

**Opt-in.** The kernels run when ``KIRCHHOFF_SIM_KERNELS=numba`` is set (read at the
first evaluation; empty or unset means ``numpy``) or after :func:`use` ``("numba")``,
which overrides the environment; the NumPy path stays the default and the reference the
kernels are tested against.
"""

from __future__ import annotations

import os

import numpy as np

from . import devices as _devices
from .checks import as_real_array
from .errors import InputError

__all__ = ["BACKENDS", "use", "backend", "set_threads", "threads", "supports", "coefficients",
           "parameter_cotangents", "coefficient_directions", "rhs_into", "COLUMN_BLOCK", "VJP_BLOCK", "MAX_THREADS"]

BACKENDS = ("numpy", "numba")
#: the fewest batch columns a parallel block takes (8 doubles: one 64-byte cache line of a
#: node's row); a batch is otherwise split into one block per thread, so that each thread
#: streams the edge arrays once and runs a long inner loop over its columns
COLUMN_BLOCK = 8
#: activation codes of the kernel
_ACT_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "softplus": 4}

#: the most threads ``NUMBA_NUM_THREADS`` may ask for: numba starts that many at its
#: first parallel call, and a count far beyond the machine's cores (100,000 was tried)
#: crashes the process when the thread pool fails to start
MAX_THREADS = max(64, 8 * (os.cpu_count() or 1))

_state = {"backend": None}      # None: not chosen yet, read KIRCHHOFF_SIM_KERNELS


def use(name: str) -> None:
    """Choose the right-hand-side backend: ``"numpy"`` (the reference) or ``"numba"``
    (overrides ``KIRCHHOFF_SIM_KERNELS``).

    Raises
    ------
    InputError
        Another name.
    """
    if name not in BACKENDS:
        raise InputError(f"kernel backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    _state["backend"] = name


def backend() -> str:
    """The backend in use: the last :func:`use`, else ``KIRCHHOFF_SIM_KERNELS`` (empty or
    unset: ``"numpy"``).

    Raises
    ------
    InputError
        ``KIRCHHOFF_SIM_KERNELS`` names no backend (until :func:`use` chooses one).
    """
    if _state["backend"] is None:
        name = os.environ.get("KIRCHHOFF_SIM_KERNELS", "").strip() or "numpy"
        if name not in BACKENDS:
            raise InputError(f"environment variable KIRCHHOFF_SIM_KERNELS must be one of "
                             f"{', '.join(BACKENDS)} (or empty), got {name!r}")
        _state["backend"] = name     # once: a run's forward and adjoint use the same backend
    return _state["backend"]


def _numba():
    """numba, imported after checking ``NUMBA_NUM_THREADS`` (numba reads it at import and
    fails on a bad value only later, in the middle of a run, or crashes the process)."""
    if _state.get("numba") is not None:
        return _state["numba"]
    from .checks import as_int

    # GNU OpenMP (numba's threading layer here) spins its idle threads by default: they
    # take a core from the NumPy work between kernels and, on a loaded machine, from
    # each other — the MNIST-sized layer took 470 ms instead of 9 ms beside two other
    # busy processes. Passive waiting (the user's own setting wins) costs nothing
    # measurable when the machine is quiet. Read when the OpenMP runtime loads, i.e. at
    # the first parallel kernel, after this; it applies to every OpenMP library the
    # process loads later too (as the variable does when set by hand).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    value = os.environ.get("NUMBA_NUM_THREADS", "").strip()
    if value:
        try:
            number = int(value)
        except ValueError:
            number = value
        as_int(number, "environment variable NUMBA_NUM_THREADS", minimum=1, maximum=MAX_THREADS)
    import numba

    _state["numba"] = numba
    return numba


def _column_block(batch: int) -> int:
    """Columns a thread takes in the column-parallel kernels: the batch split evenly over
    the threads, at least :data:`COLUMN_BLOCK` (each column is one thread's anyway, so
    the result does not depend on it)."""
    return max(COLUMN_BLOCK, -(-batch // threads()))


def set_threads(n: int) -> None:
    """Run the kernels on ``n`` threads (1 … ``NUMBA_NUM_THREADS``); the result does not
    depend on ``n``.

    Raises
    ------
    InputError
        ``n`` outside that range, or a bad ``NUMBA_NUM_THREADS``.
    """
    from .checks import as_int

    numba = _numba()
    numba.set_num_threads(as_int(n, "threads", minimum=1, maximum=numba.config.NUMBA_NUM_THREADS))


def threads() -> int:
    """The kernels' thread count.

    Raises
    ------
    InputError
        A bad ``NUMBA_NUM_THREADS``.
    """
    return _numba().get_num_threads()


def supports(device) -> bool:
    """Whether ``device``'s family runs in the kernel (every stock family but the Diode; a
    subclass of one runs on the NumPy path)."""
    # the exact classes: a subclass may override the physics the kernel hard-codes
    if type(device) in (_devices.Conductance, _devices.ShiftedReLU, _devices.ShiftedLeakyReLU, _devices.TanhCell):
        return True
    if type(device) in (_devices.DifferenceActivation, _devices.AffineActivation):
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


def parameter_cotangents(device, p: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """``(∂F/∂θ)ᵀν`` of one chunk's devices from the VJP kernel's per-edge sums.

    The kernel sums, over the batch, ``S = (λ·act, λ·act′·(z + C), λ·act′, μ, μ·v_src,
    μ·v_dst)`` with ``λ = ν[dst] − ν[src]``, ``μ = λ·∂i/∂z``; by the chain rule through
    :func:`coefficients`, ``∂/∂A = S₀``, ``∂/∂B = A·S₁``, ``∂/∂C = S₃``, ``∂/∂D = A·S₂``,
    ``∂/∂w_src = S₄``, ``∂/∂w_dst = S₅``, ``∂/∂bias = S₃``.

    Parameters
    ----------
    p : ndarray, shape (n_params, E_c)
    sums : ndarray, shape (6, E_c)

    Returns
    -------
    ndarray, shape (n_params, E_c)
    """
    s_f, s_au, s_g, s_mu, s_vs, s_vd = sums
    if isinstance(device, _devices.Conductance):
        return s_f[None]
    if isinstance(device, _devices._ShiftedRectifier):
        return np.stack([-s_mu, s_f])
    if isinstance(device, _devices.TanhCell):
        _, a_dbeta = device._slope(p[1])          # A·∂β/∂A: B = β(A) depends on the amplitude
        return np.stack([-s_mu, s_f + a_dbeta * s_au])
    if isinstance(device, _devices.DifferenceActivation):
        return np.stack([s_g, s_au])
    if isinstance(device, _devices.AffineActivation):
        return np.stack([s_vs, s_vd, s_mu])
    raise InputError(f"{type(device).__name__} has no kernel (use the NumPy path)")


def coefficient_directions(device, p: np.ndarray, direction: np.ndarray) -> tuple:
    """The directions ``(Ȧ, A·Ḃ, Ċ, Ḋ, ẇ_src, ẇ_dst, ḃias)`` of :func:`coefficients` for
    a parameter direction ``θ̇`` ``(n_params, E_c)`` — the transpose of
    :func:`parameter_cotangents` (``A·Ḃ`` whole: the TanhCell's ``B = β(A)``)."""
    zero = np.zeros(p.shape[1])
    A_dot = AB_dot = C_dot = D_dot = ws_dot = wd_dot = bias_dot = zero
    if isinstance(device, _devices.Conductance):
        A_dot = direction[0]
    elif isinstance(device, _devices._ShiftedRectifier):
        C_dot, A_dot = -direction[0], direction[1]
    elif isinstance(device, _devices.TanhCell):
        _, a_dbeta = device._slope(p[1])
        C_dot, A_dot, AB_dot = -direction[0], direction[1], a_dbeta * direction[1]
    elif isinstance(device, _devices.DifferenceActivation):
        D_dot, AB_dot = direction[0], direction[1]
    elif isinstance(device, _devices.AffineActivation):
        ws_dot, wd_dot, bias_dot = direction[0], direction[1], direction[2]
    else:
        raise InputError(f"{type(device).__name__} has no kernel (use the NumPy path)")
    return tuple(np.ascontiguousarray(np.broadcast_to(a, zero.shape), dtype=float)
                 for a in (A_dot, AB_dot, C_dot, D_dot, ws_dot, wd_dot, bias_dot))


def _jvp_into(out, V, v_dot, src, dst, device, p, direction) -> None:
    """Add one run's ``(∂F/∂V)·v̇ + (∂F/∂θ)·θ̇`` to ``out`` ``(N+1, B)`` (``direction``
    ``(n_params, E_c)`` or None). Arrays C-contiguous float64, checked by the caller."""
    src, dst, *coefficient_arrays, act = _edge_arrays(src, dst, device, p)
    params = direction is not None
    directions = (coefficient_directions(device, p, direction) if params
                  else (np.zeros(0),) * 7)
    block = _column_block(V.shape[1])
    _kernel("fused_jvp")(out, V, v_dot, src, dst, *coefficient_arrays, *directions, act,
                         _devices.LEAKY_SLOPE, block, params)


def _stamps_into(F, K, V, src, dst, slots, device, p) -> None:
    """Add one run's node currents to ``F`` ``(N+1, B)`` and its conductance stamps to the
    slot values ``K`` ``(n_slots, B)`` (``slots`` ``(4, E_c)`` int64, −1 for a dropped
    stamp). Arrays C-contiguous float64, checked by the caller (the assembly)."""
    src, dst, *coefficient_arrays, act = _edge_arrays(src, dst, device, p)
    block = _column_block(V.shape[1])
    _kernel("fused_stamps")(F, K, V, src, dst, slots, *coefficient_arrays, act, _devices.LEAKY_SLOPE, block)


#: columns of one block of the VJP kernel: fixed, so that its sums over the batch are
#: added in an order that does not depend on the thread count
VJP_BLOCK = 32
#: doubles of per-block parameter sums one VJP call may hold (16 MiB): a run of edges is
#: cut so that its ``(n_blocks, 6, E_run)`` sums fit
VJP_SUMS_BUDGET = 1 << 21


def vjp_run_edges(batch: int) -> int:
    """The most edges one VJP call takes at batch size ``batch`` (see
    :data:`VJP_SUMS_BUDGET`)."""
    return max(1, VJP_SUMS_BUDGET // (6 * -(-batch // VJP_BLOCK)))

_KERNELS = {}


def _kernel(name: str):
    """Compile (or load from numba's cache) a kernel of :mod:`._kcl_kernels` on first use."""
    if name not in _KERNELS:
        _numba()                 # check NUMBA_NUM_THREADS before numba reads it
        from . import _kcl_kernels

        _KERNELS[name] = getattr(_kcl_kernels, name)
    return _KERNELS[name]


def rhs_into(out: np.ndarray, V: np.ndarray, src, dst, device, p) -> None:
    """Add one chunk's node currents ``Aᵀ i(V)`` to ``out`` ``(N+1, B)`` in place.

    Parameters
    ----------
    out : ndarray, shape (N+1, B)
        C-contiguous, writable float64 or float32 (the dtype of ``V``); row 0 (ground)
        is zeroed.
    V : ndarray, shape (N+1, B)
        Node voltages, C-contiguous float64 or float32 (a float32 state's edges are
        evaluated in float32, tanh in its float32 form).
    src, dst : ndarray of int, shape (E_c,)
        End nodes of the chunk's edges, each in ``0 … N``.
    device : Device
        A family :func:`supports` accepts.
    p : ndarray, shape (n_params, E_c)
        The chunk's parameters.

    Raises
    ------
    InputError
        Arrays that do not fit together, or of another layout or dtype (the compiled
        loop does not check its bounds, so nothing is passed to it unchecked).
    """
    if not (isinstance(out, np.ndarray) and isinstance(V, np.ndarray)) or out.ndim != 2 or out.shape != V.shape:
        raise InputError(f"out and V must be arrays of one shape (N+1, B), got "
                         f"{np.shape(out)} and {np.shape(V)}")
    for name, a in (("out", out), ("V", V)):
        if a.dtype not in (np.float64, np.float32) or a.dtype != V.dtype or not a.flags.c_contiguous:
            raise InputError(f"{name} must be a C-contiguous float64 or float32 array (out and V of one "
                             f"dtype), got {a.dtype} ({'C' if a.flags.c_contiguous else 'not C'}-contiguous)")
    if not out.flags.writeable:
        raise InputError("out must be writable")
    if out.shape[0] == 0:
        raise InputError("out and V need at least the ground row (shape (N+1, B) with N >= 0)")
    if np.shares_memory(out, V):
        raise InputError("out and V must not overlap: the kernel reads V while it writes out")
    src, dst = np.asarray(src), np.asarray(dst)
    if src.ndim != 1 or src.shape != dst.shape or src.dtype.kind not in "iu" or dst.dtype.kind not in "iu":
        raise InputError(f"src and dst must be integer arrays of one shape (E_c,), got "
                         f"{src.dtype}{src.shape} and {dst.dtype}{dst.shape}")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= V.shape[0]):
        raise InputError(f"src and dst must be node indices in 0..{V.shape[0] - 1} (the rows of V)")
    if not supports(device):
        raise InputError(f"{type(device).__name__} has no kernel (use the NumPy path)")
    p = as_real_array(p, "p", finite=False, error=InputError)
    if p.shape != (device.n_params, src.size):
        raise InputError(f"p must have shape {(device.n_params, src.size)} (n_params, E_c), got {p.shape}")
    _rhs_into(out, V, src, dst, device, p)


def _rhs_into(out, V, src, dst, device, p) -> None:
    """:func:`rhs_into` without the checks, for an assembly whose arrays fit by
    construction (its caller checks the row count of ``V``)."""
    block = _column_block(V.shape[1])
    # in the working type: a float32 run evaluates its edges in float32 (tanh in its own
    # float32 form), as the VJP does; the JVP and the stamps evaluate in float64
    _kernel("fused_rhs")(out, V, *_edge_arrays(src, dst, device, p, V.dtype), V.dtype.type(_devices.LEAKY_SLOPE),
                         block)


def _edge_arrays(src, dst, device, p, dtype=np.float64) -> tuple:
    """The kernels' per-edge arguments: ``src, dst`` (int64), the coefficients of
    :func:`coefficients` (contiguous, of ``dtype``) and the activation code."""
    act, *arrays = coefficients(device, p)
    return (src.astype(np.int64, copy=False), dst.astype(np.int64, copy=False),
            *(np.ascontiguousarray(a, dtype=dtype) for a in arrays), act)


def _vjp_into(v_bar, V, nu, src, dst, device, p, params: bool):
    """Add one chunk's ``(∂F/∂V)ᵀν`` to ``v_bar`` ``(N+1, B)``; return ``(∂F/∂θ)ᵀν``
    ``(n_params, E_c)`` when ``params`` (else None). ``V``, ``nu`` and ``v_bar`` are
    C-contiguous float64 ``(N+1, B)`` and ``nu``'s ground row is zero (the caller, the
    assembly, sees to both: ground's cotangent is ignored, as in the NumPy path)."""
    n_blocks = -(-V.shape[1] // VJP_BLOCK)
    sums = np.zeros((n_blocks, 6, len(src) if params else 0))
    _kernel("fused_vjp")(v_bar, sums, V, nu, *_edge_arrays(src, dst, device, p, V.dtype),
                         V.dtype.type(_devices.LEAKY_SLOPE), VJP_BLOCK, params)
    if not params:
        return None
    return parameter_cotangents(device, p, sums.sum(axis=0))
