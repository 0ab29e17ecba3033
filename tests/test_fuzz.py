"""Property-based fuzzing (Hypothesis) of the public API, the model-file reader and the CLI.

The property (issue #13): whatever a caller hands in — random small nets with random
devices, parameters, inputs and solver options, or malformed inputs and model files —
either the call succeeds with finite results or it raises an error from
:mod:`kirchhoff_sim.errors`; nothing else escapes, and the CLI answers 0 or 2 with at most
one line on stderr. Work is bounded by the nets' size (≤ 5 nodes, ≤ 8 edges) and the
solvers' own step limits, not by a wall-clock deadline.
"""

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kirchhoff_sim as ks
from kirchhoff_sim import devices, modelfile
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import KirchhoffError
from kirchhoff_sim.solvers import make_solver

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

finite = st.floats(min_value=-4.0, max_value=4.0, allow_nan=False, allow_infinity=False)
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=True, allow_infinity=True),
    st.complex_numbers(), st.text(max_size=8), st.binary(max_size=8),
    st.lists(st.integers(-3, 3), max_size=4), st.lists(st.lists(finite, max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)


def _device(draw):
    family = draw(st.sampled_from(devices.FAMILIES))
    spec = {"family": family}
    if family in ("AffineActivation", "DifferenceActivation"):
        spec["activation"] = draw(st.sampled_from(devices.ACTIVATIONS))
    return devices.from_spec(spec)


@st.composite
def small_nets(draw):
    n = draw(st.integers(1, 5))
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        groups = []
        for _ in range(draw(st.integers(1, 2))):
            device = _device(draw)
            pairs = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)).filter(lambda p: p[0] != p[1]),
                                  min_size=1, max_size=4))
            params = np.array(draw(st.lists(st.lists(finite, min_size=len(pairs), max_size=len(pairs)),
                                            min_size=device.n_params, max_size=device.n_params)))
            if isinstance(device, devices.Diode):     # i_s > 0, r_s >= 0 by definition
                params = np.abs(params) + np.array([[1e-9], [0.0]])
            groups.append(ks.EdgeGroup(pairs, device, params.reshape(device.n_params, len(pairs))))
        layers.append(ks.Layer.from_groups(groups, duration=draw(st.floats(0.05, 1.0))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # untouched nodes: expected here
        return ks.KirchhoffNet(layers, num_nodes=n)


solver_specs = st.one_of(
    st.builds(dict, method=st.sampled_from(["dopri5", "be", "trap", "bdf2"]),
              rtol=st.floats(1e-6, 1e-2), atol=st.floats(1e-8, 1e-3)),
    st.builds(dict, method=st.sampled_from(["rk4", "heun", "euler", "be", "trap", "bdf2"]),
              dt=st.floats(0.01, 0.2)),
)


def _only_typed_errors(call):
    """Run ``call``; a KirchhoffError is an accepted outcome, anything else fails."""
    try:
        return call()
    except KirchhoffError:
        return None


@FUZZ
@given(net=small_nets(), spec=solver_specs, data=st.data())
def test_random_small_nets_simulate_or_raise_typed_errors(net, spec, data):
    x = np.array(data.draw(st.lists(finite, min_size=net.num_nodes, max_size=net.num_nodes)))
    batch = np.stack([x, -x])
    with np.errstate(all="ignore"):        # overflow inside a blow-up must surface as a typed error
        solution = _only_typed_errors(lambda: ks.simulate(net, batch, solver=make_solver(**spec)))
    if solution is not None:
        assert np.isfinite(solution.final_state).all()


@FUZZ
@given(x=anything)
def test_malformed_inputs_raise_typed_errors(x):
    net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0)], device=ks.Conductance())], seed=0)
    result = _only_typed_errors(lambda: net.forward(x))
    if result is not None:
        assert np.isfinite(result).all()


@FUZZ
@given(params=anything, edges=anything)
def test_malformed_layers_raise_typed_errors(params, edges):
    _only_typed_errors(lambda: ks.Layer(edges, device=ks.Conductance(), params=params))
    _only_typed_errors(lambda: ks.Layer([(1, 2), (2, 0)], device=ks.ShiftedReLU(), params=params))


