"""The numba kernels behind :mod:`kirchhoff_sim.kernels` (imported, and compiled or
loaded from numba's on-disk cache, only when the numba backend is used)."""

import math

import numba
import numpy as np


# tanh without a call into the C library, so that loops over it vectorise (the libm call
# is scalar, and was 43 % of a tanh layer's time, issue #14). tanh(a) = −m/(2 + m) with
# m = expm1(−2a) for a = |x| ≤ TANH_ONE, ±1 beyond (there 1 − tanh(a) < 2·e^(−38.1),
# below half an ulp of 1). expm1(y) for y ∈ [−38.2, 0]: Cody–Waite reduction
# y = k·ln2 + r, |r| ≤ ln2/2 (ln2 split in a part whose product with k ≤ 56 is exact and
# a remainder), expm1(r) by its Taylor polynomial to r¹³/13! (truncation < 1e-17
# relative), and 2^k built from k's bits by exact multiplications, so that
# expm1(y) = 2^k·expm1(r) + (2^k − 1) needs no bit casts. The result is within a few ulps
# of the correctly rounded tanh (tests/test_kernels.py measures it against
# extended-precision tanh); every branch is a select, so the compiler vectorises it.
TANH_ONE = 19.1
_LN2_HI = 0.693145751953125             # 23 significant bits: k·_LN2_HI is exact for |k| < 2^29
_LN2_LO = 1.4286068203094172321e-06     # ln 2 − _LN2_HI
_INV_LN2 = 1.4426950408889634074


