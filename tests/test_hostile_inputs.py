"""Bad input of every kind issue #13 found (parts D and E): each gets a typed error from
:mod:`kirchhoff_sim.errors` before any allocation or long run, or the right value; the
command line prints one line and exits 2; no file is left half-written or orphaned.
"""

import io
import json
import os
import zipfile

import networkx as nx
import numpy as np
import pytest

import kirchhoff_sim as ks
from kirchhoff_sim import fileio, modelfile
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import GraphError, InputError, KirchhoffError, ModelFileError, ParameterError
from kirchhoff_sim.training.datasets import Dataset
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, train


def small_net(**kw):
    return ks.KirchhoffNet([ks.Layer([(1, 2), (2, 3), (3, 0)], device=ks.Conductance(), duration=0.5)],
                           seed=0, **kw)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]


@pytest.fixture
def model_file(tmp_path):
    net = build_net(2, 2, hidden=2, layers=1, device="ShiftedReLU", seed=0)
    return ks.save_net(net, tmp_path / "model.npz")


@pytest.fixture
def inputs(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.full((3, 2), 0.5))
    return path


# ---------------------------------------------------------------- E: inputs to the API
@pytest.mark.parametrize("x", [np.ones((2, 3)) * 1j, np.array([[1 + 0j, 2]])], ids=["complex", "complex-real-part"])
def test_complex_inputs_are_refused(x):
    with pytest.raises(InputError, match="complex"):
        small_net().forward(x)


def test_empty_sample_and_empty_batch_are_refused():
    net = small_net()
    for x in (np.array([]), np.zeros((0, 3)), np.zeros((2, 0))):
        with pytest.raises(InputError, match="batch >= 1 and features >= 1"):
            net.forward(x)


def test_compiling_an_empty_sample_or_batch_is_refused():
    from kirchhoff_sim.spice import to_netlist, to_netlists

    net = small_net()
    with pytest.raises(InputError, match="features >= 1"):
        to_netlist(net, np.array([]))
    for X in (np.zeros((0, 3)), np.zeros((0, 0))):
        with pytest.raises(InputError, match="non-empty batch"):
            to_netlists(net, X)


@pytest.mark.parametrize("params", ["0.5", {"g": 1}, [[1.0, 2.0], [3.0]], np.array([[1j, 1, 1]]),
                                    np.array([["a", "b", "c"]])],
                         ids=["string", "dict", "ragged", "complex", "string-array"])
def test_malformed_parameters_are_refused(params):
    with pytest.raises(ParameterError):
        ks.Layer([(1, 2), (2, 3), (3, 0)], device=ks.Conductance(), params=params)


@pytest.mark.parametrize("attribute", ["fast", {"g": 2}, [1.0, "x"], (1j,)])
def test_malformed_networkx_parameters_name_the_edge(attribute):
    graph = nx.MultiDiGraph()
    graph.add_edge(1, 2, params=attribute)
    graph.add_edge(2, 0, params=(1.0,))
    with pytest.raises(ParameterError, match="edge 1→2"):
        ks.Layer.from_networkx(graph, device=ks.Conductance())


@pytest.mark.parametrize("edges", [[(1, 2 ** 40)], [(1, 2j)], [(True, False)]], ids=["huge", "complex", "bool"])
def test_bad_node_indices_are_refused_before_allocating(edges):
    with pytest.raises(GraphError):
        ks.Layer(edges, device=ks.Conductance())


@pytest.mark.parametrize("num_nodes", [1e12, 2 ** 40, 1.5, "3"])
def test_bad_node_counts_are_refused_before_allocating(num_nodes):
    with pytest.raises(GraphError, match="num_nodes"):
        ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0)], device=ks.Conductance())], num_nodes=num_nodes)


@pytest.mark.parametrize("field, value", [("epochs", 1.5), ("lr", float("nan")), ("lr", -1.0),
                                          ("batch_size", "64"), ("epochs", True), ("lr", 1j),
                                          ("seed", -1), ("validation_fraction", 1.0)])
