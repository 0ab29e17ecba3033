"""SPICE netlist compiler: text, units, primitive elements, safety, bad inputs, big nets.

Waveform agreement with the solver is in test_spice_validate.py; here ngspice runs only
where the text alone cannot show a property (sign of a B source, command injection).
Everything runs the real ngspice; nothing is mocked.
"""

import json
import os
import re
import subprocess
import uuid

import numpy as np
import pytest

from kirchhoff_sim import KirchhoffNet, Layer, devices as D, simulate, topology, Dopri5
from kirchhoff_sim.errors import DeviceError, InputError, ParameterError, UnsafeNameError
from kirchhoff_sim.spice import (
    PhysicalScale, SpiceOptions, check_netlist_safe, run_netlist, to_netlist, to_netlists,
)
from kirchhoff_sim.spice.netlist import (
    NGSPICE_BOLTZMANN, NGSPICE_CHARGE, diode_emission_coefficient, sanitise_title,
)
from kirchhoff_sim.spice.rawfile import parse_raw

EDGES = topology.fully_connected(4, repeat=(1, 1))      # nodes 0..3, ground edges included
SIGN_RTOL = 1e-6
MNIST_NODES, MNIST_EDGES_PER_LAYER = 834, 230_068
ONE_VOLT = PhysicalScale(V0=1.0, C0=100e-15, G0=1e-6)    # texts pinned below read simplest at V0 = 1 V


def small_net(device=None, layers=1, seed=0, params=None):
    device = D.ShiftedReLU() if device is None else device
    durations = (1.0, 0.5, 0.8)[:layers]
    return KirchhoffNet([Layer(EDGES, device, d, params=params) for d in durations], seed=seed)


def element_lines(text, letter):
    return [line for line in text.splitlines() if line[:1].upper() == letter]


# ------------------------------------------------------------------ scale and options
def test_physical_scale_units():
    scale = PhysicalScale(V0=2.0, C0=1e-12, G0=1e-5)
    assert scale.time_unit == pytest.approx(1e-7)
    assert scale.current_unit == pytest.approx(2e-5)
    assert scale.charge_unit == pytest.approx(2e-12)
    default = PhysicalScale.default()     # the default technology profile's (DESIGN.md §5)
    assert (default.V0, default.C0, default.G0) == (0.1, 100e-15, 1e-6)
    assert default.time_unit == pytest.approx(100e-9)    # 100 fF at 1 µS: 100 ns
    assert PhysicalScale.normalised() == PhysicalScale(1.0, 1.0, 1.0)
    assert PhysicalScale.normalised().is_normalised and not default.is_normalised
    assert json.loads(json.dumps(scale.to_dict())) == {"V0": 2.0, "C0": 1e-12, "G0": 1e-5}


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), "1.0", True, None])
@pytest.mark.parametrize("unit", ["V0", "C0", "G0"])
def test_physical_scale_rejects_bad_units(unit, bad):
    with pytest.raises(InputError, match=unit):
        PhysicalScale(**{"V0": 1.0, "C0": 1e-13, "G0": 1e-6, unit: bad})


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "euler"}, "method"),
    ({"reltol": 0.0}, "reltol"),
    ({"abstol": -1e-12}, "abstol"),
    ({"vntol": float("nan")}, "vntol"),
    ({"maxord": 3}, "maxord"),            # trap is at most second order
    ({"max_step": 0.0}, "max_step"),
    ({"first_step": -1.0}, "first_step"),
    ({"first_step_fraction": 2.0}, "first_step_fraction"),
    ({"temperature": float("inf")}, "temperature"),
    ({"save_branch_currents": "yes"}, "save_branch_currents"),
])
def test_spice_options_rejects_bad_values(kwargs, match):
    with pytest.raises(InputError, match=match):
        SpiceOptions(**kwargs)


