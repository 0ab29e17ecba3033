"""Step control and divergence (issue #13 B): every failure is a typed error, early.

* a pure relative tolerance is refused at construction (a node at 0 V has no scale);
* a state beyond the plausible voltage bound is a DivergenceError naming layer, time and
  node (positive feedback), before it overflows and before a gradient of it exists;
* stiffness is not a divergence: Dopri5 applies Hairer's stiffness test, and an explicit
  method that blows up on a provably stable circuit raises StiffnessError;
* a request beyond the machine is refused before any work, with the figures;
* the Newton kernel takes the counters it counts into (issue #9).

Everything in float64 under ``np.seterr(all="raise")`` (conftest.py).
"""

from __future__ import annotations

import ast
import inspect
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import kirchhoff_sim as ks
import kirchhoff_sim.assembly
from kirchhoff_sim.errors import (
    DivergenceError,
    InputError,
    KirchhoffError,
    ResourceLimitError,
    SimulationError,
    StepSizeTooSmallError,
    StiffnessError,
)
from kirchhoff_sim.sensitivity import gradient
from kirchhoff_sim.solvers import implicit
from kirchhoff_sim.solvers.base import VOLTAGE_LIMIT, AdaptiveStep, Stats
from kirchhoff_sim.solvers.resources import ResourceLimits, estimate_resources

import problems as P


def feedback_net(g_ground: float, duration: float = 1.0):
    """Nodes 1, 2: a conductance ``g_ground`` from node 1 to ground, 1→2 and 2→0 of 1.
    ``g_ground = −1000`` is positive feedback (an eigenvalue ≈ +999), ``+1e6`` a stiff,
    stable net (eigenvalues ≈ −1e6 and −1.5)."""
    layer = ks.Layer([[1, 0], [1, 2], [2, 0]], ks.Conductance(), duration,
                     params=[[g_ground, 1.0, 1.0]])
    return ks.KirchhoffNet([layer], num_nodes=2)


def feedback_jacobian(g_ground: float) -> np.ndarray:
    """``C⁻¹K`` of :func:`feedback_net`, written out (C = 1)."""
    return np.array([[-g_ground - 1.0, 1.0], [1.0, -2.0]])


X0 = np.array([[1.0, 0.0]])


def quadratic(readout):
    return float(np.sum(readout ** 2)), 2.0 * readout


# ------------------------------------------------------------------ tolerances
@pytest.mark.parametrize("make", [ks.Dopri5, ks.BDF2, ks.Trapezoidal, ks.BackwardEuler])
def test_pure_relative_tolerance_is_refused_with_a_reason(make):
    with pytest.raises(InputError, match="atol must be > 0") as info:
        make(rtol=1e-6, atol=0.0)
    assert "0 V" in str(info.value)


def test_pure_absolute_tolerance_works_with_a_node_at_zero():
    # rtol = 0: the scale is atol everywhere, also at the node that starts at 0 V
    net, x, exact = P.linear_network()
    sol = ks.simulate(net, x, solver=ks.Dopri5(rtol=0.0, atol=1e-8))
    assert np.abs(sol.final_state - exact(net.T)).max() <= 1e-6


def test_no_nan_ever_reaches_step_control(monkeypatch):
    """Every step size and error ratio the controller sees is finite, also from a state
    whose derivative overflows the heuristic's norms (the 12 V diode: 1e201 units of
    current before the continuation, 2e28 after)."""
    seen = []
    original = AdaptiveStep.next_step

    def checked(self, h, ratio, previous_ratio, error_order, accepted, after_rejection=False):
        seen.append((h, ratio, previous_ratio))
        out = original(self, h, ratio, previous_ratio, error_order, accepted, after_rejection)
        seen.append((out,))
        return out

    monkeypatch.setattr(AdaptiveStep, "next_step", checked)
    net, x, _ = P.stiff_diode_pair(v_in=(12.0,), duration=0.01)
    ks.simulate(net, x, solver=ks.BDF2(rtol=1e-3, atol=1e-5))
    with pytest.raises(StiffnessError):
        ks.simulate(net, x, solver=ks.Dopri5())
    assert len(seen) > 10 and all(np.isfinite(v) and v >= 0 for item in seen for v in item)