def test_train_config_refuses_bad_fields(field, value):
    with pytest.raises(InputError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_train_config_refuses_a_solver_spec_with_unknown_keys():
    with pytest.raises(InputError, match="not a solver spec"):
        TrainConfig(solver={"method": "dopri5", "tolerance": 1e-3})


def _dataset(X, y):
    return Dataset("points", X, y, X[:4], y[:4], n_classes=2)


def test_empty_training_set_is_a_typed_error():
    X, y = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    data = Dataset("empty", X, y, np.zeros((2, 2)), np.array([0, 1]), n_classes=2)
    with pytest.raises(InputError, match="no training samples"):
        train(build_net(2, 2, hidden=1, layers=1), data, TrainConfig(epochs=1, validation_fraction=0.0),
              progress=False, log=None)


def test_float32_training_data_trains_like_float64():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    config = TrainConfig(epochs=1, batch_size=8, validation_fraction=0.0)
    nets = []
    for dtype in (np.float64, np.float32):
        net = build_net(2, 2, hidden=1, layers=1)
        data = _dataset(X.astype(dtype).astype(np.float64) if dtype is np.float64 else X.astype(dtype), y)
        assert data.X_train.dtype == np.float64
        train(net, data, config, progress=False, log=None)
        nets.append(net.get_flat_params())
    # float32 inputs are rounded once, then everything is float64: close, not identical
    np.testing.assert_allclose(nets[0], nets[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("width", [1, 3])
def test_a_model_refuses_inputs_of_another_width(width, tmp_path):
    net = build_net(2, 2, hidden=2, layers=1)
    assert net.input_width == 2
    with pytest.raises(InputError, match="2 input nodes"):
        net.forward(np.ones((4, width)))
    X = np.ones((8, width))
    data = _dataset(X, np.array([0, 1] * 4))
    with pytest.raises(InputError, match=f"{width} features but the net takes 2 inputs"):
        train(net, data, TrainConfig(epochs=1, validation_fraction=0.0), progress=False, log=None)
    # and the width survives a model file
    loaded = ks.load_net(ks.save_net(net, tmp_path / "m.npz"))
    assert loaded.input_width == 2


def test_cli_simulate_refuses_inputs_of_another_width(model_file, tmp_path, capsys):
    path = tmp_path / "x3.npy"
    np.save(path, np.ones((2, 3)))
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", path, "--out", tmp_path / "y.npy")
    assert_one_line_error(code, err, "3 features but the net takes 2 input nodes")


# ---------------------------------------------------------------- D: model files
def _rewrite(path, *, meta_change=None, arrays=None, drop=(), compressed=False):
    """Rewrite a model file with changed metadata or arrays (keeps everything else)."""
    with np.load(path, allow_pickle=False) as data:
        contents = {k: data[k] for k in data.files}
    meta = json.loads(contents["__metadata__"].tobytes().decode())
    if meta_change:
        meta_change(meta)
    contents["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    contents.update(arrays or {})
    for name in drop:
        contents.pop(name)
    (np.savez_compressed if compressed else np.savez)(path, **contents)
    return path


@pytest.mark.parametrize("change, match", [
    (lambda m: m["layers"][0].__setitem__("duration", "0.5"), "duration"),
    (lambda m: m.__setitem__("init", "bogus"), "init"),
    (lambda m: m.__setitem__("init", {"scheme": 1}), "init"),
    (lambda m: m.__setitem__("version", -1), "format version -1"),
    (lambda m: m.__setitem__("version", "1"), "format version '1'"),
    (lambda m: m.__setitem__("readout", "3,4"), "readout"),
    (lambda m: m.__setitem__("readout", [3.5]), "readout"),
    (lambda m: m.__setitem__("input_nodes", "1..2"), "input_nodes"),
    (lambda m: m.__setitem__("num_nodes", "5"), "num_nodes"),
    (lambda m: m.__setitem__("layers", {"0": 1}), "layers"),
    (lambda m: m["layers"][0]["groups"][0].__setitem__("device", "ShiftedReLU"), "device"),
    (lambda m: m.__setitem__("user", [1, 2]), "user"),
    (lambda m: m.__setitem__("seed", "0"), "seed"),
], ids=["duration-string", "init-bogus", "init-dict", "version-negative", "version-string",
        "readout-string", "readout-float", "input-nodes-string", "num-nodes-string",
        "layers-dict", "device-string", "user-list", "seed-string"])
def test_malformed_metadata_fields_are_refused_on_load(model_file, change, match):
    _rewrite(model_file, meta_change=change)
    with pytest.raises(ModelFileError, match=match):
        modelfile.read_model_file(model_file)


@pytest.mark.parametrize("name, value, match", [
    ("L0G0_params", np.array([["0.5"] * 12] * 2), "dtype <U3"),
    ("L0G0_params", np.ones((2, 12)) * (1 + 1j), "complex"),
    ("L0G0_edges", np.ones((12, 2)), "expected integers"),
    ("capacitance", np.array(["1"] * 4), "dtype"),
], ids=["params-strings", "params-complex", "edges-floats", "capacitance-strings"])
def test_malformed_arrays_are_refused_on_load(model_file, name, value, match):
    _rewrite(model_file, arrays={name: value})
    with pytest.raises(ModelFileError, match=match):
        modelfile.read_model_file(model_file)


def test_a_member_that_inflates_beyond_the_limit_is_refused(model_file, monkeypatch):
    # 64 MiB of zeros compress to ~64 KiB; with the limit lowered to 16 MiB the reader must
    # refuse it from the zip directory alone, before inflating anything
    big = np.zeros(8 << 20)
    _rewrite(model_file, arrays={"extra/bomb": big}, compressed=True)
    assert model_file.stat().st_size < 1 << 20
    monkeypatch.setattr(modelfile, "MAX_MODEL_BYTES", 16 << 20)
    with pytest.raises(ModelFileError, match="inflate to more than"):
        modelfile.read_model_file(model_file)


def test_a_header_claiming_terabytes_is_refused_without_allocating(model_file):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10 ** 12,)})
    with zipfile.ZipFile(model_file, "a") as archive:
        archive.writestr("extra/forged.npy", header.getvalue() + b"\0" * 16)
    with pytest.raises(ModelFileError, match=r"claims shape \(1000000000000,\)"):
        modelfile.read_model_file(model_file)


def test_model_bytes_round_trip_in_memory():
    net = small_net()
    data = modelfile.net_to_bytes(net)
    copy = modelfile.net_from_bytes(data)
    np.testing.assert_array_equal(copy.get_flat_params(), net.get_flat_params())
    with pytest.raises(ModelFileError):
        modelfile.net_from_bytes(b"not a zip")
    with pytest.raises(ModelFileError):
        modelfile.net_from_bytes("a string")


@pytest.mark.parametrize("training", [
    "fast", {"config": "fast"}, {"config": {"loss": 3}}, {"config": {"loss": "hinge"}},
    {"config": {"solver": "dopri5"}}, {"config": {"solver": {"method": "magic"}}},
    {"config": {"solver": {"method": "dopri5", "speed": 2}}},
], ids=["string", "config-string", "loss-int", "loss-unknown", "solver-string", "solver-unknown",
        "solver-bad-key"])
def test_evaluate_refuses_malformed_training_metadata(model_file, training, capsys):
    _rewrite(model_file, meta_change=lambda m: m["user"].update(
        {"training": training, "source": {"task": "moons", "seed": 0, "dataset_options": {"n_samples": 40}}}))
    code, _, err = run_cli(capsys, "evaluate", model_file)
    assert_one_line_error(code, err, "training")


@pytest.mark.parametrize("source, match", [
    ({"task": 3}, "task"), ({"task": "moons", "dataset_options": "big"}, "dataset_options"),
    ({"task": "moons", "dataset_options": {"size": 3}}, "unknown options"), ({"seed": "zero"}, "seed"),
    ("moons", "malformed"),
])
def test_export_refuses_malformed_data_source_metadata(model_file, tmp_path, source, match, capsys):
    _rewrite(model_file, meta_change=lambda m: m["user"].update({"source": source}))
    code, _, err = run_cli(capsys, "export", model_file, "-o", tmp_path / "net.cir")
    assert_one_line_error(code, err, match)


# ---------------------------------------------------------------- D: files the package writes
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "y.npy"
    fileio.atomic_save_npy(target, np.arange(3.0))
    before = target.read_bytes()

    def full_disk(handle):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        fileio.atomic_write(target, full_disk)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.npy"]


def test_cli_simulate_on_a_full_disk_keeps_the_old_output(model_file, inputs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "y.npy"
    assert run_cli(capsys, "simulate", model_file, "--input", inputs, "--out", out)[0] == 0
    before = out.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", no_space)
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", inputs, "--out", out)
    assert_one_line_error(code, err, "No space left on device")
    assert out.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_stale_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "model.npz"
    dead_pid = _a_dead_pid()
    stale = tmp_path / f".model.npz.{dead_pid}.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".model.npz.{os.getppid()}.def456.tmp"     # a live writer's: kept
    live.write_bytes(b"y")
    other = tmp_path / f".other.npz.{dead_pid}.ghi789.tmp"        # another target's: kept
    other.write_bytes(b"z")
    ks.save_net(small_net(), target)
    assert not stale.exists()
    assert live.exists() and other.exists()


def _a_dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid += 1


# ---------------------------------------------------------------- D: the command line
def test_cli_bad_inputs_each_print_one_line(model_file, inputs, tmp_path, capsys):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    (tmp_path / "afile").write_text("x")
    complex_input = tmp_path / "c.npy"
    np.save(complex_input, np.ones((2, 2)) * 1j)
    cases = [
        (["simulate", model_file, "--input", empty, "--out", tmp_path / "y.npy"], "is empty"),
        (["simulate", model_file, "--input", complex_input, "--out", tmp_path / "y.npy"], "complex"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path], "is a folder"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "no" / "y.npy"], "does not exist"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "afile" / "y.npy"], "not a folder"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy", "--trajectory",
          tmp_path / "t.npz", "--points", "-5"], "--points: must be an integer >= 2"),
        (["montecarlo", model_file, "--workers", "0"], "--workers: must be an integer >= 1"),
        (["build", "--out", tmp_path / "no" / "net.npz"], "does not exist"),
        (["build", "--nodes", "2.5", "--out", tmp_path / "net.npz"], "--nodes: must be an integer"),
        (["export", model_file, "-o", tmp_path], "is a folder"),
        (["report", model_file, "--plots", tmp_path / "afile"], "is a file"),
        (["train", "--task", "moons", "--epochs", "0", "--out", tmp_path / "m.npz"], "--epochs"),
        (["train", "--task", "moons", "--lr", "nan", "--out", tmp_path / "m.npz"], "--lr"),
        (["info", tmp_path / "missing.npz"], "does not exist"),
    ]
    for argv, match in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, match)


