"""Robustness: quantisation, mismatch, Monte Carlo reproducibility, Dask == serial, CLI, ngspice.

The distributed tests run a real two-worker ``LocalCluster`` (started once for the module)
and the ngspice test the real ngspice binary; nothing is mocked.
"""

import json
import re
import time
from dataclasses import asdict

import numpy as np
import pytest
from scipy import stats

from kirchhoff_sim import cli, devices
from kirchhoff_sim.errors import DeviceError, DivergenceError, InputError, SchedulerConnectionError, StiffnessError
from kirchhoff_sim.devices import parameter_roles
from kirchhoff_sim.hardware import (
    MonteCarloSpec,
    SerialRunner,
    ktc_noise_sigma,
    mismatch_sweep,
    monte_carlo,
    perturb,
    quantisation_sweep,
    quantise,
    run_trial,
)
from kirchhoff_sim.hardware.distributed import DaskRunner
from kirchhoff_sim.hardware.executors import map_trials
from kirchhoff_sim.hardware.montecarlo import MonteCarloResult
from kirchhoff_sim.modelfile import net_from_bytes, net_to_bytes, save_net
from kirchhoff_sim.network import KirchhoffNet, Layer
from kirchhoff_sim.solvers import make_solver, simulate
from kirchhoff_sim.training import datasets
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, evaluate, train

MOONS_SAMPLES = 200            # 50 test samples
TEST_SAMPLES = 40              # samples per Monte Carlo trial in these tests
TIGHT_SOLVER = {"method": "dopri5", "rtol": 1e-9, "atol": 1e-11}
HIGH_BITS = 16
HIGH_BITS_OUTPUT_ATOL = 1e-3   # 16-bit parameters move this read-out by ~2e-5 (2 bits: 0.26)
LOW_BITS_MIN_CHANGE = 0.05     # 1–2 bit parameters move some read-out by more than this
LOGNORMAL_EDGES = 20_000
SPICE_READOUT_ATOL = 1e-4      # ngspice vs our solver, normalised volts (measured ~1e-6)
BAD_ADDRESS_TIMEOUT_SECONDS = 1.0
BAD_ADDRESS_MAX_SECONDS = 8.0


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def moons():
    return datasets.load_dataset("moons", n_samples=MOONS_SAMPLES, seed=0)


@pytest.fixture(scope="module")
def trained(moons):
    """A tiny classifier (2 inputs, 2 hidden, 2 outputs, 2 layers) trained for 2 epochs."""
    net = build_net(2, 2, hidden=2, layers=2, seed=0)
    config = TrainConfig(epochs=2, batch_size=32, lr=3e-2, seed=0)
    train(net, moons, config, progress=False, log=None)
    return net, config


@pytest.fixture(scope="module")
def data(moons):
    return moons.X_test[:TEST_SAMPLES], moons.y_test[:TEST_SAMPLES]


@pytest.fixture(scope="module")
def model_file(trained, tmp_path_factory):
    """The trained net as 'train' writes it: with its data source and training config."""
    net, config = trained
    path = tmp_path_factory.mktemp("model") / "moons.npz"
    save_net(net, path, metadata={
        "training": {"config": asdict(config), "history": [], "dataset": "moons", "epochs_done": 2},
        "source": {"task": "moons", "data": None, "seed": 0,
                   "dataset_options": {"n_samples": MOONS_SAMPLES}}})
    return path


@pytest.fixture(scope="module")
def runner():
    with DaskRunner(n_workers=2, threads_per_worker=1) as dask_runner:
        yield dask_runner


def mixed_net(seed=0) -> KirchhoffNet:
    """Every programmable family in one net, with kaiming parameters."""
    edges = [(1, 2), (2, 3), (3, 4), (4, 0), (1, 4), (2, 0), (3, 1), (4, 2)]
    groups = [(edges[:4], devices.ShiftedReLU()), (edges[4:6], devices.AffineActivation("tanh")),
              (edges[6:], devices.Conductance())]
    layer = Layer.from_groups(groups, duration=1.0)
    return KirchhoffNet([layer, Layer.from_groups(groups, duration=0.5)], readout=2, seed=seed)


