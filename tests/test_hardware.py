"""Chip report: technology profile, timing, energy and power, feasibility, report, plots, CLI.

Hand-computed answers for one RC node (latency, settling, energies, peak and average
power), the trapezoidal rule's convergence, a constant-current source's supply energy, and
the device energy of a mixed two-layer net from our solver against ngspice's own B-source
branch currents. Every feasibility finding is triggered by a net (or a profile) built to
trigger it and is absent from a clean passive net. ngspice is the real binary; nothing is
mocked or skipped.
"""

import json
import math

import numpy as np
import pytest

from kirchhoff_sim import cli
from kirchhoff_sim.devices import (
    AffineActivation, Conductance, DifferenceActivation, Diode, ShiftedReLU,
)
from kirchhoff_sim.errors import InputError
from kirchhoff_sim.hardware import (
    Finding, TechnologyProfile, chip_report, check_feasibility, default_profile, dense_waveforms, edge_table,
    energy_report, load_profile, settling, spice_device_energy, sweep_edges,
)
from kirchhoff_sim.hardware.energy import ENERGY_AGREEMENT_RTOL
from kirchhoff_sim.hardware.feasibility import KTC_SNR_WARNING_DB
from kirchhoff_sim.hardware.timing import timing_report
from kirchhoff_sim.modelfile import read_model_file
from kirchhoff_sim.network import EdgeGroup, KirchhoffNet, Layer
from kirchhoff_sim.spice import PhysicalScale, SpiceOptions, to_netlist
from kirchhoff_sim.spice.roundtrip import run_compiled
from kirchhoff_sim.training.datasets import dataset_of_model

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_BYTES = 5_000            # a real plot, not an empty canvas
RC_ENERGY_RTOL = 1e-4            # 400-point trapezoid on τ = T/2: ~1e-5
SETTLE_RTOL = 1e-3               # linear interpolation of the ε crossing on the dense grid
FEASIBILITY_POINTS = 100         # enough for the checks, quick
REPORT_SAMPLES = 16
CLEAN_INFO_CHECKS = {"active_devices", "wiring", "ktc_noise"}


def summary(energy_array):
    return float(np.asarray(energy_array)[0])


def run_energy(net, X, profile=None, **kwargs):
    profile = default_profile() if profile is None else profile
    waveforms = dense_waveforms(net, X, **kwargs)
    table = edge_table(net)
    sweep = sweep_edges(net, waveforms, table)
    return waveforms, sweep, table, energy_report(net, profile, waveforms, sweep, table)


# ------------------------------------------------------------------ profile
def test_default_profile_documents_every_value():
    profile = default_profile()
    assert profile.scale == PhysicalScale(V0=0.1, C0=100e-15, G0=1e-6)
    assert profile.scale.time_unit == pytest.approx(100e-9)
    assert profile.scale.energy_unit == pytest.approx(1e-15)
    assert profile.precision_floor_s == pytest.approx(100e-6 / 256)
    assert profile.rail_low_v < 0 < profile.rail_high_v
    data = profile.to_dict()
    for name, entry in data["parameters"].items():
        assert len(entry["source"]) > 20, f"{name} has no source"
    assert "representative" in data["notes"].lower()
    assert "representative" in profile.describe()


def test_profile_json_round_trip(tmp_path):
    profile = default_profile().replace(capacitance_unit_f=250e-15, precision_bits=6)
    path = profile.save(tmp_path / "profile.json")
    again = load_profile(path)
    assert again == profile
    assert again.sources == profile.sources
    assert TechnologyProfile.from_dict(profile.to_dict()) == profile


