"""Training and inference on a Dask cluster (issue #12).

Every cluster here is real: a two-worker ``LocalCluster`` of processes shared by the
module, a one-worker cluster whose worker process is killed mid-epoch, and a scheduler
in a subprocess that is killed mid-run. What must hold: a distributed run equals the
serial run with the same shards (or chunks) bit for bit; a lost worker changes nothing;
a lost scheduler ends the run with a typed error and a checkpoint from which the run
resumes, anywhere, exactly as the uninterrupted run would have gone on.
"""
import json
import threading

import numpy as np
import pytest

from kirchhoff_sim import cli
from kirchhoff_sim.errors import ClusterLostError, InputError, ModelFileError, TrainingDivergedError
from kirchhoff_sim.executors import SerialRunner
from kirchhoff_sim.fileio import atomic_save_npy_chunks
from kirchhoff_sim.hardware.distributed import DaskRunner
from kirchhoff_sim.inference import chunk_bounds, iter_readouts, readouts
from kirchhoff_sim.modelfile import read_model_file, save_net
from kirchhoff_sim.sensitivity import gradient
from kirchhoff_sim.solvers import make_solver
from kirchhoff_sim.training import datasets
from kirchhoff_sim.training.data_parallel import ShardedGradient, shard_bounds
from kirchhoff_sim.training.estimators import KirchhoffClassifier
from kirchhoff_sim.training.losses import bind, cross_entropy
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, evaluate, train

from faults import HANG_GUARD_SECONDS, cluster_process, when, with_the_worker_killed_once_busy, within

FIXED = {"method": "rk4", "dt": 0.05}          # a step grid that does not depend on the batch
MOONS = 160                  # 120 training samples: 96 to train on (3 steps of 32), 24 to validate
LOST_CLUSTER_TIMEOUT_SECONDS = 2.0


@pytest.fixture(scope="module")
def runner():
    with DaskRunner(n_workers=2) as started:
        yield started


@pytest.fixture(scope="module")
def moons():
    return datasets.load_dataset("moons", seed=0, n_samples=MOONS)


def small_net(seed=0, **options):
    return build_net(2, 2, **{"hidden": 4, "layers": 2, "device": "ShiftedReLU", "seed": seed, **options})


def run(data, executor=None, net=None, checkpoint=None, resume=False, log=None, **config):
    net = small_net() if net is None else net
    options = {"epochs": 2, "batch_size": 32, "shards": 2, "validation_fraction": 0.2, **config}
    result = train(net, data, TrainConfig(**options), progress=False, log=log, executor=executor,
                   checkpoint=checkpoint, resume=resume)
    return net, result


