"""The fused numba right-hand side, vector–Jacobian and Jacobian–vector products
(issue #14) against the NumPy reference.

What must hold: for every device family and activation the kernel has, the node
currents equal the NumPy path's to a few ulps of the largest edge current (the
scatter's summation order differs) plus, for tanh and softplus, a few ulps of each
current at the node (the kernels compute them without libm, within 3 ulp); the result is bit-identical for 1 and 2 threads; a
whole simulation and its adjoint gradient are unchanged to round-off, with unchanged
work counters; and a second process loads the compiled kernel from numba's cache.
"""

from __future__ import annotations

import json
import math
import os
import re
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
ACTIVATION_ULPS = 5 * np.finfo(float).eps   # of each current: tanh's, softplus' own error, both paths

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
    smooth = kernels.coefficients(device, assembly.groups[0].params)[0] in (kernels._ACT_CODES["tanh"],
                                                                             kernels._ACT_CODES["softplus"])
    rng = np.random.default_rng(1)
    for batch in (1, 7, 37):                      # a partial column block, several blocks
        V = rng.normal(0, 2, (net.num_nodes + 1, batch))
        V[0] = 0.0
        reference, fused = both(assembly, V)
        currents = np.abs(assembly.edge_currents(V))
        scale = currents.max() * np.abs(assembly.inv_capacitance).max()
        bound = ULPS * scale
        if smooth:     # + each edge's activation error (kernel's ≤ 3 ulp, NumPy's ≤ 2) at its nodes
            incident = np.zeros_like(V)
            np.add.at(incident, assembly.dst, currents)
            np.add.at(incident, assembly.src, currents)
            bound = bound + ACTIVATION_ULPS * incident * np.abs(np.reshape(assembly.inv_capacitance, (-1, 1)))
        assert np.all(np.abs(fused - reference) <= bound)
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


def ulp_errors(out, x, f):
    """|out − f(x)| per point in ulps of the exact f(x) (2^(e−53) for |f(x)| in
    [2^(e−1), 2^e), at least 2^−1074), f evaluated by mpmath at 128 bits; where f(x)
    rounds beyond the doubles, out must be that infinity (error 0, else inf)."""
    import mpmath
    from mpmath.libmp import round_nearest, to_float

    errors = np.empty(len(x))
    with mpmath.workprec(128):
        for i, (xi, oi) in enumerate(zip(x.tolist(), out.tolist())):
            exact = f(mpmath.mpf(xi))
            rounded = to_float(exact._mpf_, rnd=round_nearest)
            if math.isinf(rounded):
                errors[i] = 0.0 if oi == rounded else np.inf
                continue
            ulp = mpmath.ldexp(1, max(mpmath.frexp(exact)[1] - 53, -1074) if exact else -1074)
            errors[i] = float(abs(mpmath.mpf(oi) - exact) / ulp)
    return errors


def _mp_softplus(z):
    import mpmath

    return mpmath.log1p(mpmath.exp(z))


def _mp_sigmoid(z):
    import mpmath

    return 1 / (1 + mpmath.exp(-z))


def _around(*points, ulps=4):
    """Each point and its neighbours up to ``ulps`` doubles away on either side."""
    out = []
    for p in points:
        below = above = p
        out.append(p)
        for _ in range(ulps):
            below, above = np.nextafter(below, -np.inf), np.nextafter(above, np.inf)
            out += [below, above]
    return np.array(out)


