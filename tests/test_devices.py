"""Device library and assembler: currents, derivatives, sign convention, stamps, specs."""

import json

import numpy as np
import pytest
import scipy.linalg
from scipy import special

import kirchhoff_sim.assembly as assembly
from kirchhoff_sim import devices
from kirchhoff_sim.devices import (
    ACTIVATIONS, AffineActivation, Conductance, DifferenceActivation, Diode, ShiftedLeakyReLU,
    ShiftedReLU,
)
from kirchhoff_sim.errors import DeviceError, ParameterError
from kirchhoff_sim.network import KirchhoffNet, Layer

E, B = 7, 5
KINK_MARGIN = 1e-3
NVT = Diode().thermal_voltage

CASES = (
    ["Conductance", "ShiftedReLU", "ShiftedLeakyReLU"]
    + [f"DifferenceActivation-{a}" for a in ACTIVATIONS]
    + [f"AffineActivation-{a}" for a in ACTIVATIONS]
    + ["Diode-rs0", "Diode-rs"]
)


def make_device(case):
    if case.startswith("Diode"):
        return Diode()
    family, _, act = case.partition("-")
    cls = getattr(devices, family)
    return cls(act) if act else cls()


def pre_activation(device, vs, vd, p):
    """The argument whose sign flips at a piecewise-linear kink (None when smooth)."""
    if isinstance(device, (ShiftedReLU, ShiftedLeakyReLU)):
        return vs - vd - p[0]
    if isinstance(device, DifferenceActivation):
        return p[1] * (vs - vd) + p[0]
    if isinstance(device, AffineActivation):
        return p[0] * vs + p[1] * vd + p[2]
    return None


def random_operating_point(case, seed=0):
    """``(device, vs, vd, p)`` with ``vs, vd`` (E, B) and ``p`` (n_params, E, 1), away from kinks."""
    rng = np.random.default_rng(seed)
    device = make_device(case)
    if isinstance(device, Diode):
        i_s = 10.0 ** rng.uniform(-10, -8, (E, 1))
        r_s = np.zeros((E, 1)) if case == "Diode-rs0" else rng.uniform(0.5, 5.0, (E, 1))
        p = np.stack([i_s, r_s])
        vd = rng.uniform(-0.3, 0.3, (E, B))
        vs = vd + rng.uniform(-0.3, 0.6, (E, B))
        return device, vs, vd, p
    sign = rng.choice([-1.0, 1.0], (device.n_params, E, 1))
    p = sign * rng.uniform(0.3, 1.2, (device.n_params, E, 1))
    vs = rng.uniform(-1, 1, (E, B))
    vd = rng.uniform(-1, 1, (E, B))
    for _ in range(100):
        pre = pre_activation(device, vs, vd, p)
        if pre is None:
            break
        near = np.abs(pre) < KINK_MARGIN
        if not near.any():
            break
        vs = np.where(near, rng.uniform(-1, 1, vs.shape), vs)
    else:  # pragma: no cover - the redraw converges in a few rounds
        raise AssertionError("could not move the operating point away from the kink")
    return device, vs, vd, p


def close(actual, expected, rtol=1e-6):
    actual = np.broadcast_to(actual, np.shape(expected))
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-9 * scale)


# ------------------------------------------------------------------ derivatives
@pytest.mark.parametrize("case", CASES)
def test_linearise_matches_central_differences(case):
    device, vs, vd, p = random_operating_point(case)
    lin = device.linearise(vs, vd, p)
    current = device.current(vs, vd, p)
    assert current.shape == (E, B)
    np.testing.assert_allclose(np.broadcast_to(lin.current, (E, B)), current, rtol=1e-14, atol=0)

    h = 1e-6
    fd_vs = (device.current(vs + h, vd, p) - device.current(vs - h, vd, p)) / (2 * h)
    fd_vd = (device.current(vs, vd + h, p) - device.current(vs, vd - h, p)) / (2 * h)
    close(lin.di_dvs, fd_vs)
    close(lin.di_dvd, fd_vd)

    assert lin.di_dp is not None
    di_dp = np.broadcast_to(lin.di_dp, (device.n_params, E, B))
    for k in range(device.n_params):
        step = np.zeros_like(p)
        if np.all(p[k] == 0):
            # diode r_s = 0 is the edge of its domain: second-order one-sided difference
            step[k] = 1e-7
            fd = (-3 * device.current(vs, vd, p) + 4 * device.current(vs, vd, p + step)
                  - device.current(vs, vd, p + 2 * step)) / (2 * 1e-7)
        else:
            step[k] = 1e-6 * np.abs(p[k])
            fd = (device.current(vs, vd, p + step) - device.current(vs, vd, p - step)) / (2 * step[k])
        close(di_dp[k], fd, rtol=1e-6 if not np.all(p[k] == 0) else 1e-5)

    # the test exercises both sides of a kink, not just one
    pre = pre_activation(device, vs, vd, p)
    if pre is not None:
        assert (pre > 0).any() and (pre < 0).any()


