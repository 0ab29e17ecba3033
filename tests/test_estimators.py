"""The scikit-learn contract of KirchhoffClassifier and KirchhoffRegressor.

scikit-learn's own estimator checks run on both, with no check marked as an expected
failure; the tests below pin the faults of issue #13 (parts E and F) one kind each:
the binary decision function, a read-only memory-mapped model, float32 training data,
bad hyper-parameters and bad inputs refused with typed errors.

Every net is tiny (2 hidden nodes, one layer) and integrated by forward Euler with one
step per layer, so a fit on a few hundred points takes a few tens of milliseconds.
"""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_moons
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold, cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from kirchhoff_sim.errors import InputError
from kirchhoff_sim.training.estimators import KirchhoffClassifier, KirchhoffFlow, KirchhoffRegressor

# Small enough that scikit-learn's ~50 checks per estimator run in seconds, large enough
# that the accuracy checks pass (check_classifiers_train wants > 0.83 training accuracy
# on its blobs, check_regressors_train R² > 0.5): three epochs of 16-sample batches.
FAST = dict(hidden=2, layers=1, epochs=3, batch_size=16, lr=0.05, method="euler", dt=1.0)


def fast_classifier(**kw):
    return KirchhoffClassifier(**{**FAST, **kw})


def fast_regressor(**kw):
    return KirchhoffRegressor(**{**FAST, **kw})


def fast_flow(**kw):
    # a fixed-step solver: a point's log-density does not depend on the other points
    return KirchhoffFlow(**{**dict(layers=1, repeat=(1, 1), epochs=1, batch_size=16, lr=1e-2, method="rk4",
                                   dt=0.25), **kw})


@pytest.fixture(scope="module")
def moons():
    return make_moons(90, noise=0.2, random_state=0)


@pytest.fixture(scope="module")
def fitted_classifier(moons):
    return fast_classifier().fit(*moons)


@pytest.fixture(scope="module")
def fitted_regressor(moons):
    X, y = moons
    return fast_regressor().fit(X, X[:, 0] - 0.5 * X[:, 1])


# ================================================================ scikit-learn's checks
def _checks_that_apply():
    """scikit-learn's checks for the three estimators, less the array-API ones.

    ``check_array_api_input`` tests estimators that declare array-API support (input as
    CuPy/PyTorch/array-api-strict arrays); ours do not declare it (``array_api_support``
    is False in their tags: the solvers are NumPy), and scikit-learn would skip the check
    for want of ``SCIPY_ARRAY_API``. Every other check runs.
    """
    generated = parametrize_with_checks([fast_classifier(), fast_regressor(), fast_flow()])
    names, values = generated.mark.args

    def check_name(value):
        return getattr(value[1], "func", value[1]).__name__

    kept = [value for value in values if check_name(value) != "check_array_api_input"]
    assert len(kept) < len(values)        # the filter found what it removes
    ids = [f"{type(value[0]).__name__}-{check_name(value)}-{n}" for n, value in enumerate(kept)]
    return pytest.mark.parametrize(names, kept, ids=ids)


@_checks_that_apply()
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


