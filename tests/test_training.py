"""Training: losses, the training loop, checkpoints and resume, divergence, the
scikit-learn estimators and the ``train`` / ``evaluate`` command line.

Every net here is tiny (2 hidden nodes) and integrated with RK4 at a coarse fixed step,
so a training epoch on a few hundred moons points takes a fraction of a second.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import kirchhoff_sim as ks
import kirchhoff_sim.modelfile as modelfile
from kirchhoff_sim.cli import main
from kirchhoff_sim.errors import (
    InputError,
    ModelFileError,
    SimulationError,
    TrainingDivergedError,
)
from kirchhoff_sim.modelfile import read_model_file, save_net
from kirchhoff_sim.training import optim, trainer
from kirchhoff_sim.training.datasets import Dataset, load_dataset
from kirchhoff_sim.training.estimators import KirchhoffClassifier, KirchhoffRegressor
from kirchhoff_sim.training.losses import cross_entropy, mean_squared_error
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig, evaluate, train

FAST_SOLVER = {"method": "rk4", "dt": 0.25}
HISTORY_KEYS = {"epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


@pytest.fixture(scope="module")
def moons():
    return load_dataset("moons", n_samples=160, seed=0)


def small_net(seed=0, **kw):
    return build_net(2, 2, hidden=2, layers=2, seed=seed, **kw)


def config(**kw):
    base = dict(epochs=2, batch_size=16, lr=3e-2, validation_fraction=0.2, seed=0,
                solver=FAST_SOLVER)
    base.update(kw)
    return TrainConfig(**base)


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


# ================================================================ losses
def central_difference(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        grad[i] = (f(plus) - f(minus)) / (2 * eps)
    return grad


def test_cross_entropy_value_and_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    value, grad = cross_entropy(logits, labels)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    expected = np.mean(log_norm - logits[np.arange(5), labels])
    assert value == pytest.approx(expected, rel=1e-13)
    assert grad.shape == logits.shape
    fd = central_difference(lambda z: cross_entropy(z, labels)[0], logits)
    np.testing.assert_allclose(grad, fd, atol=1e-9)
    # the gradient of a mean: rows sum to zero (softmax − one-hot) / B
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-15)


def test_cross_entropy_of_a_confident_prediction_does_not_underflow():
    """A read-out margin of 800 V is extreme but finite: the loss is ~0 (right class) or
    ~800 (wrong class). log_softmax's exp(−800) underflows to 0 — harmless, but under
    np.seterr(all="raise") (the test suite's setting, and a user's debugging one) it
    raises FloatingPointError; the package guards such underflows elsewhere (softplus)."""
    logits = np.array([[0.0, 800.0], [800.0, 0.0]])
    value, grad = cross_entropy(logits, np.array([1, 1]))
    assert value == pytest.approx(400.0)
    np.testing.assert_allclose(grad, [[0.0, 0.0], [0.5, -0.5]], atol=1e-15)


@pytest.mark.parametrize("logits, labels", [
    pytest.param(np.zeros((3, 2)), np.array([0, 1, 2]), id="label-equals-K"),
    pytest.param(np.zeros((3, 2)), np.array([0, -1, 1]), id="negative-label"),
    pytest.param(np.zeros((3, 2)), np.array([0, 1]), id="too-few-labels"),
    pytest.param(np.zeros((3, 2)), np.array([[0], [1], [1]]), id="2d-labels"),
    pytest.param(np.zeros(3), np.array([0, 1, 1]), id="1d-logits"),
    pytest.param(np.zeros((3, 2)), np.array([0.5, 1.0, 0.0]), id="non-integer-labels"),
])
def test_cross_entropy_rejects_bad_labels_and_shapes(logits, labels):
    with pytest.raises(InputError):
        cross_entropy(logits, labels)


def test_mean_squared_error_value_and_gradient():
    rng = np.random.default_rng(1)
    prediction = rng.normal(size=(4, 3))
    target = rng.normal(size=(4, 3))
    value, grad = mean_squared_error(prediction, target)
    assert value == pytest.approx(np.mean((prediction - target) ** 2), rel=1e-14)
    fd = central_difference(lambda p: mean_squared_error(p, target)[0], prediction)
    np.testing.assert_allclose(grad, fd, atol=1e-9)
    # a (B,) target for a single-output (B, 1) prediction is the same target
    column = rng.normal(size=(5, 1))
    flat_target = rng.normal(size=5)
    assert mean_squared_error(column, flat_target)[0] == mean_squared_error(column, flat_target[:, None])[0]


def test_mean_squared_error_rejects_a_target_of_the_wrong_size():
    with pytest.raises(InputError):
        mean_squared_error(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(InputError):
        mean_squared_error(np.zeros((4, 1)), np.zeros(5))


def test_mean_squared_error_rejects_a_transposed_target():
    """A (3, 2) target for a (2, 3) prediction has the right size but pairs the wrong
    entries; today it is silently reshaped (C order) instead of being rejected."""
    prediction = np.arange(6.0).reshape(2, 3)
    with pytest.raises(InputError):
        mean_squared_error(prediction, prediction.T.copy())


# ================================================================ the training loop
def test_training_on_moons_improves_the_loss(moons):
    net = small_net()
    solver = ks.RK4(0.25)
    before = evaluate(net, moons.X_test, moons.y_test, solver=solver)
    result = train(net, moons, config(epochs=3, lr=5e-2), progress=False, log=None)
    after = evaluate(net, moons.X_test, moons.y_test, solver=solver)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] > before["accuracy"]
    assert result.net is net
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0]


def test_history_has_the_documented_keys(moons):
    cfg = config(epochs=3)
    result = train(small_net(), moons, cfg, progress=False, log=None)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    for k, record in enumerate(result.history):
        assert set(record) == HISTORY_KEYS
        # cosine schedule over the run's epochs
        assert record["lr"] == pytest.approx(cfg.lr * (1 + math.cos(math.pi * k / 3)) / 2)
        assert 0.0 <= record["train_accuracy"] <= 1.0 and 0.0 <= record["val_accuracy"] <= 1.0
        assert record["seconds"] > 0.0
    # without a validation split there are no val_ entries
    result = train(small_net(), moons, config(epochs=1, validation_fraction=0.0), progress=False, log=None)
    assert set(result.history[0]) == HISTORY_KEYS - {"val_loss", "val_accuracy"}


def test_progress_bar_and_log_can_be_turned_off(moons, capsys):
    train(small_net(), moons, config(epochs=2), progress=True)
    out, err = capsys.readouterr()
    assert "epoch 1/2" in err                       # tqdm's bar
    assert [line.split()[0] for line in out.splitlines()] == ["epoch=1", "epoch=2"]

    train(small_net(), moons, config(epochs=2), progress=False, log=None)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_training_is_reproducible(moons):
    a, b = small_net(), small_net()
    ha = train(a, moons, config(), progress=False, log=None).history
    hb = train(b, moons, config(), progress=False, log=None).history
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())
    assert without_seconds(ha) == without_seconds(hb)
    c = small_net()
    train(c, moons, config(seed=1), progress=False, log=None)
    assert not np.array_equal(a.get_flat_params(), c.get_flat_params())


# ================================================================ checkpoints and resume
class Interrupted(Exception):
    """Stands for a crash (or Ctrl-C) in the middle of a run."""


def test_resume_is_bit_identical_to_an_uninterrupted_run(moons, tmp_path):
    cfg = config(epochs=4, checkpoint_every=1)
    # the reference: four epochs in one go
    net_a = small_net()
    uninterrupted = train(net_a, moons, cfg, checkpoint=tmp_path / "a.npz", progress=False, log=None)

    # the same run, crashing in epoch 3 — after epoch 2's checkpoint, before epoch 3's
    def crash_in_epoch_3(line):
        if line.startswith("epoch=3 "):
            raise Interrupted

    with pytest.raises(Interrupted):
        train(small_net(), moons, cfg, checkpoint=tmp_path / "b.npz", progress=False,
              log=crash_in_epoch_3)
    assert read_model_file(tmp_path / "b.npz")[1]["training"]["epochs_done"] == 2

    # a fresh process: build the net again and resume
    net_c = small_net()
    lines = []
    resumed = train(net_c, moons, cfg, checkpoint=tmp_path / "b.npz", resume=True,
                    progress=False, log=lines.append)
    assert "after epoch 2" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["epoch=3", "epoch=4"]
    assert np.array_equal(net_c.get_flat_params(), net_a.get_flat_params())
    assert without_seconds(resumed.history) == without_seconds(uninterrupted.history)
    assert len(resumed.history) == 4
    # and the final checkpoints hold the same optimiser state
    extras_a, extras_b = read_model_file(tmp_path / "a.npz")[2], read_model_file(tmp_path / "b.npz")[2]
    assert extras_a.keys() == extras_b.keys() and any(k.startswith("optimizer/exp_avg") for k in extras_a)
    for key in extras_a:
        assert np.array_equal(extras_a[key], extras_b[key]), key


def test_resume_without_a_checkpoint_starts_from_scratch(moons, tmp_path):
    a, b = small_net(), small_net()
    train(a, moons, config(), progress=False, log=None)
    train(b, moons, config(), checkpoint=tmp_path / "new.npz", resume=True, progress=False, log=None)
    assert np.array_equal(a.get_flat_params(), b.get_flat_params())


def test_a_checkpoint_is_a_model_file_and_no_temporary_file_is_left(moons, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "ckpt.npz"
    cfg = config(epochs=2, checkpoint_every=1)
    net = small_net()
    result = train(net, moons, cfg, checkpoint=path, progress=False, log=None)
    assert sorted(os.listdir(folder)) == ["ckpt.npz"]
    loaded, meta, extras = read_model_file(path)
    assert np.array_equal(loaded.get_flat_params(), net.get_flat_params())
    training = meta["training"]
    assert training["epochs_done"] == 2
    assert training["config"] == json.loads(json.dumps(asdict(cfg)))
    assert without_seconds(training["history"]) == without_seconds(result.history)
    assert training["dataset"] == "moons"
    assert {"optimizer/exp_avg_0", "optimizer/exp_avg_sq_0", "optimizer/step"} <= set(extras)
    assert int(extras["optimizer/step"]) == 2 * math.ceil(0.8 * len(moons.X_train) / 16)


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(moons, tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    real_savez = modelfile.np.savez
    calls = []

    def savez_that_dies_the_second_time(handle, **payload):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"PK\x03\x04 half a zip")     # a partial write, then the disk fills
            raise OSError("No space left on device")
        return real_savez(handle, **payload)

    monkeypatch.setattr(modelfile.np, "savez", savez_that_dies_the_second_time)
    with pytest.raises(OSError, match="No space"):
        train(small_net(), moons, config(epochs=2, checkpoint_every=1), checkpoint=path,
              progress=False, log=None)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert read_model_file(path)[1]["training"]["epochs_done"] == 1


def test_a_checkpoint_gets_the_permissions_of_an_ordinary_file(moons, tmp_path):
    """atomic_write_npz writes through tempfile.mkstemp, whose file is created 0600, and
    os.replace keeps that mode: every model file and checkpoint ends up readable by its
    owner only, whatever the umask (0644 under the usual 022)."""
    path = tmp_path / "ckpt.npz"
    train(small_net(), moons, config(epochs=1), checkpoint=path, progress=False, log=None)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_resume_with_a_different_config_raises_input_error(moons, tmp_path):
    path = tmp_path / "ckpt.npz"
    train(small_net(), moons, config(epochs=1), checkpoint=path, progress=False, log=None)
    before = path.read_bytes()
    net = small_net()
    initial = net.get_flat_params()
    with pytest.raises(InputError, match="config"):
        train(net, moons, config(epochs=1, lr=0.1), checkpoint=path, resume=True,
              progress=False, log=None)
    assert np.array_equal(net.get_flat_params(), initial)      # nothing was loaded
    assert path.read_bytes() == before                        # nor overwritten


def test_resume_from_a_plain_model_file_raises_model_file_error(moons, tmp_path):
    path = tmp_path / "plain.npz"
    save_net(small_net(), path)
    with pytest.raises(ModelFileError, match="checkpoint"):
        train(small_net(), moons, config(epochs=1), checkpoint=path, resume=True,
              progress=False, log=None)


# ================================================================ divergence
def exploding_net():
    """Conductances driven by Euler at h = 0.1: fine at the initial (small) values, but
    one Adam step of lr = 1e60 moves every conductance by ±1e60, and the next forward
    run overflows (|1 − h·g| ≈ 1e59 per step)."""
    return build_net(2, 2, hidden=1, layers=1, device="Conductance", seed=0)


def test_a_diverging_step_names_epoch_and_batch_and_keeps_the_parameters(monkeypatch, moons):
    X, y = moons.X_train[:32].copy(), moons.y_train[:32].copy()
    data = Dataset("tiny", X, y, moons.X_test[:8].copy(), moons.y_test[:8].copy(), 2)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e60, validation_fraction=0.0,
                      schedule="constant", solver={"method": "euler", "dt": 0.1})
    snapshots = []
    real_step = optim.Adam.step

    def recording_step(self, grads):
        real_step(self, grads)
        snapshots.append([p.copy() for p in self.params])

    monkeypatch.setattr(optim.Adam, "step", recording_step)
    net = exploding_net()
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 1\b") as info:
        train(net, data, cfg, progress=False, log=None)
    assert isinstance(info.value.__cause__, SimulationError)
    assert len(snapshots) == 1                 # batch 0 stepped, batch 1 did not
    for p, kept in zip(net.parameters, snapshots[0]):
        assert np.isfinite(p).all()
        assert np.array_equal(p, kept)


def regression_with_targets(scale):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (20, 2))
    Y = scale * np.ones((20, 1))
    return Dataset("huge", X[:16], Y[:16], X[16:], Y[16:], None)


def test_a_non_finite_loss_raises_training_diverged_error():
    """Targets of 1e300 V: the squared error overflows to inf (under numpy's ordinary
    error handling), and the step is refused with the epoch and batch named."""
    net = build_net(2, 1, hidden=1, layers=1, seed=0)
    initial = net.get_flat_params()
    cfg = TrainConfig(epochs=1, batch_size=8, loss="mse", validation_fraction=0.0,
                      solver=FAST_SOLVER)
    with np.errstate(over="ignore", invalid="ignore"):
        with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 0\b.*not finite"):
            train(net, regression_with_targets(1e300), cfg, progress=False, log=None)
    assert np.array_equal(net.get_flat_params(), initial)


def test_a_non_finite_loss_is_a_divergence_whatever_the_numpy_error_mode():
    """The same step under np.seterr(all="raise") (this suite's setting): the overflow
    inside the loss escapes as a bare FloatingPointError instead of the documented
    TrainingDivergedError. The simulator already makes its own failures independent of
    the caller's error mode (base.march); the training step does not."""
    net = build_net(2, 1, hidden=1, layers=1, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=8, loss="mse", validation_fraction=0.0,
                      solver=FAST_SOLVER)
    with np.errstate(all="raise"):
        with pytest.raises(TrainingDivergedError, match=r"epoch 1, batch 0\b"):
            train(net, regression_with_targets(1e300), cfg, progress=False, log=None)


# ================================================================ estimators
def classifier(**kw):
    base = dict(hidden=2, epochs=3, batch_size=16, lr=5e-2, method="rk4", dt=0.25)
    base.update(kw)
    return KirchhoffClassifier(**base)


@pytest.fixture(scope="module")
def small_moons():
    from sklearn.datasets import make_moons

    return make_moons(120, noise=0.1, random_state=0)


def test_classifier_in_a_pipeline_with_cross_val_score(small_moons):
    X, y = small_moons
    pipe = Pipeline([("scale", StandardScaler()), ("clf", classifier())])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.75                 # chance is 0.5


def test_classifier_predictions_and_labels(small_moons):
    X, y = small_moons
    labels = np.where(y == 1, 7, 3)             # not 0..K-1
    clf = classifier().fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, [3, 7])
    prediction = clf.predict(X)
    assert prediction.shape == (len(X),)
    assert set(np.unique(prediction)) <= {3, 7}
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], prediction)
    scores = clf.decision_function(X)             # binary: one score, positive = classes_[1]
    assert scores.shape == (len(X),)
    np.testing.assert_array_equal(clf.classes_[(scores > 0).astype(int)], prediction)
    assert clf.score(X, labels) == pytest.approx(np.mean(prediction == labels))
    assert clf.score(X, labels) > 0.75
    assert clf.n_features_in_ == 2 and len(clf.history_) == 3