def test_diode_emission_coefficient_uses_ngspice_constants():
    # kT/q at 27 °C with ngspice 39's CODATA-2014 constants, checked against a D element
    vt = NGSPICE_BOLTZMANN * 300.15 / NGSPICE_CHARGE
    assert vt == pytest.approx(0.025864917, rel=1e-8)
    assert diode_emission_coefficient(vt, PhysicalScale(1.0, 1e-13, 1e-6)) == pytest.approx(1.0, rel=1e-14)
    assert diode_emission_coefficient(vt / 2, PhysicalScale(2.0, 1e-13, 1e-6)) == pytest.approx(1.0, rel=1e-14)


# ------------------------------------------------------------------ text
def test_behavioural_text_has_one_capacitor_per_node_and_one_b_source_per_edge():
    net = small_net(D.ShiftedReLU(), layers=1)
    x = np.array([0.25, -0.5])
    netlist = to_netlist(net, x, scale=ONE_VOLT)
    text = netlist.text
    caps = element_lines(text, "C")
    assert caps == ["C1 n1 0 1e-13 IC=0.25", "C2 n2 0 1e-13 IC=-0.5", "C3 n3 0 1e-13 IC=0.0"]
    b_lines = element_lines(text, "B")
    assert len(b_lines) == net.num_edges == netlist.element_counts["B"]
    # edge 0 is 0→1: ground kept as node 0, device expression in V(node), current unit G0·V0
    s, d = EDGES[0]
    shift, gain = map(float, net.layers[0].groups[0].params[:, 0])
    assert b_lines[0] == f"B1 0 n1 I=1e-06*({gain!r}*max(0-V(n1)-({shift!r}),0))"
    assert text.splitlines()[0] == "KirchhoffNet"
    assert text.endswith(".end\n")
    tran = [line for line in text.splitlines() if line.startswith(".tran")]
    assert len(tran) == 1 and tran[0].endswith(" uic")
    tstep, tstop, tstart, tmax = map(float, tran[0].split()[1:5])
    assert (tstop, tstart) == (netlist.tstop, 0.0)
    assert tmax == pytest.approx(1e-3 * 1e-7) and tstep == pytest.approx(1e-3 * tmax)
    options = [line for line in text.splitlines() if line.startswith(".options")][0]
    for key in ("method=trap", "reltol=1e-06", "abstol=", "vntol=", "chgtol=", "trtol="):
        assert key in options
    assert netlist.tstop == pytest.approx(net.T * 1e-7)
    assert netlist.node_map == {0: "0", 1: "n1", 2: "n2", 3: "n3"}
    assert netlist.scale == ONE_VOLT and netlist.sample_index is None
    assert to_netlist(net, x).scale == PhysicalScale.default()
    np.testing.assert_array_equal(netlist.initial_voltages, [0.25, -0.5, 0.0])
    assert any("units" in a for a in netlist.assumptions)
    assert netlist.unsupported == []
    assert "Netlist(mode='behavioral'" in repr(netlist)


def test_tolerances_are_scaled_to_physical_units():
    options = SpiceOptions(abstol=1e-12, vntol=1e-9, chgtol=1e-15)
    scale = PhysicalScale(V0=2.0, C0=1e-12, G0=1e-5)
    text = to_netlist(small_net(), [0.1, 0.2], scale=scale, options=options).text
    line = [l for l in text.splitlines() if l.startswith(".options")][0]
    values = dict(item.split("=") for item in line.split()[1:])
    assert float(values["abstol"]) == pytest.approx(1e-12 * 2e-5)
    assert float(values["vntol"]) == pytest.approx(1e-9 * 2.0)
    assert float(values["chgtol"]) == pytest.approx(1e-15 * 2e-12)
    # the device reads V/V0 and its current is multiplied by G0·V0
    assert "(V(n1)/2.0)" in text and "I=2e-05*(" in text


