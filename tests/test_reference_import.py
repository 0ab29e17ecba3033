"""Import of the reference implementation's checkpoints (kirchhoff_sim.reference).

Every checkpoint here is made by the test in the reference's layout — a results folder
with ``config.yaml`` and ``model.pth`` (``torch.save`` of a state dict
``circuit.layer_list.<k>.model.param``, float32 as the reference trains) — and the
imported net is checked against the reference's equations, written here from its
description (DESIGN.md §1 and the device table of kirchhoff_sim/reference.py): the edge
order of its generators, each device's current on the rows it reads, and the layer
field ``dV/dt`` computed the reference's way (a ground column, gather, scatter-add).
"""

from __future__ import annotations

import copy
import json
import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

import kirchhoff_sim as ks
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import MissingDependencyError, ModelFileError
from kirchhoff_sim.reference import import_reference, write_reference_model

TOL = 1e-12
RNG_SEED = 1234


# ----------------------------------------------------------- the reference, re-stated
def ref_fully_connect(num_node, include_gnd=True, repeat=(1, 1)):
    nodes = range(num_node) if include_gnd else range(1, num_node + 1)
    edges = []
    for i in nodes:
        for j in nodes:
            if i != j:
                edges += [(i, j)] * repeat[0] + [(j, i)] * repeat[1]
    return edges


def ref_simple_connect(num_node, include_gnd=True, repeat=(1, 1)):
    first = 0 if include_gnd else 1
    return [(i, i + 1) for i in range(first, first + num_node) for _ in range(repeat[0])]


def ref_mix_connect(num_channel, width, height, neighbor_size, fully_connect_node, repeat=(1, 0),
                    kernel_repeat=1, **_):
    """Pixel (c, r, q) of a (channels, width, height) image is node 1 + c·width·height +
    r·height + q; windows slide row-major; inside one, ordered pairs of its (c, dr, dq)
    entries; then pixel↔ground, then every projection node ↔ ground and pixels."""
    k = neighbor_size
    pixel = lambda c, r, q: 1 + c * width * height + r * height + q   # noqa: E731
    edges = []
    for r0 in range(width - k + 1):
        for q0 in range(height - k + 1):
            window = [pixel(c, r0 + dr, q0 + dq) for c in range(num_channel) for dr in range(k) for dq in range(k)]
            edges += [(a, b) for a in window for b in window if a != b for _ in range(kernel_repeat)]
    n = num_channel * width * height
    for node in range(1, n + 1):
        edges += [(node, 0)] * repeat[0] + [(0, node)] * repeat[1]
    for m in range(n + 1, n + 1 + fully_connect_node):
        for i in range(n + 1):
            edges += [(i, m)] * repeat[0] + [(m, i)] * repeat[1]
    return edges


REF_GENERATORS = {"_fully_connect": ref_fully_connect, "_mix_connect": ref_mix_connect,
                  "_simple_connect": ref_simple_connect}
ACT = {None: lambda z: z, "relu": F.relu, "leaky_relu": F.leaky_relu, "tanh": torch.tanh, "softplus": F.softplus}
STORED_ROWS = {"ShiftRelu1": 2, "ShiftLeakyRelu1": 2, "ShiftRelu2": 3, "ShiftLeakyRelu2": 3, "ShiftTanh1": 3,
               "ShiftTanh2": 3, "Conductance": 3}


def ref_rows(model: dict) -> int:
    if model["name"] == "Device":
        return 2 if model["args"]["negation"] else 3
    return STORED_ROWS[model["name"]]


def ref_current(model: dict, p, vs, vd):
    """The reference device's current src → dst on its *stored* rows ``p``."""
    name = model["name"]
    if name == "ShiftRelu1":
        return p[1] * F.relu(vs - vd - p[0])
    if name == "ShiftLeakyRelu1":
        return p[1] * F.leaky_relu(vs - vd - p[0])
    if name == "ShiftRelu2":
        return F.relu(p[0] * vs + p[1] * vd + p[2])
    if name == "ShiftLeakyRelu2":
        return F.leaky_relu(p[0] * vs + p[1] * vd + p[2])
    if name == "ShiftTanh1":
        return torch.tanh(p[1] * (vs - vd) + p[0])
    if name == "ShiftTanh2":
        return torch.tanh(p[0] * vs + p[1] * vd + p[2])
    if name == "Conductance":
        return p[0] * (vs - vd)
    act = ACT[model["args"]["activation"]]
    if model["args"]["negation"]:
        return act(p[1] * (vs - vd) + p[0])
    return act(p[0] * vs + p[1] * vd + p[2])