@FUZZ
@given(method=anything, dt=anything, rtol=anything, atol=anything)
def test_malformed_solver_options_raise_typed_errors(method, dt, rtol, atol):
    _only_typed_errors(lambda: make_solver(method if isinstance(method, str) else "dopri5", dt, rtol, atol))
    _only_typed_errors(lambda: ks.Dopri5(rtol=rtol, atol=atol))
    _only_typed_errors(lambda: ks.RK4(dt))


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0), (1, 0)], device=ks.ShiftedReLU())], seed=0)
    path = ks.save_net(net, tmp_path_factory.mktemp("fuzz") / "model.npz")
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_byte_flipped_model_files_raise_model_file_errors(model_bytes, data, tmp_path):
    corrupt = bytearray(model_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        corrupt[data.draw(st.integers(0, len(corrupt) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path / "corrupt.npz"
    path.write_bytes(bytes(corrupt))
    _only_typed_errors(lambda: modelfile.read_model_file(path))


@FUZZ
@given(key=st.sampled_from(["num_nodes", "readout", "input_nodes", "layers", "seed", "init", "version",
                            "user", "format"]),
       value=st.recursive(anything, lambda inner: st.lists(inner, max_size=3), max_leaves=6))
def test_model_files_with_random_metadata_fields_raise_model_file_errors(model_bytes, key, value, tmp_path):
    source = tmp_path / "source.npz"
    source.write_bytes(model_bytes)
    with np.load(source, allow_pickle=False) as archive:
        contents = {k: archive[k] for k in archive.files}
    meta = json.loads(contents["__metadata__"].tobytes())
    try:
        meta[key] = value
        text = json.dumps(meta)
    except (TypeError, ValueError):
        return                              # not JSON: no file could hold it
    contents["__metadata__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    path = tmp_path / "fuzzed.npz"
    np.savez(path, **contents)
    _only_typed_errors(lambda: modelfile.read_model_file(path))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cli_on_corrupt_files_answers_in_one_line(model_bytes, data, tmp_path, capsys):
    corrupt = bytearray(model_bytes)
    cut = data.draw(st.integers(0, len(corrupt)))
    path = tmp_path / "m.npz"
    path.write_bytes(bytes(corrupt[:cut]) if data.draw(st.booleans()) else bytes(corrupt))
    x = tmp_path / "x.npy"
    np.save(x, np.array(data.draw(st.lists(finite, min_size=0, max_size=4))))
    for argv in (["info", str(path)], ["simulate", str(path), "--input", str(x), "--out", str(tmp_path / "y.npy")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2)
        assert len(err.strip().splitlines()) <= 1 and "Traceback" not in err


def test_a_truncated_zip_is_not_readable_as_a_model(model_bytes, tmp_path):
    # the fuzzers above rely on this being an error, not an empty model: check it once directly
    path = tmp_path / "cut.npz"
    path.write_bytes(model_bytes[: len(model_bytes) // 2])
    with pytest.raises(KirchhoffError):
        modelfile.read_model_file(path)


@pytest.mark.parametrize("flag, what", [(0x01, "encrypted"), (0x20, "patched")])
def test_a_flipped_zip_flag_bit_is_a_model_file_error(model_bytes, tmp_path, flag, what):
    # Hypothesis found these: bit 0 of a member's general-purpose flags makes zipfile ask
    # for a password (RuntimeError), bit 5 refuse "compressed patched data"
    # (NotImplementedError); both must be a ModelFileError like any other corruption
    data = bytearray(model_bytes)
    central = data.find(b"PK\x01\x02")            # the first central-directory entry
    data[central + 8] |= flag                       # its flags: offset 8 in the entry
    data[6] |= flag                                 # and the local header's (offset 6)
    path = tmp_path / "flagged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(ks.errors.ModelFileError, match="not a readable"):
        modelfile.read_model_file(path)