def test_train_checks_its_output_before_any_epoch(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--task", "moons", "--out", tmp_path / "missing" / "m.npz",
                             "--no-progress")
    assert_one_line_error(code, err, "does not exist")
    assert "training" not in out            # it stopped before building the net or training


def test_resume_of_a_finished_run_reports_it_and_changes_nothing(tmp_path, capsys):
    points = tmp_path / "points.npz"
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 2))
    np.savez(points, X=X, y=(X[:, 0] > 0).astype(int))
    out = tmp_path / "m.npz"
    args = ["train", "--data", points, "--epochs", "1", "--hidden", "1", "--batch-size", "16",
            "--no-progress", "--out", out]
    assert run_cli(capsys, *args)[0] == 0
    before = out.read_bytes()
    code, stdout, err = run_cli(capsys, *args, "--resume")
    assert code == 0 and err == ""
    assert "is complete (1 epochs); nothing to do" in stdout
    assert out.read_bytes() == before


def test_every_failure_of_the_cli_is_a_kirchhoff_error_or_one_line(model_file, tmp_path, capsys):
    # a model file whose data source cannot be found: a typed error, not a FileNotFoundError
    _rewrite(model_file, meta_change=lambda m: m["user"].update({"source": {"data": str(tmp_path / "gone.csv")}}))
    code, _, err = run_cli(capsys, "evaluate", model_file)
    assert_one_line_error(code, err, "gone.csv")
    assert issubclass(ModelFileError, KirchhoffError)