def ref_field(edges, model, p, v):
    """``dV/dt`` of one layer for node voltages ``v`` (B, N), the reference's way."""
    e = torch.as_tensor(np.asarray(edges), dtype=torch.int64)
    src, dst = e[:, 0], e[:, 1]
    aux = torch.cat([torch.zeros_like(v[:, :1]), v], dim=1)
    i = ref_current(model, p.to(torch.float64), aux[:, src], aux[:, dst])
    out = torch.zeros_like(aux)
    out.index_add_(1, dst, i)
    out.index_add_(1, src, -i)
    return out[:, 1:]


def ref_forward_rk4(layers, v, steps_per_unit=20):
    """Classic RK4 through the layers, ``[(edges, model, p, duration)]``."""
    for edges, model, p, duration in layers:
        n = max(1, int(np.ceil(duration * steps_per_unit - 1e-9)))
        h = duration / n
        f = lambda x: ref_field(edges, model, p, x)   # noqa: E731
        for _ in range(n):
            k1 = f(v)
            k2 = f(v + 0.5 * h * k1)
            k3 = f(v + 0.5 * h * k2)
            k4 = f(v + h * k3)
            v = v + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return v


# ----------------------------------------------------------- checkpoints in the reference's layout
MIX = {"name": "_mix_connect", "args": {"fully_connect_node": 3, "height": 4, "kernel_repeat": 1, "neighbor_size": 2,
                                        "num_channel": 1, "repeat": [1, 1], "width": 3}}
FULL = {"name": "_fully_connect", "args": {"num_node": 4, "repeat": [2, 1]}}


def classifier_config(**network):
    """A config as the reference's main_image_classify.py writes it (the mnist one, small)."""
    config = {
        "batch_size": 8,
        "network": {"adjoint": True, "encoder": None, "fill": "zeros", "initialization": "kaiming",
                    "model": {"args": {}, "name": "ShiftRelu1"}, "net_struct": [MIX, MIX],
                    "projector": "last2", "residual": None},
        "num_worker": 0,
        "simulation": {"first_step": "1e-2", "method": "dopri5", "min_step": "1e-5", "step_size": "1e-6",
                       "t_end": [0.0, 0.5, 1.25], "tol": "1e-3"},
        "test": {"metric": ["top1", "top5"]},
        "test_bench": "mnist",
        "train": {"lr": "5e-4", "num_epoch": 1, "save_epoch": 1, "scheduler": "none"},
    }
    config["network"].update(network)
    return _unshared(config)


def _unshared(config):
    """A copy with no part shared (layers listed twice are two dicts, and the YAML file
    holds no anchors)."""
    return json.loads(json.dumps(config))


def flow_config(bench="twomoon", model=None, struct=None, layers=2):
    """A config as the reference's main_gen.py / main_den.py write them (no projector)."""
    return _unshared({
        "batch_size": 8,
        "network": {"adjoint": True, "initialization": "kaiming",
                    "model": model or {"args": {}, "name": "ShiftTanh2"},
                    "net_struct": [struct or {"name": "_fully_connect", "args": {"num_node": 3, "repeat": [2, 2]}}]
                    * layers},
        "num_worker": 0,
        "simulation": {"first_step": "1e-3", "method": "dopri5", "min_step": "1e-6", "step_size": 1.0e-06,
                       "t_end": [0.2 * k for k in range(layers + 1)], "tol": "1e-4"},
        "test_bench": bench,
        "train": {"lr": 0.0001, "num_epoch": 1, "save_epoch": 1, "scheduler": "none"},
        "visualization": {"num_sample": 10},
    })