def test_profile_overrides_a_subset(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"parameters": {"capacitance_unit_f": 2e-13,
                                               "rail_high_v": {"value": 1.2, "unit": "V", "source": "our process"}},
                                "temperature_k": 350}))
    profile = load_profile(path)
    base = default_profile()
    assert profile.scale.C0 == 2e-13 and profile.rail_high_v == 1.2 and profile.temperature_k == 350
    assert profile.scale.G0 == base.scale.G0
    assert profile.sources["rail_high_v"] == "our process"
    assert str(path) in profile.sources["capacitance_unit_f"]
    assert profile.sources["voltage_unit_v"] == base.sources["voltage_unit_v"]


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "not valid JSON"),
    ('{"parameters": {"capacitance": 1e-13}}', "unknown parameter"),
    ('{"colour": "blue"}', "unknown key"),
    ('{"parameters": {"capacitance_unit_f": -1e-13}}', "capacitance_unit_f must be finite and > 0"),
    ('{"parameters": {"capacitance_unit_f": 0}}', "capacitance_unit_f must be finite and > 0"),
    ('{"parameters": {"rail_low_v": 0.5}}', "rail_low_v must be < 0"),
    ('{"parameters": {"power_budget_w": "1 mW"}}', "power_budget_w must be a number"),
    ('{"parameters": {"power_budget_w": true}}', "power_budget_w must be a number"),
    ('{"parameters": {"precision_bits": 6.5}}', "precision_bits must be an integer"),
    ('{"parameters": {"voltage_unit_v": {"value": 0.1, "unit": "mV"}}}', "not 'mV'"),
    ('{"parameters": {"voltage_unit_v": {"unit": "V"}}}', "has no 'value'"),
    ('{"parameters": {"conductance_min_s": 1e-3}}', "must be below conductance_max_s"),
    ('{"version": 7}', "version 7 is not supported"),
])
def test_bad_profile_files_are_refused(tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=fragment) as info:
        load_profile(path)
    assert str(path) in str(info.value)


def test_missing_profile_file_and_missing_fields():
    with pytest.raises(InputError, match="does not exist"):
        load_profile("/nonexistent/profile.json")
    data = default_profile().to_dict()
    del data["parameters"]["temperature_k"]
    with pytest.raises(InputError, match=r"missing parameter\(s\) \['temperature_k'\]"):
        TechnologyProfile.from_dict(data)


# ------------------------------------------------------------------ timing and energy: one RC node
def rc_net(g=2.0, C=1.0, T=1.0):
    return KirchhoffNet([Layer([[1, 0]], Conductance(), T, params=[[g]])], capacitance=C)


def test_rc_latency_and_settling():
    g, C, T, v0 = 2.0, 1.0, 1.0, 3.0
    net, profile = rc_net(g, C, T), default_profile()
    waveforms = dense_waveforms(net, [[v0]])
    settle = settling(net, waveforms, 0.01)
    tau = C / g
    final = v0 * math.exp(-T / tau)
    epsilon = 0.01 * (v0 - final)
    expected = -tau * math.log((final + epsilon) / v0)
    assert settle.settle_time[0, 0] == pytest.approx(expected, rel=SETTLE_RTOL)
    assert settle.decision_time[0] == 0.0           # one read-out node: decided from the start
    timing = timing_report(net, profile, settle, wallclock_solver_batch_s=1e-3, samples=1)
    assert timing.latency_s == pytest.approx(T * 100e-15 / 1e-6)
    assert timing.settle_median_s == pytest.approx(expected * profile.scale.time_unit, rel=SETTLE_RTOL)
    assert timing.settle_max_fraction == pytest.approx(expected / T, rel=SETTLE_RTOL)