def test_initial_step_is_finite_and_at_least_the_floor():
    step = AdaptiveStep(rtol=1e-6, atol=1e-9)
    y0 = np.array([[0.0], [1.0], [0.0]])
    f = lambda y: np.array([[0.0], [-1e300], [1e300]])
    h = step.initial_step(f, y0, f(y0), 1.0, 4, Stats(), floor=1e-12)
    assert h == 1e-12
    gentle = lambda y: -y
    h = step.initial_step(gentle, y0, gentle(y0), 1.0, 4, Stats(), floor=1e-12)
    assert 1e-12 < h <= 1.0 and np.isfinite(h)


# ------------------------------------------------------------------ divergence
def first_step_beyond(propagator, bound, x0=X0[0]):
    """Step ``n`` whose result first leaves ``±bound``, iterating ``v ← P v``."""
    v, n = x0.astype(float), 0
    while True:
        v = propagator @ v
        if np.abs(v).max() > bound:
            return n
        n += 1


FIXED_EXPLICIT = {
    "Euler": (ks.Euler, lambda hJ: np.eye(2) + hJ),
    "RK4": (ks.RK4, lambda hJ: sum(np.linalg.matrix_power(hJ, k) / math.factorial(k) for k in range(5))),
}


@pytest.mark.parametrize("bound", [VOLTAGE_LIMIT, 1e3])
@pytest.mark.parametrize("name", list(FIXED_EXPLICIT))
def test_positive_feedback_raises_divergence_error_at_the_bound(name, bound):
    make, step_matrix = FIXED_EXPLICIT[name]
    dt = 0.001
    n = first_step_beyond(step_matrix(dt * feedback_jacobian(-1000.0)), bound)
    kwargs = {} if bound == VOLTAGE_LIMIT else {"voltage_limit": bound}
    with pytest.raises(DivergenceError) as info:
        ks.simulate(feedback_net(-1000.0), X0, solver=make(dt), **kwargs)
    err = info.value
    assert isinstance(err, SimulationError) and not isinstance(err, StiffnessError)
    assert (err.layer, err.step, err.node) == (0, n, 1)
    assert err.time == pytest.approx(n * dt, rel=1e-12)
    assert f"±{bound:g}" in str(err) and "node 1" in str(err) and "voltage_limit" in str(err)


ADAPTIVE = {
    "Dopri5": lambda: ks.Dopri5(),
    "Trapezoidal": lambda: ks.Trapezoidal(rtol=1e-4, atol=1e-6),
    "BDF2": lambda: ks.BDF2(rtol=1e-4, atol=1e-6),
    "BackwardEuler": lambda: ks.BackwardEuler(rtol=1e-3, atol=1e-5),
}


@pytest.mark.parametrize("name", list(ADAPTIVE))
def test_positive_feedback_raises_divergence_error_with_step_control(name):
    # the exact solution expm(J t)·v0 reaches 1e6 at t* ≈ 0.0138; the failing step starts
    # before t* and, the solution being accurate, within the last few steps of it
    jacobian = feedback_jacobian(-1000.0)
    t_star = scipy.optimize.brentq(
        lambda t: np.abs(scipy.linalg.expm(jacobian * t) @ X0[0]).max() - VOLTAGE_LIMIT, 0.0, 0.05)
    with pytest.raises(DivergenceError) as info:
        ks.simulate(feedback_net(-1000.0), X0, solver=ADAPTIVE[name]())
    err = info.value
    assert err.layer == 0 and err.node == 1 and err.step > 10
    assert 0.9 * t_star <= err.time <= t_star * (1 + 1e-3)


def test_gradient_of_a_diverging_net_is_an_error_not_zeros():
    with pytest.raises(DivergenceError):
        gradient(feedback_net(-1000.0), X0, quadratic, ks.Dopri5())


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "1e6", True])
def test_bad_voltage_limit_raises_input_error(bad):
    with pytest.raises(InputError, match="voltage_limit"):
        ks.simulate(feedback_net(1.0), X0, solver=ks.RK4(0.1), voltage_limit=bad)


# ------------------------------------------------------------------ stiffness
def test_stiff_stable_net_under_dopri5_raises_stiffness_error_early(monkeypatch):
    """g = 1e6: Dopri5 is stable only for h ≲ 3.3e-6, so its steps sit at the stability
    boundary. It used to crawl to the 100,000-attempt limit (57 s) blaming the
    tolerances; Hairer's test flags it after 15 accepted steps at h·|λ| > 3.25."""
    calls = {"n": 0}
    rhs = kirchhoff_sim.assembly.LayerAssembly.rhs

    def counting(self, V):
        calls["n"] += 1
        return rhs(self, V)

    monkeypatch.setattr(kirchhoff_sim.assembly.LayerAssembly, "rhs", counting)
    with pytest.raises(StiffnessError) as info:
        ks.simulate(feedback_net(1e6), X0, solver=ks.Dopri5())
    err = info.value
    assert isinstance(err, StepSizeTooSmallError)         # what code catching it expects
    assert err.layer == 0 and err.step <= 200 and err.time < 1e-3
    assert 3.25 < err.stiffness < 3.4                     # the stability boundary is 3.31
    assert calls["n"] <= 2000
    assert "BDF2" in str(err) and "stability boundary" in str(err)


