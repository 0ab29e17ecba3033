"""Stiff exponential devices (issue #13 A): implicit solvers converge where SPICE does.

The circuit (tests/problems.py: ``stiff_diode_pair``): node 1 at 5 V or 12 V drains
through an ideal diode (i_s = 1e-9, nVt = 0.025852) into node 2, which leaks to ground
through g = 1; C = 1, T = 1. The junction starts 193 (464) thermal voltages forward
biased — 1e75 (1e201) units of current. Before the fix the fixed-grid trapezoidal rule and
BDF2 returned −5e71 V, backward Euler died in a raw LinAlgError, and the adaptive methods
stopped at a step of 1e-81. Both input voltages are one batch here (the batch shares a
step grid; each sample is checked against its own Radau reference).

Everything in float64 under ``np.seterr(all="raise")`` (conftest.py).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import devices
from kirchhoff_sim.errors import (
    NewtonConvergenceError,
    SimulationError,
    SingularJacobianError,
    StepSizeTooSmallError,
    StiffnessError,
)
from kirchhoff_sim.sensitivity import check_gradient, gradient
from kirchhoff_sim.solvers.implicit import NEWTON_MAXITER_LIMITED

import problems as P

IMPLICIT = {"BackwardEuler": ks.BackwardEuler, "Trapezoidal": ks.Trapezoidal, "BDF2": ks.BDF2}
ORDER = {"BackwardEuler": 1, "Trapezoidal": 2, "BDF2": 2}
LINEAR_SOLVERS = ("dense", "sparse")


@functools.cache
def stiff(duration: float = 1.0) -> P.Problem:
    return P.stiff_diode_pair(duration=duration)


@functools.cache
def reference(duration: float = 1.0) -> np.ndarray:
    """Radau's v(T), ``(2, 2)``: one row per input voltage."""
    return stiff(duration).exact(duration)


def per_sample_error(final_state, duration=1.0) -> np.ndarray:
    return np.abs(final_state - reference(duration)).max(axis=1)


# ------------------------------------------------------------------ the reference
def test_radau_reference_is_the_published_value():
    # the values the issue quotes (SciPy's Radau at rtol 1e-12 and ngspice's D element)
    np.testing.assert_allclose(reference()[0], [1.88401, 1.35804], rtol=0, atol=5e-6)
    np.testing.assert_allclose(reference()[1], [4.02365, 3.47354], rtol=0, atol=5e-6)
    # charge bookkeeping: the diode only moves charge from node 1 to node 2, so
    # v1 + v2 falls only through g = 1, by ∫v2 dt — less than the input itself
    total = reference().sum(axis=1)
    assert np.all(total < [5.0, 12.0]) and np.all(total > 0.5 * np.array([5.0, 12.0]))


def test_ngspice_d_element_agrees_with_the_reference():
    """ngspice's own diode (with its junction limiting) on the same circuit."""
    from kirchhoff_sim.spice.runner import run_netlist

    # N so that N·kT/q = 0.025852 at ngspice's default 27 °C (CODATA constants; ngspice's
    # own differ by < 1e-8 relative)
    ideality = 0.025852 / (1.380649e-23 * 300.15 / 1.602176634e-19)
    for row, v_in in enumerate(P.STIFF_DIODE_INPUTS):
        netlist = "\n".join([
            "stiff diode, D element",
            f"C1 n1 0 1 IC={v_in!r}", "C2 n2 0 1 IC=0", "D1 n1 n2 dm", "R2 n2 0 1",
            f".model dm D(IS=1e-9 N={ideality!r})",
            ".options reltol=1e-7 abstol=1e-15 vntol=1e-10 gmin=1e-30",
            ".tran 1m 1 uic", ".end", ""])
        result = run_netlist(netlist, backend="subprocess")
        assert result.time[-1] == pytest.approx(1.0, rel=1e-12)
        ngspice = [result.voltage("n1")[-1], result.voltage("n2")[-1]]
        np.testing.assert_allclose(ngspice, reference()[row], rtol=0, atol=2e-6)


