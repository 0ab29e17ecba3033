"""The numba kernels behind :mod:`kirchhoff_sim.kernels` (imported, and compiled or
loaded from numba's on-disk cache, only when the numba backend is used)."""

import math

import numba
import numpy as np
from numba import types
from numba.extending import overload


# exp, tanh, softplus and sigmoid without a call into the C library, so that loops over
# them vectorise (a libm call is scalar: it was 43 % of a tanh layer's time, issue #14).
# Every branch below is a select, so the compiler vectorises them; tests/test_kernels.py
# measures each against extended-precision values (mpmath) and checks the SIMD loop.
#
# One core serves them all: y = k·ln2 + r with k = round(y/ln2), |r| ≤ ln2/2, by
# Cody–Waite reduction (ln2 split in a 23-bit part, whose product with any |k| < 2^29 is
# exact, and the remainder), expm1(r) by its Taylor polynomial to r¹³/13! (truncation
# < 1e-17 relative), and 2^k built from k's binary digits by exact multiplications, so
# that nothing needs a bit cast. Then exp(y) = 2^k·(1 + expm1(r)) and
# expm1(y) = 2^k·expm1(r) + (2^k − 1).
#
# tanh(a) = −m/(2 + m) with m = expm1(−2a) for a = |x| ≤ TANH_ONE, ±1 beyond (there
# 1 − tanh(a) < 2·e^(−38.1), below half an ulp of 1). softplus(z) = max(z, 0) +
# log1p(e) and sigmoid(z) = (1 or e)/(1 + e) with e = exp(−|z|) ∈ [0, 1], and log1p on
# [0, 1] as fdlibm writes it: 1 + t = 2^j·(1 + f) with j = 0, f = t below t = 1/2 and
# j = 1, f = (t − 1)/2 (exact) above, so f ∈ [−1/4, 1/2); s = f/(2 + f) and
# log(1 + f) = f − f²/2 + s·(f²/2 + R(s²)), R(z) = Σₙ 2zⁿ/(2n + 1) to n = 11
# (truncation < 1e-18 relative, z ≤ 1/25), the j·ln2 added in two parts as above.
TANH_ONE = 19.1
_LN2_HI = 0.693145751953125             # 23 significant bits: k·_LN2_HI is exact for |k| < 2^29
_LN2_LO = 1.4286068203094172321e-06     # ln 2 − _LN2_HI
_INV_LN2 = 1.4426950408889634074
# exp's argument is clamped to [_EXP_LO, _EXP_HI] (NaN passes): beyond, exp(y) rounds to
# 0 or overflows to inf whatever the argument, and |k| stays below 1100.
_EXP_LO, _EXP_HI = -760.0, 720.0
_TWO_1023, _TWO_M1024 = 2.0 ** 1023, 2.0 ** -1024
# Horner coefficients, highest degree first: (expm1(r) − r)/r² = Σ rⁿ/(n + 2)! to r¹¹,
# R(z)/z = Σ 2zⁿ/(2n + 3) to z¹⁰
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(n) for n in range(13, 1, -1))
_LOG1P_SERIES = tuple(2.0 / (2 * n + 1) for n in range(11, 0, -1))
# (bit, 2^bit, 2^−bit): the digits of a power of two's exponent, largest first
_DIGITS_32 = tuple((2.0 ** b, 2.0 ** 2.0 ** b, 2.0 ** -2.0 ** b) for b in range(5, -1, -1))
_DIGITS_512 = tuple((2.0 ** b, 2.0 ** 2.0 ** b, 2.0 ** -2.0 ** b) for b in range(9, -1, -1))


@numba.njit(cache=True, inline="always", error_model="numpy")
def _horner(x, coefficients):
    """The polynomial ``Σ coefficients[i]·x^(n−1−i)`` (highest degree first)."""
    p = coefficients[0]
    for c in coefficients[1:]:
        p = p * x + c
    return p


