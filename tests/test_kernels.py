"""The fused numba right-hand side, vector–Jacobian and Jacobian–vector products
(issue #14) against the NumPy reference.

What must hold: for every device family and activation the kernel has, the node
currents equal the NumPy path's to a few ulps of the largest edge current (only the
scatter's summation order differs); the result is bit-identical for 1 and 2 threads; a
whole simulation and its adjoint gradient are unchanged to round-off, with unchanged
work counters; and a second process loads the compiled kernel from numba's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import devices, kernels
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.modelfile import save_net
from kirchhoff_sim.sensitivity import check_gradient, gradient
from kirchhoff_sim.training.losses import bind, cross_entropy

ULPS = 8 * np.finfo(float).eps        # of the largest edge current: the scatter's reordering

FAMILIES = [
    devices.Conductance(), devices.ShiftedReLU(), devices.ShiftedLeakyReLU(), devices.TanhCell(),
    *(devices.DifferenceActivation(a) for a in ("identity", "relu", "leaky_relu", "tanh", "softplus")),
    *(devices.AffineActivation(a) for a in ("identity", "relu", "leaky_relu", "tanh", "softplus")),
]


@pytest.fixture
def numba_backend():
    before = kernels.backend()
    kernels.use("numba")
    yield
    kernels.use(before)


def net_of(device, nodes=9, layers=1, seed=0):
    edges = ks.topology.fully_connected(nodes, repeat=(2, 1))
    return ks.KirchhoffNet([ks.Layer(edges, device, 0.5) for _ in range(layers)], seed=seed, init="normal")


def both(assembly, V):
    kernels.use("numpy")
    reference = assembly.rhs(V)
    kernels.use("numba")
    return reference, assembly.rhs(V)


@pytest.mark.parametrize("device", FAMILIES, ids=lambda d: d.spec()["family"] + "-" + d.spec().get("activation", ""))
def test_the_kernel_equals_the_numpy_reference(device, numba_backend):
    net = net_of(device)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(1)
    for batch in (1, 7, 37):                      # a partial column block, several blocks
        V = rng.normal(0, 2, (net.num_nodes + 1, batch))
        V[0] = 0.0
        reference, fused = both(assembly, V)
        scale = np.abs(assembly.edge_currents(V)).max() * np.abs(assembly.inv_capacitance).max()
        assert np.max(np.abs(fused - reference)) <= ULPS * scale
        assert np.all(fused[0] == 0.0)


def test_the_kernel_is_bit_identical_on_one_and_two_threads(numba_backend):
    net = net_of(devices.AffineActivation("tanh"), nodes=17)
    assembly = net.assemblies()[0]
    V = np.random.default_rng(2).normal(size=(net.num_nodes + 1, 64))
    V[0] = 0.0
    before = kernels.threads()
    try:
        kernels.set_threads(1)
        one = assembly.rhs(V)
        kernels.set_threads(2)
        two = assembly.rhs(V)
    finally:
        kernels.set_threads(before)
    assert np.array_equal(one, two)


def test_a_diode_layer_falls_back_to_numpy(numba_backend):
    net = net_of(devices.Diode(), nodes=5)
    assembly = net.assemblies()[0]
    V = np.random.default_rng(3).uniform(-0.2, 0.2, (net.num_nodes + 1, 4))
    V[0] = 0.0
    assert not kernels.supports(devices.Diode())
    reference, fused = both(assembly, V)
    assert np.array_equal(reference, fused)


def test_simulation_and_gradients_are_unchanged_with_the_kernel(numba_backend):
    net = net_of(devices.ShiftedReLU(), nodes=6, layers=2)
    x = np.random.default_rng(4).normal(size=(8, 3))
    solver = ks.Dopri5(rtol=1e-8, atol=1e-10)
    kernels.use("numpy")
    reference = ks.simulate(net, x, solver=solver)
    kernels.use("numba")
    fused = ks.simulate(net, x, solver=solver)
    np.testing.assert_allclose(fused.final_state, reference.final_state, rtol=0, atol=1e-12)
    assert (fused.stats.n_steps, fused.stats.n_fevals, fused.stats.n_rejected) == \
        (reference.stats.n_steps, reference.stats.n_fevals, reference.stats.n_rejected)
    loss = bind(cross_entropy, np.array([0, 1] * 4)[:8] % len(net.readout))
    check = check_gradient(net, x, loss, solver=ks.RK4(0.05), n_params=8)
    assert check.max_relative_error <= 1e-6


def test_an_unknown_backend_is_refused():
    with pytest.raises(InputError, match="kernel backend must be one of"):
        kernels.use("cuda")
    with pytest.raises(InputError, match="threads"):
        kernels.set_threads(0)


def test_a_second_process_loads_the_kernel_from_the_cache(numba_backend):
    net = net_of(devices.ShiftedReLU(), nodes=5)
    V = np.zeros((net.num_nodes + 1, 3))
    net.assemblies()[0].rhs(V)                   # compiled (or loaded) here, cached on disk
    net.assemblies()[0].vjp(V, np.ones_like(V), [np.zeros_like(g.params) for g in net.groups])
    net.assemblies()[0].jvp(V, np.ones_like(V), [np.zeros_like(g.params) for g in net.groups])
    script = (
        "import json, numpy as np, kirchhoff_sim as ks\n"
        "from kirchhoff_sim import kernels, devices\n"
        "kernels.use('numba')\n"
        "net = ks.KirchhoffNet([ks.Layer(ks.topology.fully_connected(5, repeat=(2, 1)), devices.ShiftedReLU(), 0.5)])\n"
        "net.assemblies()[0].rhs(np.zeros((net.num_nodes + 1, 3)))\n"
        "net.assemblies()[0].vjp(np.zeros((net.num_nodes + 1, 3)), np.ones((net.num_nodes + 1, 3)),"
        " [np.zeros_like(g.params) for g in net.groups])\n"
        "net.assemblies()[0].jvp(np.zeros((net.num_nodes + 1, 3)), np.ones((net.num_nodes + 1, 3)),"
        " [np.zeros_like(g.params) for g in net.groups])\n"
        "from kirchhoff_sim._kcl_kernels import fused_rhs, fused_vjp, fused_jvp\n"
        "kernels_ = (fused_rhs, fused_vjp, fused_jvp)\n"
        "print(json.dumps({'hits': [sum(k.stats.cache_hits.values()) for k in kernels_],"
        " 'misses': [sum(k.stats.cache_misses.values()) for k in kernels_]}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats == {"hits": [1, 1, 1], "misses": [0, 0, 0]}


# --------------------------------------------------------------------------- bad input
# The compiled loop has no bounds checks: nothing reaches it unchecked (a state one row
# short once corrupted the heap and aborted the interpreter).

@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_state_of_the_wrong_shape_is_refused_before_any_work(backend):
    net = net_of(devices.Conductance(), nodes=4)
    before = kernels.backend()
    kernels.use(backend)
    try:
        for V in (np.ones((net.num_nodes, 4)), np.ones(net.num_nodes + 1), np.ones((net.num_nodes + 2, 4))):
            with pytest.raises(InputError, match=r"node voltages must have shape \(N\+1, B\)"):
                net.assemblies()[0].rhs(V)
    finally:
        kernels.use(before)


def test_rhs_into_checks_every_array():
    net = net_of(devices.ShiftedReLU(), nodes=4)
    a = net.assemblies()[0]
    device, p = a.groups[0].device, a.groups[0].params
    V = np.ones((net.num_nodes + 1, 3))
    out = np.zeros_like(V)
    kernels.rhs_into(out, V, a.src, a.dst, device, p)
    np.testing.assert_allclose(out, a.rhs(V) / a.inv_capacitance.clip(1e-300) * (a.inv_capacitance > 0),
                               rtol=1e-13, atol=1e-15)
    cases = [
        (dict(out=np.zeros((net.num_nodes + 1, 3), int)), "out must be a C-contiguous float64"),
        (dict(out=np.zeros((net.num_nodes, 3))), "one shape"),
        (dict(V=np.asfortranarray(np.ones((net.num_nodes + 1, 3)))), "V must be a C-contiguous float64"),
        (dict(src=a.src + net.num_nodes), "node indices in 0"),
        (dict(dst=-a.dst), "node indices in 0"),
        (dict(src=a.src[:-1]), "one shape"),
        (dict(src=a.src.astype(float)), "integer arrays"),
        (dict(p=p[:, :-1]), "p must have shape"),
        (dict(device=devices.Diode()), "Diode has no kernel"),
    ]
    for change, message in cases:
        args = dict(out=np.zeros_like(V), V=V, src=a.src, dst=a.dst, device=device, p=p) | change
        with pytest.raises(InputError, match=message):
            kernels.rhs_into(**args)
    read_only = np.zeros_like(V)
    read_only.flags.writeable = False
    with pytest.raises(InputError, match="writable"):
        kernels.rhs_into(read_only, V, a.src, a.dst, device, p)


def test_the_environment_chooses_the_backend_at_first_use(monkeypatch):
    for value, expected in (("", "numpy"), ("  ", "numpy"), ("numba", "numba"), ("numpy", "numpy")):
        monkeypatch.setitem(kernels._state, "backend", None)
        monkeypatch.setenv("KIRCHHOFF_SIM_KERNELS", value)
        assert kernels.backend() == expected
        monkeypatch.setenv("KIRCHHOFF_SIM_KERNELS", "cuda")
        assert kernels.backend() == expected        # read once: a run does not switch halfway
    monkeypatch.setitem(kernels._state, "backend", None)
    net = net_of(devices.Conductance(), nodes=4)
    with pytest.raises(InputError, match="environment variable KIRCHHOFF_SIM_KERNELS must be one of"):
        ks.simulate(net, np.ones((2, 3)))
    kernels.use("numpy")                    # an explicit choice overrides the environment
    ks.simulate(net, np.ones((2, 3)))


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "100000"])
def test_a_bad_numba_thread_count_is_one_line_and_exit_2(value, tmp_path):
    net = net_of(devices.ShiftedReLU(), nodes=4)
    model, inputs = tmp_path / "net.npz", tmp_path / "x.npy"
    save_net(net, model)
    np.save(inputs, np.ones((2, 3)))
    env = dict(os.environ, KIRCHHOFF_SIM_KERNELS="numba", NUMBA_NUM_THREADS=value)
    run = subprocess.run([sys.executable, "-m", "kirchhoff_sim.cli", "simulate", str(model), "--input", str(inputs),
                          "--out", str(tmp_path / "y.npy")], capture_output=True, text=True, env=env)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "NUMBA_NUM_THREADS must be an integer" in lines[0], run.stderr
    assert not (tmp_path / "y.npy").exists()


# --------------------------------------------------------------------------- VJP
def both_vjp(assembly, V, nu, params=True):
    out = []
    for backend in ("numpy", "numba"):
        kernels.use(backend)
        theta_bar = [np.zeros_like(g.params) for g in assembly.groups] if params else None
        out.append((assembly.vjp(V, nu, theta_bar), theta_bar))
    return out


@pytest.mark.parametrize("device", FAMILIES, ids=lambda d: d.spec()["family"] + "-" + d.spec().get("activation", ""))
def test_the_vjp_kernel_equals_the_numpy_reference(device, numba_backend):
    # ≤ 1e-13 of the largest entry (issue #14): only the order of the sums differs
    net = net_of(device)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(5)
    for batch in (1, 7, 37, 70):             # a partial block, one, several, several threads
        V = rng.normal(0, 2, (net.num_nodes + 1, batch))
        V[0] = 0.0
        nu = rng.normal(size=V.shape)
        nu[0] = 3.0                          # ground's cotangent is ignored on both paths
        (v_ref, th_ref), (v_fused, th_fused) = both_vjp(assembly, V, nu)
        assert np.max(np.abs(v_fused - v_ref)) <= 1e-13 * np.abs(v_ref).max()
        assert np.all(v_fused[0] == 0.0)
        for a, b in zip(th_fused, th_ref):
            assert np.max(np.abs(a - b)) <= 1e-13 * np.abs(b).max()
        (v_ref, none_ref), (v_fused, none_fused) = both_vjp(assembly, V, nu, params=False)
        assert none_ref is None and none_fused is None
        assert np.max(np.abs(v_fused - v_ref)) <= 1e-13 * np.abs(v_ref).max()


def test_the_vjp_kernel_is_bit_identical_on_one_and_two_threads(numba_backend):
    net = net_of(devices.TanhCell(), nodes=17)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(6)
    V, nu = rng.normal(size=(2, net.num_nodes + 1, 100))
    before = kernels.threads()
    results = []
    try:
        for n in (1, 2):
            kernels.set_threads(n)
            theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
            results.append((assembly.vjp(V, nu, theta_bar), theta_bar))
    finally:
        kernels.set_threads(before)
    (v1, t1), (v2, t2) = results
    assert np.array_equal(v1, v2) and all(np.array_equal(a, b) for a, b in zip(t1, t2))


@pytest.mark.parametrize("device", [devices.AffineActivation("softplus"), devices.TanhCell(),
                                    devices.ShiftedLeakyReLU(), devices.DifferenceActivation("tanh")],
                         ids=lambda d: d.spec()["family"])
def test_adjoint_gradients_with_the_kernels_match_finite_differences(device, numba_backend):
    net = net_of(device, nodes=6, layers=2, seed=3)
    x = np.random.default_rng(7).normal(size=(5, 3))
    loss = bind(cross_entropy, np.array([0, 1, 2, 0, 1]) % len(net.readout))
    for solver in (ks.RK4(0.05), ks.Dopri5(rtol=1e-7, atol=1e-9)):
        check = check_gradient(net, x, loss, solver=solver, n_params=10)
        assert check.max_relative_error <= 1e-6, (solver, check)
    grads = {}
    for backend in ("numpy", "numba"):
        kernels.use(backend)
        grads[backend] = gradient(net, x, loss, ks.RK4(0.05))
    np.testing.assert_allclose(grads["numba"].flat, grads["numpy"].flat, rtol=0,
                               atol=1e-13 * np.abs(grads["numpy"].flat).max())
    assert grads["numba"].stats == grads["numpy"].stats


def test_the_vjp_refuses_a_cotangent_of_another_shape(numba_backend):
    net = net_of(devices.ShiftedReLU(), nodes=4)
    V = np.zeros((net.num_nodes + 1, 3))
    with pytest.raises(InputError, match=r"node voltages and cotangent must have shape \(N\+1, B\)"):
        net.assemblies()[0].vjp(V, np.zeros((net.num_nodes, 3)))


# --------------------------------------------------------------------------- activations
def test_the_kernels_tanh_is_within_a_few_ulps_and_vectorises():
    import numba

    from kirchhoff_sim._kcl_kernels import tanh

    @numba.njit(error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = tanh(x[i])

    rng = np.random.default_rng(8)
    x = np.concatenate([rng.normal(0, s, 20_000) for s in (1e-300, 1e-8, 1e-3, 0.1, 0.5, 1, 3, 10, 30)]
                       + [np.linspace(-25, 25, 100_001), [0.0, 5e-324, 1e-310, 19.1, 19.0999, 400.0]])
    x = np.concatenate([x, -x])
    out = np.empty_like(x)
    apply(x, out)
    reference = np.tanh(x.astype(np.longdouble))          # x86-64: 64-bit significand
    with np.errstate(under="ignore"):                     # the ulp of a subnormal
        ulp = np.spacing(np.abs(reference.astype(float)))
    ulps = np.abs(out.astype(np.longdouble) - reference) / ulp
    assert float(ulps.max()) <= 3.0                          # measured 2.5; libm's tanh 1.2
    assert np.array_equal(np.signbit(out), np.signbit(x))   # odd, −0 included
    special = np.array([np.inf, -np.inf, np.nan])
    out = np.empty(3)
    apply(special, out)
    assert out[0] == 1.0 and out[1] == -1.0 and np.isnan(out[2])
    ir = "".join(apply.inspect_llvm().values())
    assert "x double>" in ir                                  # the loop runs on SIMD vectors


# --------------------------------------------------------------------------- JVP
@pytest.mark.parametrize("device", FAMILIES, ids=lambda d: d.spec()["family"] + "-" + d.spec().get("activation", ""))
def test_the_jvp_kernel_equals_the_numpy_reference(device, numba_backend):
    net = net_of(device)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(9)
    for batch in (1, 7, 37, 70):
        V = rng.normal(0, 2, (net.num_nodes + 1, batch))
        V[0] = 0.0
        v_dot = rng.normal(size=V.shape)
        v_dot[0] = 0.0
        theta_dot = [rng.normal(size=g.params.shape) for g in assembly.groups]
        for direction in (theta_dot, None):
            kernels.use("numpy")
            reference = assembly.jvp(V, v_dot, direction)
            kernels.use("numba")
            fused = assembly.jvp(V, v_dot, direction)
            assert np.max(np.abs(fused - reference)) <= 1e-13 * np.abs(reference).max()
            assert np.all(fused[0] == 0.0)


def test_the_jvp_kernel_is_bit_identical_on_one_and_two_threads_and_transposes_the_vjp(numba_backend):
    net = net_of(devices.TanhCell(), nodes=9)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(10)
    V, v_dot, nu = rng.normal(size=(3, net.num_nodes + 1, 50))
    V[0] = v_dot[0] = nu[0] = 0.0
    theta_dot = [rng.normal(size=g.params.shape) for g in assembly.groups]
    before = kernels.threads()
    try:
        kernels.set_threads(1)
        one = assembly.jvp(V, v_dot, theta_dot)
        kernels.set_threads(2)
        two = assembly.jvp(V, v_dot, theta_dot)
    finally:
        kernels.set_threads(before)
    assert np.array_equal(one, two)
    # ⟨ν, J·(v̇, θ̇)⟩ = ⟨Jᵀν, (v̇, θ̇)⟩, per sample summed: both kernels are one linear map
    theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
    v_bar = assembly.vjp(V, nu, theta_bar)
    left = np.sum(nu * one)
    right = np.sum(v_bar * v_dot) + sum(np.sum(a * b) for a, b in zip(theta_bar, theta_dot))
    assert left == pytest.approx(right, rel=1e-12)


def test_forward_sensitivities_with_the_kernels_equal_the_adjoints(numba_backend):
    from kirchhoff_sim.sensitivity import forward_sensitivity

    net = net_of(devices.AffineActivation("tanh"), nodes=6, layers=2, seed=4)
    x = np.random.default_rng(11).normal(size=(5, 3))
    direction = np.random.default_rng(12).normal(size=net.num_params)
    solver = ks.RK4(0.05)
    final, tangent = forward_sensitivity(net, x, direction, solver)
    weights = np.random.default_rng(13).normal(size=final.shape)
    g = gradient(net, x, lambda r: (float(np.sum(weights[:, net.readout - 1] * r)), weights[:, net.readout - 1]),
                 solver)
    assert np.sum(weights[:, net.readout - 1] * tangent[:, net.readout - 1]) == pytest.approx(
        float(g.flat @ direction), rel=1e-10)


# --------------------------------------------------------------------------- Newton stamps
@pytest.mark.parametrize("device", FAMILIES, ids=lambda d: d.spec()["family"] + "-" + d.spec().get("activation", ""))
def test_the_stamp_kernel_equals_the_numpy_reference(device, numba_backend):
    net = net_of(device)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(14)
    for batch in (1, 7, 37):
        V = rng.normal(0, 2, (net.num_nodes + 1, batch))
        V[0] = 0.0
        kernels.use("numpy")
        F_ref, K_ref = assembly.stamps(V)
        kernels.use("numba")
        F, K = assembly.stamps(V)
        assert np.max(np.abs(F - F_ref)) <= 1e-13 * np.abs(F_ref).max()
        assert np.max(np.abs(K - K_ref)) <= 1e-13 * np.abs(K_ref).max()
        assert np.all(F[0] == 0.0)


def test_stamps_of_a_net_with_a_diode_group_and_implicit_runs_with_the_kernels(numba_backend):
    edges = ks.topology.fully_connected(6, repeat=(1, 0))
    half = len(edges) // 2
    layer = ks.Layer.from_groups([(edges[:half], devices.Diode()), (edges[half:], devices.TanhCell())], duration=0.5)
    net = ks.KirchhoffNet([layer], seed=2)
    assembly = net.assemblies()[0]
    V = np.random.default_rng(15).uniform(-0.3, 0.3, (net.num_nodes + 1, 9))
    V[0] = 0.0
    kernels.use("numpy")
    F_ref, K_ref = assembly.stamps(V)
    kernels.use("numba")
    F, K = assembly.stamps(V)
    np.testing.assert_allclose(F, F_ref, rtol=0, atol=1e-13 * np.abs(F_ref).max())
    np.testing.assert_allclose(K, K_ref, rtol=0, atol=1e-13 * np.abs(K_ref).max())
    net = net_of(devices.TanhCell(), nodes=6, layers=2)
    x = np.random.default_rng(16).normal(size=(4, 3))
    runs = {}
    for backend in ("numpy", "numba"):
        kernels.use(backend)
        runs[backend] = ks.simulate(net, x, solver=ks.BDF2(dt=0.05))
    np.testing.assert_allclose(runs["numba"].final_state, runs["numpy"].final_state, rtol=0, atol=1e-12)
    assert runs["numba"].stats == runs["numpy"].stats
    loss = bind(cross_entropy, np.array([0, 1, 2, 0]) % len(net.readout))
    assert check_gradient(net, x, loss, solver=ks.BDF2(dt=0.05), n_params=8).max_relative_error <= 1e-6


def test_the_kernels_carry_the_tanh_cells_amplitude_dependent_slope(numba_backend):
    # β(A) = slope + slope_per_log_amplitude·ln|A| inside the cell's window: the VJP's and
    # JVP's ∂β/∂A terms are live only with a non-zero slope_per_log_amplitude and |A| in it
    device = devices.TanhCell(slope_per_log_amplitude=0.3)
    net = net_of(device, nodes=7)
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(17)
    for g in assembly.groups:
        g.params[0] = rng.normal(0, 0.3, g.num_edges)
        g.params[1] = rng.uniform(0.3, 1.8, g.num_edges) * rng.choice([-1, 1], g.num_edges)
    assert np.any(device._slope(assembly.groups[0].params[1])[1] != 0)
    V, nu, v_dot = rng.normal(0, 1, (3, net.num_nodes + 1, 40))
    V[0] = nu[0] = v_dot[0] = 0.0
    theta_dot = [rng.normal(size=g.params.shape) for g in assembly.groups]
    out = {}
    for backend in ("numpy", "numba"):
        kernels.use(backend)
        theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
        out[backend] = (assembly.vjp(V, nu, theta_bar), theta_bar[0], assembly.jvp(V, v_dot, theta_dot))
    for fused, reference in zip(out["numba"], out["numpy"]):
        assert np.max(np.abs(fused - reference)) <= 1e-13 * np.abs(reference).max()
    # and the kernels' parameter gradient is the derivative: central differences in A
    kernels.use("numba")
    g = assembly.groups[0]
    e, h = 3, 1e-6
    saved = g.params[1, e]
    values = []
    for delta in (h, -h):
        g.params[1, e] = saved + delta
        values.append(float(np.sum(nu * assembly.rhs(V) / np.where(assembly.inv_capacitance > 0,
                                                                  assembly.inv_capacitance, 1.0))))
    g.params[1, e] = saved
    assert out["numba"][1][1, e] == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6)