@pytest.mark.parametrize("case", CASES)
def test_current_is_response_of_weighted_input(case):
    device, vs, vd, p = random_operating_point(case, seed=1)
    w_src, w_dst, bias = device.input_weights(p)
    z = w_src * vs + w_dst * vd + bias
    expected = device.response(z, p)
    np.testing.assert_allclose(device.current(vs, vd, p), expected, rtol=1e-14, atol=0)
    # and the weights are those of the DESIGN table: branch voltage, or p0·vs + p1·vd + p2
    if isinstance(device, AffineActivation):
        np.testing.assert_array_equal(z, p[0] * vs + p[1] * vd + p[2])
    else:
        np.testing.assert_allclose(z, vs - vd, rtol=0, atol=1e-15)


@pytest.mark.parametrize("case", CASES)
def test_linearise_without_params(case):
    device, vs, vd, p = random_operating_point(case, seed=2)
    full = device.linearise(vs, vd, p)
    lean = device.linearise(vs, vd, p, params=False)
    assert lean.di_dp is None
    np.testing.assert_array_equal(np.broadcast_to(lean.current, (E, B)),
                                  np.broadcast_to(full.current, (E, B)))
    np.testing.assert_array_equal(np.broadcast_to(lean.di_dvs, (E, B)),
                                  np.broadcast_to(full.di_dvs, (E, B)))
    np.testing.assert_array_equal(np.broadcast_to(lean.di_dvd, (E, B)),
                                  np.broadcast_to(full.di_dvd, (E, B)))


# --------------------------------------------------------------- the paper's formulas
def test_reference_family_formulas():
    rng = np.random.default_rng(3)
    vs, vd = rng.uniform(-1, 1, (2, 4, 3))
    u = vs - vd
    p2 = rng.uniform(-1, 1, (2, 4, 1))
    p3 = rng.uniform(-1, 1, (3, 4, 1))
    np.testing.assert_allclose(Conductance().current(vs, vd, p2[:1]), p2[0] * u)
    np.testing.assert_allclose(ShiftedReLU().current(vs, vd, p2), p2[1] * np.maximum(u - p2[0], 0))
    z = u - p2[0]
    np.testing.assert_allclose(ShiftedLeakyReLU().current(vs, vd, p2),
                               p2[1] * np.where(z > 0, z, 0.01 * z))
    np.testing.assert_allclose(DifferenceActivation("tanh").current(vs, vd, p2),
                               np.tanh(p2[1] * u + p2[0]))
    np.testing.assert_allclose(AffineActivation("softplus").current(vs, vd, p3),
                               np.log1p(np.exp(p3[0] * vs + p3[1] * vd + p3[2])))


# ------------------------------------------------------------------ activations
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_value_and_slope(name):
    act = devices.activation(name)
    rng = np.random.default_rng(4)
    z = np.concatenate([rng.uniform(-4, 4, 50), [-30.0, -1.0, 0.0, 1.0, 30.0]])
    value, slope = act.value_and_slope(z)
    np.testing.assert_allclose(value, act.value(z), rtol=1e-15, atol=0)
    np.testing.assert_allclose(slope, act.slope(z), rtol=1e-15, atol=0)

    smooth = z[np.abs(z) > KINK_MARGIN]
    h = 1e-6
    close(act.slope(smooth), (act.value(smooth + h) - act.value(smooth - h)) / (2 * h))
    close(act.curvature(smooth), (act.slope(smooth + h) - act.slope(smooth - h)) / (2 * h),
          rtol=1e-5)