def test_implicit_methods_integrate_the_stiff_stable_net():
    # what the StiffnessError suggests works: eigenvalues −1e6 and ≈ −1.5 (exact expm)
    jacobian = feedback_jacobian(1e6)
    exact = scipy.linalg.expm(jacobian) @ X0[0]
    for solver in (ks.BDF2(rtol=1e-6, atol=1e-12), ks.Trapezoidal(rtol=1e-6, atol=1e-12)):
        sol = ks.simulate(feedback_net(1e6), X0, solver=solver)
        assert np.abs(sol.final_state[0] - exact).max() <= 1e-3 * np.abs(exact).max()


@pytest.mark.parametrize("name", list(FIXED_EXPLICIT))
def test_explicit_blow_up_on_a_stable_net_is_stiffness_not_divergence(name):
    # RK4 at dt = 0.01 on the g = 1e6 net: h·|λ| = 1e4, far outside its stability
    # interval [−2.79, 0]; the circuit is stable (Gershgorin discs in the left half-plane),
    # so the blow-up is the method's: StiffnessError, raised where it would leave the bound
    make, _ = FIXED_EXPLICIT[name]
    with pytest.raises(StiffnessError) as info:
        ks.simulate(feedback_net(1e6), X0, solver=make(0.01))
    err = info.value
    assert err.layer == 0 and err.step <= 3
    assert err.stiffness == pytest.approx(0.01 * (1e6 + 2.0), rel=1e-6)   # h × row sum bound
    assert isinstance(err.__cause__, DivergenceError)


def test_hairer_test_does_not_fire_on_a_non_stiff_run():
    # Dopri5 at its defaults on the linear net: steps set by accuracy (h·|λ| ≤ ~1)
    net, x, _ = P.linear_network()
    sol = ks.simulate(net, x, solver=ks.Dopri5())
    assert sol.stats.n_steps > 20


# ------------------------------------------------------------------ resources
def test_impossible_fixed_step_request_is_refused_before_any_work(monkeypatch):
    calls = {"n": 0}
    rhs = kirchhoff_sim.assembly.LayerAssembly.rhs
    monkeypatch.setattr(kirchhoff_sim.assembly.LayerAssembly, "rhs",
                        lambda self, V: (calls.__setitem__("n", calls["n"] + 1), rhs(self, V))[1])
    with pytest.raises(ResourceLimitError) as info:
        ks.simulate(feedback_net(1.0), X0, solver=ks.RK4(1e-9))
    err = info.value
    assert calls["n"] == 0
    assert isinstance(err, KirchhoffError)
    assert err.estimate.fixed_steps == 10 ** 9
    assert "1e+09 fixed steps" in str(err) and "1e+07" in str(err)
    # the tape alone would be 40 bytes a step
    assert err.estimate.memory["step grid and tape"] == 10 ** 9 * 48


def test_estimate_counts_steps_saved_and_recorded_states():
    net, _, _ = P.linear_network()            # 7 nodes, layers of 0.6 and 0.4
    B, state = 3, 8 * 3 * 8                   # (N+1)·B float64
    est = estimate_resources(net, B, ks.RK4(0.1), n_save=11, record_states=True)
    assert est.fixed_steps == 6 + 4 and est.state_bytes == state
    assert est.device_evaluations == 4 * (6 * net.layers[0].num_edges + 4 * net.layers[1].num_edges) * B
    assert est.memory["saved trajectory"] == 11 * state
    assert est.memory["recorded states"] == (10 + 2) * state
    checkpointed = estimate_resources(net, B, ks.RK4(0.01), n_save=1, record_states=10)
    full = estimate_resources(net, B, ks.RK4(0.01), n_save=1, record_states=True)
    assert checkpointed.memory["recorded states"] < full.memory["recorded states"] / 2
    adaptive = estimate_resources(net, B, ks.Dopri5(), n_save=1, record_states=True)
    assert adaptive.fixed_steps is None and "recorded states" not in adaptive.memory