# ------------------------------------------------------------------ parameter roles
def test_parameter_roles_name_every_parameter_of_every_family():
    for name in devices.FAMILIES:
        device = devices.from_spec({"family": name})
        assert set(parameter_roles(device)) == set(device.param_names)


def test_unknown_family_needs_roles():
    class Resistor(devices.Device):          # declares its parameters but not their roles
        param_names = ("g",)

    class Mislabelled(devices.Device):
        param_names = ("g",)
        parameter_roles = {"gain": devices.CONDUCTANCE}

    with pytest.raises(DeviceError, match="no parameter roles for device family Resistor"):
        parameter_roles(Resistor())
    with pytest.raises(DeviceError, match="do not match its parameters"):
        parameter_roles(Mislabelled())


# ------------------------------------------------------------------ quantisation
def test_quantise_at_high_bits_keeps_the_outputs():
    net = build_net(2, 2, hidden=4, layers=2, seed=1)
    x = np.random.default_rng(0).normal(size=(16, 2))
    fine = quantise(net, HIGH_BITS)
    assert not np.array_equal(fine.get_flat_params(), net.get_flat_params())
    np.testing.assert_allclose(fine.forward(x), net.forward(x), atol=HIGH_BITS_OUTPUT_ATOL)


@pytest.mark.parametrize("bits", [1, 2])
def test_quantise_at_low_bits_changes_the_outputs(bits):
    net = build_net(2, 2, hidden=4, layers=2, seed=1)
    x = np.random.default_rng(0).normal(size=(16, 2))
    assert np.abs(quantise(net, bits).forward(x) - net.forward(x)).max() > LOW_BITS_MIN_CHANGE


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_quantise_levels_per_group_row(bits):
    net = mixed_net()
    q = quantise(net, bits)
    for old, new in zip(net.groups, q.groups):
        for row_old, row_new in zip(old.params, new.params):
            m = np.abs(row_old).max()
            assert len(np.unique(row_new)) <= 2 ** bits
            assert np.abs(row_new).max() == pytest.approx(m, rel=1e-15)     # the range end is a level
            assert np.all(np.sign(row_new) == np.sign(row_old))             # nothing flips sign
            assert np.abs(row_new - row_old).max() <= m / (2 ** bits - 1) * (1 + 1e-12)  # half a step
    np.testing.assert_array_equal(q.capacitance, net.capacitance)


def test_quantise_per_net_uses_one_range_per_parameter_name():
    net, bits = mixed_net(), 2
    q = quantise(net, bits, mode="per_net")
    gains = np.concatenate([g.params[1] for g in q.groups if isinstance(g.device, devices.ShiftedReLU)])
    assert len(np.unique(gains)) <= 2 ** bits


def test_quantise_which_and_physical_parameters():
    net = mixed_net()
    only_gain = quantise(net, 2, which={"gain"})
    for old, new in zip(net.groups, only_gain.groups):
        for name, row_old, row_new in zip(old.device.param_names, old.params, new.params):
            assert np.array_equal(row_old, row_new) == (name != "gain")
    diode = KirchhoffNet(Layer([(1, 0), (1, 2)], devices.Diode(default_i_s=1e-9, default_r_s=0.5)))
    diode.groups[0].params[0] = [1e-9, 3e-12]
    np.testing.assert_array_equal(quantise(diode, 1).get_flat_params(), diode.get_flat_params())


def test_quantise_rejects_bad_arguments():
    net = mixed_net()
    for bits in (0, 53, 2.5, True):
        with pytest.raises(InputError, match="bits"):
            quantise(net, bits)
    with pytest.raises(InputError, match="mode"):
        quantise(net, 4, mode="per_edge")
    with pytest.raises(InputError, match="no device of the net has"):
        quantise(net, 4, which={"i_s"})