def same_run(a, b):
    """Two training results equal bit for bit: parameters, optimiser state and history."""
    (net_a, result_a), (net_b, result_b) = a, b
    assert np.array_equal(net_a.get_flat_params(), net_b.get_flat_params())
    state_a, state_b = result_a.optimizer.state_dict(), result_b.optimizer.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert np.array_equal(np.asarray(state_a[key]), np.asarray(state_b[key])), key
    strip = [[{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
             for result in (result_a, result_b)]
    assert strip[0] == strip[1]


# ------------------------------------------------------------------ the sharded step
def test_shards_are_the_sizes_of_array_split():
    for batch in (1, 5, 32, 33):
        for shards in (1, 2, 3, 7):
            sizes = [b - a for a, b in shard_bounds(batch, shards)]
            expected = [len(c) for c in np.array_split(np.arange(batch), shards) if len(c)]
            assert sizes == expected and sum(sizes) == batch


def test_one_shard_is_the_unsharded_step_exactly(moons):
    net = small_net()
    x, y = moons.X_train[:24], moons.y_train[:24]
    solver = make_solver(method="dopri5", rtol=1e-4, atol=1e-6)
    reference = gradient(net, x, bind(cross_entropy, y), solver=solver)
    step = ShardedGradient(net, {"loss": "cross_entropy", "solver": {"method": "dopri5", "rtol": 1e-4,
                                                                       "atol": 1e-6}}).gradient(x, y, 0, 0)
    assert step.loss == reference.loss
    assert all(np.array_equal(a, b) for a, b in zip(step.params, reference.params))


def test_shards_on_a_fixed_grid_give_the_whole_batch_gradient(moons):
    # with a grid that does not depend on the batch, sharding only reorders sums
    net = small_net()
    x, y = moons.X_train[:25], moons.y_train[:25]
    reference = gradient(net, x, bind(cross_entropy, y), solver=make_solver(**FIXED))
    step = ShardedGradient(net, {"loss": "cross_entropy", "solver": FIXED}, shards=3).gradient(x, y, 0, 0)
    assert step.loss == pytest.approx(reference.loss, rel=1e-13)
    np.testing.assert_allclose(np.concatenate([p.ravel() for p in step.params]), reference.flat,
                               rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(step.readout, reference.solution.readout(net), rtol=1e-13)


def test_the_sharded_loss_gradient_matches_finite_differences(moons):
    net = small_net()
    x, y = moons.X_train[:9], moons.y_train[:9]
    engine = ShardedGradient(net, {"loss": "cross_entropy", "solver": FIXED}, shards=2)
    flat = np.concatenate([p.ravel() for p in engine.gradient(x, y, 0, 0).params])
    theta = net.get_flat_params()
    rng = np.random.default_rng(1)
    h = 1e-6
    for k in rng.choice(len(theta), 6, replace=False):
        values = []
        for sign in (1, -1):
            shifted = theta.copy()
            shifted[k] += sign * h
            net.set_flat_params(shifted)
            values.append(engine.gradient(x, y, 0, 0).loss)
        net.set_flat_params(theta)
        assert (values[0] - values[1]) / (2 * h) == pytest.approx(flat[k], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("shards, fragment", [(0, "shards"), (33, "cannot exceed the batch size"),
                                              (1.5, "shards"), ("2", "shards")])
def test_bad_shards_are_refused(shards, fragment):
    with pytest.raises(InputError, match=fragment):
        TrainConfig(batch_size=32, shards=shards)


def test_a_failed_shard_names_the_epoch_and_batch(moons):
    net = small_net()
    x = moons.X_train[:8].copy()
    x[5, 0] = 1e300                      # one shard's simulation overflows
    engine = ShardedGradient(net, {"loss": "cross_entropy", "solver": FIXED}, shards=2)
    with pytest.raises(TrainingDivergedError, match="epoch 3, batch 7"):
        engine.gradient(x, moons.y_train[:8], 2, 7)


# ------------------------------------------------------------------ training on a cluster
def test_distributed_training_equals_serial_bit_for_bit(runner, moons):
    serial = run(moons)
    distributed = run(moons, runner)
    same_run(serial, distributed)
    assert distributed[1].timing["steps"] == serial[1].timing["steps"] == 2 * 3   # 96 samples / 32
    assert distributed[1].timing["compute_total"] >= distributed[1].timing["compute"] > 0


def test_adaptive_shards_change_the_gradient_only_at_the_solver_tolerance(moons):
    # a smooth device (a relu's kinks make the discrete gradient depend on the grid more:
    # 4e-4 relative at this rtol, for ShiftedReLU)
    net = small_net(device="AffineActivation")
    x, y = moons.X_train[:32], moons.y_train[:32]
    solver = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9}
    one, two = (ShardedGradient(net, {"loss": "cross_entropy", "solver": solver}, shards=s).gradient(x, y, 0, 0)
                for s in (1, 2))
    flat_one, flat_two = (np.concatenate([p.ravel() for p in g.params]) for g in (one, two))
    assert not np.array_equal(flat_one, flat_two)                  # each shard its own step grid
    assert np.linalg.norm(flat_one - flat_two) < 1e-7 * np.linalg.norm(flat_one)
    assert two.loss == pytest.approx(one.loss, rel=1e-7)


def test_constrained_training_on_a_cluster_equals_serial(runner, moons):
    # mismatch and kT/C noise drawn here per step, the rail cost weighted per shard
    constraints = {"profile": "default", "mismatch_sigma": 0.05, "rail_weight": 1.0, "ktc": True}
    from kirchhoff_sim.training.constraints import HardwareConstraints
    from kirchhoff_sim.technology import as_profile

    hw = HardwareConstraints(**{**constraints, "profile": as_profile("default", "profile")})
    options = {"shards": 3, "epochs": 1, "constraints": hw, "solver": {"method": "dopri5", "rtol": 1e-4,
                                                                        "atol": 1e-6}}
    serial = run(moons, net=small_net(duration=0.05), **options)
    distributed = run(moons, runner, net=small_net(duration=0.05), **options)
    same_run(serial, distributed)
    assert np.array_equal(serial[1].checkpoint_arrays["latent/0"], distributed[1].checkpoint_arrays["latent/0"])


def test_regression_training_on_a_cluster_equals_serial(runner):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (60, 3))
    Y = np.stack([np.sin(X[:, 0]), X[:, 1] * X[:, 2]], axis=1)
    data = datasets.Dataset("regression", X, Y, X[:0], Y[:0], None)
    net = lambda: build_net(3, 2, hidden=3, layers=1, device="AffineActivation", seed=1)      # noqa: E731
    same_run(run(data, net=net(), loss="mse", shards=2), run(data, runner, net=net(), loss="mse", shards=2))


def test_the_estimator_trains_on_a_local_cluster_as_here(moons):
    options = {"hidden": 3, "epochs": 1, "batch_size": 16, "shards": 2, "method": "rk4", "dt": 0.1}
    here = KirchhoffClassifier(**options).fit(moons.X_train, moons.y_train)
    there = KirchhoffClassifier(**options, workers=2).fit(moons.X_train, moons.y_train)
    assert np.array_equal(here.net_.get_flat_params(), there.net_.get_flat_params())
    with pytest.raises(InputError, match="cannot go with scheduler"):
        KirchhoffClassifier(workers=2, scheduler="tcp://127.0.0.1:1").fit(moons.X_train, moons.y_train)


# ------------------------------------------------------------------ inference on a cluster
def test_chunked_inference_on_a_cluster_equals_serial(runner, moons, tmp_path):
    net = small_net()
    X = np.random.default_rng(2).uniform(-1, 1, (1100, 2))
    serial = readouts(net, X, chunk_size=300)
    assert serial.shape == (1100, 2)
    assert np.array_equal(readouts(net, X, chunk_size=300, executor=runner), serial)
    # a memory-mapped input streams through in the same chunks
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert np.array_equal(np.concatenate(list(iter_readouts(net, mapped, chunk_size=300, executor=runner))), serial)
    # each chunk its own step grid: the same as simulating the chunks one by one
    assert np.array_equal(serial[300:600], readouts(net, X[300:600], chunk_size=300))
    every = readouts(net, X[:5], chunk_size=2, all_nodes=True, executor=runner)
    assert every.shape == (5, net.num_nodes)
    solver = make_solver(method="dopri5", rtol=1e-7, atol=1e-9)
    assert evaluate(net, moons.X_test, moons.y_test, solver=solver, batch_size=7, executor=runner) == \
        evaluate(net, moons.X_test, moons.y_test, solver=solver, batch_size=7)


def test_chunk_sizes_are_checked():
    assert chunk_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    for bad in (0, -1, 2.5):
        with pytest.raises(InputError, match="chunk_size"):
            chunk_bounds(5, bad)


def test_a_bad_input_in_a_chunk_is_named_by_its_row_in_the_whole_input(runner):
    net = small_net()
    X = np.zeros((700, 2))
    X[603, 1] = np.nan
    for executor in (None, runner):
        with pytest.raises(InputError, match=r"input sample 603, feature 1 is nan"):
            readouts(net, X, chunk_size=300, executor=executor)


@pytest.mark.parametrize("X, fragment", [
    (np.zeros((10, 3)), "input has 3 features but the net takes 2"),
    (np.zeros((10, 0)), "inputs"),
    (np.zeros(0), "inputs"),
])
def test_inputs_that_do_not_fit_the_net_are_refused_before_any_chunk_runs(X, fragment):
    class NoJobs(SerialRunner):
        def imap(self, *args, **kwargs):
            raise AssertionError("a chunk was submitted")

    with pytest.raises(InputError, match=fragment):
        iter_readouts(small_net(), X, executor=NoJobs())        # refused on the call, not at next()


@pytest.mark.parametrize("X, fragment", [
    (np.zeros(2), "input has 2 features"),       # a 1-D file is one sample: too narrow for this net
    (np.zeros((4, 5)), "input has 5 features but the net takes 3"),
])
def test_cli_refuses_inputs_that_do_not_fit_before_the_cluster_starts(tmp_path, capsys, monkeypatch, X, fragment):
    model = tmp_path / "m.npz"
    save_net(build_net(3, 2, hidden=2, layers=1, device="ShiftedReLU"), model)
    np.save(tmp_path / "x.npy", X)
    monkeypatch.setattr(cli, "_executor", lambda args: pytest.fail("the cluster was started"))
    status = cli.main(["simulate", str(model), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy"),
                       "--workers", "2"])
    err = capsys.readouterr().err
    assert status == 2 and fragment in err and str(tmp_path / "x.npy") in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


def test_validation_on_a_cluster_equals_serial(runner):
    from kirchhoff_sim.spice import validate

    net = build_net(2, 2, hidden=2, layers=1, device="AffineActivation", seed=3)
    X = np.random.default_rng(4).uniform(-1, 1, (3, 2))
    serial = validate(net, X, executor=SerialRunner(), chunk_size=2)
    there = validate(net, X, executor=runner, chunk_size=2)
    assert [s.index for s in there.samples] == [0, 1, 2]
    for a, b in zip(serial.samples, there.samples):
        assert (a.max_abs_error, a.final_abs_error, a.solver_class, a.spice_class) == \
               (b.max_abs_error, b.final_abs_error, b.solver_class, b.spice_class)
    assert there.max_rel_error < 1e-4 and any("2 job(s)" in note for note in there.notes)


# ------------------------------------------------------------------ faults
def test_a_worker_killed_mid_epoch_does_not_change_the_result(moons):
    # three epochs: many windows in which a first job is done and another runs, so the
    # fault is injected however fast a shard is on the machine at hand
    serial = run(moons, epochs=3, shards=2)
    with DaskRunner(n_workers=1, connect_timeout=LOST_CLUSTER_TIMEOUT_SECONDS) as one:
        distributed = with_the_worker_killed_once_busy(one, run, moons, one, epochs=3, shards=2)
    same_run(serial, distributed)


def test_a_lost_scheduler_leaves_a_checkpoint_that_resumes_bit_for_bit(moons, tmp_path):
    epochs = 6
    uninterrupted = run(moons, epochs=epochs)
    path = tmp_path / "run.npz"
    first_epoch_done = threading.Event()
    with cluster_process() as (address, process):
        remote = DaskRunner(address, connect_timeout=LOST_CLUSTER_TIMEOUT_SECONDS).start()
        stop = threading.Event()
        killer, errors = when(first_epoch_done.is_set, process.kill, stop)    # while epoch 2 runs
        try:
            with pytest.raises(ClusterLostError, match=f"went away.*kept a checkpoint after .* in {path}") as lost:
                within(HANG_GUARD_SECONDS, run, moons, remote, checkpoint=path, epochs=epochs,
                       log=lambda line: first_epoch_done.set())
        finally:
            stop.set()
            killer.join(HANG_GUARD_SECONDS)
            remote.close()
    assert not errors and lost.value.address == address
    _, meta, _ = read_model_file(path)
    progress = meta["training"]["epoch_progress"]
    assert 1 <= progress["epoch"] < epochs and meta["training"]["epochs_done"] == progress["epoch"]
    resumed = run(moons, checkpoint=path, resume=True, epochs=epochs)          # here, without a cluster
    same_run(uninterrupted, resumed)


class LosesTheClusterAt(SerialRunner):
    """A serial runner whose cluster "goes away" at its ``n``-th job: the trainer's side
    of a lost scheduler, at an exact step (the real loss is the test above)."""

    def __init__(self, n):
        self.n, self.jobs = n, 0

    def imap(self, fn, shared, items, window=None):
        for item in items:
            self.jobs += 1
            if self.jobs == self.n:
                raise ClusterLostError("the Dask scheduler at tcp://x:1 went away during the run",
                                       address="tcp://x:1")
            yield fn(*shared, item)


@pytest.mark.parametrize("lost_at", [1, 6, 7, 10, 20])
def test_a_run_resumes_from_any_step_where_the_cluster_was_lost(moons, tmp_path, lost_at):
    # 2 shards a step, 3 steps and a validation chunk an epoch (7 jobs): job 6 is in epoch
    # 1's last step, job 7 its validation, job 10 in epoch 2's second step, 20 in epoch 3
    uninterrupted = run(moons, epochs=3)
    path = tmp_path / "run.npz"
    with pytest.raises(ClusterLostError, match="kept a checkpoint"):
        run(moons, LosesTheClusterAt(lost_at), checkpoint=path, epochs=3)
    same_run(uninterrupted, run(moons, checkpoint=path, resume=True, epochs=3))


def test_malformed_epoch_progress_is_refused(moons, tmp_path):
    path = tmp_path / "run.npz"
    with pytest.raises(ClusterLostError):
        run(moons, LosesTheClusterAt(3), checkpoint=path, epochs=2)
    net, meta, extras = read_model_file(path)
    meta["training"]["epoch_progress"]["batches_done"] = -1
    save_net(net, path, metadata=meta, arrays=extras)
    with pytest.raises(ModelFileError, match="epoch progress"):
        run(moons, checkpoint=path, resume=True, epochs=2)


def test_a_checkpoint_from_before_shards_resumes_as_one_shard(moons, tmp_path):
    path = tmp_path / "old.npz"
    run(moons, checkpoint=path, epochs=1, shards=1)
    net, meta, extras = read_model_file(path)
    del meta["training"]["config"]["shards"]
    save_net(net, path, metadata=meta, arrays=extras)
    net, result = run(moons, checkpoint=path, resume=True, epochs=1, shards=1)
    assert result.epochs_run == 0
    with pytest.raises(InputError, match="shards"):
        run(moons, checkpoint=path, resume=True, epochs=1, shards=2)


# ------------------------------------------------------------------ the command line
def test_cli_trains_on_a_local_cluster_as_with_the_same_shards_here(tmp_path, capsys):
    common = ["train", "--task", "moons", "--epochs", "1", "--no-progress", "--batch-size", "64"]
    assert cli.main([*common, "--workers", "2", "--out", str(tmp_path / "a.npz")]) == 0
    assert "2 shard(s) a step on dask local cluster (2 workers" in capsys.readouterr().out
    assert cli.main([*common, "--shards", "2", "--out", str(tmp_path / "b.npz")]) == 0
    a, b = (read_model_file(tmp_path / f"{n}.npz")[0].get_flat_params() for n in "ab")
    assert np.array_equal(a, b)
    # resuming takes the checkpoint's shards: the run is complete, whatever the cluster
    assert cli.main([*common, "--resume", "--out", str(tmp_path / "a.npz")]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_cli_simulates_in_chunks_on_a_cluster_and_streams_the_output(tmp_path, capsys):
    model = tmp_path / "m.npz"
    save_net(small_net(), model)
    X = np.random.default_rng(5).uniform(-1, 1, (700, 2))
    np.save(tmp_path / "x.npy", X)
    base = ["simulate", str(model), "--input", str(tmp_path / "x.npy"), "--chunk-size", "256", "--no-progress"]
    assert cli.main([*base, "--out", str(tmp_path / "here.npy")]) == 0
    assert cli.main([*base, "--out", str(tmp_path / "there.npy"), "--workers", "2"]) == 0
    here, there = np.load(tmp_path / "here.npy"), np.load(tmp_path / "there.npy")
    assert np.array_equal(here, there)
    np.testing.assert_allclose(here, readouts(small_net(), X, chunk_size=256), rtol=0, atol=0)
    assert "in 3 chunk(s) of up to 256" in capsys.readouterr().out


@pytest.mark.parametrize("extra, fragment", [
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "cannot go with --scheduler"),
    (["--chunk-size", "4", "--trajectory", "t.npz"], "--trajectory keeps the whole batch"),
    (["--chunk-size", "0"], "--chunk-size"),
    (["--workers", "999"], "more than this machine can run"),
])
def test_cli_refuses_bad_chunked_options_in_one_line(tmp_path, capsys, extra, fragment):
    model = tmp_path / "m.npz"
    save_net(small_net(), model)
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    status = cli.main(["simulate", str(model), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy"),
                       *extra])
    err = capsys.readouterr().err
    assert status == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "y.npy").exists()


def test_cli_evaluates_and_validates_on_a_cluster(runner, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert cli.main(["train", "--task", "moons", "--epochs", "1", "--no-progress", "--out", str(model)]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(model), "--no-feasibility", "--json"]) == 0
    here = json.loads(capsys.readouterr().out)
    assert cli.main(["evaluate", str(model), "--no-feasibility", "--json", "--scheduler", runner.address]) == 0
    assert json.loads(capsys.readouterr().out) == here
    assert cli.main(["validate", str(model), "--samples", "2", "--json", "--scheduler", runner.address]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_samples"] == 2 and report["aggregate"]["all_classes_agree"]
    assert cli.main(["validate", str(model), "--scheduler", runner.address, "--workers", "2"]) == 2
    assert "cannot go with --workers" in capsys.readouterr().err


def test_a_streamed_npy_whose_rows_do_not_add_up_leaves_nothing(tmp_path):
    path = tmp_path / "out.npy"
    atomic_save_npy_chunks(path, (3, 2), [np.ones((2, 2)), np.zeros((1, 2))])
    assert np.array_equal(np.load(path), [[1, 1], [1, 1], [0, 0]])
    for chunks, fragment in (([np.ones((2, 2))], "2 rows arrived for an array of 3"),
                             ([np.ones((3, 3))], "a block of shape")):
        with pytest.raises(InputError, match=fragment):
            atomic_save_npy_chunks(path, (3, 2), chunks)
        assert np.array_equal(np.load(path), [[1, 1], [1, 1], [0, 0]])     # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy"]
