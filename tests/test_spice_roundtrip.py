"""The one ngspice round trip (spice/roundtrip.py) against circuits with exact answers.

Everything runs the real ngspice binary (and libngspice for the shared back end).
"""

import re

import numpy as np
import pytest

import problems as P   # tests/ is on sys.path
from kirchhoff_sim import Conductance, KirchhoffNet, Layer
from kirchhoff_sim.errors import InputError, SpiceConvergenceError, SpiceStoppedEarlyError
from kirchhoff_sim.spice import PhysicalScale, run_netlist, to_netlist
from kirchhoff_sim.spice.roundtrip import (
    END_TIME_RTOL, NgspiceRun, simulate_batch_in_ngspice, simulate_in_ngspice,
)

EXACT_RTOL = 1e-5           # of the swing, against the exact answer (measured 2.4e-7 at the default options)
SCALE_INVARIANCE_RTOL = 1e-9


@pytest.fixture(scope="module")
def linear():
    """Two layers of a random RC network, exact by the matrix exponential."""
    return P.linear_network(batch=3)


def test_one_sample_agrees_with_the_exact_answer_in_normalised_units(linear):
    net, X, exact = linear
    run = simulate_in_ngspice(net, X[0])
    assert isinstance(run, NgspiceRun) and run.netlist.scale == PhysicalScale.default()
    assert run.time[0] == 0.0 and run.time[-1] == pytest.approx(net.T, rel=1e-15)
    assert np.all(np.diff(run.time) > 0)
    assert run.node_voltages.shape == (len(run.time), net.num_nodes)
    # t = 0 is the initial condition, in normalised volts (not the default scale's 0.1 V units)
    np.testing.assert_allclose(run.node_voltages[0], net.initial_state(X[0])[1:, 0], rtol=1e-15, atol=0)
    # ngspice's own points carry no t = 0 with uic: exactly one point was prepended
    assert len(run.time) == len(run.result.time) + 1
    swing = np.ptp(exact(np.linspace(0, net.T, 201))[:, 0, :])
    truth = exact(net.T)[0]
    assert np.abs(run.final_voltages - truth).max() <= EXACT_RTOL * swing
    np.testing.assert_array_equal(run.readout(net), run.final_voltages[net.readout - 1])
    assert run.elapsed == run.result.elapsed > 0


def test_on_grid_follows_the_exact_waveform_across_the_layer_boundary(linear):
    net, X, exact = linear
    run = simulate_in_ngspice(net, X[1])
    t = np.linspace(0.0, net.T, 101)
    on_grid = run.on_grid(t)
    assert on_grid.shape == (101, net.num_nodes)
    truth = exact(t)[:, 1, :]
    assert np.abs(on_grid - truth).max() <= EXACT_RTOL * np.ptp(truth)
    # at ngspice's own points the resampling is the identity
    np.testing.assert_allclose(run.on_grid(run.time), run.node_voltages, rtol=0, atol=1e-12)


def test_the_run_is_the_same_in_any_units(linear):
    net, X, _ = linear
    unit = simulate_in_ngspice(net, X[2], scale=PhysicalScale.normalised())
    chip = simulate_in_ngspice(net, X[2], scale=PhysicalScale(V0=2.5, C0=1e-12, G0=1e-5))
    np.testing.assert_allclose(chip.time, unit.time, rtol=SCALE_INVARIANCE_RTOL)
    np.testing.assert_allclose(chip.node_voltages, unit.node_voltages,
                               rtol=SCALE_INVARIANCE_RTOL, atol=SCALE_INVARIANCE_RTOL)


def test_a_batch_comes_back_in_sample_order_and_equals_single_runs(linear):
    net, X, _ = linear
    runs = simulate_batch_in_ngspice(net, X, workers=2)
    assert [r.netlist.sample_index for r in runs] == [0, 1, 2]
    for b, run in enumerate(runs):
        single = simulate_in_ngspice(net, X[b])
        np.testing.assert_array_equal(run.time, single.time)
        np.testing.assert_array_equal(run.node_voltages, single.node_voltages)


def test_the_shared_back_end_gives_the_same_run(linear):
    net, X, _ = linear
    via_process = simulate_in_ngspice(net, X[0])
    via_library = simulate_batch_in_ngspice(net, X[:1], backend="shared")[0]
    assert via_library.result.backend == "shared"
    np.testing.assert_allclose(via_library.final_voltages, via_process.final_voltages,
                               rtol=1e-9, atol=1e-12)


def test_a_transient_that_stops_before_T_is_refused(linear):
    # a real ngspice run of the netlist with its .tran cut to half of T: no error from
    # ngspice, so only the end-time check can tell that the read-out time was not reached
    net, X, _ = linear
    netlist = to_netlist(net, X[0])
    half = netlist.tstop / 2
    text = re.sub(r"^\.tran (\S+) (\S+) ", lambda m: f".tran {m.group(1)} {half!r} ", netlist.text,
                  flags=re.MULTILINE)
    assert text != netlist.text
    result = run_netlist(text)
    assert result.time[-1] == pytest.approx(half, rel=END_TIME_RTOL)
    with pytest.raises(SpiceStoppedEarlyError, match="stopped at .* not at T"):
        NgspiceRun.from_result(netlist, result)


def test_a_failing_sample_of_a_batch_is_named():
    # v' = 800 v: from 0 V it stays there, from 1 V it overflows a double before T
    net = KirchhoffNet(Layer([[1, 0]], Conductance(), 1.0, params=[[-800.0]]))
    with pytest.raises(SpiceConvergenceError, match="^sample 1: .*overflowed"):
        simulate_batch_in_ngspice(net, [[0.0], [1.0]], scale=PhysicalScale.normalised(), workers=2)


def test_bad_arguments_are_refused(linear):
    net, X, _ = linear
    run = simulate_in_ngspice(net, X[0])
    with pytest.raises(InputError, match="spans"):
        run.on_grid([0.0, 1.01 * net.T])
    with pytest.raises(InputError, match="non-decreasing"):
        run.on_grid([0.5, 0.1])
    with pytest.raises(InputError, match="workers"):
        simulate_batch_in_ngspice(net, X, workers=0)
    with pytest.raises(InputError, match="backend"):
        simulate_batch_in_ngspice(net, X, backend="spectre")