# ------------------------------------------------------------------ mismatch
def test_perturb_with_zero_sigma_is_the_identity():
    net = mixed_net()
    copy = perturb(net, np.random.default_rng(0))
    np.testing.assert_array_equal(copy.get_flat_params(), net.get_flat_params())
    np.testing.assert_array_equal(copy.capacitance, net.capacitance)
    assert copy is not net and copy.groups[0].params is not net.groups[0].params


def test_perturb_changes_only_conductance_like_parameters():
    net = mixed_net()
    copy = perturb(net, np.random.default_rng(0), sigma_g=0.1)
    for old, new in zip(net.groups, copy.groups):
        roles = parameter_roles(old.device)
        for name, row_old, row_new in zip(old.device.param_names, old.params, new.params):
            if roles[name] == "conductance":
                assert np.all(row_old != row_new) and np.all(np.sign(row_old) == np.sign(row_new))
            else:
                np.testing.assert_array_equal(row_old, row_new)
    np.testing.assert_array_equal(copy.capacitance, net.capacitance)
    assert np.all(perturb(net, np.random.default_rng(0), sigma_c=0.1).capacitance != net.capacitance)


def test_perturb_draws_log_normal_factors():
    """On a large group, log(factor) is N(0, σ²) for the conductances and the capacitors."""
    n, g, c, sigma_g, sigma_c = LOGNORMAL_EDGES, 2.0, 1.5, 0.1, 0.2
    edges = np.stack([np.arange(1, n + 1), np.zeros(n, dtype=int)], axis=1)
    net = KirchhoffNet(Layer(edges, devices.Conductance(), params=np.full((1, n), g)), capacitance=c)
    copy = perturb(net, np.random.default_rng(7), sigma_g=sigma_g, sigma_c=sigma_c)
    for log_ratio, sigma in ((np.log(copy.groups[0].params[0] / g), sigma_g),
                             (np.log(copy.capacitance / c), sigma_c)):
        assert abs(log_ratio.mean()) < 4 * sigma / np.sqrt(n)
        assert log_ratio.std() == pytest.approx(sigma, rel=0.03)
        assert stats.kstest(log_ratio / sigma, "norm").pvalue > 1e-3


def test_ktc_noise_sigma_at_100_fF():
    assert ktc_noise_sigma([1.0])[0] == pytest.approx(np.sqrt(1.380649e-23 * 300 / 100e-15) / 0.1)


# ------------------------------------------------------------------ Monte Carlo, serial
def test_monte_carlo_is_reproducible_by_seed(trained, data):
    net, _ = trained
    spec = MonteCarloSpec(sigma_g=0.2, sigma_c=0.1, ktc=True, readout_noise=0.2, trials=6, seed=11)
    first, second = monte_carlo(net, *data, spec), monte_carlo(net, *data, spec)
    np.testing.assert_array_equal(first.accuracies, second.accuracies)
    np.testing.assert_array_equal(first.losses, second.losses)
    other = monte_carlo(net, *data, MonteCarloSpec(**{**spec.to_dict(), "seed": 12}))
    assert not np.array_equal(first.losses, other.losses)
    assert first.nominal_accuracy == pytest.approx(evaluate(net, *data, solver=make_solver(**spec.solver))["accuracy"])
    assert len(set(first.losses)) == spec.trials             # every trial is its own draw


def test_a_trial_does_not_depend_on_the_others(trained, data):
    net, _ = trained
    spec = MonteCarloSpec(sigma_g=0.2, ktc=True, readout_noise=0.2, trials=6, seed=3)
    full = map_trials(SerialRunner(), net, *data, spec)
    alone = map_trials(SerialRunner(), net, *data, spec, trial_indices=[3, 4])
    assert [t["trial"] for t in alone] == [3, 4]
    for t_alone, t_full in zip(alone, full[3:5]):
        assert t_alone["loss"] == t_full["loss"]
        np.testing.assert_array_equal(t_alone["predictions"], t_full["predictions"])
    assert run_trial(net, *data, spec, 4)["loss"] == full[4]["loss"]