# ---------------------------------------------------------------- the fresh-user trial (issue: robustness)
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.npy"
    os.mkfifo(path)
    return path


def test_an_output_that_is_not_a_regular_file_is_refused(model_file, inputs, fifo, tmp_path, capsys):
    # an atomic rename over a FIFO (or a device such as /dev/null) would replace it
    for argv in (["simulate", model_file, "--input", inputs, "--out", fifo],
                 ["simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy", "--trajectory", fifo],
                 ["export", model_file, "-o", fifo]):
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, "is a FIFO (named pipe), not a regular file")
    assert fifo.exists() and not fifo.is_file()
    assert not (tmp_path / "y.npy").exists()


def test_the_atomic_writer_refuses_to_rename_over_a_non_regular_file(fifo, tmp_path):
    with pytest.raises(InputError, match="FIFO"):
        fileio.atomic_save_npy(fifo, np.arange(3.0))
    assert fifo.exists() and not fifo.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [fifo.name]      # no temporary left


def test_an_output_that_is_one_of_the_inputs_is_refused_naming_both(model_file, inputs, tmp_path, capsys):
    link = tmp_path / "link.npz"
    link.symlink_to(model_file)
    before = model_file.read_bytes(), inputs.read_bytes()
    cases = [
        (["simulate", model_file, "--input", inputs, "--out", inputs], f"--out '{inputs}' is the same file as --input"),
        (["simulate", model_file, "--input", inputs, "--out", model_file], "is the same file as the model"),
        (["export", model_file, "-o", model_file], "is the same file as the model"),
        (["export", link, "-o", model_file], "is the same file as the model"),          # through a symlink
        (["export", model_file, "--input", inputs, "-o", inputs], "is the same file as --input"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy", "--trajectory",
          tmp_path / "y.npy"], "is the same file as --out"),
        (["train", "--data", model_file, "--out", model_file], "is the same file as --data"),
    ]
    for argv, match in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, match)
    assert (model_file.read_bytes(), inputs.read_bytes()) == before