# ------------------------------------------------------------------ fixed grids
# (dt, T, bound on |v − v_Radau|). dt = 1e-3 over T = 1: BE's error is 0.2–0.5·dt and
# the order-2 methods' 41–45·dt² (measured), so dt and 100·dt² bound them with room but
# fail a method of the wrong order or one that rings (the trapezoidal rule without the
# backward-Euler start steps ends 0.13 V off). dt = 1e-5 over T = 0.01 (1000 steps; the
# full second would be 1e5): the run ends inside the logarithmic transient, where no
# method is in its asymptotic range yet (measured 0.8–4.9e-5), so the bound is 1e-4 V.
FIXED_CASES = [(1e-3, 1.0, None), (1e-5, 0.01, 1e-4)]


def fixed_bound(name, dt, bound):
    return bound if bound is not None else (dt if ORDER[name] == 1 else 100 * dt ** 2)


@pytest.mark.parametrize("dt, duration, bound", FIXED_CASES, ids=["dt1e-3", "dt1e-5"])
@pytest.mark.parametrize("linear_solver", LINEAR_SOLVERS)
@pytest.mark.parametrize("name", list(IMPLICIT))
def test_fixed_step_implicit_solves_the_stiff_diode(name, linear_solver, dt, duration, bound):
    net, x, _ = stiff(duration)
    sol = ks.simulate(net, x, solver=IMPLICIT[name](dt=dt, linear_solver=linear_solver),
                      record_states=True)
    error = per_sample_error(sol.final_state, duration)
    assert np.all(error <= fixed_bound(name, dt, bound)), (name, error)
    stats, n = sol.stats, round(duration / dt)
    assert stats.n_steps == n and stats.n_rejected == 0
    # Newton work: two iterations a step, plus the first step's limited climb from the
    # junction's initial condition (measured 49–68 extra iterations in all)
    assert 2 * n <= stats.n_newton <= 2 * n + 100
    # the layer starts with backward Euler (BDF2: one more), then the method itself
    orders = [c.order for c in sol.tapes[0].coefficients]
    assert orders[0] == 1
    if name != "BackwardEuler":
        leading = next(k for k, order in enumerate(orders) if order == 2)
        assert 1 <= leading <= 4 and set(orders[leading:]) == {2}
    # no state is ever absurd: the junction ends forward-biased by about half a volt
    junction = [V[1] - V[2] for V in sol.tapes[0].states[1:]]
    assert np.all(np.abs(junction) < 1.0)


def test_fixed_grid_keeps_the_trapezoidal_start_where_it_is_stable():
    # on the smooth linear net (h·|λ| ≤ 0.32) the trapezoidal start is kept: the order-2
    # error constant of a fixed grid does not change, only one f-evaluation is added
    net, x, _ = P.linear_network()
    for make in (ks.Trapezoidal, ks.BDF2):
        sol = ks.simulate(net, x, solver=make(dt=0.02))
        for tape in sol.tapes:
            assert tape.coefficients[0].order == 2


# ------------------------------------------------------------------ step control
# the suite's tolerances and bound for implicit methods (test_solvers.ADAPTIVE): measured
# 6.5–7.8× (BE), 1.7–2.1× (trapezoidal) and 3.7–4.4× (BDF2) the tolerance
ADAPTIVE_RTOL = {"BackwardEuler": 1e-3, "Trapezoidal": 1e-4, "BDF2": 1e-4}
ADAPTIVE_MULTIPLE = 100.0


