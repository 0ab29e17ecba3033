"""Circuits with exact answers, for the solver tests.

Every builder returns a :class:`Problem` ``(net, x, exact)`` that unpacks as a triple:

* ``net`` — a :class:`kirchhoff_sim.KirchhoffNet`;
* ``x`` — the input batch ``(B, d)``;
* ``exact(t)`` — the node voltages at time ``t`` (a float: ``(B, N)``; an array of
  times: ``(n_t, B, N)``), computed without the package's solvers.

The exact solutions are independent of the package: matrix exponentials for linear
networks, a closed form or high-accuracy quadrature (``t(v) = ∫ C dv / i(v)``, inverted
by root finding) for the one-node diode discharges, and scipy's ``lambertw`` for the
current of a diode with series resistance.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
import scipy.integrate
import scipy.linalg
import scipy.optimize
import scipy.special

import kirchhoff_sim as ks
from kirchhoff_sim import devices

# A silicon diode in normalised units: nVt = kT/q at 300 K in volts (V0 = 1 V) and a
# saturation current that puts the knee near 0.35 V, so the discharge from 0.8 V passes
# through six decades of current — stiff at the start, slow at the end.
THERMAL_VOLTAGE = 0.025852
SATURATION_CURRENT = 1e-6


class Problem(NamedTuple):
    net: ks.KirchhoffNet
    x: np.ndarray
    exact: Callable


def _vectorised(exact_scalar):
    """Turn ``f(t) -> (B, N)`` into one that also takes an array of times."""

    def exact(t):
        if np.ndim(t) == 0:
            return exact_scalar(float(t))
        return np.stack([exact_scalar(float(s)) for s in np.asarray(t)])

    return exact


# ------------------------------------------------------------------ RC decay
def rc_decay(conductance=1.5, capacitance=0.5, v0=(1.0, -0.5, 2.0, 0.25, -1.25), duration=1.0):
    """One node with a capacitor and a resistor to ground: ``v = v0·exp(−g t / C)``.

    The batch holds one sample per entry of ``v0``.
    """
    net = ks.KirchhoffNet(
        [ks.Layer([[1, 0]], ks.Conductance(), duration, params=[[conductance]])],
        capacitance=capacitance,
    )
    x = np.asarray(v0, dtype=float)[:, None]
    rate = conductance / capacitance
    return Problem(net, x, _vectorised(lambda t: x * np.exp(-rate * t)))


# ------------------------------------------------------------------ linear networks
def conductance_matrix(edges, g, num_nodes) -> np.ndarray:
    """``K = −Aᵀ diag(g) A`` (ground removed): ``C dv/dt = K v`` for conductances ``g``.

    Built by a Python loop over edges — deliberately not the package's assembler.
    """
    K = np.zeros((num_nodes + 1, num_nodes + 1))
    for (s, d), ge in zip(edges, g):
        K[s, s] -= ge
        K[d, d] -= ge
        K[s, d] += ge
        K[d, s] += ge
    return K[1:, 1:]


def linear_network(seed=3, num_nodes=7, durations=(0.6, 0.4), batch=3, num_inputs=5):
    """A random RC network over ``num_nodes`` nodes, one layer per duration.

    Each layer has its own edges and conductances (a spanning chain, extra random pairs,
    parallel edges, both orientations, and a few edges to ground), random per-node
    capacitances, and inputs on nodes ``1..num_inputs`` (the rest start at 0 V).
    Exact solution: ``v(t) = expm(C⁻¹K_k (t − t_k)) v(t_k)`` inside layer ``k``.
    """
    rng = np.random.default_rng(seed)
    N = num_nodes
    capacitance = rng.uniform(0.5, 2.0, N)
    layers, rates = [], []
    for duration in durations:
        chain = np.stack([rng.permutation(np.arange(1, N + 1)), np.zeros(N, int)], 1)
        chain[1:, 1] = chain[:-1, 0]          # a path through every node, rooted at ground
        extra = np.array([rng.choice(N + 1, 2, replace=False) for _ in range(N)])
        edges = np.concatenate([chain, extra, extra[:2]])   # the last two are parallel edges
        flip = rng.random(len(edges)) < 0.5
        edges[flip] = edges[flip, ::-1]
        g = rng.uniform(0.2, 2.0, len(edges))
        layers.append(ks.Layer(edges, ks.Conductance(), duration, params=g[None, :]))
        rates.append(conductance_matrix(edges, g, N) / capacitance[:, None])
    net = ks.KirchhoffNet(layers, num_nodes=N, capacitance=capacitance)
    x = rng.uniform(-1.0, 1.0, (batch, num_inputs))
    v_start = np.zeros((N, batch))
    v_start[:num_inputs] = x.T
    bounds = np.concatenate([[0.0], np.cumsum(durations)])
    starts = [v_start]
    for rate, duration in zip(rates, durations):
        starts.append(scipy.linalg.expm(rate * duration) @ starts[-1])

    def exact_scalar(t):
        k = min(int(np.searchsorted(bounds, t, side="right")) - 1, len(durations) - 1)
        return (scipy.linalg.expm(rates[k] * (t - bounds[k])) @ starts[k]).T

    return Problem(net, x, _vectorised(exact_scalar))


def linear_rates(net) -> list:
    """``C⁻¹K`` of every layer of a conductance-only net (for stiffness estimates)."""
    out = []
    for layer in net.layers:
        edges = np.concatenate([g.edges for g in layer.groups])
        g = np.concatenate([grp.params[0] for grp in layer.groups])
        out.append(conductance_matrix(edges, g, net.num_nodes) / net.capacitance[:, None])
    return out


# ------------------------------------------------------------------ diodes
def diode_current_lambertw(u, i_s, r_s, nvt=THERMAL_VOLTAGE):
    """Current of a Shockley diode with series resistance at branch voltage ``u``.

    Solves ``i = i_s·(exp((u − i·r_s)/nVt) − 1)`` with the principal branch of Lambert W:
    ``i = (nVt/r_s)·W((i_s r_s/nVt)·exp((u + i_s r_s)/nVt)) − i_s``. Fine for
    ``u ≲ 15 V`` (the exponential is formed explicitly).
    """
    u = np.asarray(u, dtype=float)
    if r_s == 0:
        return i_s * np.expm1(u / nvt)
    arg = (i_s * r_s / nvt) * np.exp((u + i_s * r_s) / nvt)
    return nvt / r_s * scipy.special.lambertw(arg).real - i_s


def _diode_net(i_s, r_s, conductance, capacitance, nvt, duration):
    groups = [([[1, 0]], ks.Diode(thermal_voltage=nvt), [[i_s], [r_s]])]
    if conductance:
        groups.append(([[1, 0]], ks.Conductance(), [[conductance]]))
    return ks.KirchhoffNet([ks.Layer.from_groups(groups, duration)], capacitance=capacitance)


def ideal_diode_discharge(v0=(0.8, 0.6, 0.4), i_s=SATURATION_CURRENT, capacitance=1.0,
                          nvt=THERMAL_VOLTAGE, duration=1.0):
    """A capacitor discharging through an ideal diode alone, in closed form.

    ``C dv/dt = −i_s (e^{v/a} − 1)`` integrates to
    ``1 − e^{−v/a} = (1 − e^{−v0/a})·e^{−kt}`` with ``a = nVt``, ``k = i_s/(C a)``, i.e.
    ``e^{−v/a} = (1 − e^{−kt}) + e^{−kt}·e^{−v0/a}`` — a sum of two positive terms, so
    evaluating it loses no digits even where ``e^{−v/a}`` is 1e-14.
    """
    net = _diode_net(i_s, 0.0, 0.0, capacitance, nvt, duration)
    x = np.asarray(v0, dtype=float)[:, None]

    def exact_scalar(t):
        kt = i_s * t / (capacitance * nvt)
        return -nvt * np.log(-np.expm1(-kt) + np.exp(-kt) * np.exp(-x / nvt))

    return Problem(net, x, _vectorised(exact_scalar))


def diode_discharge(v0=(0.8, 0.6, 0.3), i_s=SATURATION_CURRENT, r_s=0.0, conductance=1.0,
                    capacitance=1.0, nvt=THERMAL_VOLTAGE, duration=1.0):
    """A capacitor (node 1) discharging through a diode (node 1 → ground) in parallel
    with a conductance.

    ``C dv/dt = −i_D(v) − g v``. The exact solution inverts ``t(v) = ∫_v^{v0} C dv'/i(v')``
    (adaptive Gauss–Kronrod quadrature to 1e-13 relative, then Brent's method on v).
    With ``r_s > 0`` the diode current comes from :func:`diode_current_lambertw`.
    """
    net = _diode_net(i_s, r_s, conductance, capacitance, nvt, duration)
    x = np.asarray(v0, dtype=float)[:, None]

    def total_current(v):
        return float(diode_current_lambertw(v, i_s, r_s, nvt)) + conductance * v

    def elapsed(v, start):
        """Time to discharge from ``start`` to ``v`` (0 < v ≤ start)."""
        value, _ = scipy.integrate.quad(lambda w: capacitance / total_current(w), v, start,
                                        epsabs=0.0, epsrel=1e-13, limit=500)
        return value

    @lru_cache(maxsize=None)
    def voltage(start, t):
        if t == 0.0:
            return start
        # v(t) > 0 for t < ∞, and from 1e-9·v0 even the fastest discharge in [0, 1]
        # takes far longer than any test's T, so the root is bracketed
        low = 1e-9 * start
        return scipy.optimize.brentq(lambda v: elapsed(v, start) - t, low, start,
                                     xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=200)

    def exact_scalar(t):
        return np.array([[voltage(float(s), t)] for s in x[:, 0]])

    return Problem(net, x, _vectorised(exact_scalar))


# ------------------------------------------------------------------ a stiff start
#: issue #13's stiff diode: node 1 starts at 5 V or 12 V and drains through an ideal
#: diode (i_s = 1e-9, nVt = 0.025852, no series resistance) into node 2 (both 1 F), which
#: leaks to ground through g = 1. The junction starts forward-biased by 193 (or 464)
#: thermal voltages, i.e. 1e75 (1e201) units of current: an inconsistent initial state
#: whose transient spans ~80 decades of time before the slow discharge.
STIFF_DIODE_INPUTS = (5.0, 12.0)
STIFF_DIODE_SATURATION_CURRENT = 1e-9


@lru_cache(maxsize=None)
def _stiff_diode_solution(v0: float, nvt: float, t_end: float):
    """Radau's dense solution of the stiff diode circuit from ``[v0, 0]`` up to ``t_end``."""
    i_s = STIFF_DIODE_SATURATION_CURRENT

    def f(t, v):
        i = i_s * np.expm1((v[0] - v[1]) / nvt)
        return [-i, i - v[1]]

    def jacobian(t, v):
        g = i_s * np.exp((v[0] - v[1]) / nvt) / nvt
        return [[-g, g], [g, -g - 1.0]]

    with np.errstate(under="ignore", over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        sol = scipy.integrate.solve_ivp(f, (0.0, t_end), [v0, 0.0], method="Radau", rtol=1e-8,
                                        atol=1e-12, jac=jacobian, dense_output=True,
                                        first_step=1e-14)   # its own guess overflows here
    assert sol.success, sol.message
    return sol


def stiff_diode_pair(v_in=STIFF_DIODE_INPUTS, duration=1.0, nvt=THERMAL_VOLTAGE):
    """The stiff diode circuit, one sample per input voltage of ``v_in``.

    Exact solution: SciPy's Radau IIA (order 5, L-stable) with the analytic Jacobian at
    rtol 1e-8, atol 1e-12 — at T = 1 within 1e-11 of a run at rtol 1e-12 (measured),
    which gives v(1) = [1.88401, 1.35804] at 5 V and [4.02365, 3.47354] at 12 V, as
    ngspice's D element does. Radau's first Newton matrices are singular to working
    precision (the junction's conductance is 4e76 at 5 V); it cuts its step on its own,
    so that warning and the underflows of its step-size arithmetic are silenced here.
    One Radau run per input voltage serves every duration up to 1.
    """
    i_s = STIFF_DIODE_SATURATION_CURRENT
    layer = ks.Layer.from_groups([([[1, 2]], ks.Diode(thermal_voltage=nvt), [[i_s], [0.0]]),
                                  ([[2, 0]], ks.Conductance(), [[1.0]])], duration)
    net = ks.KirchhoffNet([layer], num_nodes=2)
    x = np.array([[v, 0.0] for v in v_in])
    t_end = max(1.0, float(duration))

    def exact_scalar(t):
        with np.errstate(under="ignore"):
            return np.stack([_stiff_diode_solution(float(v0), float(nvt), t_end).sol(t)
                             for v0 in x[:, 0]])

    return Problem(net, x, _vectorised(exact_scalar))


def random_affine_tanh_net(std: float, seed: int = 0) -> "ks.KirchhoffNet":
    """Two 0.5-long layers of a fully connected 5-node AffineTanh net (ground edges both
    ways), read out on 2 nodes, parameters N(0, std²): nonlinear, no exact answer — for
    the tests that compare two ways of computing the same thing."""
    rng = np.random.default_rng(seed)
    net = ks.KirchhoffNet([ks.Layer(ks.topology.fully_connected(5, repeat=(1, 1)), device=ks.AffineTanh(),
                                    duration=0.5) for _ in range(2)], readout=2, seed=0)
    for group in net.groups:
        group.params[...] = rng.normal(0.0, std, group.params.shape)
    return net


# ------------------------------------------------------------------ device families
def paper_families() -> list:
    """``pytest.param`` factories of the reference's families with every activation
    (Conductance, the two shifted rectifiers, DifferenceActivation and AffineActivation
    × :data:`~kirchhoff_sim.devices.ACTIVATIONS`), ids named after them."""
    import pytest

    return [
        pytest.param(lambda: devices.Conductance(), id="Conductance"),
        pytest.param(lambda: devices.ShiftedReLU(), id="ShiftedReLU"),
        pytest.param(lambda: devices.ShiftedLeakyReLU(), id="ShiftedLeakyReLU"),
        *[pytest.param(lambda a=a: devices.DifferenceActivation(a), id=f"DifferenceActivation-{a}")
          for a in devices.ACTIVATIONS],
        *[pytest.param(lambda a=a: devices.AffineActivation(a), id=f"AffineActivation-{a}")
          for a in devices.ACTIVATIONS],
    ]
