"""float32 end to end (issue #14): the working precision of simulate, gradient, training,
the estimators and the CLI.

What must hold: a float32 run keeps every state, current and cotangent in float32 (an
assembly refuses a wider state, so a silent promotion back to float64 fails here); the
kernels in float32 equal the NumPy path in float32 to 1e-5 of the largest current, for
every family and activation, forward, VJP and JVP; a float32 run agrees with float64 to
its round-off on a fixed grid, and to the tolerance on an adaptive one; a tolerance the
type cannot resolve, an implicit method or a flow in float32 is refused with the reason;
and training in float32 follows the float64 run.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import devices, kernels
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.sensitivity import gradient
from kirchhoff_sim.solvers import make_solver
from kirchhoff_sim.solvers.precision import as_dtype, check_precision, tolerance_floor
from kirchhoff_sim.training import datasets
from kirchhoff_sim.training.estimators import KirchhoffClassifier
from kirchhoff_sim.training.losses import bind, cross_entropy
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, train

from test_kernels import FAMILIES, net_of

EPS32 = float(np.finfo(np.float32).eps)
KERNEL_RTOL32 = 1e-5          # the bound: kernel vs NumPy, both float32
family_ids = [d.spec()["family"] + "-" + d.spec().get("activation", "") for d in FAMILIES]


@pytest.fixture(params=["numpy", "numba"])
def backend(request):
    before = kernels.backend()
    kernels.use(request.param)
    yield request.param
    kernels.use(before)


def state(net, batch, seed=0, dtype=np.float32):
    V = np.random.default_rng(seed).normal(0, 2, (net.num_nodes + 1, batch)).astype(dtype)
    V[0] = 0.0
    return V


# ------------------------------------------------------------------ dtypes and their limits
@pytest.mark.parametrize("given, name", [(None, "float64"), ("float32", "float32"), (np.float32, "float32"),
                                         (np.dtype("float64"), "float64")])
def test_the_working_types(given, name):
    assert as_dtype(given).name == name


@pytest.mark.parametrize("bad", ["float16", "int32", np.int64, True, "double precision", object, 32, ">f4", ">f8",
                                 np.dtype(">f8"), "single", "f4", "double", np.float32(3.0), np.zeros(2),
                                 {"names": ["a"], "formats": ["f4"]}, b"float32"])
def test_other_types_are_refused(bad):
    with pytest.raises(InputError, match="dtype must be one of float64, float32"):
        as_dtype(bad)


def test_a_parameter_beyond_float32s_range_is_refused_by_name():
    from kirchhoff_sim.errors import ParameterError

    layer = ks.Layer([[1, 0], [1, 2], [2, 0]], devices.Conductance(), 1.0, params=[[1e39, 1.0, 1.0]])
    net = ks.KirchhoffNet([layer], num_nodes=2)
    with pytest.raises(ParameterError, match=r"layer 0, group 0: parameter g of edge 0 is 1e\+39, beyond float32"):
        ks.simulate(net, np.ones((1, 2)), solver=ks.RK4(0.01), dtype="float32")
    ks.simulate(net, np.ones((1, 2)), solver=ks.BDF2(rtol=1e-4, atol=1e-6))     # float64 is fine


def test_float32_memory_is_estimated_at_four_bytes_a_value():
    from kirchhoff_sim.errors import ResourceLimitError
    from kirchhoff_sim.solvers.resources import ResourceLimits, estimate_resources

    net = build_net(2, 2, hidden=4, layers=1, seed=0)
    x, solver = np.zeros((1000, 2)), ks.RK4(0.01)
    limit = ResourceLimits(memory_bytes=int(estimate_resources(net, 1000, solver, 101).total_bytes * 0.75))
    ks.simulate(net, x, solver=solver, save_at=np.linspace(0, net.T, 101), dtype="float32", limits=limit)
    with pytest.raises(ResourceLimitError):
        ks.simulate(net, x, solver=solver, save_at=np.linspace(0, net.T, 101), limits=limit)


def test_the_tolerance_floor_is_four_round_offs():
    assert tolerance_floor("float32") == 4 * EPS32
    assert tolerance_floor("float64") == 4 * np.finfo(np.float64).eps


def test_a_tolerance_below_the_floor_is_refused_with_the_figures():
    floor = tolerance_floor("float32")
    check_precision(ks.Dopri5(rtol=floor, atol=1e-6), "float32")        # at the floor: accepted
    with pytest.raises(InputError, match=r"rtol 1e-07 cannot be met in float32: its round-off eps is 1\.19e-07"
                                         r".*use rtol >= 4\.8e-07 or dtype=float64"):
        check_precision(ks.Dopri5(rtol=1e-7, atol=1e-9), "float32")
    with pytest.raises(InputError, match="cannot be met in float64"):
        check_precision(ks.Dopri5(rtol=1e-16, atol=1e-16), None)
    check_precision(ks.RK4(1e-3), "float32")                             # a fixed step asks no tolerance


@pytest.mark.parametrize("method", ["be", "trap", "bdf2"])
def test_implicit_methods_are_float64_only(method):
    solver = make_solver(method, rtol=1e-4, atol=1e-6)
    check_precision(solver, "float64")
    with pytest.raises(InputError, match=f"the implicit method {method} runs in float64 only"):
        ks.simulate(net_of(devices.Conductance(), nodes=4), np.ones((2, 3)), solver=solver, dtype="float32")


def test_a_float32_assembly_refuses_a_wider_state():
    assembly = net_of(devices.ShiftedReLU(), nodes=5).assemblies("float32")[0]
    with pytest.raises(InputError, match="must be float32 like this float32 assembly, got float64"):
        assembly.rhs(np.zeros((assembly.num_nodes + 1, 2)))


def test_a_kinn_is_float64_only():
    from kirchhoff_sim.kinn import KinnNet

    net = KinnNet(2, 2, 2, 2)
    with pytest.raises(InputError, match="a KINN runs in float64 only"):
        ks.simulate(net, np.zeros((1, 2)), solver=ks.RK4(0.1), dtype="float32")


# ------------------------------------------------------------------ kernels in float32
@pytest.mark.parametrize("device", FAMILIES, ids=family_ids)
def test_the_float32_kernels_equal_the_float32_numpy_path(device):
    # against float64 (the NumPy path, itself the kernels' reference): the float32 kernel
    # is within 1e-5 of the result's scale, or no further off than the float32 NumPy path
    # (a node's sum can cancel terms larger than itself, which float32 rounds either way)
    net = net_of(device)
    before = kernels.backend()
    V, nu, v_dot = state(net, 37, 1), state(net, 37, 2), state(net, 37, 3)
    out = {}
    try:
        for name, dtype in (("numpy", "float64"), ("numpy", "float32"), ("numba", "float32")):
            kernels.use(name)
            assembly = net.assemblies(dtype)[0]
            cast = [a.astype(dtype) for a in (V, nu, v_dot)]
            theta_bar = [np.zeros(g.params.shape) for g in assembly.groups]
            out[name, dtype] = (assembly.rhs(cast[0]), assembly.vjp(cast[0], cast[1], theta_bar), theta_bar[0],
                                assembly.jvp(cast[0], cast[2], [np.ones(g.params.shape, dtype) for g in assembly.groups]))
    finally:
        kernels.use(before)
    what = ("rhs", "vjp", "parameter cotangent", "jvp")
    for k, name in enumerate(what):
        exact, numpy32, fused32 = out["numpy", "float64"][k], out["numpy", "float32"][k], out["numba", "float32"][k]
        if name != "parameter cotangent":
            assert fused32.dtype == numpy32.dtype == np.float32, name
        error_numpy = np.abs(numpy32 - exact).max()
        error_fused = np.abs(fused32 - exact).max()
        assert error_fused <= max(KERNEL_RTOL32 * np.abs(exact).max(), 2 * error_numpy), name
        assert np.abs(fused32 - numpy32).max() <= max(KERNEL_RTOL32 * np.abs(exact).max(), 3 * error_numpy), name


# ------------------------------------------------------------------ runs
def test_a_float32_run_is_float32_throughout(backend):
    net = net_of(devices.AffineActivation("tanh"), nodes=6, layers=2)
    x = np.random.default_rng(4).normal(size=(5, 3))
    sol = ks.simulate(net, x, solver=ks.Dopri5(rtol=1e-5, atol=1e-6), save_at=[0.25, 0.5, net.T], dtype="float32",
                      record_states=True)
    assert sol.final_state.dtype == sol.node_voltages.dtype == np.float32
    states = [V for tape in sol.tapes for V in tape.states]
    assert len(states) == sol.stats.n_steps + len(net.layers) and all(V.dtype == np.float32 for V in states)
    assert net.parameters[0].dtype == np.float64          # the master copy is left alone


@pytest.mark.parametrize("device", [devices.ShiftedReLU(), devices.AffineActivation("tanh"), devices.Diode()],
                         ids=["ShiftedReLU", "AffineTanh", "Diode"])
def test_on_a_fixed_grid_float32_differs_from_float64_by_round_off(device, backend):
    net = net_of(device, nodes=6, layers=2)
    x = np.random.default_rng(5).uniform(-0.2, 0.2, size=(6, 3))    # a diode's current stays below 1e-5
    solver = ks.RK4(0.01)
    single = ks.simulate(net, x, solver=solver, dtype="float32")
    double = ks.simulate(net, x, solver=solver)
    steps = single.stats.n_steps
    swing = np.abs(double.final_state).max()
    # each of the 100 steps rounds the state and its four stages: a random walk of a few
    # eps a step, bounded here by 10·eps·steps (measured 0.03–0.26·eps·steps)
    assert np.abs(single.final_state - double.final_state).max() <= 10 * EPS32 * steps * swing
    assert single.stats.n_fevals == double.stats.n_fevals


def test_an_adaptive_float32_run_is_as_accurate_as_float64_at_its_tolerance(backend):
    net = build_net(2, 2, hidden=4, layers=2, seed=0)
    x = np.random.default_rng(0).normal(size=(16, 2))
    exact = ks.simulate(net, x, solver=ks.Dopri5(rtol=1e-12, atol=1e-12)).final_state
    for rtol in (1e-4, 1e-5, 1e-6):
        solver = ks.Dopri5(rtol=rtol, atol=rtol)
        single = ks.simulate(net, x, solver=solver, dtype="float32").final_state
        double = ks.simulate(net, x, solver=solver).final_state
        error32, error64 = np.abs(single - exact).max(), np.abs(double - exact).max()
        # float32 adds no more than its round-off to the error float64 makes at the same
        # tolerance (measured: at most 0.2·eps of the largest voltage more, often less)
        assert error32 <= error64 + 2 * EPS32 * np.abs(exact).max(), rtol


def test_float32_gradients_follow_float64(backend):
    net = build_net(2, 2, hidden=4, layers=2, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 2)), rng.integers(0, 2, 16)
    loss = bind(cross_entropy, y)
    solver = ks.RK4(0.01)
    single = gradient(net, x, loss, solver, dtype="float32")
    double = gradient(net, x, loss, solver)      # itself checked against finite differences elsewhere
    assert single.solution.final_state.dtype == np.float32 and single.flat.dtype == np.float64
    assert np.abs(single.flat - double.flat).max() <= 1e-5 * np.abs(double.flat).max()
    assert np.abs(single.inputs - double.inputs).max() <= 1e-5 * np.abs(double.inputs).max()
    assert abs(single.loss - double.loss) <= 1e-5 * abs(double.loss)
    assert (single.stats.n_fevals, single.stats.n_vjps) == (double.stats.n_fevals, double.stats.n_vjps)


def test_float32_gradients_with_checkpoints_and_a_running_cost():
    from kirchhoff_sim.training.constraints import rail_running_cost

    net = build_net(2, 2, hidden=4, layers=2, seed=0)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 2)), rng.integers(0, 2, 8)
    options = dict(solver=ks.RK4(0.02), checkpoint_every=3, running_cost=rail_running_cost(-0.5, 0.5, 1.0))
    single = gradient(net, x, bind(cross_entropy, y), dtype="float32", **options)
    double = gradient(net, x, bind(cross_entropy, y), **options)
    assert single.solution.final_state.dtype == np.float32
    assert 0 < np.abs(single.flat - double.flat).max() <= 1e-5 * np.abs(double.flat).max()


# ------------------------------------------------------------------ training, estimators, CLI
def test_the_train_config_checks_its_dtype():
    assert TrainConfig(dtype=np.float32).dtype == "float32"
    with pytest.raises(InputError, match="dtype must be one of"):
        TrainConfig(dtype="float16")
    with pytest.raises(InputError, match="cannot be met in float32"):
        TrainConfig(dtype="float32", solver={"method": "dopri5", "rtol": 1e-8, "atol": 1e-10})
    with pytest.raises(InputError, match=r"a flow's loss \(nll\) runs in float64 only"):
        TrainConfig(dtype="float32", loss="nll")


def test_training_in_float32_follows_float64():
    data = datasets.load_dataset("moons", n_samples=200, seed=0)
    nets = {}
    for dtype in ("float64", "float32"):
        nets[dtype] = build_net(2, 2, hidden=2, layers=2, seed=0)
        config = TrainConfig(epochs=2, batch_size=32, lr=3e-2, seed=0, dtype=dtype,
                             solver={"method": "rk4", "dt": 0.05})
        history = train(nets[dtype], data, config, progress=False, log=None).history
        assert history[-1]["train_loss"] < history[0]["train_loss"]
    single, double = nets["float32"].get_flat_params(), nets["float64"].get_flat_params()
    assert single.dtype == np.float64
    # 2 epochs of Adam on float32 gradients: the parameters move ~1e-1, the round-off ~1e-6
    assert 0 < np.abs(single - double).max() <= 1e-3 * np.abs(double).max()


def test_a_float32_classifier_predicts_in_float32():
    data = datasets.load_dataset("moons", n_samples=200, seed=0)
    single = KirchhoffClassifier(hidden=2, epochs=1, method="rk4", dt=0.05, dtype="float32").fit(data.X_train, data.y_train)
    double = KirchhoffClassifier(hidden=2, epochs=1, method="rk4", dt=0.05).fit(data.X_train, data.y_train)
    p32, p64 = single.predict_proba(data.X_test), double.predict_proba(data.X_test)
    assert single.dtype_ == "float32" and single._readout(data.X_test).dtype == np.float32
    assert 0 < np.abs(p32 - p64).max() <= 1e-3
    assert np.mean(single.predict(data.X_test) == double.predict(data.X_test)) >= 0.98
    with pytest.raises(InputError, match="dtype must be one of"):
        KirchhoffClassifier(dtype="half").fit(data.X_train, data.y_train)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "kirchhoff_sim.cli", *args], capture_output=True, text=True)


def test_the_cli_simulates_in_float32_and_refuses_what_it_cannot_meet(tmp_path):
    from kirchhoff_sim.modelfile import save_net

    model, inputs, out = tmp_path / "m.npz", tmp_path / "x.npy", tmp_path / "y.npy"
    save_net(build_net(2, 2, hidden=2, layers=1, seed=0), model)
    np.save(inputs, np.random.default_rng(0).normal(size=(4, 2)))
    done = cli("simulate", str(model), "--input", str(inputs), "--out", str(out), "--dtype", "float32",
               "--rtol", "1e-5", "--atol", "1e-6")
    assert done.returncode == 0, done.stderr
    assert np.load(out).dtype == np.float32
    refused = cli("simulate", str(model), "--input", str(inputs), "--out", str(out), "--dtype", "float32",
                  "--rtol", "1e-9")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "rtol 1e-09 cannot be met in float32" in refused.stderr and "Traceback" not in refused.stderr


def test_evaluating_a_flow_in_float32_is_refused():
    from kirchhoff_sim.training.trainer import evaluate

    with pytest.raises(InputError, match=r"a flow.s loss \(nll\) runs in float64 only \(its log-density .*\), got dtype float32"):
        evaluate(build_net(2, 2, hidden=0, layers=1, seed=0), np.zeros((4, 2)), None, "nll", dtype="float32")


def test_the_float32_kernels_are_bit_identical_on_one_and_two_threads():
    net = net_of(devices.AffineActivation("tanh"), nodes=17)
    assembly = net.assemblies("float32")[0]
    V, nu = state(net, 64, 6), state(net, 64, 7)
    before, threads = kernels.backend(), kernels.threads()
    results = []
    try:
        kernels.use("numba")
        for n in (1, 2):
            kernels.set_threads(n)
            theta_bar = [np.zeros(g.params.shape) for g in assembly.groups]
            results.append((assembly.rhs(V), assembly.vjp(V, nu, theta_bar), theta_bar[0]))
    finally:
        kernels.set_threads(threads)
        kernels.use(before)
    assert all(np.array_equal(a, b) for a, b in zip(*results))
    assert results[0][0].dtype == results[0][1].dtype == np.float32


def test_an_estimator_pickled_before_dtype_existed_still_predicts():
    import pickle

    data = datasets.load_dataset("moons", n_samples=100, seed=0)
    model = KirchhoffClassifier(hidden=2, epochs=1, method="rk4", dt=0.1).fit(data.X_train, data.y_train)
    expected = model.predict(data.X_test)
    old = pickle.loads(pickle.dumps(model))
    del old.__dict__["dtype"], old.__dict__["dtype_"], old.net_.__dict__["_working_assemblies"]
    assert np.array_equal(old.predict(data.X_test), expected) and "KirchhoffClassifier" in repr(old)
    assert old.net_.assemblies("float32")[0].dtype == np.float32