@pytest.mark.parametrize("linear_solver", LINEAR_SOLVERS)
@pytest.mark.parametrize("name", list(IMPLICIT))
def test_adaptive_implicit_solves_the_stiff_diode(name, linear_solver):
    net, x, _ = stiff()
    rtol = ADAPTIVE_RTOL[name]
    sol = ks.simulate(net, x, solver=IMPLICIT[name](rtol=rtol, atol=rtol * 1e-2,
                                                   linear_solver=linear_solver))
    tolerance = rtol * np.abs(reference()).max(axis=1) + rtol * 1e-2
    error = per_sample_error(sol.final_state)
    assert np.all(error <= ADAPTIVE_MULTIPLE * tolerance), (name, error / tolerance)
    stats = sol.stats
    # the start exemption was what made it possible: a few steps at the floor (1e-12)
    # accepted without their error test, then ordinary step control
    assert 1 <= stats.n_unchecked <= 20
    assert np.diff(sol.tapes[0].times)[:stats.n_unchecked].max() <= 1e-12 * (1 + 1e-9)
    assert stats.n_steps <= 200 and stats.n_rejected <= 5
    assert stats.n_newton <= 5 * (stats.n_steps + stats.n_rejected)


@pytest.mark.parametrize("name", list(IMPLICIT))
def test_adaptive_implicit_meets_a_tight_tolerance_on_the_stiff_diode(name):
    # rtol 1e-6 as in the issue: the global error of error-per-step control grows with
    # the number of steps (see test_solvers.ADAPTIVE), here 230–270× tol for BE's 1200–1600
    # steps and 11–29× for the order-2 methods (measured): below 0.25·n_steps·tol
    net, x, _ = stiff()
    sol = ks.simulate(net, x, solver=IMPLICIT[name](rtol=1e-6, atol=1e-9))
    tolerance = 1e-6 * np.abs(reference()).max(axis=1) + 1e-9
    error = per_sample_error(sol.final_state)
    assert np.all(error <= 0.25 * sol.stats.n_steps * tolerance)
    assert np.all(error <= 1.5e-3)


def test_dopri5_on_the_stiff_diode_raises_stiffness_error():
    net, x, _ = stiff()
    for v_in in P.STIFF_DIODE_INPUTS:
        with pytest.raises(StiffnessError) as info:
            ks.simulate(net, [[v_in, 0.0]], solver=ks.Dopri5())
        err = info.value
        # at once, not after crawling to a step of 1e-81: the first step at the floor
        assert (err.layer, err.time, err.step) == (0, 0.0, 0)
        assert isinstance(err, StepSizeTooSmallError) and isinstance(err, SimulationError)
        assert err.stiffness > 1e10
        assert "implicit" in str(err) and "BDF2" in str(err)


# ------------------------------------------------------------------ what made it work
def test_without_junction_limiting_the_stiff_start_fails_with_a_typed_error(monkeypatch):
    """Limiting is what lets Newton converge: without it backward Euler's first step is
    a typed failure (the matrix linearised at 5 V is singular in float64), never a raw
    numpy LinAlgError or SciPy RuntimeError."""
    monkeypatch.setattr(devices.Diode, "limit_input", devices.Device.limit_input)
    net, x, _ = stiff()
    for linear_solver in LINEAR_SOLVERS:
        with pytest.raises(NewtonConvergenceError) as info:
            ks.simulate(net, x[:1], solver=ks.BackwardEuler(dt=1e-3, linear_solver=linear_solver))
        err = info.value
        assert (err.layer, err.time, err.step) == (0, 0.0, 0)
        assert "layer 0" in str(err) and "step 0" in str(err)


@pytest.mark.parametrize("linear_solver", LINEAR_SOLVERS)
def test_singular_newton_matrix_is_a_typed_error(linear_solver):
    # g = 1e300 between two 1 F nodes: C/h + g rounds to g, so α₀C/h − K is singular for
    # every step down to the floor — SingularJacobianError, fixed or adaptive
    layer = ks.Layer([[1, 2], [2, 0]], ks.Conductance(), 1.0, params=[[1e300, 1.0]])
    net = ks.KirchhoffNet([layer], num_nodes=2)
    with pytest.raises(SingularJacobianError) as info:
        ks.simulate(net, [[1.0, 0.0]], solver=ks.BackwardEuler(dt=0.1, linear_solver=linear_solver))
    assert (info.value.layer, info.value.time, info.value.step) == (0, 0.0, 0)
    with pytest.raises(SingularJacobianError) as info:
        ks.simulate(net, [[1.0, 0.0]], solver=ks.BDF2(rtol=1e-4, atol=1e-6, linear_solver=linear_solver))
    assert (info.value.layer, info.value.step) == (0, 0) and "floor" in str(info.value)
    assert isinstance(info.value, NewtonConvergenceError)