def test_an_output_with_the_wrong_suffix_for_its_format_is_refused(model_file, inputs, tmp_path, capsys):
    cases = [
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "y.csv"], "must end in .npy"),
        (["simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy", "--trajectory",
          tmp_path / "t.npy"], "must end in .npz"),
        (["build", "--out", tmp_path / "net.json"], "must end in .npz"),
        (["train", "--task", "moons", "--out", tmp_path / "m.npy"], "must end in .npz"),
    ]
    for argv, match in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_one_line_error(code, err, match)
    # a model file named without a suffix gets .npz, as save_net has always done
    code, out, _ = run_cli(capsys, "build", "--out", tmp_path / "net")
    assert code == 0 and (tmp_path / "net.npz").is_file()


def test_an_input_path_that_is_not_a_file_says_what_it_is(tmp_path, fifo, model_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for path, match in ((".", "is a folder"), ("", "is empty"), (fifo, "is a FIFO"),
                        (tmp_path / "none.npz", "does not exist")):
        code, _, err = run_cli(capsys, "info", path)
        assert_one_line_error(code, err, match)
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", fifo, "--out", tmp_path / "y.npy")
    assert_one_line_error(code, err, "is a FIFO")


def test_monte_carlo_beyond_the_machine_is_refused_before_any_trial(model_file, capsys, monkeypatch):
    from kirchhoff_sim.errors import ResourceLimitError
    from kirchhoff_sim.hardware import montecarlo, trials

    def no_trials(*args, **kwargs):
        raise AssertionError("a trial ran")

    monkeypatch.setattr(trials, "run_trial", no_trials)
    _rewrite(model_file, meta_change=lambda m: m["user"].update(
        {"source": {"task": "moons", "seed": 0, "dataset_options": {"n_samples": 40}}}))
    code, _, err = run_cli(capsys, "montecarlo", model_file, "--trials", "100000000", "--serial")
    assert_one_line_error(code, err, "run fewer trials")
    net = modelfile.read_model_file(model_file)[0]
    X, y = np.zeros((8, 2)), np.zeros(8, dtype=int)
    with pytest.raises(ResourceLimitError, match="run fewer trials"):
        montecarlo.monte_carlo(net, X, y, montecarlo.MonteCarloSpec(trials=10 ** 8))
    with pytest.raises(ResourceLimitError):
        montecarlo.mismatch_sweep(net, X, y, sigmas=(0.0, 0.1), trials=10 ** 8)


def test_a_trajectory_beyond_the_memory_allowed_is_refused_with_headroom(model_file, inputs, tmp_path, capsys,
                                                                         monkeypatch):
    from kirchhoff_sim.errors import ResourceLimitError
    from kirchhoff_sim.solvers import resources

    # the default limit is a fraction of the available memory, not all of it
    monkeypatch.setattr(resources, "available_memory", lambda: 10 ** 9)
    assert resources.ResourceLimits().memory == int(resources.MEMORY_FRACTION * 10 ** 9) < 10 ** 9
    net = modelfile.read_model_file(model_file)[0]
    # 3 samples, 7 nodes + ground: 192 bytes a saved time; 4e6 times is 0.77 GB, under 1 GB
    points = 4_000_000
    estimate = resources.estimate_resources(net, 3, ks.Dopri5(), points)
    assert resources.MEMORY_FRACTION * 10 ** 9 < estimate.total_bytes < 10 ** 9
    with pytest.raises(ResourceLimitError, match="allowed"):
        ks.simulate(net, np.full((3, 2), 0.5), save_at=np.linspace(0, net.T, points))
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy",
                           "--trajectory", tmp_path / "t.npz", "--points", points)
    assert_one_line_error(code, err, "of memory, more than the")
    assert not (tmp_path / "y.npy").exists() and not (tmp_path / "t.npz").exists()
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy",
                           "--trajectory", tmp_path / "t.npz", "--points", "100000000")
    assert_one_line_error(code, err, "of memory, more than the")