@numba.njit(cache=True, inline="always", error_model="numpy")
def _expm1_nonpositive(y):
    """``expm1(y)`` for ``−38.2 ≤ y ≤ 0`` (see above)."""
    k = math.floor(y * _INV_LN2 + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    em1_r = r + r * r * p
    m = -k                                       # 0 … 56, a whole number
    scale = 1.0
    for bit in (32.0, 16.0, 8.0, 4.0, 2.0, 1.0):  # 2^−m from m's binary digits, all exact
        high = m >= bit
        scale = scale * (2.0 ** -bit) if high else scale
        m = m - bit if high else m
    return scale * em1_r + (scale - 1.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh(x):
    """tanh in a form the compiler vectorises, within a few ulps (see above)."""
    a = abs(x)
    inside = a < TANH_ONE                        # (selects: numba's min() blocks vectorising)
    m = _expm1_nonpositive(-2.0 * (a if inside else TANH_ONE))
    t = -m / (2.0 + m) if inside else (1.0 if a >= TANH_ONE else x)   # NaN stays NaN
    return math.copysign(abs(t), x)              # odd, tanh(±0) = ±0


@numba.njit(cache=True, inline="always", error_model="numpy")
def _activation(y, act, leaky):
    # the operations of devices._ACT_FUNCS, scalar by scalar
    if act == 0:
        return y
    if act == 1:
        return y if y > 0.0 else 0.0
    if act == 2:
        return y if y > 0.0 else leaky * y
    if act == 3:
        return tanh(y)
    # softplus as numpy.logaddexp(0, y)
    if y == 0.0:
        return math.log(2.0)
    if y < 0.0:
        return math.log1p(math.exp(y))
    return y + math.log1p(math.exp(-y))


@numba.njit(cache=True, error_model="numpy")
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
        elif act == 3:
            for j in range(width):
                current[j] = a * tanh(bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd)
        else:
            for j in range(width):
                current[j] = a * _activation(bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd, act, leaky)
        od = out[d, b0:b1]
        for j in range(width):
            od[j] += current[j]
        os_ = out[s, b0:b1]
        for j in range(width):
            os_[j] -= current[j]


@numba.njit(parallel=True, cache=True, error_model="numpy")
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


@numba.njit(cache=True, inline="always", error_model="numpy")
def _value_and_slope(y, act, leaky):
    # (act(y), act'(y)) as devices.Activation.value_and_slope computes them
    if act == 0:
        return y, 1.0
    if act == 1:
        return (y, 1.0) if y > 0.0 else (0.0, 0.0)
    if act == 2:
        return (y, 1.0) if y > 0.0 else (leaky * y, leaky)
    if act == 3:
        t = tanh(y)
        return t, 1.0 - t * t
    # softplus as numpy.logaddexp(0, y), its slope as scipy.special.expit(y)
    if y >= 0.0:
        e = math.exp(-y)
        return (math.log(2.0) if y == 0.0 else y + math.log1p(e)), 1.0 / (1.0 + e)
    e = math.exp(y)
    return math.log1p(e), e / (1.0 + e)


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc"})
def _batch_sums(sums, e, lam, f, g, u, mu, vs, vd):
    """The six sums of one edge over a block's columns. Reassociation lets the compiler
    add them in SIMD lanes; the order is fixed by the compiled code and the (fixed)
    block width, so the result still does not depend on the thread count."""
    s_f = s_au = s_g = s_mu = s_vs = s_vd = 0.0
    for j in range(lam.shape[0]):
        s_f += lam[j] * f[j]
        s_au += lam[j] * g[j] * u[j]
        s_g += lam[j] * g[j]
        s_mu += mu[j]
        s_vs += mu[j] * vs[j]
        s_vd += mu[j] * vd[j]
    sums[0, e], sums[1, e], sums[2, e] = s_f, s_au, s_g
    sums[3, e], sums[4, e], sums[5, e] = s_mu, s_vs, s_vd


@numba.njit(cache=True, error_model="numpy")
def _vjp_columns(v_bar, sums, V, nu, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, b1, params):
    """One block's work: ``μ = λ·∂i/∂z`` of every edge on columns ``b0..b1−1`` scattered
    through the input weights into ``v_bar``, and (with ``params``) the block's sums over
    its columns of ``λ·act``, ``λ·act′·(z + C)``, ``λ·act′``, ``μ``, ``μ·v_src``,
    ``μ·v_dst`` per edge into ``sums`` ``(6, E_c)``. Each stage is its own loop over the
    block's columns on small buffers, so that the compiler can vectorise them."""
    width = b1 - b0
    f, g, u, lam, mu = np.empty(width), np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs, vd = V[s, b0:b1], V[d, b0:b1]
        ns, nd = nu[s, b0:b1], nu[d, b0:b1]
        for j in range(width):
            u[j] = (ws * vs[j] + wd * vd[j] + be) + c
        if act == 3:                              # the common case, in a loop that vectorises
            for j in range(width):
                t = tanh(bb * u[j] + dd)
                f[j] = t
                g[j] = 1.0 - t * t
        else:
            for j in range(width):
                f[j], g[j] = _value_and_slope(bb * u[j] + dd, act, leaky)
        for j in range(width):
            lam[j] = nd[j] - ns[j]
            mu[j] = lam[j] * (a * g[j] * bb)
        out_s = v_bar[s, b0:b1]
        for j in range(width):
            out_s[j] += ws * mu[j]
        out_d = v_bar[d, b0:b1]
        for j in range(width):
            out_d[j] += wd * mu[j]
        if params:
            _batch_sums(sums, e, lam, f, g, u, mu, vs, vd)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def fused_vjp(v_bar, sums, V, nu, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, block, params):
    """``(∂F/∂V)ᵀν`` added to ``v_bar`` and the per-block parameter sums
    ``sums`` ``(n_blocks, 6, E_c)`` of ``F = Aᵀ i(V)`` with ``i = A·act(B·(z + C) + D)``;
    ``nu``'s ground row must be zero. The blocks of ``block`` columns are fixed (not one
    per thread), so the sums — added block by block afterwards — do not depend on the
    thread count."""
    batch = V.shape[1]
    n_blocks = (batch + block - 1) // block
    for k in numba.prange(n_blocks):
        b0 = k * block
        _vjp_columns(v_bar, sums[k], V, nu, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky,
                     b0, min(batch, b0 + block), params)
    v_bar[0, :] = 0.0


@numba.njit(cache=True, error_model="numpy")
def _jvp_columns(out, V, v_dot, src, dst, w_src, w_dst, bias, A, B, C, D,
                 A_dot, AB_dot, C_dot, D_dot, ws_dot, wd_dot, bias_dot, act, leaky, b0, b1, params):
    """One block's work: ``i̇ = ∂i/∂z·ż (+ the parameter terms)`` of every edge on columns
    ``b0..b1−1``, scattered into ``out``; ``ż = w_src·v̇_src + w_dst·v̇_dst`` (``+ ẇ_src·v_src
    + ẇ_dst·v_dst + ḃias``) and ``i̇ += Ȧ·act + act′·(A·Ḃ·(z + C) + A·B·Ċ + A·Ḋ)``, with
    ``A·Ḃ`` given whole (``AB_dot``) because ``B`` may be a function of ``A``."""
    width = b1 - b0
    i_dot = np.empty(width)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs, vd = V[s, b0:b1], V[d, b0:b1]
        xs, xd = v_dot[s, b0:b1], v_dot[d, b0:b1]
        for j in range(width):
            u = (ws * vs[j] + wd * vd[j] + be) + c
            f, g = _value_and_slope(bb * u + dd, act, leaky)
            z_dot = ws * xs[j] + wd * xd[j]
            if params:
                z_dot += ws_dot[e] * vs[j] + wd_dot[e] * vd[j] + bias_dot[e]
                i_dot[j] = a * g * bb * z_dot + A_dot[e] * f + g * (AB_dot[e] * u + a * bb * C_dot[e]
                                                                   + a * D_dot[e])
            else:
                i_dot[j] = a * g * bb * z_dot
        od = out[d, b0:b1]
        for j in range(width):
            od[j] += i_dot[j]
        os_ = out[s, b0:b1]
        for j in range(width):
            os_[j] -= i_dot[j]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def fused_jvp(out, V, v_dot, src, dst, w_src, w_dst, bias, A, B, C, D,
              A_dot, AB_dot, C_dot, D_dot, ws_dot, wd_dot, bias_dot, act, leaky, block, params):
    """``(∂F/∂V)·v̇ (+ (∂F/∂θ)·θ̇)`` added to ``out`` (ground row zeroed), blocks of
    ``block`` columns, one thread a block, each column in edge order."""
    batch = V.shape[1]
    n_blocks = (batch + block - 1) // block
    for k in numba.prange(n_blocks):
        b0 = k * block
        _jvp_columns(out, V, v_dot, src, dst, w_src, w_dst, bias, A, B, C, D, A_dot, AB_dot, C_dot, D_dot,
                     ws_dot, wd_dot, bias_dot, act, leaky, b0, min(batch, b0 + block), params)
    out[0, :] = 0.0


@numba.njit(cache=True, error_model="numpy")
def _stamp_columns(F, K, V, src, dst, slots, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, b1):
    """One block's work: every edge's current into ``F`` and its four conductance stamps
    ``K[dst,src] += gs``, ``K[dst,dst] += gd``, ``K[src,src] −= gs``, ``K[src,dst] −= gd``
    (``gs = w_src·∂i/∂z``, ``gd = w_dst·∂i/∂z``) into the slots ``slots[:, e]`` of ``K``
    (−1: a stamp on ground's row or column, dropped)."""
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        k_ds, k_dd, k_ss, k_sd = slots[0, e], slots[1, e], slots[2, e], slots[3, e]
        for j in range(b0, b1):
            f, g = _value_and_slope(bb * ((ws * V[s, j] + wd * V[d, j] + be) + c) + dd, act, leaky)
            i = a * f
            dz = a * g * bb
            F[d, j] += i
            F[s, j] -= i
            if k_ds >= 0:
                K[k_ds, j] += ws * dz
            if k_dd >= 0:
                K[k_dd, j] += wd * dz
            if k_ss >= 0:
                K[k_ss, j] -= ws * dz
            if k_sd >= 0:
                K[k_sd, j] -= wd * dz


@numba.njit(parallel=True, cache=True, error_model="numpy")
def fused_stamps(F, K, V, src, dst, slots, w_src, w_dst, bias, A, B, C, D, act, leaky, block):
    """Node currents ``F`` ``(N+1, B)`` (ground row zeroed) and the conductance matrices'
    slot values ``K`` ``(n_slots, B)`` of the Newton iteration, added in place; blocks of
    ``block`` columns, one thread a block, each column in edge order."""
    batch = V.shape[1]
    n_blocks = (batch + block - 1) // block
    for k in numba.prange(n_blocks):
        b0 = k * block
        _stamp_columns(F, K, V, src, dst, slots, w_src, w_dst, bias, A, B, C, D, act, leaky, b0,
                       min(batch, b0 + block))
    F[0, :] = 0.0