def test_rc_energy_matches_hand_computed_values():
    g, C, T = 2.0, 1.5, 1.0
    v0 = np.array([3.0, -2.0])
    net, profile = rc_net(g, C, T), default_profile()
    _, _, _, energy = run_energy(net, v0[:, None], profile)
    c_f, v_v = C * profile.scale.C0, v0 * profile.scale.V0   # physical C and V0·v0
    tau_s = c_f / (g * profile.scale.G0)
    T_s = T * profile.scale.time_unit
    stored = 0.5 * c_f * v_v ** 2
    np.testing.assert_allclose(energy.input_stored_j, stored, rtol=1e-12)
    np.testing.assert_allclose(energy.input_drawn_j, 2 * stored, rtol=1e-12)
    # v(t) = v0·e^{−t/RC}: the resistor dissipates ½Cv0²(1 − e^{−2T/RC})
    np.testing.assert_allclose(energy.dissipated_passive_j, stored * (1 - np.exp(-2 * T_s / tau_s)),
                               rtol=RC_ENERGY_RTOL)
    np.testing.assert_allclose(energy.capacitor_final_j, stored * np.exp(-2 * T_s / tau_s), rtol=1e-6)
    np.testing.assert_allclose(energy.device_net_j, energy.dissipated_passive_j, rtol=1e-12)
    assert np.all(energy.dissipated_active_j == 0) and np.all(energy.supply_active_j == 0)
    # peak power at t = 0: V²/R; average: the drawn C·V² over the latency
    np.testing.assert_allclose(energy.peak_dissipation_w, v_v ** 2 * g * profile.scale.G0, rtol=1e-12)
    np.testing.assert_allclose(energy.average_power_w, 2 * stored / T_s, rtol=1e-12)
    np.testing.assert_allclose(energy.total_drawn_j, 2 * stored, rtol=1e-12)
    assert energy.balance_rel_error < RC_ENERGY_RTOL and energy.quadrature_rel_error < RC_ENERGY_RTOL


def test_trapezoidal_energy_converges_at_second_order():
    g, C, T, v0 = 5.0, 1.0, 1.0, 2.0
    net, profile = rc_net(g, C, T), default_profile()
    exact = 0.5 * C * v0 ** 2 * (1 - math.exp(-2 * g * T / C)) * profile.scale.energy_unit
    steps, errors, estimates = [], [], []
    for n in (26, 51, 101, 201):
        _, _, _, energy = run_energy(net, [[v0]], profile, n_points=n, refine=False)
        steps.append(T / (n - 1))
        errors.append(abs(summary(energy.dissipated_passive_j) / exact - 1))
        estimates.append(energy.quadrature_rel_error)
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(2.0, abs=0.1)
    # the Richardson estimate tracks the true error
    np.testing.assert_allclose(estimates, errors, rtol=0.5)


def test_two_layer_energy_is_layer_by_layer():
    g1, g2, T1, T2, C, v0 = 2.0, 0.5, 0.5, 1.0, 1.0, 2.0
    net = KirchhoffNet([Layer([[1, 0]], Conductance(), T1, params=[[g1]]),
                        Layer([[1, 0]], Conductance(), T2, params=[[g2]])], capacitance=C)
    profile = default_profile()
    _, _, _, energy = run_energy(net, [[v0]], profile)
    v1 = v0 * math.exp(-g1 * T1 / C)
    exact = 0.5 * C * (v0 ** 2 * (1 - math.exp(-2 * g1 * T1 / C)) + v1 ** 2 * (1 - math.exp(-2 * g2 * T2 / C)))
    assert summary(energy.dissipated_passive_j) == pytest.approx(exact * profile.scale.energy_unit, rel=RC_ENERGY_RTOL)


def test_current_source_supply_energy():
    """A constant current b from node 1 to ground (gain 0): v = v0 − b·t/C."""
    b, C, T, v0 = 0.3, 1.0, 1.0, 2.0
    net = KirchhoffNet([Layer([[1, 0]], DifferenceActivation("identity"), T, params=[[b], [0.0]])], capacitance=C)
    profile = default_profile()
    _, _, table, energy = run_energy(net, [[v0]], profile)
    assert table.active.all()
    charge_c = b * T * profile.scale.current_unit * profile.scale.time_unit
    assert summary(energy.supply_active_j) == pytest.approx(profile.supply_voltage_v * charge_c, rel=1e-9)
    absorbed = b * (v0 * T - b * T ** 2 / (2 * C)) * profile.scale.energy_unit       # ∫ b·v(t) dt
    assert summary(energy.dissipated_active_j) == pytest.approx(absorbed, rel=1e-9)
    assert summary(energy.total_drawn_j) == pytest.approx(
        profile.supply_voltage_v * charge_c + summary(energy.input_drawn_j), rel=1e-9)
    assert summary(energy.peak_supply_w) == pytest.approx(profile.supply_voltage_v * b * profile.scale.current_unit)