def test_estimator_params_round_trip():
    clf = classifier(hidden=3, lr=0.02)
    params = clf.get_params()
    assert params["hidden"] == 3 and params["lr"] == 0.02 and params["method"] == "rk4"
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == params
    assert clf.set_params(hidden=5, epochs=1) is clf
    assert clf.get_params()["hidden"] == 5 and clf.get_params()["epochs"] == 1
    assert clone(clf).get_params() == clf.get_params()
    with pytest.raises(ValueError):
        clf.set_params(no_such_parameter=1)


def test_clone_of_a_fitted_estimator_is_unfitted(small_moons):
    X, y = small_moons
    fitted = classifier(epochs=1).fit(X, y)
    with pytest.raises(NotFittedError):
        clone(fitted).predict(X)


def test_regressor_fit_predict_score():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (150, 2))
    y = 0.5 * X[:, 0] - 0.3 * X[:, 1]
    reg = KirchhoffRegressor(hidden=2, epochs=10, batch_size=16, lr=5e-2, method="rk4", dt=0.25)
    assert reg.fit(X, y) is reg
    prediction = reg.predict(X)
    assert prediction.shape == (150,)
    assert reg.score(X, y) > 0.5
    assert reg.history_[-1]["train_loss"] < reg.history_[0]["train_loss"]
    # two targets: the prediction keeps its columns
    Y = np.stack([y, -y], axis=1)
    reg2 = KirchhoffRegressor(hidden=2, epochs=1, batch_size=32, method="rk4", dt=0.25).fit(X, Y)
    assert reg2.predict(X).shape == (150, 2)