def test_multilayer_net_is_one_circuit_gated_by_clocks_with_breakpoints_on_the_boundaries():
    net = small_net(D.Conductance(), layers=3)
    netlist = to_netlist(net, [0.3, 0.1], scale=ONE_VOLT)
    lines = netlist.text.splitlines()
    clocks = [l for l in lines if l.startswith("Vclk")]
    assert len(clocks) == 3
    boundaries = net.layer_boundaries * 1e-7
    for k in (1, 2):      # every inner boundary is a PWL corner of both adjacent clocks
        corner = f" {float(netlist.layer_boundaries[k])!r} 0.5"
        assert corner in clocks[k - 1] and corner in clocks[k]
    np.testing.assert_allclose(netlist.layer_boundaries, boundaries)
    b_lines = element_lines(netlist.text, "B")
    assert len(b_lines) == net.num_edges
    for k in range(3):
        in_layer = b_lines[k * len(EDGES):(k + 1) * len(EDGES)]
        assert all(f"I=V(clk{k})*1e-06*(" in line for line in in_layer)
    assert sum(l.startswith(".tran") for l in lines) == 1
    assert any("gated" in a for a in netlist.assumptions)


def test_same_net_gives_byte_identical_text():
    X = np.array([[0.3, -0.2], [0.1, 0.4]])
    for device in (D.ShiftedReLU(), D.AffineActivation("softplus"), D.Diode()):
        first = [n.text for n in to_netlists(small_net(device, layers=2, seed=4), X)]
        second = [n.text for n in to_netlists(small_net(device, layers=2, seed=4), X)]
        assert first == second
        primitive = to_netlist(small_net(device, layers=2, seed=4), X[0], mode="primitive").text
        assert primitive == to_netlist(small_net(device, layers=2, seed=4), X[0], mode="primitive").text


def test_to_netlists_numbers_the_samples():
    netlists = to_netlists(small_net(), np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]), scale=ONE_VOLT)
    assert [n.sample_index for n in netlists] == [0, 1, 2]
    assert "IC=0.5" in netlists[2].text


def test_save_is_atomic_and_round_trips(tmp_path):
    netlist = to_netlist(small_net(), [0.1, 0.2])
    path = tmp_path / "net.cir"
    assert netlist.save(path) == str(path)
    assert path.read_text() == netlist.text
    assert os.listdir(tmp_path) == ["net.cir"]      # no temporary file left behind


def test_numbers_are_written_as_shortest_round_trip_reprs():
    params = np.array([[0.1 + 0.2], [1 / 3]]) * np.ones((1, len(EDGES)))
    text = to_netlist(small_net(D.ShiftedReLU(), params=params), [1 / 7, 0.0], scale=ONE_VOLT).text
    assert f"IC={1 / 7!r}" in text
    assert f"({0.1 + 0.2!r})" in text and f"{1 / 3!r}*max(" in text
    assert "np.float64" not in text


def test_softplus_is_written_so_that_ngspice_exp_cannot_saturate():
    # ngspice's exp() saturates at 1e99 above 227.96, so ln(1+exp(z)) would stop at 227.96
    assert D.activation("softplus").spice("V(a)-(1.5)") == \
        "(max(V(a)-(1.5),0)+ln(1+exp(-abs(V(a)-(1.5)))))"
    text = to_netlist(small_net(D.DifferenceActivation("softplus")), [0.1, 0.2]).text
    assert "ln(1+exp(-abs(" in text and "ln(1+exp(0" not in text


# ------------------------------------------------------------------ sign, in ngspice
@pytest.mark.parametrize("mode", ["behavioral", "primitive"])
def test_b_source_current_leaves_src_and_enters_dst_as_the_solver_says(mode):
    # one edge 1→2 carrying a constant current 1 (AffineActivation identity, bias 1)
    net = KirchhoffNet(Layer([[1, 2]], D.AffineActivation("identity"), params=[[0.0], [0.0], [1.0]]))
    netlist = to_netlist(net, [0.0, 0.0], mode=mode, scale=PhysicalScale.normalised())
    result = run_netlist(netlist.text)
    ours = simulate(net, [0.0, 0.0], Dopri5(rtol=1e-10, atol=1e-12), save_at=[1.0]).final_state[0]
    np.testing.assert_allclose(ours, [-1.0, 1.0], rtol=1e-9)     # src falls, dst rises
    spice = [result.voltage("n1")[-1], result.voltage("n2")[-1]]
    np.testing.assert_allclose(spice, ours, rtol=SIGN_RTOL)