# ------------------------------------------------------------------ ngspice
def mixed_net():
    """Two layers, four device families, edges to ground: every path of the energy code."""
    rng = np.random.default_rng(7)
    edges = [(1, 2), (2, 3), (3, 1), (1, 0), (0, 2), (3, 0)]
    layer0 = Layer.from_groups([
        EdgeGroup(edges, Conductance(), rng.uniform(0.5, 2.0, (1, 6))),
        EdgeGroup(edges, ShiftedReLU(), np.stack([rng.normal(0, 0.3, 6), rng.normal(0, 1.0, 6)])),
    ], duration=0.6)
    layer1 = Layer.from_groups([
        EdgeGroup(edges, DifferenceActivation("tanh"), np.stack([rng.normal(0, 0.3, 6), rng.normal(0, 1.0, 6)])),
        EdgeGroup(edges, AffineActivation("tanh"), rng.normal(0, 0.6, (3, 6))),
        EdgeGroup(edges[:3], Conductance(), np.full((1, 3), 1.0)),
    ], duration=0.8)
    return KirchhoffNet([layer0, layer1], readout=2)


def test_solver_energy_matches_ngspice_branch_currents():
    net, profile = mixed_net(), default_profile()
    X = np.array([[1.5, -0.8, 0.6]])
    _, _, table, energy = run_energy(net, X, profile)
    netlist = to_netlist(net, X[0], scale=profile.scale, options=SpiceOptions(save_branch_currents=True))
    saved = spice_device_energy(net, run_compiled(netlist), profile, table)
    plain = to_netlist(net, X[0], scale=profile.scale)
    assert ".save" not in plain.text and netlist.text.count("[i]") == net.num_edges
    recomputed = spice_device_energy(net, run_compiled(plain), profile, table)
    assert saved.method == "branch currents" and recomputed.method == "recomputed"
    ours_dissipated = summary(energy.dissipated_j)
    ours_net = summary(energy.device_net_j)
    assert energy.counts["active"] > 0 and energy.counts["passive"] > 0
    # the net energy is a small difference of large flows: its tolerance scales with them
    net_atol = ENERGY_AGREEMENT_RTOL * summary(energy.gross_j)
    assert abs(ours_net) < 0.1 * summary(energy.gross_j)        # a real cancellation, not a trivial case
    for spice in (saved, recomputed):
        assert spice.dissipated_j == pytest.approx(ours_dissipated, rel=ENERGY_AGREEMENT_RTOL)
        assert spice.device_net_j == pytest.approx(ours_net, abs=net_atol)
    # ngspice's capacitor energy balance (no device model) equals the devices' net energy
    assert saved.balance_j == pytest.approx(ours_net, abs=net_atol)
    # the two ngspice routes to the branch currents agree with each other far more closely
    assert saved.dissipated_j == pytest.approx(recomputed.dissipated_j, rel=1e-5)


# ------------------------------------------------------------------ feasibility
CLEAN_EDGES = [(1, 3), (2, 4), (3, 0), (4, 0), (1, 0), (2, 0), (3, 4)]
CLEAN_G = [3.0, 2.0, 2.0, 4.0, 2.0, 2.0, 1.0]
CLEAN_X = np.array([[2.0, 1.0], [1.0, 3.0], [3.0, 2.0], [2.5, 0.5]])


def clean_groups(g=CLEAN_G):
    return [EdgeGroup(CLEAN_EDGES, Conductance(), np.array([g], dtype=float))]


def net_of(groups, num_nodes=4, readout=(3, 4)):
    return KirchhoffNet([Layer.from_groups(groups, 1.0)], num_nodes=num_nodes, readout=list(readout))