def test_noise_sources_draw_from_separate_streams(trained, data):
    """Adding read-out noise leaves the mismatch draws alone: the read-outs differ by the
    noise only, whose σ is the one asked for."""
    net, _ = trained
    quiet = MonteCarloSpec(sigma_g=0.1, trials=1, keep_readout=True)
    noisy = MonteCarloSpec(sigma_g=0.1, readout_noise=0.01, trials=1, keep_readout=True)
    diff = run_trial(net, *data, noisy, 0)["readout"] - run_trial(net, *data, quiet, 0)["readout"]
    assert diff.std() == pytest.approx(0.01, rel=0.3)


def test_ktc_noise_moves_the_readout_a_little(trained, data):
    net, _ = trained
    spec = MonteCarloSpec(ktc=True, trials=1, keep_readout=True)
    nominal = run_trial(net, *data, spec.without_noise(), 0)["readout"]
    change = np.abs(run_trial(net, *data, spec, 0)["readout"] - nominal)
    assert 0 < change.max() < 10 * ktc_noise_sigma(net.capacitance).max() * np.sqrt(net.num_nodes)


def test_large_readout_noise_gives_chance_accuracy(trained, data):
    net, _ = trained
    result = monte_carlo(net, *data, MonteCarloSpec(readout_noise=100.0, trials=10))
    assert abs(result.mean - 0.5) < 0.15 < result.nominal_accuracy - 0.5


def test_result_summary_and_json(trained, data):
    net, _ = trained
    result = monte_carlo(net, *data, MonteCarloSpec(sigma_g=0.05, trials=5))
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["trials"] == 5 and payload["samples"] == TEST_SAMPLES
    assert payload["per_trial"]["accuracy"] == result.accuracies.tolist()
    assert result.min <= payload["accuracy"]["p50"] <= result.max
    assert "5 trials × 40 samples" in str(result) and "nominal" in str(result)


def test_spec_validation():
    for bad in ({"sigma_g": -0.1}, {"trials": 0}, {"seed": -1}, {"backend": "xyce"},
                {"solver": {"method": "nope"}}, {"ktc": "yes"}, {"scale": {"V0": 0.0, "C0": 1e-13, "G0": 1e-6}},
                {"scale": "default"},
                {"spice_options": {"reltol": 2.0}}, {"spice_options": {"bogus": 1}}):
        with pytest.raises(InputError):
            MonteCarloSpec(**bad)
    with pytest.raises(InputError, match="unknown MonteCarloSpec fields"):
        MonteCarloSpec.from_dict({"sigma": 0.1})
    spec = MonteCarloSpec(sigma_g=0.1, ktc=True)
    assert MonteCarloSpec.from_dict(spec.to_dict()) == spec


def test_bad_labels_are_refused(trained, data):
    net, _ = trained
    X, y = data
    with pytest.raises(InputError, match="labels must lie in 0..1"):
        run_trial(net, X, y + 5, MonteCarloSpec(), 0)
    with pytest.raises(InputError, match="integer class label"):
        run_trial(net, X, y.astype(float), MonteCarloSpec(), 0)


def test_model_bytes_round_trip_exactly(trained):
    net, _ = trained
    copy = net_from_bytes(net_to_bytes(net))
    np.testing.assert_array_equal(copy.get_flat_params(), net.get_flat_params())
    assert copy.T == net.T and np.array_equal(copy.readout, net.readout)


# ------------------------------------------------------------------ Dask
def test_distributed_run_equals_serial_run(trained, data, runner):
    net, _ = trained
    spec = MonteCarloSpec(sigma_g=0.2, sigma_c=0.1, ktc=True, readout_noise=0.1, trials=10, seed=5)
    serial = monte_carlo(net, *data, spec)
    distributed = monte_carlo(net, *data, spec, executor=runner)
    assert np.array_equal(serial.accuracies, distributed.accuracies)
    assert np.array_equal(serial.losses, distributed.losses)
    assert np.array_equal(serial.predictions, distributed.predictions)
    assert serial.nominal_loss == distributed.nominal_loss
    assert runner.parallelism == 2 and "2 workers" in distributed.runner
    alone = map_trials(runner, net, *data, spec, trial_indices=[3, 4])
    assert [t["loss"] for t in alone] == serial.losses[3:5].tolist()