@pytest.mark.parametrize("estimator", [classifier(), KirchhoffRegressor()], ids=["classifier", "regressor"])
def test_unfitted_estimator_raises_not_fitted_error(estimator):
    with pytest.raises(NotFittedError):
        estimator.predict(np.zeros((2, 2)))


def test_wrong_feature_count_raises_value_error(small_moons):
    X, y = small_moons
    clf = classifier(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="features"):
        clf.predict_proba(np.zeros((3, 1)))


# ================================================================ command line
SMALL_TRAIN = ["--hidden", "2", "--method", "rk4", "--dt", "0.25", "--no-progress"]


def test_cli_train_and_evaluate_json(tmp_path, capsys):
    out = tmp_path / "moons.npz"
    assert main(["train", "--task", "moons", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    net, meta, _ = read_model_file(out)
    assert meta["training"]["epochs_done"] == 1 and meta["source"]["task"] == "moons"
    capsys.readouterr()

    assert main(["evaluate", str(out), "--json"]) == 0
    stdout = capsys.readouterr().out
    result = json.loads(stdout)                 # the whole output is one JSON object
    assert stdout.count("\n") == 1
    assert result["test_accuracy"] == meta["test"]["accuracy"]
    assert result["test_loss"] == pytest.approx(meta["test"]["loss"], rel=1e-12)
    assert result["test_accuracy"] > 0.8        # one epoch of the preset already separates


@pytest.fixture
def points_file(tmp_path, small_moons):
    X, y = small_moons
    path = tmp_path / "points.npz"
    np.savez(path, X=X, y=y)
    return path


def test_cli_train_on_a_data_file(tmp_path, capsys, points_file):
    out = tmp_path / "model.npz"
    assert main(["train", "--data", str(points_file), "--epochs", "1", "--out", str(out),
                 *SMALL_TRAIN]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "points" and result["test_samples"] == 30


class _Crash(Exception):
    pass


def test_cli_resume_continues_an_interrupted_run(tmp_path, capsys, monkeypatch, points_file):
    args = ["train", "--data", str(points_file), "--epochs", "3", *SMALL_TRAIN]
    assert main([*args, "--out", str(tmp_path / "a.npz")]) == 0
    reference = read_model_file(tmp_path / "a.npz")

    real_save = trainer.save_checkpoint
    saves = []

    def crash_after_the_first_checkpoint(*a, **kw):
        real_save(*a, **kw)
        saves.append(1)
        raise _Crash

    monkeypatch.setattr(trainer, "save_checkpoint", crash_after_the_first_checkpoint)
    with pytest.raises(_Crash):
        main([*args, "--out", str(tmp_path / "b.npz")])
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    assert saves == [1]
    assert read_model_file(tmp_path / "b.npz")[1]["training"]["epochs_done"] == 1
    capsys.readouterr()

    assert main([*args, "--out", str(tmp_path / "b.npz"), "--resume"]) == 0
    assert "resumed from" in capsys.readouterr().out
    resumed = read_model_file(tmp_path / "b.npz")
    assert np.array_equal(resumed[0].get_flat_params(), reference[0].get_flat_params())
    history = resumed[1]["training"]["history"]
    assert len(history) == 3
    assert without_seconds(history) == without_seconds(reference[1]["training"]["history"])
    assert resumed[1]["test"] == reference[1]["test"]


def test_cli_resume_with_different_options_fails_cleanly(tmp_path, capsys, points_file):
    out = str(tmp_path / "m.npz")
    args = ["train", "--data", str(points_file), "--epochs", "1", "--out", out, *SMALL_TRAIN]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--lr", "0.5", "--resume"]) == 2
    assert "config" in one_line_error(capsys, "train")


def one_line_error(capsys, command):
    err = capsys.readouterr().err
    assert err.startswith(f"kirchhoff-sim {command}: error:")
    assert err.count("\n") == 1 and err.endswith("\n")
    return err


@pytest.mark.parametrize("argv, expected", [
    pytest.param(["--task", "moons", "--data", "x.npz"], "exactly one", id="task-and-data"),
    pytest.param([], "exactly one", id="neither"),
    pytest.param(["--data", "does-not-exist.npz"], "does-not-exist.npz", id="missing-data-file"),
])
def test_cli_train_bad_usage_returns_2_with_a_one_line_error(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "never.npz"
    assert main(["train", *argv, "--out", str(out), "--no-progress"]) == 2
    assert expected in one_line_error(capsys, "train")
    assert not out.exists()


def test_cli_evaluate_missing_model_returns_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nothing.npz"), "--json"]) == 2
    assert "nothing.npz" in one_line_error(capsys, "evaluate")
    assert capsys.readouterr().out == ""