def findings_of(net, X=CLEAN_X, profile=None):
    profile = default_profile() if profile is None else profile
    waveforms, sweep, table, energy = run_energy(net, X, profile, n_points=FEASIBILITY_POINTS)
    findings = check_feasibility(net, profile, waveforms, sweep, table, energy)
    by_check = {f.check: f for f in findings}
    assert len(by_check) == len(findings)           # one finding per check
    return by_check


def with_g(index, value):
    g = list(CLEAN_G)
    g[index] = value
    return clean_groups(g)


def test_clean_net_has_only_info_findings():
    findings = findings_of(net_of(clean_groups()))
    assert set(findings) == CLEAN_INFO_CHECKS
    assert all(f.severity == "info" for f in findings.values())
    assert "all 7 devices are passive" in findings["active_devices"].message
    assert findings["ktc_noise"].value > KTC_SNR_WARNING_DB
    assert findings["wiring"].counts["max_degree"] == 3
    for f in findings.values():
        json.dumps(f.to_dict())


def _parallel_edges(count):
    return clean_groups() + [EdgeGroup([(1, 2)] * count, Conductance(), np.ones((1, count)))]


TRIGGERS = {
    # check: (net, X, profile changes, severity, extra assertion)
    "voltage_rails": (lambda: net_of(clean_groups()), CLEAN_X * 5, {}, "error",
                      lambda f: set(f.nodes) >= {1, 2} and f.value > 0.9),
    "current_limit": (lambda: net_of(with_g(0, 50.0)), CLEAN_X, {}, "error", lambda f: 0 in f.edges),
    "conductance_range": (lambda: net_of(with_g(6, 0.5)), CLEAN_X, {}, "warning",
                          lambda f: list(f.edges) == [6] and f.counts["below"] == 1),
    "precision_floor": (lambda: net_of(with_g(6, 0.2)), CLEAN_X, {"conductance_min_s": 1e-8}, "warning",
                        lambda f: list(f.edges) == [6]),
    "negative_differential_conductance": (lambda: net_of(with_g(6, -1.0)), CLEAN_X, {}, "warning",
                                          lambda f: list(f.edges) == [6] and f.value == pytest.approx(-1e-6)),
    "current_sources": (lambda: net_of(clean_groups() + [EdgeGroup([(3, 0)], DifferenceActivation("identity"),
                                                                   [[0.5], [1.0]])]),
                        CLEAN_X, {}, "warning", lambda f: list(f.edges) == [7]),
    "zero_bias_current": (lambda: net_of(clean_groups() + [EdgeGroup([(3, 4)], DifferenceActivation("identity"),
                                                                     [[0.5], [1.0]])]),
                          CLEAN_X, {}, "warning", lambda f: list(f.edges) == [7]),
    "floating_nodes": (lambda: net_of(clean_groups() + [EdgeGroup([(5, 6)], Conductance(), [[2.0]])], num_nodes=6),
                       CLEAN_X, {}, "warning", lambda f: list(f.nodes) == [5, 6]),
    "wiring": (lambda: net_of(_parallel_edges(300)), CLEAN_X, {}, "warning",
               lambda f: list(f.nodes) == [1, 2] and f.counts["max_edges_per_pair"] == 300),
    "ktc_noise": (lambda: net_of([EdgeGroup([(1, 3), (1, 4), (3, 0), (4, 0), (2, 0)], Conductance(),
                                            [[3.0, 3.0 * (1 + 1e-6), 2.0, 2.0, 1.0]])]),
                  CLEAN_X, {}, "warning", lambda f: f.value < KTC_SNR_WARNING_DB),
    "power_budget": (lambda: net_of(clean_groups()), CLEAN_X, {"power_budget_w": 1e-9}, "error",
                     lambda f: f.counts["average_power_w"] > 1e-9),
    # the default n·Vt is a silicon junction at V0 = 1 V: at the profile's 0.1 V, N ≈ 0.1
    "diode_ideality": (lambda: net_of(clean_groups() + [EdgeGroup([(3, 4)], Diode(), [[1e-9], [0.0]])]),
                       CLEAN_X, {}, "warning", lambda f: list(f.edges) == [7] and 0.09 < f.value < 0.11),
}