# ------------------------------------------------------------------ primitive mode
def test_primitive_mode_uses_resistors_and_reports_non_positive_conductances():
    g = np.linspace(-0.5, 1.0, len(EDGES))
    g[3] = 0.0
    net = small_net(D.Conductance(), params=g[None, :])
    netlist = to_netlist(net, [0.2, 0.1], mode="primitive")
    resistors = element_lines(netlist.text, "R")
    assert len(resistors) == int((g > 0).sum())
    first = np.flatnonzero(g > 0)[0]
    s, d = EDGES[first]
    node = lambda n: "0" if n == 0 else f"n{n}"
    assert resistors[0] == f"R{first + 1} {node(s)} {node(d)} {float(1 / (1e-6 * g[first]))!r}"
    reported = {tuple(u.edges.tolist()): u.reason for u in netlist.unsupported}
    assert tuple(np.flatnonzero(g < 0)) in reported and "negative" in reported[tuple(np.flatnonzero(g < 0))]
    assert (3,) in reported and "zero" in reported[(3,)]
    assert len(element_lines(netlist.text, "B")) == int((g <= 0).sum())
    assert json.loads(json.dumps([u.to_dict() for u in netlist.unsupported]))


def test_a_value_no_netlist_can_hold_is_refused_naming_its_element():
    # finite parameters whose element values are not: 1/g of a subnormal conductance
    # overflows; a huge gain times the physical scale too
    g = np.full(len(EDGES), 0.5)
    g[4] = 5e-324
    with pytest.raises(ParameterError, match=r"element R5 would get the value inf"):
        to_netlist(small_net(D.Conductance(), params=g[None, :]), [0.2, 0.1], mode="primitive")
    gain = np.ones((3, len(EDGES)))
    gain[1, 2] = 1e308
    with pytest.raises(ParameterError, match=r"element G3d would get the value inf"):
        to_netlist(small_net(D.AffineActivation("identity"), params=gain), [0.2, 0.1], mode="primitive",
                   scale=PhysicalScale(V0=1.0, C0=1e-13, G0=10.0))