def test_dataset_counts_beyond_the_bound_are_refused_also_from_metadata(model_file, capsys):
    from kirchhoff_sim.training.datasets import MAX_SAMPLES, load_dataset

    with pytest.raises(InputError, match="n_samples must be an integer in 1 .. 1e"):
        load_dataset("moons", n_samples=MAX_SAMPLES + 1)
    _rewrite(model_file, meta_change=lambda m: m["user"].update(
        {"source": {"task": "moons", "seed": 0, "dataset_options": {"n_samples": 10 ** 9}}}))
    code, _, err = run_cli(capsys, "evaluate", model_file)
    assert_one_line_error(code, err, "n_samples")


@pytest.mark.parametrize("parameter, value", [
    ("voltage_unit_v", 1e308), ("capacitance_unit_f", 1e308), ("conductance_unit_s", 1e308),
    ("voltage_unit_v", 1e-308), ("capacitance_unit_f", 1e-308), ("conductance_unit_s", 1e-300),
])
def test_profile_scale_values_outside_a_plausible_range_are_refused(parameter, value, model_file, tmp_path, capsys):
    from kirchhoff_sim.technology import load_profile

    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"parameters": {parameter: value}}))
    with pytest.raises(InputError, match=f"{parameter} = .* outside the physically plausible range"):
        load_profile(profile)
    _rewrite(model_file, meta_change=lambda m: m["user"].update(
        {"source": {"task": "moons", "seed": 0, "dataset_options": {"n_samples": 40}}}))
    code, _, err = run_cli(capsys, "evaluate", model_file, "--profile", profile)
    assert_one_line_error(code, err, parameter)
    code, _, err = run_cli(capsys, "train", "--task", "moons", "--epochs", "1", "--profile", profile,
                           "--out", tmp_path / "m.npz", "--no-progress")
    assert_one_line_error(code, err, parameter)
    assert not (tmp_path / "m.npz").exists()          # refused before the first epoch


def test_every_derived_unit_of_an_accepted_scale_is_finite_and_non_zero():
    from kirchhoff_sim.units import SCALE_RANGES, PhysicalScale, ktc_noise_sigma

    for corner in np.ndindex(2, 2, 2):
        scale = PhysicalScale(*(SCALE_RANGES[u][i] for u, i in zip(("V0", "C0", "G0"), corner)))
        for name in ("time_unit", "current_unit", "charge_unit", "energy_unit", "power_unit", "resistance_unit"):
            assert 0 < getattr(scale, name) < np.inf, (scale, name)
        assert 0 < ktc_noise_sigma(np.ones(1), scale=scale)[0] < np.inf
    with pytest.raises(InputError, match="--scale"):
        from kirchhoff_sim.cli import _scale
        _scale("1e308,1e-13,1e-6", {})