def test_limited_iterations_are_capped():
    # a limited iteration does not count against newton_maxiter, but all iterations are
    # capped (SPICE's ITL1): even with newton_maxiter=1 the 5 V start is one attempt of at
    # most NEWTON_MAXITER_LIMITED iterations per Newton start, and it fails typed
    net, x, _ = stiff()
    with pytest.raises(NewtonConvergenceError):
        ks.simulate(net, x[:1], solver=ks.BackwardEuler(dt=1e-3, newton_maxiter=1))
    assert NEWTON_MAXITER_LIMITED == 100


# ------------------------------------------------------------------ gradients stay exact
@pytest.mark.parametrize("make_solver", [
    pytest.param(lambda: ks.BackwardEuler(dt=1e-3), id="BackwardEuler-fixed"),
    pytest.param(lambda: ks.Trapezoidal(dt=1e-3), id="Trapezoidal-fixed"),
    pytest.param(lambda: ks.BDF2(dt=1e-3), id="BDF2-fixed"),
    pytest.param(lambda: ks.Trapezoidal(rtol=1e-3, atol=1e-5), id="Trapezoidal-adaptive"),
    pytest.param(lambda: ks.BDF2(rtol=1e-3, atol=1e-5), id="BDF2-adaptive"),
])
def test_adjoint_through_the_stiff_start_matches_finite_differences(make_solver):
    """The backward-Euler start steps, the start exemption and junction limiting: the
    adjoint transposes the steps the forward run recorded (limiting only changes Newton's
    path, not the converged steps), so it matches finite differences of the same scheme.
    Over T = 0.02 at 5 V: i_s, r_s (at its bound 0), g and both inputs.

    With step control the first steps are 1e-12 long and carry ~1e12 units of current,
    so the loss curves in r_s on a scale of nVt/i ≈ 1e-14, far below any finite-difference
    step (Ridders' own error estimate for it is ~40 %): r_s is compared on the fixed grid
    only, whose first step (1 ms) keeps the current, and that scale, moderate."""
    solver = make_solver()
    net, x, _ = P.stiff_diode_pair(v_in=(5.0,), duration=0.02)

    def loss(readout):
        return float(np.sum(readout ** 2)), 2.0 * readout

    check = check_gradient(net, x, loss, solver, n_params=net.num_params, eps=1e-6)
    assert len(check.adjoint) == net.num_params + 2
    compared = np.ones(len(check.adjoint), bool)
    if solver.step.adaptive:
        compared[list(check.indices).index(1)] = False        # r_s, see the docstring
    adjoint, fd = check.adjoint[compared], check.finite_difference[compared]
    assert np.abs(fd).max() > 1e-2
    error = np.abs(adjoint - fd) / np.maximum(np.abs(fd), np.abs(fd).max())
    assert error.max() <= 1e-6, (adjoint, fd)


def test_checkpointed_gradient_on_the_stiff_start_is_identical():
    # replaying a segment re-solves each step with the same Newton starts and limiting:
    # bit-identical states, so the same gradient
    net, x, _ = P.stiff_diode_pair(v_in=(5.0,), duration=0.02)

    def loss(readout):
        return float(np.sum(readout ** 2)), 2.0 * readout

    for solver in (ks.BDF2(dt=1e-3), ks.Trapezoidal(rtol=1e-4, atol=1e-6)):
        full = gradient(net, x, loss, solver)
        checkpointed = gradient(net, x, loss, solver, checkpoint_every=7)
        assert np.array_equal(full.flat, checkpointed.flat)
        assert np.array_equal(full.inputs, checkpointed.inputs)