def test_primitive_mode_writes_diodes_with_a_model_per_parameter_set():
    params = np.array([[1e-9, 2e-9] * (len(EDGES) // 2), [0.0, 0.5] * (len(EDGES) // 2)])
    device = D.Diode(thermal_voltage=0.05)
    netlist = to_netlist(small_net(device, params=params), [0.2, 0.1], mode="primitive")
    diodes = element_lines(netlist.text, "D")
    models = [l for l in netlist.text.splitlines() if l.startswith(".model")]
    assert len(diodes) == len(EDGES) and len(models) == 2
    scale = PhysicalScale.default()
    n = diode_emission_coefficient(0.05, scale)
    amp = scale.current_unit
    assert models[0] == f".model dmod0 D(IS={1e-9 * amp!r} RS=0.0 N={n!r})"
    assert models[1] == f".model dmod1 D(IS={2e-9 * amp!r} RS={0.5 / 1e-6!r} N={n!r})"
    assert netlist.unsupported == [] and not element_lines(netlist.text, "B")
    assert any("temperature 27" in a for a in netlist.assumptions)


@pytest.mark.parametrize("device, g_per_edge", [
    (D.AffineActivation("identity"), None), (D.DifferenceActivation("identity"), 1),
])
def test_primitive_mode_writes_linear_transconductances_as_vccs_plus_bias(device, g_per_edge):
    net = small_net(device, seed=3)
    netlist = to_netlist(net, [0.2, 0.1], mode="primitive", scale=ONE_VOLT)
    g_lines, i_lines = element_lines(netlist.text, "G"), element_lines(netlist.text, "I")
    assert len(i_lines) == len(EDGES) and netlist.unsupported == []
    if g_per_edge:
        assert len(g_lines) == len(EDGES)
    else:   # one VCCS per non-ground control terminal
        assert len(g_lines) == int((EDGES != 0).sum())
    p = net.layers[0].groups[0].params
    bias = p[2] if isinstance(device, D.AffineActivation) else p[0]
    assert i_lines[0].endswith(f" DC {float(1e-6 * bias[0])!r}")


def test_primitive_mode_lists_devices_without_a_primitive_form():
    netlist = to_netlist(small_net(D.ShiftedReLU()), [0.2, 0.1], mode="primitive")
    assert len(netlist.unsupported) == 1
    assert len(netlist.unsupported[0].edges) == len(EDGES)
    assert "ShiftedReLU" in netlist.unsupported[0].reason
    assert len(element_lines(netlist.text, "B")) == len(EDGES)


def test_primitive_mode_gates_elements_of_a_multilayer_net_with_switches():
    net = small_net(D.Conductance(), layers=2, params=np.full((1, len(EDGES)), 0.5))
    netlist = to_netlist(net, [0.2, 0.1], mode="primitive")
    switches = element_lines(netlist.text, "S")
    assert len(switches) == len(element_lines(netlist.text, "R")) == net.num_edges
    assert switches[0].endswith("clk0 0 swgate") and switches[-1].endswith("clk1 0 swgate")
    assert ".model swgate SW(VT=0.5" in netlist.text
    linear = to_netlist(small_net(D.AffineActivation("identity"), layers=2), [0.2, 0.1], mode="primitive")
    assert "VCCS cannot be switched" in linear.unsupported[0].reason


# ------------------------------------------------------------------ names and injection
def test_node_names_are_used_when_safe():
    netlist = to_netlist(small_net(), [0.1, 0.2], node_names=["in_a", "in_b", "Out"])
    assert netlist.node_map == {0: "0", 1: "in_a", 2: "in_b", 3: "Out"}
    assert "C3 Out 0 1e-13 IC=0.0" in netlist.text
    assert run_netlist(netlist.text).voltage("Out").size > 0      # ngspice folds case


@pytest.mark.parametrize("bad", [
    "n1\n.control", "a b", "1abc", "", "x" * 33, "gnd", "V(n1)", "a;b", "é", 7, "a\r", "n1\n",
])
def test_unsafe_node_names_are_refused(bad):
    with pytest.raises(UnsafeNameError, match="refused"):
        to_netlist(small_net(), [0.1, 0.2], node_names=["a", "b", bad])


def test_node_names_must_be_unique_ignoring_case_and_not_clash_with_internal_nodes():
    with pytest.raises(UnsafeNameError, match="same name"):
        to_netlist(small_net(), [0.1, 0.2], node_names=["out", "b", "OUT"])
    with pytest.raises(UnsafeNameError, match="internal node 'clk1'"):
        to_netlist(small_net(layers=2), [0.1, 0.2], node_names=["a", "clk1", "c"])
    with pytest.raises(InputError, match="3 non-ground nodes"):
        to_netlist(small_net(), [0.1, 0.2], node_names=["a", "b"])


@pytest.mark.parametrize("title, expected", [
    ("moons classifier", "moons classifier"),
    ("two\nlines", "two lines"),
    (".control", "control"),
    ("*ng_script", "ng_script"),
    ("shell rm -rf /", "title: shell rm -rf /"),
    ("tab\there\x00\x1b[31m é", "tab here [31m"),
    ("", "KirchhoffNet"),
])
def test_titles_are_sanitised_to_one_printable_line(title, expected):
    assert sanitise_title(title) == expected


def test_a_label_cannot_inject_a_control_block(tmp_path):
    marker = tmp_path / f"x{uuid.uuid4().hex[:8]}"
    title = f"moons\n.control\nshell touch {marker}\n.endc\n*ng_script\n.include /etc/passwd"
    netlist = to_netlist(small_net(), [0.1, 0.2], title=title)
    lines = netlist.text.splitlines()
    assert lines[0].startswith(f"moons .control shell touch {marker}")   # one inert title line
    assert sum("shell" in line for line in lines) == 1
    for line in lines:
        assert not re.match(r"\s*(\.control|\.endc|\.?shell\b|\.inc|\.lib|\*\s*ng_script)", line, re.I)
    check_netlist_safe(netlist.text)
    run_netlist(netlist.text)                   # through the runner (which checks again) ...
    path = tmp_path / "net.cir"
    netlist.save(path)                          # ... and straight into plain ngspice
    completed = subprocess.run(["ngspice", "-b", "-r", "out.raw", str(path)], cwd=tmp_path,
                               capture_output=True, timeout=60)
    assert completed.returncode == 0 and (tmp_path / "out.raw").stat().st_size > 0
    assert not marker.exists()
    # control experiment: the same title written raw does run the command in ngspice, so
    # the check above can see an injection (it only touches a file in tmp_path)
    raw = tmp_path / "raw.cir"
    raw.write_text(f"moons\n.control\nshell touch {marker}\n.endc\n" + "\n".join(lines[1:]) + "\n")
    subprocess.run(["ngspice", "-b", str(raw)], cwd=tmp_path, capture_output=True, timeout=60)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(UnsafeNameError):       # and a name with the same payload is refused
        to_netlist(small_net(), [0.1, 0.2], node_names=["a", "b", f"c\n.control\nshell touch {marker}"])
    assert not marker.exists()


# ------------------------------------------------------------------ bad inputs
def test_a_batch_is_refused_with_a_pointer_to_to_netlists():
    with pytest.raises(InputError, match="ONE sample.*to_netlists"):
        to_netlist(small_net(), np.zeros((2, 2)))
    with pytest.raises(InputError, match="ONE sample"):
        to_netlist(small_net(), np.zeros((1, 2)))


@pytest.mark.parametrize("x, match", [
    ([0.1, float("nan")], "non-finite"),
    ([0.1, float("inf")], "non-finite"),
    ([0.1, 0.2, 0.3, 0.4], "features"),
    (["a", "b"], "numbers"),
])
def test_bad_samples_are_refused(x, match):
    with pytest.raises(InputError, match=match):
        to_netlist(small_net(), x)


def test_bad_mode_scale_options_and_title_are_refused():
    net = small_net()
    with pytest.raises(InputError, match="mode"):
        to_netlist(net, [0.1, 0.2], mode="spectre")
    with pytest.raises(InputError, match="PhysicalScale"):
        to_netlist(net, [0.1, 0.2], scale=(1.0, 1e-13, 1e-6))
    with pytest.raises(InputError, match="SpiceOptions"):
        to_netlist(net, [0.1, 0.2], options={"reltol": 1e-6})
    with pytest.raises(InputError, match="too wide"):
        to_netlist(small_net(layers=2), [0.1, 0.2], options=SpiceOptions(gate_width=0.4))
    with pytest.raises(InputError, match="title"):
        to_netlist(net, [0.1, 0.2], title=b"bytes")
    with pytest.raises(InputError, match="PhysicalScale.V0"):
        to_netlist(net, [0.1, 0.2], scale=PhysicalScale(-1.0, 1e-13, 1e-6))


def test_a_device_without_spice_form_is_a_device_error():
    class Mystery(D.Conductance):
        def spice_expression(self, vs, vd, p):
            raise NotImplementedError

    with pytest.raises(DeviceError, match="no SPICE expression"):
        to_netlist(small_net(Mystery()), [0.1, 0.2])


# ------------------------------------------------------------------ big nets
def test_mnist_sized_net_compiles_to_one_line_per_node_and_edge():
    edges = topology.neighbour_window(28, 28, 4, 50)
    assert len(edges) == MNIST_EDGES_PER_LAYER
    net = KirchhoffNet([Layer(edges, D.ShiftedReLU(), 1.0), Layer(edges, D.ShiftedReLU(), 1.0)],
                       readout=10)
    assert net.num_nodes == MNIST_NODES
    x = np.linspace(0.0, 1.0, 784)
    netlist = to_netlist(net, x)
    counts = netlist.element_counts
    assert counts["B"] == 2 * MNIST_EDGES_PER_LAYER and counts["capacitors"] == MNIST_NODES
    assert counts["clocks"] == 2 and counts["measurements"] == 10
    # title, 2 header comments, .options, capacitor comment, clock comment, one comment
    # per layer, .tran, read-out comment, .end; then a .meas per read-out node
    fixed = 1 + 2 + 1 + 1 + 1 + 2 + 1 + 1 + 1
    assert netlist.num_lines == counts["lines"] == MNIST_NODES + 2 * MNIST_EDGES_PER_LAYER + 2 + fixed + 10
    assert netlist.text.count("\nB") == 2 * MNIST_EDGES_PER_LAYER
    assert netlist.text.count("I=V(clk1)*") == MNIST_EDGES_PER_LAYER


def test_save_branch_currents_saves_exactly_the_b_sources():
    g = np.linspace(-1.0, 2.0, len(EDGES))          # some negative: B sources among resistors
    net = small_net(D.Conductance(), params=g[None, :])
    options = SpiceOptions(save_branch_currents=True)
    text = to_netlist(net, [0.1, 0.2], mode="primitive", options=options).text
    b_names = [line.split()[0].lower() for line in element_lines(text, "B")]
    saves = [line for line in text.splitlines() if line.startswith(".save")]
    assert 0 < len(b_names) < len(EDGES) and saves[0] == ".save all"
    saved = [vector for line in saves[1:] for vector in line.split()[1:]]
    assert len(saved) == len(b_names) and set(saved) == {f"@{name}[i]" for name in b_names}
    all_b = to_netlist(net, [0.1, 0.2], options=options).text
    assert sum(line.count("[i]") for line in all_b.splitlines() if line.startswith(".save")) == len(EDGES)
    run_netlist(text)       # ngspice accepts the .save lines


# ------------------------------------------------------------------ plain ngspice habits
def test_an_exported_netlist_runs_in_plain_ngspice_both_ways(tmp_path):
    # 'ngspice -b NET.cir' simulates only when the netlist asks for output: the .meas lines
    # print the read-out at T. 'ngspice -b -r' writes the raw file the runner parses.
    net = KirchhoffNet([Layer(EDGES, D.ShiftedReLU(), d, params=None) for d in (1.0, 0.5)],
                       seed=4, readout=2)
    netlist = to_netlist(net, [0.6, -0.3])
    path = tmp_path / "net.cir"
    netlist.save(path)
    reference = run_netlist(netlist.text)
    readout = {netlist.node_name(n): reference.voltage(netlist.node_name(n))[-1] for n in net.readout}
    assert len(readout) == 2

    batch = subprocess.run(["ngspice", "-b", str(path)], cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert batch.returncode == 0, batch.stdout + batch.stderr
    assert "no simulations run" not in batch.stdout + batch.stderr
    printed = dict(re.findall(r"^readout_(\w+)\s*=\s*(\S+)", batch.stdout, re.MULTILINE))
    assert set(printed) == set(readout)
    for name, value in readout.items():     # printed with 7 significant digits
        assert float(printed[name]) == pytest.approx(value, rel=1e-6, abs=1e-12)

    raw = tmp_path / "net.raw"
    with_raw = subprocess.run(["ngspice", "-b", "-r", str(raw), str(path)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
    assert with_raw.returncode == 0 and "readout_" not in with_raw.stdout   # .meas not run here
    (plot,) = [p for p in parse_raw(raw.read_bytes()) if p.name.startswith("Transient")]
    names = [name for name, _ in plot.variables]
    assert plot.values[0, -1] == reference.time[-1]
    for name, value in readout.items():     # the same engine and file format: identical
        assert plot.values[names.index(f"v({name})"), -1] == value
