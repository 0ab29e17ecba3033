"""The numba kernel behind :mod:`kirchhoff_sim.kernels` (imported, and compiled or
loaded from numba's on-disk cache, only when the numba backend is used)."""

import math

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _activation(y, act, leaky):
    # the operations of devices._ACT_FUNCS, scalar by scalar
    if act == 0:
        return y
    if act == 1:
        return y if y > 0.0 else 0.0
    if act == 2:
        return y if y > 0.0 else leaky * y
    if act == 3:
        return math.tanh(y)
    # softplus as numpy.logaddexp(0, y)
    if y == 0.0:
        return math.log(2.0)
    if y < 0.0:
        return math.log1p(math.exp(y))
    return y + math.log1p(math.exp(-y))


@numba.njit(cache=True)
def _edges_on_columns(out, V, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, b1):
    """One thread's work: every edge on columns ``b0..b1−1``; the activation is chosen
    once per edge (outside the column loop), and the column loop computes the currents
    into a small buffer before scattering them, so that it can be vectorised."""
    width = b1 - b0
    current = np.empty(width)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs = V[s, b0:b1]
        vd = V[d, b0:b1]
        if act == 1:
            for j in range(width):
                y = bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd
                current[j] = a * (y if y > 0.0 else 0.0)
        elif act == 0:
            for j in range(width):
                current[j] = a * (bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd)
        else:
            for j in range(width):
                current[j] = a * _activation(bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd, act, leaky)
        od = out[d, b0:b1]
        for j in range(width):
            od[j] += current[j]
        os_ = out[s, b0:b1]
        for j in range(width):
            os_[j] -= current[j]


@numba.njit(parallel=True, cache=True)
def fused_rhs(out, V, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, block):
    """``out[dst] += i``, ``out[src] −= i`` with ``i = A·act(B·(z + C) + D)``,
    ``z = w_src·V[src] + w_dst·V[dst] + bias``, for every edge and batch column; the
    columns are split into blocks of ``block``, one thread a block, each column computed
    by one thread in edge order (so the result does not depend on the thread count)."""
    batch = V.shape[1]
    n_blocks = (batch + block - 1) // block
    for k in numba.prange(n_blocks):
        b0 = k * block
        _edges_on_columns(out, V, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, min(batch, b0 + block))
    out[0, :] = 0.0