def ref_layer_edges(config):
    return [REF_GENERATORS[s["name"]](**s["args"]) for s in config["network"]["net_struct"]]


def random_state(config, seed=RNG_SEED, dtype=torch.float32):
    """A state dict for ``config`` with every stored row random (unread rows too, so that
    reading the wrong row shows)."""
    rng = np.random.default_rng(seed)
    rows = ref_rows(config["network"]["model"])
    return OrderedDict((f"circuit.layer_list.{k}.model.param",
                        torch.tensor(rng.normal(0.0, 0.7, (rows, len(edges))), dtype=dtype))
                       for k, edges in enumerate(ref_layer_edges(config)))


def write_folder(folder, config, state=None, raw_state=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if raw_state is not None:
        (folder / "model.pth").write_bytes(raw_state)
    else:
        torch.save(random_state(config) if state is None else state, folder / "model.pth")
    return folder


def check_fields(net, config, state, batch=5, seed=0):
    """Every layer's dV/dt of ``net`` equals the reference's on random voltages."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.5, (batch, net.num_nodes))
    model = config["network"]["model"]
    for k, edges in enumerate(ref_layer_edges(config)):
        ref = ref_field(edges, model, state[f"circuit.layer_list.{k}.model.param"], torch.tensor(x)).numpy()
        ours = net.assemblies()[k].rhs(np.vstack([np.zeros((1, batch)), x.T]))[1:].T
        np.testing.assert_allclose(ours, ref, rtol=TOL, atol=TOL * np.abs(ref).max())


# ----------------------------------------------------------- imports that work
def test_classifier_checkpoint_imports_with_its_readout_spans_and_forward_pass(tmp_path):
    config = classifier_config()
    state = random_state(config)
    net, meta = import_reference(write_folder(tmp_path / "mnist", config, state))
    n_pixels, n_nodes = 3 * 4, 3 * 4 + 3
    assert net.num_nodes == n_nodes and len(net.layers) == 2
    assert [l.duration for l in net.layers] == [0.5, 0.75]
    assert net.readout.tolist() == [n_nodes - 1, n_nodes] and net.input_nodes.tolist() == list(range(1, n_pixels + 1))
    for layer, edges in zip(net.layers, ref_layer_edges(config)):
        np.testing.assert_array_equal(layer.groups[0].edges, np.array(edges))
        assert isinstance(layer.groups[0].device, ks.ShiftedReLU)
    check_fields(net, config, state)

    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 1.0, (4, n_pixels))
    logits = net.forward(x, solver=ks.RK4(dt=0.05))
    v0 = torch.zeros(4, n_nodes, dtype=torch.float64)
    v0[:, :n_pixels] = torch.tensor(x)
    layers = [(e, config["network"]["model"], state[f"circuit.layer_list.{k}.model.param"], d)
              for k, (e, d) in enumerate(zip(ref_layer_edges(config), (0.5, 0.75)))]
    ref = ref_forward_rk4(layers, v0)[:, -2:].numpy()
    np.testing.assert_allclose(logits, ref, rtol=TOL, atol=TOL)

    assert meta["purpose"] == "classifier"
    assert meta["classifier"]["readout_nodes"] == [n_nodes - 1, n_nodes]
    assert meta["classifier"]["image_shape"] == [1, 3, 4]
    ref_meta = meta["reference"]
    assert ref_meta["time_spans"] == [0.5, 0.75] and ref_meta["t_end"] == [0.0, 0.5, 1.25]
    assert ref_meta["device"] == {"reference": "ShiftRelu1", "ours": {"family": "ShiftedReLU"}, "rows_stored": 2,
                                  "rows_used": [0, 1], "rows_ignored": []}
    assert ref_meta["solver"]["rtol"] == ref_meta["solver"]["atol"] == 1e-3   # '1e-3' is a string in YAML


DEVICE_MODELS = [{"name": name, "args": {}} for name in STORED_ROWS] + [
    {"name": "Device", "args": {"negation": negation, "activation": act}}
    for negation in (True, False) for act in (None, "relu", "leaky_relu", "tanh", "softplus")]


@pytest.mark.parametrize("model", DEVICE_MODELS, ids=lambda m: m["name"] + "".join(
    f"-{v}" for v in m["args"].values()))
@pytest.mark.parametrize("include_gnd", [True, False])
def test_every_reference_device_reads_the_rows_its_current_uses(tmp_path, model, include_gnd):
    struct = {"name": "_fully_connect", "args": {"num_node": 4, "include_gnd": include_gnd, "repeat": [2, 1]}}
    config = classifier_config(model=model, net_struct=[struct, struct], projector="none")
    config["test_bench"] = "housing"                          # a regressor: every node read out
    state = random_state(config, dtype=torch.float64)
    net, meta = import_reference(write_folder(tmp_path / "ck", config, state))
    assert net.num_nodes == (3 if include_gnd else 4) and net.input_nodes is None
    assert meta["purpose"] == "regressor" and net.readout.tolist() == list(range(1, net.num_nodes + 1))
    check_fields(net, config, state)
    rows = meta["reference"]["device"]
    assert rows["rows_stored"] == ref_rows(model)
    assert rows["rows_used"] + rows["rows_ignored"] == list(range(ref_rows(model)))


def test_unread_rows_are_not_imported(tmp_path):
    config = classifier_config(model={"name": "ShiftTanh1", "args": {}})
    state = random_state(config)
    net, meta = import_reference(write_folder(tmp_path / "ck", config, state))
    np.testing.assert_array_equal(net.layers[1].groups[0].params,
                                  state["circuit.layer_list.1.model.param"][:2].numpy().astype(np.float64))
    assert meta["reference"]["device"]["rows_ignored"] == [2]
    config = classifier_config(model={"name": "Conductance", "args": {}})
    net, meta = import_reference(write_folder(tmp_path / "g", config))
    assert net.layers[0].groups[0].params.shape[0] == 1 and meta["reference"]["device"]["rows_ignored"] == [1, 2]


def test_image_options_the_reference_has_are_built_in_its_order(tmp_path):
    """Two channels, kernel_repeat, repeat [1, 0] (the generator's default), a wide image."""
    mix = {"name": "_mix_connect", "args": {"fully_connect_node": 2, "height": 5, "kernel_repeat": 2,
                                            "neighbor_size": 2, "num_channel": 2, "width": 3, "sharing": True}}
    config = classifier_config(net_struct=[mix], projector=["last2", "first1"])
    config["simulation"]["t_end"] = [0.0, 1.0]
    state = random_state(config)
    net, meta = import_reference(write_folder(tmp_path / "ck", config, state))
    np.testing.assert_array_equal(net.layers[0].groups[0].edges, np.array(ref_mix_connect(**mix["args"])))
    assert net.readout.tolist() == [net.num_nodes - 1] and meta["classifier"]["image_shape"] == [2, 3, 5]
    check_fields(net, config, state)


def test_simple_connect_layers(tmp_path):
    for include in (True, False):
        chain = {"name": "_simple_connect", "args": {"num_node": 4, "include_gnd": include, "repeat": [3, 0]}}
        config = classifier_config(net_struct=[chain, chain], projector="last1",
                                   model={"name": "Conductance", "args": {}})
        state = random_state(config)
        net, _ = import_reference(write_folder(tmp_path / f"c{include}", config, state))
        np.testing.assert_array_equal(net.layers[0].groups[0].edges, np.array(ref_simple_connect(4, include, (3, 0))))
        check_fields(net, config, state)


@pytest.mark.parametrize("bench, direction", [("twomoon", "reverse"), ("potential1", "forward")])
def test_flow_checkpoints_say_what_they_are_and_ignore_what_the_flow_scripts_ignore(tmp_path, bench, direction):
    config = flow_config(bench, layers=3)
    config["network"].update({"projector": "last10", "fill": "zeros", "residual": None})   # as genmnist's
    state = random_state(config)
    net, meta = import_reference(write_folder(tmp_path / bench, config, state))
    assert net.num_nodes == 2 and net.readout.tolist() == [1, 2] and net.input_nodes.tolist() == [1, 2]
    np.testing.assert_allclose([l.duration for l in net.layers], [0.2, 0.2, 0.2], rtol=1e-15)
    check_fields(net, config, state)
    assert meta["purpose"] == "flow"
    assert meta["flow"]["dim"] == 2 and meta["flow"]["base"] == "standard normal"
    assert meta["flow"]["sample_direction"] == "forward" and meta["flow"]["density_direction"] == direction
    assert set(meta["reference"]["ignored"]) >= {"network.projector", "network.fill", "network.residual"}


def test_model_file_round_trip_keeps_the_net_and_its_metadata(tmp_path):
    config = flow_config("8gaussians")
    path, net, meta = write_reference_model(write_folder(tmp_path / "ck", config), tmp_path / "out")
    assert path.suffix == ".npz"
    loaded, user, _ = ks.modelfile.read_model_file(path)
    assert user == meta
    for a, b in zip(loaded.groups, net.groups):
        np.testing.assert_array_equal(a.params, b.params)
        np.testing.assert_array_equal(a.edges, b.edges)


# ----------------------------------------------------------- the command line
def test_cli_imports_and_writes_a_model(tmp_path, capsys):
    folder = write_folder(tmp_path / "mnist", classifier_config())
    assert main(["import-reference", str(folder), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "classifier" in out and str(tmp_path / "m.npz") in out
    assert ks.load_net(tmp_path / "m.npz").readout.tolist() == [14, 15]


def test_an_imported_model_exports_a_digit_of_a_data_file(tmp_path, capsys):
    """An imported model records no training data: export takes --data (its test split),
    and refuses --data with --input in one line."""
    folder = write_folder(tmp_path / "mnist", classifier_config())
    model = tmp_path / "m.npz"
    assert main(["import-reference", str(folder), "--out", str(model)]) == 0
    net = ks.load_net(model)
    rng = np.random.default_rng(3)
    data = tmp_path / "digits.npz"
    np.savez(data, X=rng.uniform(0, 1, (40, len(net.input_nodes))), y=np.repeat([0, 1], 20))
    capsys.readouterr()
    assert main(["export", str(model), "-o", str(tmp_path / "a.cir")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["export", str(model), "--data", str(data), "--sample", "2", "-o", str(tmp_path / "a.cir")]) == 0
    from kirchhoff_sim.training.datasets import load_file
    x = load_file(data).X_test[2]
    text = (tmp_path / "a.cir").read_text()
    first = next(line for line in text.splitlines() if line.startswith("C1 "))
    assert float(first.split("IC=")[1]) == pytest.approx(x[0] * 0.1)        # V0 = 0.1 V
    assert main(["export", str(model), "--data", str(data), "--input", "x.npy", "-o", str(tmp_path / "b.cir")]) == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.cir").exists()


@pytest.mark.parametrize("case", ["missing", "unknown-device", "encoder", "bad-out"])
def test_cli_refusals_are_one_line_with_exit_status_2(tmp_path, capsys, case):
    config = classifier_config()
    state = random_state(config)
    out = tmp_path / "m.npz"
    if case == "unknown-device":
        config["network"]["model"]["name"] = "ShiftSigmoid9"
    if case == "encoder":
        config["network"]["encoder"] = [784, 100]
    if case == "bad-out":
        out = tmp_path / "no-such-folder" / "m.npz"
    folder = tmp_path / "nothing-here" if case == "missing" else write_folder(tmp_path / "ck", config, state)
    assert main(["import-reference", str(folder), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kirchhoff-sim import-reference: error: ")
    assert not out.exists()


# ----------------------------------------------------------- refusals: files
def test_missing_folder_and_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        import_reference(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelFileError, match="not a folder"):
        import_reference(tmp_path / "file")
    folder = write_folder(tmp_path / "ck", classifier_config())
    (folder / "model.pth").unlink()
    with pytest.raises(ModelFileError, match=r"model\.pth.*does not exist"):
        import_reference(folder)
    (folder / "config.yaml").unlink()
    with pytest.raises(ModelFileError, match=r"config\.yaml.*does not exist"):
        import_reference(folder)


@pytest.mark.parametrize("text, match", [("network: [unclosed", "not readable YAML"),
                                         ("- just\n- a list\n", "not the reference's configuration"),
                                         ("", "nothing")])
def test_config_that_is_not_a_reference_config(tmp_path, text, match):
    folder = write_folder(tmp_path / "ck", classifier_config())
    (folder / "config.yaml").write_text(text)
    with pytest.raises(ModelFileError, match=match) as info:
        import_reference(folder)
    assert "config.yaml" in str(info.value)


class _RunsCodeWhenUnpickled:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _RunsCodeWhenUnpickled.ran = True
    return "ran"


def _saved(obj) -> bytes:
    import io
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


KEY0 = "circuit.layer_list.0.model.param"
KEY1 = "circuit.layer_list.1.model.param"


def _state_cases():
    config = classifier_config()
    good = random_state(config)
    E = good[KEY0].shape[1]
    with_extra = lambda key, value: OrderedDict([*good.items(), (key, value)])   # noqa: E731
    return [
        ("epoch-int", _saved(with_extra("epoch", 3)), "'epoch' holds a int, not a tensor"),
        ("nested-dict", _saved({"model": good}), "'model' holds a OrderedDict, not a tensor"),
        ("list", _saved(list(good.values())), "holds a list, not a state dict"),
        ("plain-tensor", _saved(good[KEY0]), "holds a Tensor, not a state dict"),
        ("int-tensor", _saved(OrderedDict([(KEY0, good[KEY0].to(torch.int64)), (KEY1, good[KEY1])])),
         f"'{KEY0}' has dtype torch.int64"),
        ("nan", _saved(OrderedDict([(KEY0, good[KEY0]), (KEY1, good[KEY1].clone().fill_(float("nan")))])),
         f"'{KEY1}' has {2 * E} non-finite"),
        ("wrong-rows", _saved(OrderedDict([(KEY0, torch.zeros(3, E)), (KEY1, good[KEY1])])),
         rf"'{KEY0}' has shape \(3, {E}\); ShiftRelu1 stores \(2, E\)"),
        ("wrong-edges", _saved(OrderedDict([(KEY0, good[KEY0]), (KEY1, torch.zeros(2, E - 1))])),
         rf"'{KEY1}' has shape \(2, {E - 1}\)"),
        ("missing-layer", _saved(OrderedDict([(KEY0, good[KEY0])])), f"no entry '{KEY1}'"),
        ("extra-layer", _saved(with_extra("circuit.layer_list.2.model.param", good[KEY0])),
         "parameters of layer 2, but the config has only 2 layers"),
        ("encoder-weights", _saved(with_extra("encoder.net.0.weight", torch.zeros(3, 3))), "part of an encoder"),
        ("mlp-projector", _saved(with_extra("projector.net.0.weight", torch.zeros(3, 3))), "MLP projector"),
        ("unknown-key", _saved(with_extra("circuit.layer_list.0.model.extra", torch.zeros(3))),
         "not an entry of the reference's CircuitNet"),
        ("garbage", b"\x00\x01not a torch file", "not a PyTorch state dict"),
        ("empty", b"", "not a PyTorch state dict"),
        ("code", _saved(OrderedDict([(KEY0, good[KEY0]), ("x", _RunsCodeWhenUnpickled())])),
         "weights_only=True"),
    ]


@pytest.mark.parametrize("name, raw, match", _state_cases(), ids=[c[0] for c in _state_cases()])
def test_state_dicts_that_are_refused_name_the_file_and_key(tmp_path, name, raw, match):
    folder = write_folder(tmp_path / "ck", classifier_config(), raw_state=raw)
    with pytest.raises(ModelFileError, match=match) as info:
        import_reference(folder)
    assert "model.pth" in str(info.value)
    assert not _RunsCodeWhenUnpickled.ran


# ----------------------------------------------------------- refusals: config
def _edit(config, path, value):
    *head, last = path
    target = config
    for key in head:
        target = target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return config


_DELETE = object()
CONFIG_CASES = [
    ("unknown-device", ("network", "model", "name"), "ShiftSigmoid9", "network.model.name.*ShiftSigmoid9"),
    ("device-arg", ("network", "model", "args"), {"slope": 2}, r"network.model.args.slope"),
    ("generic-device-activation", ("network", "model"), {"name": "Device", "args": {"negation": True,
                                                                                    "activation": "sigmoid"}},
     "network.model.args.activation.*sigmoid"),
    ("generic-device-negation", ("network", "model"), {"name": "Device", "args": {"negation": 1,
                                                                                  "activation": None}},
     "network.model.args.negation must be true or false"),
    ("encoder", ("network", "encoder"), [15, 15], "network.encoder.*encoder"),
    ("mlp-projector", ("network", "projector"), "mlp_15_10", r"network.projector is 'mlp_15_10': an MLP"),
    ("reshape-projector", ("network", "projector"), "reshape3", "network.projector is 'reshape3'"),
    ("listed-mlp", ("network", "projector"), ["last4", "mlp_4_2"], r"network.projector\[1\]"),
    ("projector-too-wide", ("network", "projector"), "last99", "needs 1..15 nodes"),
    ("unknown-projector", ("network", "projector"), "middle3", "not a projector"),
    ("residual", ("network", "residual"), [0, 1], "network.residual.*residual connections"),
    ("fill-repeat", ("network", "fill"), "repeat", "network.fill is 'repeat'"),
    ("fill-unknown", ("network", "fill"), "mirror", "network.fill"),
    ("unknown-network-option", ("network", "use_dropout"), True, "network.use_dropout is not a reference option"),
    ("padding", ("network", "net_struct", 0, "args", "padding"), True, r"net_struct\[0\].args.padding"),
    ("parallel", ("network", "net_struct", 1, "args", "parallel"), 2, r"net_struct\[1\].args.parallel"),
    ("pregiven", ("network", "net_struct", 0, "name"), "_pregiven", "_pregiven"),
    ("unknown-generator", ("network", "net_struct", 0, "name"), "_ring_connect", r"net_struct\[0\].name"),
    ("unknown-generator-arg", ("network", "net_struct", 0, "args", "dilation"), 2,
     r"net_struct\[0\].args.dilation is not an argument"),
    ("missing-generator-arg", ("network", "net_struct", 0, "args", "width"), _DELETE, "lacks the argument 'width'"),
    ("window-too-large", ("network", "net_struct", 0, "args", "neighbor_size"), 9, r"net_struct\[0\].args cannot be"),
    ("fractional-width", ("network", "net_struct", 0, "args", "width"), 2.5, r"args.width must be an integer"),
    ("no-layers", ("network", "net_struct"), [], "network.net_struct must be a non-empty list"),
    ("t_end-count", ("simulation", "t_end"), [0.0, 1.0], "has 2 anchors .1 time spans. but network.net_struct has 2"),
    ("t_end-order", ("simulation", "t_end"), [0.0, 1.0, 1.0], "layer 1 needs a positive span"),
    ("t_end-text", ("simulation", "t_end"), [0.0, "soon", 2.0], r"simulation.t_end\[1\] must be a number"),
    ("unknown-bench", ("test_bench",), "imagenet", "test_bench is .*imagenet"),
    ("no-bench", ("test_bench",), _DELETE, "test_bench"),
]


@pytest.mark.parametrize("name, path, value, match", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_configs_that_are_refused_name_the_file_and_field(tmp_path, name, path, value, match):
    config = classifier_config()
    good_state = random_state(config)
    folder = write_folder(tmp_path / "ck", _edit(config, path, value), good_state)
    with pytest.raises(ModelFileError, match=match) as info:
        import_reference(folder)
    assert "config.yaml" in str(info.value)


def test_layers_of_different_node_counts_are_refused(tmp_path):
    small = copy.deepcopy(MIX)
    small["args"]["fully_connect_node"] = 1
    config = classifier_config(net_struct=[MIX, small])
    with pytest.raises(ModelFileError, match=r"different node counts \[15, 13\]"):
        import_reference(write_folder(tmp_path / "ck", config, OrderedDict()))


def test_without_torch_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "ck", classifier_config())
    monkeypatch.setitem(sys.modules, "torch", None)       # import torch now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install kirchhoff_sim\[reference\]"):
        import_reference(folder)