def test_activation_values():
    z = np.array([-2.0, -0.5, 0.5, 2.0])
    np.testing.assert_array_equal(devices.activation("relu").value(z), [0, 0, 0.5, 2.0])
    np.testing.assert_allclose(devices.activation("leaky_relu").value(z), [-0.02, -0.005, 0.5, 2.0])
    softplus = devices.activation("softplus")
    # log(1 + e^z) written so that it does not overflow
    with np.errstate(under="ignore"):   # logaddexp underflows harmlessly in e^(-800)
        big = softplus.value(np.array([800.0]))
    np.testing.assert_allclose(big, [800.0], rtol=1e-15)
    np.testing.assert_allclose(softplus.value(np.array([40.0])), [40.0], rtol=1e-15)
    np.testing.assert_allclose(softplus.value(np.array([-40.0])), [np.exp(-40.0)], rtol=1e-12)


def test_unknown_activation_raises():
    with pytest.raises(DeviceError, match="sigmoid"):
        devices.activation("sigmoid")
    with pytest.raises(DeviceError, match="sigmoid"):
        DifferenceActivation("sigmoid")
    with pytest.raises(DeviceError, match="sigmoid"):
        AffineActivation("sigmoid")


# ------------------------------------------------------------------ diode
def diode_points(seed=5, n=40):
    rng = np.random.default_rng(seed)
    u = np.concatenate([rng.uniform(-0.5, 2.0, n - 4), [-0.5, 0.05, 0.7, 2.0]])[:, None]
    i_s = 10.0 ** rng.uniform(-12, -6, (n, 1))
    r_s = 10.0 ** rng.uniform(-1, 1, (n, 1))
    return u, np.stack([i_s, r_s])


def test_diode_series_resistance_satisfies_implicit_equation():
    d = Diode()
    u, p = diode_points()
    i = d.current(u, np.zeros_like(u), p)
    i_s, r_s = p
    implied = i_s * np.expm1((u - i * r_s) / d.thermal_voltage)
    np.testing.assert_allclose(i, implied, rtol=1e-12, atol=0)
    assert (np.sign(i) == np.sign(u)).all()


def test_diode_series_resistance_matches_lambertw():
    d = Diode()
    u, p = diode_points(seed=6)
    u = np.minimum(u, 0.9)   # keep exp() of the closed form finite
    i_s, r_s = p
    nvt = d.thermal_voltage
    arg = i_s * r_s / nvt * np.exp((u + i_s * r_s) / nvt)
    expected = nvt / r_s * special.lambertw(arg).real - i_s
    i = d.current(u, np.zeros_like(u), p)
    np.testing.assert_allclose(i, expected, rtol=1e-12, atol=1e-12 * i_s.min())


def test_diode_without_series_resistance_is_shockley():
    d = Diode(thermal_voltage=0.05)
    u = np.linspace(-1, 1, 11)[:, None]
    p = np.stack([np.full((11, 1), 1e-9), np.zeros((11, 1))])
    np.testing.assert_allclose(d.current(u, 0 * u, p), 1e-9 * np.expm1(u / 0.05), rtol=1e-14)


@pytest.mark.parametrize("u", [1e2, 1e4, 1e8, 1e15])
def test_diode_huge_forward_bias_does_not_overflow_with_series_resistance(u):
    d = Diode()
    p = np.array([[1e-9], [2.0]])[:, :, None]
    vs, vd = np.array([[u]]), np.array([[0.0]])
    with np.errstate(all="raise"):
        i = d.current(vs, vd, p)
        lin = d.linearise(vs, vd, p)
    assert np.isfinite(i).all()
    assert 0 < i[0, 0] < u / 2.0
    # log form of the implicit equation, as accurate as u − i·r_s allows in float64
    lhs = (u - i[0, 0] * 2.0) / d.thermal_voltage
    assert abs(lhs - np.log1p(i[0, 0] / 1e-9)) <= 1e-12 * u / d.thermal_voltage + 1e-9
    assert np.isfinite(lin.di_dvs).all() and np.isfinite(lin.di_dp).all()
    np.testing.assert_allclose(lin.di_dvs, 1 / 2.0, rtol=1e-2)


# the linear continuation of the exponential above u/nVt = DIODE_EXP_LIMIT (r_s = 0)
X = devices.DIODE_EXP_LIMIT


def ideal_diode_point(u, i_s=1e-9):
    u = np.atleast_1d(np.asarray(u, dtype=float))[None, :]
    return u, np.zeros_like(u), np.array([[[i_s]], [[0.0]]])