def test_a_json_profile_nested_too_deeply_is_an_input_error(tmp_path, model_file, capsys):
    from kirchhoff_sim.technology import load_profile

    profile = tmp_path / "deep.json"
    profile.write_text('{"parameters": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InputError, match="nested too deeply"):
        load_profile(profile)
    code, _, err = run_cli(capsys, "evaluate", model_file, "--profile", profile)
    assert_one_line_error(code, err, "nested too deeply")


def test_ctrl_c_in_train_prints_one_line_keeps_the_last_checkpoint_and_exits_130(tmp_path, capsys, monkeypatch):
    from kirchhoff_sim.training import trainer

    points = tmp_path / "points.npz"
    X = np.random.default_rng(1).normal(size=(40, 2))
    np.savez(points, X=X, y=(X[:, 0] > 0).astype(int))
    out = tmp_path / "m.npz"
    real_save = trainer.save_checkpoint

    def save_then_interrupt(*args, **kwargs):       # Ctrl-C during the second epoch
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    args = ["train", "--data", points, "--epochs", "2", "--hidden", "1", "--batch-size", "16",
            "--no-progress", "--out", out]
    code, _, err = run_cli(capsys, *args)
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "interrupted; kept the checkpoint of the last finished epoch in" in lines[0]
    assert "--resume" in lines[0]
    assert modelfile.read_model_file(out)[1]["training"]["epochs_done"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "points.npz"]    # no temporary
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert run_cli(capsys, *args, "--resume")[0] == 0


def test_ctrl_c_before_any_output_says_nothing_was_written(model_file, inputs, tmp_path, capsys, monkeypatch):
    from kirchhoff_sim import cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "simulate", interrupted)
    code, _, err = run_cli(capsys, "simulate", model_file, "--input", inputs, "--out", tmp_path / "y.npy")
    assert code == 130
    assert err.strip() == "kirchhoff-sim simulate: interrupted; nothing was written"


def test_warnings_do_not_precede_the_error_of_absurd_numbers(model_file, tmp_path, capsys):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a RuntimeWarning would now raise
        code, _, err = run_cli(capsys, "montecarlo", model_file, "--sigma", "1e300", "--serial")
        assert_one_line_error(code, err, "sigma")
        code, _, err = run_cli(capsys, "export", model_file, "-o", tmp_path / "n.cir",
                               "--scale", "1e308,1e308,1e308")
        assert_one_line_error(code, err, "--scale")


def test_options_that_need_a_profile_are_refused_without_one(tmp_path, capsys):
    for flags, match in ((["--mismatch-sigma", "0.1"], "--mismatch-sigma needs --profile"),
                         (["--ktc-noise", "--rail-weight", "1"], "--rail-weight, --ktc-noise need --profile")):
        code, _, err = run_cli(capsys, "train", "--task", "moons", *flags, "--out", tmp_path / "m.npz")
        assert_one_line_error(code, err, match)


def test_more_local_workers_than_the_machine_can_use_are_refused(model_file, capsys):
    from kirchhoff_sim.hardware.distributed import DaskRunner
    from kirchhoff_sim.solvers.resources import WORKERS_PER_CPU

    too_many = WORKERS_PER_CPU * (os.cpu_count() or 1) + 1
    with pytest.raises(InputError, match=f"at most {too_many - 1}"):
        DaskRunner(n_workers=too_many)
    code, _, err = run_cli(capsys, "montecarlo", model_file, "--workers", too_many)
    assert_one_line_error(code, err, f"--workers {too_many} is more than this machine can run usefully")


def test_sigterm_unwinds_like_ctrl_c_and_leaves_no_ngspice_scratch_folder(tmp_path):
    # a real `kill` of a real command while its ngspice runs: exit 143, one line, and the
    # runner's scratch folder (under TMPDIR) removed on the way out
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    model = Path(__file__).resolve().parents[1] / "netlists" / "models" / "digits.npz"
    command = [sys.executable, "-m", "kirchhoff_sim.cli", "validate", str(model), "--samples", "1", "--workers", "1"]
    process = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(scratch.glob("kirchhoff_spice_*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(scratch.glob("kirchhoff_spice_*")), "ngspice never started"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    lines = err.strip().splitlines()
    assert lines == ["kirchhoff-sim validate: terminated; nothing was written"], err
    assert list(scratch.iterdir()) == []


# ------------------------------------------------- kernels and checks (breaker, session 12)
def test_rhs_into_refuses_a_state_without_ground_overlapping_arrays_and_complex_parameters():
    from kirchhoff_sim import devices as _devices
    from kirchhoff_sim import kernels

    empty = np.zeros(0, int)
    with pytest.raises(InputError, match="ground row"):          # had corrupted the heap
        kernels.rhs_into(np.zeros((0, 4)), np.zeros((0, 4)), empty, empty, _devices.Conductance(), np.zeros((1, 0)))
    V = np.random.default_rng(0).normal(size=(3, 5))
    with pytest.raises(InputError, match="overlap"):              # had given a wrong sum
        kernels.rhs_into(V, V, [1, 2], [0, 1], _devices.Conductance(), [[1.0, 2.0]])
    with pytest.raises(InputError, match="complex"):
        kernels.rhs_into(np.zeros((3, 5)), V, [1, 2], [0, 1], _devices.Conductance(), [[1j, 2.0]])


def test_a_subclass_of_a_stock_family_runs_its_own_physics_under_the_kernels():
    from kirchhoff_sim import devices as _devices
    from kirchhoff_sim import kernels

    class CubicConductance(_devices.Conductance):
        def response(self, z, p):
            return p[0] * z ** 3

        def response_linearise(self, z, p, params=True):
            return p[0] * z ** 3, 3 * p[0] * z ** 2, (z ** 3,) if params else None

    net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0), (1, 0)], CubicConductance(), params=[[1.0, 0.5, 0.3]])],
                          num_nodes=2)
    x = np.array([[1.0, -0.5], [0.3, 0.8]])
    assert not kernels.supports(CubicConductance())
    reference = ks.simulate(net, x, solver=ks.RK4(0.05)).final_state
    with _backend("numba"):
        fused = ks.simulate(net, x, solver=ks.RK4(0.05)).final_state
    np.testing.assert_array_equal(fused, reference)