def _activation_arguments(seed):
    """Arguments of every magnitude, of both signs: normal samples at scales from 1e−300
    to 300, a uniform sweep over exp's whole range, subnormals, ±0, ±1e300, and the
    doubles around exp's overflow (ln MAX), normal-underflow (ln 2^−1022) and
    underflow-to-0 (ln 2^−1075) boundaries, tanh's and softplus' switch points."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, s, 4_000) for s in (1e-300, 1e-8, 1e-3, 0.1, 0.5, 1, 3, 10, 30, 100, 300)]
                       + [rng.uniform(-750, 715, 20_000),
                          _around(709.782712893384, 708.3964185322641, 745.1332191019412, 744.4400719213812,
                                  math.log(2), 0.5, 19.1, 36.7, 37.5, 700.0),
                          [0.0, 5e-324, 1e-310, 2.2250738585072014e-308, 1e300, 1.7976931348623157e308]])
    return np.concatenate([x, -x])


def _libm_free_loop(fn):
    import numba

    @numba.njit(error_model="numpy")
    def apply(x, out):
        for i in range(x.size):
            out[i] = fn(x[i])
    return apply


def test_the_float32_tanh_is_within_6_ulp_and_vectorises():
    # float32s from 0 to 10 at a stride of the bit patterns, samples of every scale down to the
    # subnormals, the clamp and the specials; the exact value from float64's tanh (its
    # error, < 1 ulp of a double, is 2^-29 of a float32 ulp)
    from kirchhoff_sim._kcl_kernels import TANH32_CLAMP, tanh32

    rng = np.random.default_rng(31)
    lattice = np.arange(0, np.float32(10).view(np.int32), 397, dtype=np.int32).view(np.float32)
    with np.errstate(under="ignore"):               # the subnormal samples
        x = np.concatenate([lattice,                 # every 397th float32 from 0 to 10
                            *(rng.normal(0, s, 20_000).astype(np.float32) for s in (1e-40, 1e-20, 1e-4, 0.3, 1, 4, 30)),
                            np.array([0.0, 1e-45, TANH32_CLAMP, np.nextafter(TANH32_CLAMP, np.float32(0)), 3e38],
                                     np.float32)])
    x = np.concatenate([x, -x])
    out = np.empty_like(x)
    apply = _libm_free_loop(tanh32)
    with np.errstate(under="ignore"):
        apply(x, out)
        exact = np.tanh(x.astype(np.float64))
        ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)   # float32's ulp at tanh(x)
    errors = np.abs(out.astype(np.float64) - exact) / ulp
    worst = int(np.argmax(errors))
    assert out.dtype == np.float32 and errors[worst] <= 6.0, (x[worst], out[worst], errors[worst])
    assert np.all(np.abs(out) <= 1) and np.array_equal(np.signbit(out), np.signbit(x))   # odd, ±0 kept
    special = np.array([np.inf, -np.inf, np.nan], np.float32)
    apply(special, special)
    assert 1.0 - 6 * 2 ** -24 <= special[0] <= 1.0                  # tanh(∞) = 1 within the 6 ulp
    assert special[1] == -special[0] and np.isnan(special[2])
    ir = "".join(apply.inspect_llvm().values())
    assert "x float>" in ir and not re.search(r"@(llvm\.)?(exp|tanh|log)(f|\.f32)?\(", ir)


# name: (the kernels' function, its exact value in mpmath, the asserted bound in ulps)
# exp: 0.5 for rounding 1 + expm1(r), < 0.25 for r's and the polynomial's, + 0.5 for
# a subnormal result's second rounding; softplus and sigmoid add exp's error (damped by
# e/(1 + e) ≤ 1/2 in sigmoid) to their own two or three roundings.
LIBM_FREE = {
    "exp": ("exp", lambda x: __import__("mpmath").exp(x), 1.5),          # measured 0.91
    "softplus": ("softplus", _mp_softplus, 3.0),                          # measured 1.6
    "sigmoid": ("sigmoid", _mp_sigmoid, 3.0),                             # measured 2.15
}


@pytest.mark.parametrize("name", list(LIBM_FREE))
def test_the_kernels_exp_softplus_and_sigmoid_are_within_their_ulp_bounds(name):
    # ≤ 1.5 ulp (exp), ≤ 3 ulp (softplus, sigmoid) of the exact value over the whole range
    # of doubles, the overflow to inf and the underflow through the subnormals to 0 included
    from kirchhoff_sim import _kcl_kernels

    attribute, exact, bound = LIBM_FREE[name]
    apply = _libm_free_loop(getattr(_kcl_kernels, attribute))
    x = _activation_arguments(18)
    out = np.empty_like(x)
    apply(x, out)
    errors = ulp_errors(out, x, exact)
    worst = int(np.argmax(errors))
    assert errors[worst] <= bound, (name, x[worst], out[worst], errors[worst])


def test_the_kernels_log1p_on_the_unit_interval_is_within_1_5_ulp():
    # the one log1p softplus needs, of e^−|z| ∈ [0, 1] (measured 0.82 ulp)
    import mpmath

    from kirchhoff_sim._kcl_kernels import _log1p_unit

    rng = np.random.default_rng(19)
    with np.errstate(under="ignore"):                     # down through the subnormals
        t = np.concatenate([rng.uniform(0, 1, 20_000), 10.0 ** rng.uniform(-323, 0, 20_000),
                            _around(0.5, 1.0, ulps=8), [0.0, 5e-324, 2.2250738585072014e-308, 0.25, 0.75]])
    t = t[t <= 1.0]
    out = np.empty_like(t)
    _libm_free_loop(_log1p_unit)(t, out)
    errors = ulp_errors(out, t, mpmath.log1p)
    assert errors.max() <= 1.5, (t[np.argmax(errors)], errors.max())
    special = np.array([np.nan])
    _libm_free_loop(_log1p_unit)(special, special)
    assert np.isnan(special[0])


def test_the_kernels_exp_softplus_and_sigmoid_at_their_special_values():
    from kirchhoff_sim._kcl_kernels import exp, sigmoid, softplus, softplus_and_sigmoid

    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e300, -1e300, 709.782712893384, 709.7827128933841])
    out = {}
    for fn in (exp, softplus, sigmoid):
        out[fn] = np.empty_like(x)
        _libm_free_loop(fn)(x, out[fn])
    np.testing.assert_array_equal(out[exp], [1.0, 1.0, np.inf, 0.0, np.nan, np.inf, 0.0, 1.7976931348622732e308,
                                             np.inf])
    np.testing.assert_array_equal(out[softplus][:7], [math.log(2), math.log(2), np.inf, 0.0, np.nan, 1e300, 0.0])
    np.testing.assert_array_equal(out[sigmoid][:7], [0.5, 0.5, 1.0, 0.0, np.nan, 1.0, 0.0])
    # the kernels' VJP and JVP take both from one exp: the same values bit for bit
    import numba

    @numba.njit(error_model="numpy")
    def both(x, f, g):
        for i in range(x.size):
            f[i], g[i] = softplus_and_sigmoid(x[i])

    z = _activation_arguments(20)
    f, g, f_alone, g_alone = (np.empty_like(z) for _ in range(4))
    both(z, f, g)
    _libm_free_loop(softplus)(z, f_alone)
    _libm_free_loop(sigmoid)(z, g_alone)
    assert np.array_equal(f, f_alone) and np.array_equal(g, g_alone)
    assert np.all(f >= 0.0) and np.all((g >= 0.0) & (g <= 1.0))


def test_the_softplus_loop_vectorises_and_the_kernels_call_no_libm():
    from kirchhoff_sim import _kcl_kernels

    x = np.linspace(-50, 50, 1001)
    for name in ("exp", "softplus", "sigmoid"):
        apply = _libm_free_loop(getattr(_kcl_kernels, name))
        apply(x, np.empty_like(x))
        ir = "".join(apply.inspect_llvm().values())
        assert "x double>" in ir, name                                   # the loop runs on SIMD vectors
        assert not re.search(r"@(llvm\.)?(exp|log|log1p|pow)(\.f64)?\(", ir), name
    # and the kernels' column loops (every activation inlined) call none either: compiled
    # afresh here, as numba's cache holds no IR to inspect
    import numba

    net = net_of(devices.AffineActivation("softplus"), nodes=4)
    g = net.groups[0]
    src, dst, *coefficients, act = kernels._edge_arrays(g.src, g.dst, g.device, g.params)
    V = np.random.default_rng(22).normal(size=(net.num_nodes + 1, 8))
    slots = np.zeros((4, src.size), dtype=np.int64)
    fresh = {name: numba.njit(error_model="numpy")(getattr(_kcl_kernels, name).py_func)
             for name in ("_edges_on_columns", "_vjp_columns", "_jvp_columns", "_stamp_columns")}
    fresh["_edges_on_columns"](np.zeros_like(V), V, src, dst, *coefficients, act, 0.01, 0, 8)
    fresh["_vjp_columns"](np.zeros_like(V), np.zeros((6, src.size)), V, V, src, dst, *coefficients, act, 0.01, 0, 8,
                          True)
    fresh["_jvp_columns"](np.zeros_like(V), V, V, src, dst, *coefficients, *np.ones((7, src.size)), act, 0.01, 0, 8,
                          True)
    fresh["_stamp_columns"](np.zeros_like(V), np.zeros((1, 8)), V, src, dst, slots, *coefficients, act, 0.01, 0, 8)
    for name, dispatcher in fresh.items():
        ir = "".join(dispatcher.inspect_llvm().values())
        assert not re.search(r"@(llvm\.)?(exp|log|log1p|pow)(\.f64)?\(", ir), name
        assert "x double>" in ir, name


def test_softplus_devices_far_into_both_tails_match_the_numpy_reference(numba_backend):
    # |z| up to ~1e3: e^−|z| through the subnormals to 0, softplus(z) = z or 0 to the last bit
    net = net_of(devices.AffineActivation("softplus"))
    assembly = net.assemblies()[0]
    rng = np.random.default_rng(21)
    V = rng.normal(0, 300, (net.num_nodes + 1, 37))
    V[0] = 0.0
    nu = rng.normal(size=V.shape)
    nu[0] = 0.0
    out = {}
    for backend in ("numpy", "numba"):
        kernels.use(backend)
        theta_bar = [np.zeros_like(g.params) for g in assembly.groups]
        out[backend] = (assembly.rhs(V), assembly.vjp(V, nu, theta_bar), *theta_bar, *assembly.stamps(V),
                        assembly.jvp(V, nu, theta_bar))
    for fused, reference in zip(out["numba"], out["numpy"]):
        assert np.max(np.abs(fused - reference)) <= 1e-13 * np.abs(reference).max()


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