def test_ideal_diode_current_continues_along_its_tangent_beyond_the_exponent_limit():
    d = Diode()
    nvt = d.thermal_voltage
    x = np.array([X - 1.0, X - 1e-9, X, X + 1e-9, X + 1.0, X + 100.0])
    vs, vd, p = ideal_diode_point(x * nvt)
    x = vs[0] / nvt            # the exponent the device sees, after the round trip
    current = d.current(vs, vd, p)[0]
    below = x <= X
    np.testing.assert_allclose(current[below], 1e-9 * np.expm1(x[below]), rtol=1e-14)
    tangent = 1e-9 * (np.exp(X) * (1.0 + (x[~below] - X)) - 1.0)
    np.testing.assert_allclose(current[~below], tangent, rtol=1e-12)
    # C¹ at the limit: value and slope agree from both sides
    lin = d.linearise(vs, vd, p)
    slope = np.broadcast_to(lin.di_dvs, vs.shape)[0]
    np.testing.assert_allclose(slope[1], slope[3], rtol=1e-8)
    np.testing.assert_allclose(slope[~below], 1e-9 * np.exp(X) / nvt, rtol=1e-14)
    np.testing.assert_allclose(current[1], current[3], rtol=1e-8)


@pytest.mark.parametrize("u", [5.0, 12.0, 1e3, 1e100, 1e250])
def test_ideal_diode_does_not_overflow_at_any_forward_bias(u):
    # 12 V was 1e201 units of current, ~18 V overflowed; the continuation grows linearly
    # (it reaches the largest double only near u = 1e282 V at i_s = 1e-9)
    d = Diode()
    vs, vd, p = ideal_diode_point(u)
    with np.errstate(all="raise"):
        current = d.current(vs, vd, p)
        lin = d.linearise(vs, vd, p)
    assert np.isfinite(current).all() and current[0, 0] > 0
    assert np.isfinite(np.broadcast_to(lin.di_dvs, vs.shape)).all()
    assert all(np.isfinite(np.broadcast_to(d_p, vs.shape)).all() for d_p in lin.di_dp)


@pytest.mark.parametrize("x", [X + 5.0, X + 300.0])
def test_ideal_diode_derivatives_on_the_continuation_match_finite_differences(x):
    d = Diode()
    nvt = d.thermal_voltage
    vs, vd, p = ideal_diode_point(x * nvt)
    lin = d.linearise(vs, vd, p)
    h = 1e-7
    fd_u = (d.current(vs + h, vd, p) - d.current(vs - h, vd, p)) / (2 * h)
    np.testing.assert_allclose(np.broadcast_to(lin.di_dvs, vs.shape), fd_u, rtol=1e-6)
    step = np.array([[[1e-15]], [[0.0]]])
    fd_is = (d.current(vs, vd, p + step) - d.current(vs, vd, p - step)) / 2e-15
    np.testing.assert_allclose(np.broadcast_to(lin.di_dp[0], vs.shape), fd_is, rtol=1e-6)
    # ∂i/∂r_s at r_s = 0 is −i·di/du; r_s = ε makes the closed form Lambert W, whose
    # current at this bias is far from the continued exponential's: compare with the
    # implicit-function formula itself, on the same continuation
    np.testing.assert_allclose(np.broadcast_to(lin.di_dp[1], vs.shape),
                               -d.current(vs, vd, p) * np.broadcast_to(lin.di_dvs, vs.shape),
                               rtol=1e-14)


def test_diode_spice_expression_writes_the_continuation():
    d = Diode(thermal_voltage=0.025852)
    assert d.spice_expression("V(a)", "V(b)", [1e-9, 0.0]) == (
        "1e-09*(exp(min((V(a)-V(b))/0.025852,80.0))*(1+max((V(a)-V(b))/0.025852-80.0,0))-1)")
    with pytest.raises(DeviceError, match="series resistance"):
        d.spice_expression("V(a)", "V(b)", [1e-9, 0.5])