# ================================================================ binary decision function
def test_binary_decision_function_is_the_logit_difference(fitted_classifier, moons):
    X, _ = moons
    scores = fitted_classifier.decision_function(X)
    assert scores.shape == (len(X),)
    log_proba = fitted_classifier.predict_log_proba(X)
    # softmax read-out: log p1 − log p0 is exactly the difference of the two logits
    np.testing.assert_allclose(scores, log_proba[:, 1] - log_proba[:, 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.exp(log_proba), fitted_classifier.predict_proba(X), rtol=1e-12)
    positive = fitted_classifier.classes_[(scores > 0).astype(int)]
    np.testing.assert_array_equal(positive, fitted_classifier.predict(X))


def test_multiclass_decision_function_keeps_one_column_per_class():
    X, y = make_blobs(60, centers=3, random_state=0)
    labels = np.array(["a", "b", "c"])[y]
    clf = fast_classifier().fit(X, labels)
    scores = clf.decision_function(X)
    assert scores.shape == (60, 3)
    np.testing.assert_array_equal(clf.classes_[scores.argmax(axis=1)], clf.predict(X))


def test_cross_val_score_roc_auc_equals_roc_auc_of_the_decision_function(moons):
    X, y = moons
    folds = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(fast_classifier(), X, y, cv=folds, scoring="roc_auc")
    assert scores.shape == (3,)
    by_hand = []
    for train, test in folds.split(X):
        clf = fast_classifier().fit(X[train], y[train])
        by_hand.append(roc_auc_score(y[test], clf.decision_function(X[test])))
    np.testing.assert_array_equal(scores, by_hand)
    assert np.all((0.0 <= scores) & (scores <= 1.0))
    assert scores.mean() > 0.8                   # chance is 0.5


# ================================================================ pickling
@pytest.mark.parametrize("name", ["classifier", "regressor"])
def test_predict_after_a_read_only_memory_mapped_round_trip(name, fitted_classifier,
                                                          fitted_regressor, moons, tmp_path):
    fitted = {"classifier": fitted_classifier, "regressor": fitted_regressor}[name]
    X, _ = moons
    expected = fitted.predict(X)                 # caches built for this batch size
    state_before = dict(fitted.__dict__)
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib", mmap_mode="r")
    params = loaded.net_.parameters[0]
    assert isinstance(params, np.memmap) and not params.flags.writeable
    np.testing.assert_array_equal(loaded.predict(X), expected)
    np.testing.assert_array_equal(loaded.predict(X[:7]), fitted.predict(X[:7]))
    # pickling left the fitted estimator itself alone
    assert fitted.__dict__ == state_before
    np.testing.assert_array_equal(fitted.predict(X), expected)


# ================================================================ training data
def test_float32_training_data_fits_as_its_float64_values(moons):
    X, y = moons
    X32 = X.astype(np.float32)
    from32 = fast_classifier().fit(X32, y)
    from64 = fast_classifier().fit(X32.astype(np.float64), y)
    np.testing.assert_array_equal(from32.predict_proba(X32), from64.predict_proba(X32))
    reg32 = fast_regressor().fit(X32, X32[:, 0])
    reg64 = fast_regressor().fit(X32.astype(np.float64), X32[:, 0].astype(np.float64))
    np.testing.assert_array_equal(reg32.predict(X), reg64.predict(X))


def test_same_seed_same_model_other_seed_other_model(moons):
    X, y = moons
    first = fast_classifier(seed=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(fast_classifier(seed=3).fit(X, y).predict_proba(X), first)
    assert not np.allclose(fast_classifier(seed=4).fit(X, y).predict_proba(X), first)


def test_prediction_uses_the_solver_of_fit(moons):
    X, y = moons
    clf = fast_classifier().fit(X, y)
    expected = clf.decision_function(X)
    clf.set_params(dt=0.01)                      # a hyper-parameter: takes effect at the next fit
    np.testing.assert_array_equal(clf.decision_function(X), expected)
    assert clf.solver_spec_ == {"method": "euler", "dt": 1.0}


# ================================================================ refusals
@pytest.mark.parametrize("bad, name", [
    ({"epochs": 1.5}, "epochs"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": -1}, "lr"),
    ({"batch_size": "64"}, "batch_size"),
    ({"hidden": 1.5}, "hidden"),
    ({"seed": -1}, "seed"),
    ({"method": "no_such_method"}, "method"),
])
@pytest.mark.parametrize("make", [fast_classifier, fast_regressor], ids=["classifier", "regressor"])
def test_bad_hyperparameters_are_refused_at_fit_by_name(make, bad, name, moons):
    X, y = moons
    estimator = make(**bad)                      # the constructor stores, never checks
    assert estimator.get_params()[name] is bad[name]
    with pytest.raises(InputError, match=rf"\b{name}\b"):
        estimator.fit(X, y)
    assert not hasattr(estimator, "net_")


@pytest.mark.parametrize("n_features", [0, 1, 3])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "predict_log_proba", "decision_function"])
def test_classifier_refuses_another_feature_count(fitted_classifier, method, n_features):
    expected = ("0 feature" if n_features == 0
                else f"X has {n_features} features, but KirchhoffClassifier is expecting 2")
    with pytest.raises(InputError, match=expected):
        getattr(fitted_classifier, method)(np.zeros((4, n_features)))


@pytest.mark.parametrize("n_features", [0, 1, 3])
def test_regressor_refuses_another_feature_count(fitted_regressor, n_features):
    with pytest.raises(InputError, match="0 feature" if n_features == 0 else f"X has {n_features} features"):
        fitted_regressor.predict(np.zeros((4, n_features)))


def _with(X, value):
    changed = X.copy()
    changed[3, 1] = value
    return changed


def _bad_inputs(X):
    return {
        "nan": (_with(X, np.nan), InputError, "contains NaN"),
        "inf": (_with(X, np.inf), InputError, "contains infinity"),
        "complex": (X + 1j, InputError, "[Cc]omplex"),
        "one-dimensional": (X[:, 0], InputError, "Expected 2D array"),
        "empty": (X[:0], InputError, "0 sample"),
        "sparse": (sp.csr_matrix(X), TypeError, "[Ss]parse"),
    }


@pytest.mark.parametrize("kind", ["nan", "inf", "complex", "one-dimensional", "empty", "sparse"])
@pytest.mark.parametrize("make", [fast_classifier, fast_regressor], ids=["classifier", "regressor"])
def test_bad_X_is_refused_in_fit_and_predict(make, kind, moons, fitted_classifier, fitted_regressor):
    X, y = moons
    bad_X, error, message = _bad_inputs(X)[kind]
    with pytest.raises(error, match=message):
        make().fit(bad_X, y[:bad_X.shape[0]])
    fitted = fitted_classifier if make is fast_classifier else fitted_regressor
    with pytest.raises(error, match=message):
        fitted.predict(bad_X)


def test_a_single_class_is_refused(moons):
    X, _ = moons
    with pytest.raises(InputError, match="1 class"):
        fast_classifier().fit(X, np.full(len(X), "only"))


def test_continuous_labels_are_refused_by_the_classifier(moons):
    X, _ = moons
    with pytest.raises(InputError, match="Unknown label type"):
        fast_classifier().fit(X, X[:, 0])


@pytest.mark.parametrize("make, method", [
    (fast_classifier, "predict"), (fast_classifier, "predict_proba"),
    (fast_classifier, "predict_log_proba"), (fast_classifier, "decision_function"),
    (fast_regressor, "predict"),
])
def test_predicting_before_fit_raises_not_fitted_error(make, method, moons):
    with pytest.raises(NotFittedError):
        getattr(make(), method)(moons[0])


# ================================================================ feature names
def test_feature_names_are_recorded_and_checked(moons):
    pd = pytest.importorskip("pandas")
    X, y = moons
    frame = pd.DataFrame(X, columns=["left", "right"])
    clf = fast_classifier().fit(frame, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["left", "right"])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        from_array = clf.predict(X)
    np.testing.assert_array_equal(clf.predict(frame), from_array)
    with pytest.raises(InputError, match="feature names"):
        clf.predict(frame.rename(columns={"left": "other"}))