class _backend:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        from kirchhoff_sim import kernels
        self.previous = kernels.backend()
        kernels.use(self.name)

    def __exit__(self, *exc):
        from kirchhoff_sim import kernels
        kernels.use(self.previous)


def test_an_empty_edge_group_runs_under_the_kernels_as_on_numpy():
    from kirchhoff_sim import devices as _devices

    with pytest.warns(UserWarning, match="touched by no edge"):
        net = ks.KirchhoffNet([ks.Layer.from_groups([(np.zeros((0, 2), int), _devices.Conductance()),
                                                     ([(1, 0)], _devices.ShiftedReLU())])], num_nodes=2)
    x = np.ones((3, 2))
    reference = ks.simulate(net, x).final_state
    with _backend("numba"):
        np.testing.assert_array_equal(ks.simulate(net, x).final_state, reference)


def test_assembly_products_check_their_arguments_on_every_backend():
    net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0)], ks.Conductance(), params=[[1.0, 2.0]])], num_nodes=2)
    a = net.assemblies()[0]
    V = np.ones((3, 2))
    for backend in ("numpy", "numba"):
        with _backend(backend):
            with pytest.raises(InputError, match="cotangent"):
                a.vjp(V, np.ones((2, 2)))
            with pytest.raises(InputError, match="theta_dot"):
                a.jvp(V, V, [np.ones((3, 1))])
            with pytest.raises(InputError, match="theta_bar"):
                a.vjp(V, V, [np.zeros((1, 2)), np.zeros((1, 2))])
            with pytest.raises(InputError, match=r"\(N\+1, B\)"):
                a.stamps(V[:-1])
            with pytest.raises(InputError, match="real floating"):
                a.rhs(np.ones((3, 2), int))
            with pytest.raises(InputError, match="real floating"):
                a.rhs(np.ones((3, 2), complex))


@pytest.mark.parametrize("options, message", [
    ({"eps": 0}, "eps"), ({"eps": -1e-6}, "eps"), ({"eps": True}, "eps"), ({"eps": float("nan")}, "eps"),
    ({"eps": float("inf")}, "eps"), ({"eps": "1e-6"}, "eps"), ({"n_params": -1}, "n_params"),
    ({"n_params": 1.5}, "n_params"), ({"seed": "a"}, "seed"), ({"include_inputs": "no"}, "include_inputs"),
    ({"n_params": 0, "include_inputs": False}, "nothing to check"),
])
def test_check_gradient_refuses_bad_arguments_before_any_work(options, message):
    from kirchhoff_sim.sensitivity import check_gradient
    from kirchhoff_sim.training.losses import bind, cross_entropy

    net = ks.KirchhoffNet([ks.Layer([(1, 2), (2, 0)], ks.Conductance(), params=[[1.0, 2.0]])], num_nodes=2)
    with pytest.raises(InputError, match=message):        # eps=0 had looped forever
        check_gradient(net, np.ones((2, 2)), bind(cross_entropy, np.array([0, 1])), **options)