def test_distributed_sweeps_equal_serial_sweeps(trained, data, runner):
    net, _ = trained
    bits = (1, 2, 6)
    assert quantisation_sweep(net, *data, bits, executor=runner) == quantisation_sweep(net, *data, bits)
    sigmas, spec = (0.0, 0.3), MonteCarloSpec(readout_noise=0.1, seed=2)
    rows = mismatch_sweep(net, *data, sigmas, trials=3, spec=spec, executor=runner)
    assert rows == mismatch_sweep(net, *data, sigmas, trials=3, spec=spec)
    assert [r["sigma"] for r in rows] == list(sigmas) and len(rows[0]["accuracies"]) == 3


def test_unreachable_scheduler_fails_quickly_and_clearly():
    start = time.perf_counter()
    with pytest.raises(SchedulerConnectionError, match="tcp://127.0.0.1:1"):
        DaskRunner("tcp://127.0.0.1:1", connect_timeout=BAD_ADDRESS_TIMEOUT_SECONDS).start()
    assert time.perf_counter() - start < BAD_ADDRESS_MAX_SECONDS
    with pytest.raises(SchedulerConnectionError, match="cannot connect"):
        DaskRunner("not-an-address::", connect_timeout=BAD_ADDRESS_TIMEOUT_SECONDS).start()
    with pytest.raises(InputError, match="not started"):
        map_trials(DaskRunner(), None, None, None, MonteCarloSpec())


# ------------------------------------------------------------------ CLI
def test_cli_montecarlo_prints_json(model_file, runner, capsys):
    common = [str(model_file), "--sigma", "0.1", "--trials", "4", "--samples", "20", "--json"]
    assert cli.main(["montecarlo", *common, "--scheduler", runner.address]) == 0
    distributed = json.loads(capsys.readouterr().out)
    assert distributed["dataset"] == "moons" and distributed["samples"] == 20
    assert distributed["spec"]["sigma_g"] == 0.1 and distributed["trials"] == 4
    assert set(distributed["accuracy"]) >= {"nominal", "mean", "std", "min", "p5", "p50", "p95"}
    assert cli.main(["montecarlo", *common, "--serial"]) == 0
    serial = json.loads(capsys.readouterr().out)
    assert serial["per_trial"] == distributed["per_trial"]
    assert cli.main(["montecarlo", str(model_file), "--trials", "2", "--samples", "5", "--serial"]) == 0
    assert "Monte Carlo: 2 trials × 5 samples" in capsys.readouterr().out
    assert cli.main(["montecarlo", str(model_file), "--sigma", "-1", "--serial"]) == 2
    # refused with exit status 2 and a message naming the option and its bound (the
    # command line checks --sigma itself; MonteCarloSpec checks sigma_g as well)
    assert re.search(r"sigma\S* must be (a )?finite\b.*>= 0", capsys.readouterr().err)


# ------------------------------------------------------------------ ngspice
def test_ngspice_trials_agree_with_the_solver(trained, data, runner):
    net, _ = trained
    X, y = data[0][:2], data[1][:2]
    spec = MonteCarloSpec(sigma_g=0.1, sigma_c=0.05, trials=2, seed=4, keep_readout=True,
                          solver=TIGHT_SOLVER)
    spice = monte_carlo(net, X, y, MonteCarloSpec(**{**spec.to_dict(), "backend": "ngspice"}), executor=runner)
    ours = monte_carlo(net, X, y, spec)
    np.testing.assert_array_equal(spice.predictions, ours.predictions)
    np.testing.assert_allclose(spice.readouts, ours.readouts, atol=SPICE_READOUT_ATOL)
    # the perturbation really changed the circuit ngspice ran
    nominal = simulate(net, X, solver=make_solver(**TIGHT_SOLVER)).readout(net)
    assert np.abs(spice.readouts - nominal).max() > 10 * SPICE_READOUT_ATOL