def test_diode_spice_expression_evaluates_like_the_device_in_ngspice():
    """A B source with the diode's expression across a voltage ramp from −0.5 V to 3 V
    (through the continuation at 80·nVt = 2.07 V): ngspice's current is the device's."""
    from kirchhoff_sim.spice.runner import run_netlist

    d = Diode()
    netlist = "\n".join([
        "diode expression on a ramp", "V1 a 0 PWL(0 -0.5 1 3)",
        f"B1 a 0 I={d.spice_expression('V(a)', '0', [1e-9, 0.0])}",
        ".options reltol=1e-9 abstol=1e-15 vntol=1e-12", ".tran 1m 1", ".end", ""])
    result = run_netlist(netlist, backend="subprocess")
    u = result.voltage("a")
    assert u.min() == pytest.approx(-0.5) and u.max() == pytest.approx(3.0)
    assert np.count_nonzero(u > X * d.thermal_voltage) > 100
    vs, vd, p = ideal_diode_point(u)
    mine = d.current(vs, vd, p)[0]
    ngspice = -result.vectors["i(v1)"]
    # ngspice prints the current to ~15 digits: relative agreement where it flows, and
    # absolute (1e-14 of i_s... 1e-15 A) in reverse bias
    np.testing.assert_allclose(ngspice, mine, rtol=1e-13, atol=1e-15)


def test_diode_limits_the_junction_voltage_as_pnjlim():
    d = Diode()
    nvt = d.thermal_voltage
    i_s = 1e-9
    vcrit = nvt * np.log(nvt / (np.sqrt(2.0) * i_s))
    assert d.critical_voltage(i_s) == pytest.approx(vcrit, rel=1e-15)
    p = np.array([[[i_s]], [[0.0]]])
    previous = np.array([[0.136, 0.6, 0.6, -1.0, 0.6, 0.3]])
    proposed = np.array([[5.0, 0.62, 0.3, 5.0, 0.5, 0.35]])
    limited = d.limit_input(proposed, previous, p)
    expected = [
        0.136 + nvt * np.log(1.0 + (5.0 - 0.136) / nvt),   # rising from on: logarithmic
        0.62,                                               # within 2·nVt: unchanged
        0.3,                                                # falling below vcrit: unchanged
        nvt * np.log(5.0 / nvt),                            # rising from off
        vcrit,                                              # falling past −nVt of argument
        0.35,                                               # below vcrit: unchanged
    ]
    # (0.6 → 0.5: the argument 1 − 0.1/nVt ≤ 0, so the junction drops to vcrit)
    np.testing.assert_allclose(limited[0], expected, rtol=1e-14)
    # before a layer's first iteration the junction starts at its initial condition, 0 V
    np.testing.assert_allclose(d.limit_input(np.array([[5.0]]), None, p), [[nvt * np.log(5.0 / nvt)]],
                               rtol=1e-14)
    # small steps are untouched (and the same array comes back: nothing to copy)
    small = np.array([[0.6, 0.61]])
    assert d.limit_input(small, np.array([[0.59, 0.6]]), np.array([[[i_s]], [[0.0]]])) is small


def test_diode_with_series_resistance_limits_its_junction_not_its_branch():
    # r_s = 0.5: at u = 1.6 V most of the voltage drops across r_s; limiting acts on the
    # junction voltage u − r_s·i(u), and the limited u is the one with the limited junction
    d = Diode()
    nvt = d.thermal_voltage
    p = np.array([[[1e-9]], [[0.5]]])
    zero = np.zeros((1, 1))
    junction = lambda u: u - 0.5 * d.current(u, zero, p)
    u_previous, u_proposed = np.array([[0.3]]), np.array([[1.6]])
    limited = d.limit_input(u_proposed, u_previous, p)
    vj0, vj = junction(u_previous)[0, 0], junction(u_proposed)[0, 0]
    assert vj - vj0 > 2 * nvt
    np.testing.assert_allclose(junction(limited), vj0 + nvt * np.log(1 + (vj - vj0) / nvt),
                               rtol=1e-12)
    # in the resistive regime a volt of branch voltage is a few nVt of junction: no limiting
    resistive = np.array([[3.0]])
    assert d.limit_input(resistive, np.array([[2.5]]), p) is resistive


def test_devices_do_not_limit_by_default():
    z = np.array([[3.0, -2.0]])
    for device in (Conductance(), ShiftedReLU(), AffineActivation("tanh")):
        assert device.limit_input(z, np.zeros_like(z), np.ones((device.n_params, 1, 1))) is z


def test_diode_is_passive_and_conductance_is_passive():
    assert Diode.passive and Conductance.passive
    assert not AffineActivation("tanh").passive and not ShiftedReLU().passive


# ------------------------------------------------------------------ specs and checks
ALL_DEVICES = [make_device(c) for c in CASES if c != "Diode-rs"] + [
    Diode(thermal_voltage=0.05, default_i_s=1e-12, default_r_s=2.0)]