@numba.njit(cache=True, inline="always", error_model="numpy")
def _exp_reduced(y):
    """``(k, expm1(r))`` with ``y = k·ln2 + r``, ``k`` a whole float, ``|r| ≤ ln2/2``
    (``|y| < 2^28``; see above)."""
    k = math.floor(y * _INV_LN2 + 0.5)
    r = (y - k * _LN2_HI) - k * _LN2_LO
    return k, r + r * r * _horner(r, _EXPM1_TAYLOR)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _pow2(m, up, digits):
    """``2^m`` (``up``) or ``2^−m`` for a whole ``0 ≤ m < 2·digits[0][0]``, a product of
    ``m``'s binary digits' powers of two: exact while it stays a normal number."""
    scale = 1.0
    for bit, big, small in digits:
        high = m >= bit
        scale = scale * (big if up else small) if high else scale
        m = m - bit if high else m
    return scale


@numba.njit(cache=True, inline="always", error_model="numpy")
def _expm1_nonpositive(y):
    """``expm1(y)`` for ``−38.2 ≤ y ≤ 0`` (see above)."""
    k, em1_r = _exp_reduced(y)
    scale = _pow2(-k, False, _DIGITS_32)         # 2^k, k = 0 … −56
    return scale * em1_r + (scale - 1.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def exp(x):
    """exp in a form the compiler vectorises, within 1.5 ulp (see above); exp(−inf) = 0,
    exp(inf) = inf, NaN stays NaN."""
    y = _EXP_LO if x < _EXP_LO else x
    y = _EXP_HI if y > _EXP_HI else y
    k, em1_r = _exp_reduced(y)
    # 2^k = 2^±m·top: m < 1024 from the digits, top = 2^1023 or 2^−1024 split off so that
    # (1 + expm1(r))·2^m is exact and only the last product rounds (to a subnormal, 0 or inf)
    up = k >= 0.0
    m = abs(k)
    high = m >= 1024.0
    m = m - (1023.0 if up else 1024.0) if high else m
    top = (_TWO_1023 if up else _TWO_M1024) if high else 1.0
    return ((1.0 + em1_r) * _pow2(m, up, _DIGITS_512)) * top


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh(x):
    """tanh in a form the compiler vectorises, within a few ulps (see above)."""
    a = abs(x)
    inside = a < TANH_ONE                        # (selects: numba's min() blocks vectorising)
    m = _expm1_nonpositive(-2.0 * (a if inside else TANH_ONE))
    t = -m / (2.0 + m) if inside else (1.0 if a >= TANH_ONE else x)   # NaN stays NaN
    return math.copysign(abs(t), x)              # odd, tanh(±0) = ±0


# tanh of a float32 in float32 (issue #14): twice the lanes of a SIMD vector, and a rational
# form instead of exp — tanh(x) = x·P(x²)/Q(x²) on |x| ≤ TANH32_CLAMP (P of degree 6, Q of
# degree 3), clamped beyond (1 − tanh(9) = 3e-8, about half an ulp of 1). The coefficients
# are our own fit: linearised rational least squares on [0, 9] in the ulps of tanh, with
# Lawson's reweighting towards the minimax error (0.11 ulp in exact arithmetic); evaluated
# in float32 the rounding of P and Q dominates — within 6 ulp (5.8 measured, 3.5e-7 relative) over
# the float32s, checked in tests/test_kernels.py.
TANH32_CLAMP = np.float32(9.0)
_TANH32_P = tuple(np.float32(c) for c in (-8.43349e-14, 5.2543657e-11, -2.017176e-08, 1.1140137e-05,
                                          0.003102538, 0.1308272, 1.0))      # highest degree first
_TANH32_Q = tuple(np.float32(c) for c in (0.00025441186, 0.024489466, 0.46416047, 1.0))
_ONE_32 = np.float32(1.0)


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh32(x):
    """tanh of a float32 in float32 arithmetic, vectorisable, within 6 ulp (see above);
    NaN stays NaN."""
    a = x if x < TANH32_CLAMP else TANH32_CLAMP            # (selects: they vectorise)
    a = a if a > -TANH32_CLAMP else -TANH32_CLAMP
    z = a * a
    t = a * _horner(z, _TANH32_P) / _horner(z, _TANH32_Q)
    t = t if t < _ONE_32 else _ONE_32
    t = t if t > -_ONE_32 else -_ONE_32
    return t if x == x else x


def tanh_of(x):
    """tanh in the working precision of ``x``: inside the kernels :func:`tanh32` for a
    float32 and :func:`tanh` otherwise (chosen when the kernel is compiled for its types);
    NumPy's outside them."""
    return np.tanh(x)


@overload(tanh_of, inline="always")
def _tanh_of(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: tanh32(x)
    return lambda x: tanh(x)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _log1p_unit(t):
    """``log1p(t)`` for ``0 ≤ t ≤ 1`` (see above); NaN stays NaN."""
    upper = t >= 0.5
    f = 0.5 * (t - 1.0) if upper else t          # t − 1 is exact for t ≥ 1/2
    j = 1.0 if upper else 0.0
    s = f / (2.0 + f)
    z = s * s
    R = z * _horner(z, _LOG1P_SERIES)
    hfsq = 0.5 * f * f
    return j * _LN2_HI - ((hfsq - (s * (hfsq + R) + j * _LN2_LO)) - f)


@numba.njit(cache=True, inline="always", error_model="numpy")
def softplus_and_sigmoid(z):
    """``(softplus(z), sigmoid(z))``, softplus = log(1 + e^z) as ``numpy.logaddexp(0, z)``
    and its slope sigmoid = 1/(1 + e^−z) as ``scipy.special.expit``, in a form the
    compiler vectorises (see above), each within 3 ulp; NaN stays NaN."""
    e = exp(-abs(z))
    return (z if z > 0.0 else 0.0) + _log1p_unit(e), (1.0 if z >= 0.0 else e) / (1.0 + e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def softplus(z):
    """softplus alone (see :func:`softplus_and_sigmoid`)."""
    e = exp(-abs(z))
    return (z if z > 0.0 else 0.0) + _log1p_unit(e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def sigmoid(z):
    """sigmoid alone (see :func:`softplus_and_sigmoid`)."""
    e = exp(-abs(z))
    return (1.0 if z >= 0.0 else e) / (1.0 + e)


@numba.njit(cache=True, inline="always", error_model="numpy")
def _scatter(out, s, d, b0, current):
    """One edge's currents ``current`` on columns ``b0…`` into ``out``: they enter ``dst``
    (``+``) and leave ``src`` (``−``), each row in one loop that vectorises."""
    od = out[d, b0:b0 + current.shape[0]]
    for j in range(current.shape[0]):
        od[j] += current[j]
    os_ = out[s, b0:b0 + current.shape[0]]
    for j in range(current.shape[0]):
        os_[j] -= current[j]


@numba.njit(cache=True, error_model="numpy")
def _edges_on_columns(out, V, src, dst, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, b1):
    """One thread's work: every edge on columns ``b0..b1−1``; the activation is chosen
    once per edge (outside the column loop: a loop that chooses it per element neither
    vectorises nor stays small), and the column loop computes the currents into a small
    buffer before scattering them, so that it can be vectorised."""
    width = b1 - b0
    current = np.empty_like(out[0, b0:b1])       # of the working type: a float32 run stays float32
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
                current[j] = a * tanh_of(bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd)
        elif act == 2:
            for j in range(width):
                y = bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd
                current[j] = a * (y if y > 0.0 else leaky * y)
        else:
            for j in range(width):
                current[j] = a * softplus(bb * ((ws * vs[j] + wd * vd[j] + be) + c) + dd)
        _scatter(out, s, d, b0, current)


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
def _values_and_slopes(f, g, u, bb, dd, act, leaky):
    """``f = act(y)``, ``g = act′(y)`` with ``y = bb·u + dd`` over a block's columns, as
    ``devices.Activation.value_and_slope`` computes them: one loop per activation (chosen
    once, outside it), so that each vectorises."""
    if act == 0:
        for j in range(u.shape[0]):
            f[j], g[j] = bb * u[j] + dd, 1.0
    elif act == 1:
        for j in range(u.shape[0]):
            y = bb * u[j] + dd
            f[j], g[j] = (y, 1.0) if y > 0.0 else (0.0, 0.0)
    elif act == 2:
        for j in range(u.shape[0]):
            y = bb * u[j] + dd
            f[j], g[j] = (y, 1.0) if y > 0.0 else (leaky * y, leaky)
    elif act == 3:
        for j in range(u.shape[0]):
            t = tanh_of(bb * u[j] + dd)
            f[j], g[j] = t, 1.0 - t * t
    else:
        for j in range(u.shape[0]):
            f[j], g[j] = softplus_and_sigmoid(bb * u[j] + dd)


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
    row = v_bar[0, b0:b1]                        # the buffers of the working type (the sums stay float64)
    f, g, u, lam, mu = np.empty_like(row), np.empty_like(row), np.empty_like(row), np.empty_like(row), np.empty_like(row)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs, vd = V[s, b0:b1], V[d, b0:b1]
        ns, nd = nu[s, b0:b1], nu[d, b0:b1]
        for j in range(width):
            u[j] = (ws * vs[j] + wd * vd[j] + be) + c
        _values_and_slopes(f, g, u, bb, dd, act, leaky)
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
    u, f, g, i_dot = np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs, vd = V[s, b0:b1], V[d, b0:b1]
        xs, xd = v_dot[s, b0:b1], v_dot[d, b0:b1]
        for j in range(width):
            u[j] = (ws * vs[j] + wd * vd[j] + be) + c
        _values_and_slopes(f, g, u, bb, dd, act, leaky)
        if params:
            wsd, wdd, bd = ws_dot[e], wd_dot[e], bias_dot[e]
            ad, abd, cd, ddd = A_dot[e], AB_dot[e], C_dot[e], D_dot[e]
            for j in range(width):
                z_dot = (ws * xs[j] + wd * xd[j]) + (wsd * vs[j] + wdd * vd[j] + bd)
                i_dot[j] = a * g[j] * bb * z_dot + ad * f[j] + g[j] * (abd * u[j] + a * bb * cd + a * ddd)
        else:
            for j in range(width):
                i_dot[j] = a * g[j] * bb * (ws * xs[j] + wd * xd[j])
        _scatter(out, s, d, b0, i_dot)


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


@numba.njit(cache=True, inline="always", error_model="numpy")
def _stamp(K, slot, b0, w, dz):
    """``K[slot, b0…] += w·dz`` (nothing for the slot −1 of a stamp on ground)."""
    if slot >= 0:
        row = K[slot, b0:b0 + dz.shape[0]]
        for j in range(dz.shape[0]):
            row[j] += w * dz[j]


@numba.njit(cache=True, error_model="numpy")
def _stamp_columns(F, K, V, src, dst, slots, w_src, w_dst, bias, A, B, C, D, act, leaky, b0, b1):
    """One block's work: every edge's current into ``F`` and its four conductance stamps
    ``K[dst,src] += gs``, ``K[dst,dst] += gd``, ``K[src,src] −= gs``, ``K[src,dst] −= gd``
    (``gs = w_src·∂i/∂z``, ``gd = w_dst·∂i/∂z``) into the slots ``slots[:, e]`` of ``K``
    (−1: a stamp on ground's row or column, dropped)."""
    width = b1 - b0
    u, f, g, i, dz = np.empty(width), np.empty(width), np.empty(width), np.empty(width), np.empty(width)
    for e in range(src.shape[0]):
        s, d = src[e], dst[e]
        ws, wd, be = w_src[e], w_dst[e], bias[e]
        a, bb, c, dd = A[e], B[e], C[e], D[e]
        vs, vd = V[s, b0:b1], V[d, b0:b1]
        for j in range(width):
            u[j] = (ws * vs[j] + wd * vd[j] + be) + c
        _values_and_slopes(f, g, u, bb, dd, act, leaky)
        for j in range(width):
            i[j] = a * f[j]
            dz[j] = a * g[j] * bb
        _scatter(F, s, d, b0, i)
        _stamp(K, slots[0, e], b0, ws, dz)         # −w·dz = −(w·dz) exactly: "K −= w·dz"
        _stamp(K, slots[1, e], b0, wd, dz)
        _stamp(K, slots[2, e], b0, -ws, dz)
        _stamp(K, slots[3, e], b0, -wd, dz)


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