def test_equal_trials_summarise_to_exactly_their_accuracy():
    # 20 trials that each classify 97 of 100 right: mean 0.97, std 0 and drop 0 exactly
    # (a float mean of twenty 0.97s is 0.9699999999999998)
    trials = 20
    result = MonteCarloResult(spec=MonteCarloSpec(trials=trials), trial_indices=np.arange(trials),
                              accuracies=np.full(trials, 97 / 100), losses=np.zeros(trials),
                              predictions=np.zeros((trials, 100), dtype=int), nominal_accuracy=0.97,
                              nominal_loss=0.0, n_samples=100, seconds=0.0, runner="serial")
    summary = result.summary()
    assert (summary["mean"], summary["std"], summary["drop"]) == (0.97, 0.0, 0.0)
    result.accuracies[0] = 0.95
    assert result.mean == pytest.approx(0.969) and result.std > 0


# ------------------------------------------------------------------ chips that run away
RUNAWAY_GAIN = -20.0           # v − shift grows as e^{20 t}: by T = 1, 4.9e8 × (v − shift) V
RUNAWAY_X = np.array([[0.0, 0.5], [2.0, 0.0], [0.2, 0.9], [0.0, 3.0], [0.8, 0.1]])
RUNAWAY_Y = np.array([1, 0, 1, 1, 0])
RUNAWAY_SAMPLES = [1, 3]       # the inputs above a shift of 1


def runaway_net(shifts=(1.0, 1.0)):
    """Two nodes, each with a negative-gain ShiftedReLU to ground: a node above its shift
    runs away (positive feedback), one below it keeps its voltage exactly (no current)."""
    layer = Layer([[1, 0], [2, 0]], devices.ShiftedReLU(), 1.0,
                  params=[list(shifts), [RUNAWAY_GAIN, RUNAWAY_GAIN]])
    return KirchhoffNet([layer], num_nodes=2, readout=[1, 2])


@pytest.mark.parametrize("batch_size", [1, 2, 512])
def test_samples_that_run_away_are_a_trial_result_not_an_error(batch_size):
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01}, batch_size=batch_size, keep_readout=True)
    result = run_trial(runaway_net(), RUNAWAY_X, RUNAWAY_Y, spec, 0)
    stable = np.setdiff1d(np.arange(len(RUNAWAY_X)), RUNAWAY_SAMPLES)
    assert result["diverged_samples"].tolist() == RUNAWAY_SAMPLES
    assert result["predictions"].tolist() == [1, -1, 1, -1, 0]
    assert result["accuracy"] == 3 / 5                    # a runaway sample is counted wrong
    assert np.isnan(result["readout"][RUNAWAY_SAMPLES]).all()
    assert np.array_equal(result["readout"][stable], RUNAWAY_X[stable])   # no current below the shift
    from kirchhoff_sim.training.losses import cross_entropy
    assert result["loss"] == cross_entropy(RUNAWAY_X[stable], RUNAWAY_Y[stable])[0]


def test_a_trial_whose_every_sample_runs_away_has_no_loss():
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01})
    result = run_trial(runaway_net(), RUNAWAY_X[RUNAWAY_SAMPLES], RUNAWAY_Y[RUNAWAY_SAMPLES], spec, 0)
    assert result["diverged_samples"].tolist() == [0, 1] and result["accuracy"] == 0.0 and np.isnan(result["loss"])


def test_a_sweep_counts_the_runaway_samples_and_the_report_names_them():
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01}, trials=3)
    rows = mismatch_sweep(runaway_net(), RUNAWAY_X, RUNAWAY_Y, [0.0], trials=3, spec=spec)
    assert rows[0]["diverged"] == 3 * len(RUNAWAY_SAMPLES) and rows[0]["mean"] == pytest.approx(3 / 5)
    result = monte_carlo(runaway_net(), RUNAWAY_X, RUNAWAY_Y, spec)
    assert result.diverged.tolist() == [2, 2, 2]
    assert result.to_dict()["per_trial"]["diverged"] == [2, 2, 2]
    assert "6 of 15 trial samples ran away" in str(result)