def test_memory_beyond_the_limit_is_refused_with_the_figures():
    limits = ResourceLimits(memory_bytes=10 ** 6)
    x = np.ones((100, 2))
    with pytest.raises(ResourceLimitError) as info:
        ks.simulate(feedback_net(1.0), x, solver=ks.RK4(0.01), save_at=np.linspace(0, 1, 10001),
                    limits=limits)
    assert info.value.estimate.memory["saved trajectory"] == 10001 * 3 * 100 * 8
    assert "24 MB" in str(info.value) and "1 MB" in str(info.value)
    # the same request fits the machine (default limits: half the memory available)
    ks.simulate(feedback_net(1.0), x, solver=ks.RK4(0.01), save_at=np.linspace(0, 1, 101))


def test_adaptive_recorded_states_are_counted_as_they_are_stored():
    # an adaptive run's steps are unknown up front: its recorded states are refused once
    # they exceed the limit, naming where
    net, x, _ = P.linear_network()
    limits = ResourceLimits(memory_bytes=6_000)
    with pytest.raises(ResourceLimitError) as info:
        ks.simulate(net, x, solver=ks.Dopri5(), record_states=True, limits=limits)
    assert "recorded" in str(info.value) and "layer 0" in str(info.value)
    ks.simulate(net, x, solver=ks.Dopri5(), record_states=True)     # fine by default


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "big"])
def test_bad_resource_limits_raise_input_error(bad):
    with pytest.raises(InputError):
        ResourceLimits(max_fixed_steps=bad)
    with pytest.raises(InputError):
        ResourceLimits(memory_bytes=bad)


def test_limits_must_be_resource_limits():
    with pytest.raises(InputError, match="ResourceLimits"):
        ks.simulate(feedback_net(1.0), X0, solver=ks.RK4(0.1), limits={"memory_bytes": 1})


# ------------------------------------------------------------------ issue #9
def test_implicit_module_does_not_import_the_simulate_module():
    tree = ast.parse(inspect.getsource(implicit))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module not in ("simulate", "kirchhoff_sim.solvers.simulate"), ast.dump(node)
            assert not (node.level == 1 and node.module == "simulate")
    assert "_Context" not in inspect.getsource(implicit)


def test_newton_kernel_counts_into_the_stats_it_is_given():
    # one backward-Euler step of the linear net, solved by the kernel directly
    net, x, _ = P.linear_network()
    assembly = net.assemblies()[0]
    V = net.initial_state(x)
    h = 0.02
    solver = ks.BackwardEuler(dt=h)
    C = assembly.capacitance[:, None]
    history = -C / h * V[1:]
    stats = Stats()
    y, failure = solver.newton(assembly, implicit.linear_solver("dense", assembly.num_nodes), V,
                               1.0 / h, 1.0, history, stats)
    assert failure is None
    # linear: the first iteration solves (★) exactly, the second confirms it
    assert (stats.n_newton, stats.n_lu, stats.n_jevals, stats.n_fevals) == (2, 2, 2, 2)
    residual = C / h * (y[1:] - V[1:]) - C * assembly.rhs(y)[1:]
    assert np.abs(residual).max() <= 1e-12


def test_the_controller_is_hairers_dopri5_controller():
    # dopri5.f (Hairer & Wanner): accepted h·clip(0.9·err^−α·err_prev^β, 0.2, 10) with
    # α = 1/5 − 0.75β, β = 0.04; no growth on the step right after a rejection; a rejected
    # step h·max(0.2, 0.9·err^−α) (dopri5.f: H/MIN(FACC1, FAC11/SAFE), FAC11 = ERR**EXPO1),
    # without the memory term
    step = AdaptiveStep()
    alpha = 0.2 - 0.75 * 0.04
    assert step.next_step(1.0, 0.01, 0.5, 4, True) == pytest.approx(min(10.0, 0.9 * 0.01 ** -alpha * 0.5 ** 0.04))
    assert step.next_step(1.0, 0.01, 0.5, 4, True, after_rejection=True) == 1.0
    assert step.next_step(1.0, 0.9, 0.5, 4, True, after_rejection=True) == pytest.approx(
        0.9 * 0.9 ** -alpha * 0.5 ** 0.04)                      # shrinking is still allowed
    assert step.next_step(1.0, 4.0, 0.5, 4, False) == pytest.approx(0.9 * 4.0 ** -0.17)
    assert step.next_step(1.0, 1e9, 0.5, 4, False) == 0.2
    assert step.next_step(1.0, 1e-12, 0.5, 4, True) == 10.0