def test_a_diode_scaled_to_a_real_junction_is_not_flagged():
    # n·Vt = 0.2586 V0 = 25.9 mV at V0 = 0.1 V: N = 1.0 at 300 K
    diode = Diode(thermal_voltage=0.2586)
    findings = findings_of(net_of(clean_groups() + [EdgeGroup([(3, 4)], diode, [[1e-9], [0.0]])]))
    assert "diode_ideality" not in findings


@pytest.mark.parametrize("check", sorted(TRIGGERS))
def test_each_finding_is_triggered_by_a_net_built_for_it(check):
    build, X, changes, severity, extra = TRIGGERS[check]
    profile = default_profile().replace(**changes) if changes else default_profile()
    findings = findings_of(build(), X, profile)
    assert check in findings, f"{check} not found; got {sorted(findings)}"
    assert findings[check].severity == severity
    assert extra(findings[check]), str(findings[check])


def test_finding_refuses_unknown_severity_and_check():
    with pytest.raises(InputError, match="severity"):
        Finding("wiring", "fatal", "x")
    with pytest.raises(InputError, match="unknown feasibility check"):
        Finding("colour", "info", "x")


def test_conductance_above_the_window_is_an_error():
    findings = findings_of(net_of(with_g(6, 150.0)))
    assert findings["conductance_range"].severity == "error"
    assert findings["conductance_range"].counts["above"] == 1


def test_active_devices_are_counted_by_kind():
    groups = clean_groups() + [
        EdgeGroup([(3, 0)], DifferenceActivation("identity"), [[0.5], [1.0]]),     # current source
        EdgeGroup([(1, 3), (2, 4)], AffineActivation("identity"), [[0.5, 0.3], [0.2, -0.3], [0.0, 0.0]]),
        EdgeGroup([(3, 4)], ShiftedReLU(), [[0.1], [1.0]]),                        # active two-terminal
    ]
    findings = findings_of(net_of(groups))
    active = findings["active_devices"]
    assert active.severity == "warning"
    assert active.counts == {"passive_two_terminal": 7, "active_two_terminal": 2, "transconductor_cell": 1,
                             "current_source": 1, "total": 11,
                             "active_two_terminal_never_delivering": active.counts["active_two_terminal_never_delivering"]}
    # w_src = −w_dst (the second affine edge) is a function of the branch voltage: a two-terminal
    assert sorted(active.edges) == [7, 8, 9, 10]
    assert "transconductor" in active.message


# ------------------------------------------------------------------ report, plots and CLI
@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "moons.npz"
    status = cli.main(["train", "--task", "moons", "--epochs", "1", "--out", str(path), "--no-progress"])
    assert status == 0
    return path


@pytest.fixture(scope="module")
def report(trained_model):
    net, meta, _ = read_model_file(trained_model)
    data = dataset_of_model(meta)
    return chip_report(net, data.X_test, data.y_test, samples=REPORT_SAMPLES, mc_trials=3,
                       sweep_sigmas=(0.0, 0.1), sweep_bits=(3, 8))