@pytest.mark.parametrize("device", ALL_DEVICES, ids=repr)
def test_spec_round_trip(device):
    spec = device.spec()
    rebuilt = devices.from_spec(json.loads(json.dumps(spec)))
    assert rebuilt == device
    assert type(rebuilt) is type(device)
    assert rebuilt.spec() == spec
    assert hash(rebuilt) == hash(device)


def test_spec_distinguishes_options():
    assert DifferenceActivation("tanh") != DifferenceActivation("relu")
    assert DifferenceActivation("tanh") != AffineActivation("tanh")
    assert Diode(thermal_voltage=0.05) != Diode()
    assert ShiftedReLU() != ShiftedLeakyReLU()


@pytest.mark.parametrize("spec, match", [
    ({"family": "Transistor"}, "Transistor"),
    ({"family": "AffineActivation", "activation": "swish"}, "swish"),
    ({"family": "DifferenceActivation", "activation": "sigmoid"}, "sigmoid"),
    ({"family": "Conductance", "colour": "red"}, "Conductance"),
    ({"activation": "tanh"}, "family"),
    ("Conductance", "family"),
    ({"family": "Diode", "thermal_voltage": 0.0}, "thermal_voltage"),
])
def test_bad_spec_raises_device_error(spec, match):
    with pytest.raises(DeviceError, match=match):
        devices.from_spec(spec)


@pytest.mark.parametrize("device", [Conductance(), ShiftedReLU(), AffineActivation("tanh"), Diode()],
                         ids=repr)