def test_a_quantised_chip_that_runs_away_is_a_sweep_point():
    # the second node's shift 1.4 sits above its input 1.2; at 2 bits (levels ±1, ±3) it
    # becomes 1 and that node runs away, at 8 bits (steps of 6/255) it stays above 1.2
    net = runaway_net(shifts=(3.0, 1.4))
    X, y = np.array([[0.0, 1.2], [0.1, 0.0]]), np.array([1, 0])
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01})
    rows = quantisation_sweep(net, X, y, [2, 8], spec=spec)
    assert [(r["bits"], r["diverged"], r["accuracy"]) for r in rows] == [(2, 1, 0.5), (8, 0, 1.0)]


def test_other_failures_still_raise_naming_the_quantisation():
    # RK4 at h·|λ| = 1e4 on a stable, stiff net blows up: stiffness, not a chip that runs away
    layer = Layer([[1, 0], [1, 2], [2, 0]], devices.Conductance(), 1.0, params=[[1e6, 1.0, 1.0]])
    net = KirchhoffNet([layer], num_nodes=2, readout=[1, 2])
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01})
    with pytest.raises(StiffnessError, match=r"^the net quantised to 8 bits \(per_group\): ") as info:
        quantisation_sweep(net, np.array([[1.0, 0.0]]), np.array([0]), [8], spec=spec)
    assert info.value.stiffness is not None and info.value.layer == 0


def test_the_runaway_sample_is_named_in_the_whole_batch():
    X = np.tile(RUNAWAY_X[[0]], (7, 1))
    X[5] = RUNAWAY_X[1]
    with pytest.raises(DivergenceError, match=r"\(sample 5, layer 0") as split:
        simulate(runaway_net(), X, solver=make_solver(method="rk4", dt=0.01), max_batch=2)
    assert split.value.sample == 5 and split.value.node == 1
    from kirchhoff_sim.inference import readouts
    with pytest.raises(DivergenceError) as chunked:
        readouts(runaway_net(), X, solver=make_solver(method="rk4", dt=0.01), chunk_size=3)
    assert chunked.value.sample == 5


def test_samples_that_run_away_at_one_step_are_dropped_in_one_go(monkeypatch):
    from kirchhoff_sim.hardware import trials

    calls = []
    original = trials.simulate
    monkeypatch.setattr(trials, "simulate", lambda *a, **k: calls.append(len(a[1])) or original(*a, **k))
    X = np.tile(RUNAWAY_X[[0, 1]], (50, 1))                  # 50 stable, 50 identical runaways
    y = np.tile(RUNAWAY_Y[[0, 1]], 50)
    result = run_trial(runaway_net(), X, y, MonteCarloSpec(solver={"method": "rk4", "dt": 0.01}), 0)
    assert len(result["diverged_samples"]) == 50 and calls == [100, 50]      # one failed run, one rerun


def test_a_net_unstable_without_mismatch_is_named_and_its_json_is_strict():
    spec = MonteCarloSpec(solver={"method": "rk4", "dt": 0.01}, trials=2)
    result = monte_carlo(runaway_net(), RUNAWAY_X, RUNAWAY_Y, spec)
    assert result.nominal_diverged == 2 and result.summary()["nominal_diverged"] == 2
    assert "2 of 5 samples ran away in the nominal run" in str(result)
    every = monte_carlo(runaway_net(), RUNAWAY_X[RUNAWAY_SAMPLES], RUNAWAY_Y[RUNAWAY_SAMPLES], spec)
    document = json.loads(json.dumps(every.to_dict(), allow_nan=False))      # no NaN: no loss is null
    assert document["nominal_loss"] is None and document["per_trial"]["loss"] == [None, None]