def test_report_to_dict_is_json_and_has_the_figures(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["samples"] == REPORT_SAMPLES
    assert data["timing"]["latency_s"] == pytest.approx(2.0 * 100e-9)
    assert 0 <= data["timing"]["settle_median_fraction"] <= 1
    assert data["timing"]["wallclock_spice_per_sample_s"] > 0
    assert data["energy"]["total_drawn_j"]["mean"] > 0
    assert data["energy"]["peak_power_w"]["max"] > 0
    assert data["spice_check"]["agrees"] and data["spice_check"]["dissipated_rel_error"] < ENERGY_AGREEMENT_RTOL
    assert data["spice_check"]["method"] == "branch currents"      # ngspice's own device currents
    checks = {f["check"] for f in data["findings"]}
    assert {"active_devices", "wiring", "ktc_noise"} <= checks
    robust = data["robustness"]
    assert robust["sigma"] == 0.05 and robust["accuracy_at_sigma"]["trials"] == 3
    assert robust["bits"] == 6 and 0 <= robust["accuracy_at_bits"]["accuracy"] <= 1
    assert [row["sigma"] for row in robust["mismatch_sweep"]] == [0.0, 0.05, 0.1]
    assert [row["bits"] for row in robust["quantisation_sweep"]] == [3, 6, 8]
    text = str(report)
    for section in ("== scale and profile ==", "== timing ==", "== energy and power", "== ngspice check ==",
                    "== feasibility ==", "== robustness =="):
        assert section in text
    assert "accuracy" in text and "ns" in text


def test_report_plots_are_pngs(report, tmp_path):
    paths = report.plots(tmp_path / "figures")
    names = sorted(p.name for p in paths)
    assert names == ["accuracy_vs_bits.png", "accuracy_vs_sigma.png", "energy_breakdown.png", "power.png",
                     "readout_waveforms.png"]
    for path in paths:
        content = path.read_bytes()
        assert content.startswith(PNG_SIGNATURE) and len(content) > MIN_PNG_BYTES


def test_cli_report_json(trained_model, tmp_path, capsys):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"parameters": {"capacitance_unit_f": 200e-15}}))
    status = cli.main(["report", str(trained_model), "--json", "--samples", "8", "--trials", "2",
                       "--profile", str(profile), "--plots", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert status == 0
    data = json.loads(out)
    assert data["dataset"] == "moons" and data["samples"] == 8
    assert data["timing"]["latency_s"] == pytest.approx(2.0 * 200e-9)     # T·C0/G0 with the user's C0
    assert data["profile"]["parameters"]["capacitance_unit_f"]["value"] == 200e-15
    assert data["spice_check"]["agrees"]
    assert len(data["plots"]) == 5 and all(p.endswith(".png") for p in data["plots"])


def test_cli_report_text_without_spice_and_robustness(trained_model, capsys):
    status = cli.main(["report", str(trained_model), "--samples", "4", "--no-spice", "--no-robustness"])
    out = capsys.readouterr().out
    assert status == 0
    assert "== feasibility ==" in out and "== ngspice check ==" not in out and "not run" in out


def test_cli_report_takes_ngspice_options_and_a_timeout(trained_model, capsys):
    """A net too big for the tight defaults: --reltol/--max-step-fraction loosen the energy
    check's ngspice run (fewer time points), --spice-timeout bounds it (one line, exit 2)."""
    def points(*options):
        assert cli.main(["report", str(trained_model), "--json", "--samples", "2", "--no-robustness",
                         *options]) == 0
        return json.loads(capsys.readouterr().out)["spice_check"]["spice_points"][0]
    assert points("--reltol", "1e-3", "--max-step-fraction", "0.1") < points() / 3
    assert cli.main(["report", str(trained_model), "--samples", "2", "--no-robustness",
                     "--spice-timeout", "0.001"]) == 2
    err = capsys.readouterr().err
    assert "did not finish within 0.001 s" in err and len(err.strip().splitlines()) == 1


def test_cli_report_bad_profile(trained_model, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"parameters": {"temperature_k": -3}}')
    status = cli.main(["report", str(trained_model), "--profile", str(bad), "--no-spice"])
    err = capsys.readouterr().err
    assert status == 2 and "temperature_k must be finite and > 0" in err and str(bad) in err


def test_diodes_of_several_groups_make_one_ideality_finding():
    groups = clean_groups() + [EdgeGroup([(3, 4)], Diode(), [[1e-9], [0.0]]),
                               EdgeGroup([(4, 3)], Diode(thermal_voltage=1.0), [[1e-9], [0.0]])]
    finding = findings_of(net_of(groups))["diode_ideality"]       # one finding per check
    assert list(finding.edges) == [7, 8]
    # N ≈ 0.1 and N ≈ 3.9: the headline is the further from 1 by ratio
    assert finding.value == pytest.approx(0.1, rel=1e-3)
    assert "N = 3.87" in finding.message and "N = 0.1" in finding.message