def test_check_params_wrong_shape(device):
    n = device.n_params
    for bad in (np.ones((n + 1, 3)), np.ones(3), np.ones((n, 3, 1))):
        with pytest.raises(ParameterError, match=device.param_names[0]):
            device.check_params(bad)
    device.check_params(np.ones((n, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_params_non_finite_names_parameter_and_edge(bad):
    params = np.ones((2, 5))
    params[1, 3] = bad
    with pytest.raises(ParameterError, match=r"'gain'.*edge 3"):
        ShiftedReLU().check_params(params)
    params = np.ones((3, 4))
    params[2, 1] = bad
    with pytest.raises(ParameterError, match=r"'bias'.*edge 1"):
        AffineActivation("tanh").check_params(params, where="layer 0: ")


@pytest.mark.parametrize("i_s, r_s", [(0.0, 0.0), (-1e-9, 0.0), (1e-9, -1.0)])
def test_diode_rejects_non_physical_params(i_s, r_s):
    params = np.array([[1e-9, i_s], [0.0, r_s]])
    with pytest.raises(ParameterError, match="i_s"):
        Diode().check_params(params)


def test_diode_rejects_bad_thermal_voltage():
    for nvt in (0.0, -0.025, np.nan):
        with pytest.raises(DeviceError, match="thermal_voltage"):
            Diode(thermal_voltage=nvt)


# ------------------------------------------------------------------ sign convention
SIGN_DEVICES = [
    (Conductance(), [2.0]),
    (ShiftedReLU(), [0.1, 2.0]),
    (AffineActivation("identity"), [1.0, -0.5, 0.2]),
    (DifferenceActivation("tanh"), [0.1, 1.5]),
    (Diode(thermal_voltage=0.5), [0.1, 0.3]),
]


@pytest.mark.parametrize("device, params", SIGN_DEVICES, ids=[repr(d) for d, _ in SIGN_DEVICES])
def test_current_from_src_to_dst(device, params):
    C = np.array([0.5, 4.0])
    net = KirchhoffNet(Layer([(1, 2)], device, params=np.array(params)[:, None]), capacitance=C)
    V = net.initial_state(np.array([[1.0, 0.25]]))
    i = device.current(V[[1]], V[[2]], np.array(params)[:, None, None])[0, 0]
    assert i > 0
    dv = net.assemblies()[0].rhs(V)
    np.testing.assert_allclose(dv[:, 0], [0.0, -i / C[0], i / C[1]], rtol=1e-14, atol=0)
    assert dv[0, 0] == 0.0


@pytest.mark.parametrize("src, dst, sign", [(2, 0, -1.0), (0, 2, 1.0)])
def test_edge_to_ground_changes_only_the_other_node(src, dst, sign):
    # a constant current source of 0.7 (identity of bias 0.7) on one edge touching ground;
    # nodes 1 and 3 sit on a zero conductance only
    layer = Layer.from_groups([
        ([(src, dst)], AffineActivation("identity"), [[0.0], [0.0], [0.7]]),
        ([(1, 3)], Conductance(), [[0.0]]),
    ])
    C = np.array([1.0, 2.0, 3.0])
    net = KirchhoffNet(layer, capacitance=C)
    V = net.initial_state(np.array([[0.3, -0.4, 0.9], [1.0, 2.0, 3.0]]))
    dv = net.assemblies()[0].rhs(V)
    expected = np.zeros((4, 2))
    expected[2] = sign * 0.7 / C[1]
    np.testing.assert_allclose(dv, expected, rtol=1e-14, atol=0)


def test_conductance_to_ground_discharges_node():
    net = KirchhoffNet(Layer([(1, 0), (0, 2)], Conductance(), params=[[2.0, 3.0]]),
                       capacitance=[0.5, 1.5])
    V = net.initial_state(np.array([[0.8, -0.6]]))
    dv = net.assemblies()[0].rhs(V)
    np.testing.assert_allclose(dv[:, 0], [0.0, -2.0 * 0.8 / 0.5, -3.0 * -0.6 / 1.5], rtol=1e-14)


# ------------------------------------------------------------------ assembler
N_NODES = 6


def random_edges(rng, n):
    edges = rng.integers(0, N_NODES + 1, (3 * n, 2))
    edges = edges[edges[:, 0] != edges[:, 1]][:n]
    assert len(edges) == n
    return edges


def mixed_net(seed=0, sizes=(150, 130, 90, 70)):
    """A nonlinear, smooth multi-group layer: parallel edges, ground edges, src > dst."""
    rng = np.random.default_rng(seed)

    def signed(shape):
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 1.2, shape)

    e1, e2, e3, e4 = (random_edges(rng, n) for n in sizes)
    diode_params = np.stack([rng.uniform(0.05, 0.2, sizes[2]), rng.uniform(0.5, 2.0, sizes[2])])
    layer = Layer.from_groups([
        (e1, DifferenceActivation("tanh"), signed((2, sizes[0]))),
        (e2, AffineActivation("softplus"), signed((3, sizes[1]))),
        (e3, Diode(thermal_voltage=0.5), diode_params),
        (e4, Conductance(), signed((1, sizes[3]))),
    ])
    capacitance = rng.uniform(0.5, 2.0, N_NODES)
    net = KirchhoffNet(layer, num_nodes=N_NODES, capacitance=capacitance)
    V = net.initial_state(rng.uniform(-1, 1, (8, N_NODES)))
    return net, V


def loop_currents(layer, V):
    rows = []
    for group in layer.groups:
        for e, (s, d) in enumerate(group.edges.tolist()):
            rows.append(group.device.current(V[[s]], V[[d]], group.params[:, [e], None])[0])
    return np.array(rows)


def dense_incidence(layer, num_nodes):
    edges = np.concatenate([g.edges for g in layer.groups])
    A = np.zeros((len(edges), num_nodes + 1))
    for e, (s, d) in enumerate(edges.tolist()):
        A[e, d] += 1.0
        A[e, s] -= 1.0
    return A


def test_edge_currents_equal_per_edge_loop():
    net, V = mixed_net()
    asm = net.assemblies()[0]
    expected = loop_currents(net.layers[0], V)
    assert expected.shape == (440, 8)
    np.testing.assert_allclose(asm.edge_currents(V), expected, rtol=1e-13, atol=1e-15)
    current, _, _, _ = asm.linearise(V, params=False)
    np.testing.assert_allclose(current, expected, rtol=1e-13, atol=1e-15)


def test_rhs_equals_dense_kcl():
    net, V = mixed_net()
    asm = net.assemblies()[0]
    A = dense_incidence(net.layers[0], N_NODES)
    I = loop_currents(net.layers[0], V)
    expected = (A.T @ I)[1:] / net.capacitance[:, None]
    dv = asm.rhs(V)
    assert dv.shape == V.shape
    np.testing.assert_array_equal(dv[0], 0.0)
    np.testing.assert_allclose(dv[1:], expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    np.testing.assert_allclose(asm.node_currents(I)[1:], (A.T @ I)[1:], rtol=1e-12, atol=1e-12)


def test_rhs_with_several_chunks_matches_default(monkeypatch):
    net, V = mixed_net(seed=1)
    default_asm = net.assemblies()[0]
    assert len(default_asm.chunks(V.shape[1])) == 4          # one chunk per group
    reference = default_asm.rhs(V)
    reference_currents = default_asm.edge_currents(V)

    monkeypatch.setattr(assembly, "CHUNK_ELEMENTS", 1)       # chunks of 64 edges
    chunked_net, V2 = mixed_net(seed=1)
    asm = chunked_net.assemblies()[0]
    chunks = asm.chunks(V.shape[1])
    assert len(chunks) == 3 + 3 + 2 + 2
    np.testing.assert_array_equal(V2, V)
    np.testing.assert_allclose(asm.edge_currents(V), reference_currents, rtol=1e-14, atol=0)
    np.testing.assert_allclose(asm.rhs(V), reference, rtol=1e-12, atol=1e-13)

    A = dense_incidence(chunked_net.layers[0], N_NODES)
    expected = (A.T @ loop_currents(chunked_net.layers[0], V))[1:] / chunked_net.capacitance[:, None]
    np.testing.assert_allclose(asm.rhs(V)[1:], expected, rtol=1e-12, atol=1e-12)


def test_assembler_sees_in_place_parameter_updates():
    net, V = mixed_net(seed=2)
    asm = net.assemblies()[0]
    before = asm.rhs(V)
    net.layers[0].groups[1].params[2] += 0.5              # the softplus biases
    after = asm.rhs(V)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(asm.edge_currents(V), loop_currents(net.layers[0], V), rtol=1e-13)


def fd_jacobian(asm, V, h=1e-6):
    """Per-sample ∂(Aᵀ i)/∂v by central differences: (B, N, N)."""
    N, nb = asm.num_nodes, V.shape[1]
    J = np.empty((nb, N, N))
    for n in range(1, N + 1):
        up, down = V.copy(), V.copy()
        up[n] += h
        down[n] -= h
        diff = asm.node_currents(asm.edge_currents(up)) - asm.node_currents(asm.edge_currents(down))
        J[:, :, n - 1] = (diff[1:] / (2 * h)).T
    return J


def test_stamp_pattern_matches_finite_difference_jacobian():
    net, V = mixed_net(seed=3)
    asm = net.assemblies()[0]
    _, gs, gd, _ = asm.linearise(V, params=False)
    pattern = asm.pattern
    values = pattern.values(gs, gd)
    assert values.shape == (pattern.n_slots, V.shape[1])
    K = pattern.dense(values)
    assert K.shape == (V.shape[1], N_NODES, N_NODES)
    J = fd_jacobian(asm, V)
    np.testing.assert_allclose(K, J, rtol=1e-6, atol=1e-8 * np.abs(J).max())
    # every diagonal has a slot (so that C/h can be added)
    assert (pattern.rows[pattern.diagonal] == np.arange(N_NODES)).all()
    assert (pattern.cols[pattern.diagonal] == np.arange(N_NODES)).all()

    M = pattern.block_diagonal(values)
    assert M.shape == (V.shape[1] * N_NODES,) * 2
    np.testing.assert_array_equal(M.toarray(), scipy.linalg.block_diag(*K))


def test_stamp_pattern_sparse_net_and_ground_edges():
    # a chain 0→1→2→3 plus a parallel 1→2: K has a tridiagonal pattern
    layer = Layer([(0, 1), (1, 2), (1, 2), (2, 3)], Conductance(), params=[[1.0, 2.0, 3.0, 4.0]])
    net = KirchhoffNet(layer)
    V = net.initial_state(np.array([[0.1, 0.2, 0.3]]))
    asm = net.assemblies()[0]
    _, gs, gd, _ = asm.linearise(V, params=False)
    K = asm.pattern.dense(asm.pattern.values(gs, gd))[0]
    expected = np.array([[-1 - 5, 5, 0], [5, -5 - 4, 4], [0, 4, -4]], float)
    np.testing.assert_allclose(K, expected, rtol=1e-15)
    assert asm.pattern.n_slots == 7
    # block_diagonal caches its structure per batch size; a second call with new values works
    M1 = asm.pattern.block_diagonal(asm.pattern.values(gs, gd)).toarray()
    M2 = asm.pattern.block_diagonal(asm.pattern.values(2 * gs, 2 * gd)).toarray()
    np.testing.assert_allclose(M2, 2 * M1)
