"""Built-in data sets, user files (good and bad), splits and mini-batches."""

import numpy as np
import pytest

from kirchhoff_sim.errors import DatasetError, InputError
from kirchhoff_sim.training.datasets import (
    DATASET_NAMES,
    Dataset,
    load_dataset,
    load_file,
    minibatches,
    train_validation_split,
)

N_DIGITS = 1797  # images in scikit-learn's copy of the UCI digits


@pytest.fixture(autouse=True)
def _raise_on_floating_point_errors():
    old = np.seterr(all="raise")
    yield
    np.seterr(**old)


def class_fractions(y, n_classes):
    return np.bincount(y, minlength=n_classes) / len(y)


# ------------------------------------------------------------------ built-in sets
@pytest.mark.parametrize(
    "name, n_total, n_features, n_classes",
    [("moons", 2000, 2, 2), ("circles", 2000, 2, 2), ("digits", N_DIGITS, 64, 10)],
)
def test_builtin_shapes_and_types(name, n_total, n_features, n_classes):
    ds = load_dataset(name)
    n_test = int(np.ceil(0.25 * n_total))  # train_test_split rounds the test part up
    assert ds.X_train.shape == (n_total - n_test, n_features)
    assert ds.X_test.shape == (n_test, n_features)
    assert ds.y_train.shape == (n_total - n_test,) and ds.y_test.shape == (n_test,)
    assert ds.X_train.dtype == ds.X_test.dtype == np.float64
    assert ds.y_train.dtype == ds.y_test.dtype == np.int64
    assert ds.n_classes == n_classes and ds.n_features == n_features
    np.testing.assert_array_equal(ds.classes, np.arange(n_classes))
    assert set(np.unique(ds.y_train)) == set(range(n_classes))


def test_digits_pixels_in_unit_interval():
    ds = load_dataset("digits")
    X = np.concatenate([ds.X_train, ds.X_test])
    assert len(X) == N_DIGITS
    assert X.min() == 0.0 and X.max() == 1.0
    # load_digits pixels are integers 0..16, so the scaled values are multiples of 1/16
    np.testing.assert_array_equal(X * 16, np.round(X * 16))


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_split_is_stratified(name):
    ds = load_dataset(name)
    train = class_fractions(ds.y_train, ds.n_classes)
    test = class_fractions(ds.y_test, ds.n_classes)
    # stratification matches the proportions up to rounding of one sample per class
    np.testing.assert_allclose(test, train, atol=1.5 / len(ds.y_test))


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_reproducible_by_seed(name):
    a, b, c = load_dataset(name, seed=3), load_dataset(name, seed=3), load_dataset(name, seed=4)
    for field in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.X_test, c.X_test)


def test_n_samples_noise_and_test_size():
    ds = load_dataset("moons", n_samples=200, test_size=0.5)
    assert len(ds.X_train) == len(ds.X_test) == 100
    clean, noisy = load_dataset("circles", noise=0.0), load_dataset("circles", noise=0.2)
    radii = np.linalg.norm(clean.X_train, axis=1)
    np.testing.assert_allclose(np.sort(np.unique(radii.round(12))), [0.5, 1.0])
    assert len(np.unique(np.linalg.norm(noisy.X_train, axis=1).round(12))) > 2


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist")
    assert "'mnist'" in str(info.value)
    assert all(name in str(info.value) for name in DATASET_NAMES)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"name": "digits", "noise": 0.1}, DatasetError),
        ({"name": "moons", "n_samples": 0}, InputError),
        ({"name": "moons", "noise": -0.1}, InputError),
        ({"name": "moons", "test_size": 1.0}, InputError),
        ({"name": "moons", "seed": -1}, InputError),
        ({"name": "moons", "n_samples": 3}, DatasetError),  # a class of 1: cannot stratify
    ],
)
def test_bad_builtin_arguments(kwargs, error):
    with pytest.raises(error):
        load_dataset(**kwargs)


def test_dataset_arrays_are_read_only():
    ds = load_dataset("moons", n_samples=100)
    with pytest.raises(ValueError):
        ds.X_train[0, 0] = 1.0
    batch = ds.X_train[[0, 1]]
    batch[0, 0] = 1.0  # fancy indexing gives a writable copy


def test_dataset_checks_its_fields():
    X, y = np.zeros((4, 2)), np.zeros(4, dtype=np.int64)
    with pytest.raises(DatasetError, match="labels outside"):
        Dataset("d", X, y + 2, X, y, n_classes=2)
    with pytest.raises(DatasetError, match="2-D float64"):
        Dataset("d", X[:, 0], y, X, y, n_classes=2)


# ------------------------------------------------------------------ good files
def labelled_data(labels=(3, 7), per_class=8, n_features=3, seed=0):
    """X whose first column is the sample's label, so remapping can be checked."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(labels), per_class)
    X = rng.normal(size=(len(y), n_features))
    X[:, 0] = y
    return X, y


def write_csv(path, X, y, header=None):
    lines = [header] if header else []
    lines += [",".join(map(repr, [*row, label])) for row, label in zip(X.tolist(), y.tolist())]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("fmt", ["npz", "csv", "csv_header"])
def test_load_file_remaps_labels(tmp_path, fmt):
    X, y = labelled_data(labels=(7, 3, 12))
    if fmt == "npz":
        path = tmp_path / "data.npz"
        np.savez(path, X=X, y=y)
    else:
        header = "a,b,c,label" if fmt == "csv_header" else None
        path = write_csv(tmp_path / "data.csv", X, y, header=header)
    ds = load_file(path)
    assert ds.name == "data" and ds.n_classes == 3 and ds.n_features == 3
    np.testing.assert_array_equal(ds.classes, [3, 7, 12])
    assert ds.y_train.dtype == np.int64 and set(ds.y_train) == {0, 1, 2}
    for X_part, y_part in ((ds.X_train, ds.y_train), (ds.X_test, ds.y_test)):
        np.testing.assert_array_equal(ds.classes[y_part], X_part[:, 0])
    assert len(ds.X_train) + len(ds.X_test) == len(X)
    assert len(ds.X_test) == 6  # ceil(0.25 * 24), two per class


def test_load_file_reproducible_and_stratified(tmp_path):
    X, y = labelled_data(labels=(0, 1), per_class=40)
    path = tmp_path / "d.npz"
    np.savez(path, X=X, y=y)
    a, b = load_file(path, seed=5), load_file(path, seed=5)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    np.testing.assert_array_equal(np.bincount(a.y_test), [10, 10])


def test_load_file_regression(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), rng.normal(size=20)
    ds = load_file(write_csv(tmp_path / "r.csv", X, y, header="x0,x1,target"), task="regression")
    assert ds.n_classes is None and ds.classes is None and ds.task == "regression"
    assert ds.y_train.shape == (15, 1) and ds.y_test.shape == (5, 1)
    assert ds.y_train.dtype == np.float64


# ------------------------------------------------------------------ bad files
def _npz(**arrays):
    def write(tmp_path):
        path = tmp_path / "bad.npz"
        np.savez(path, **arrays)
        return path

    return write


def _text(name, text):
    def write(tmp_path):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


X_GOOD, Y_GOOD = labelled_data(labels=(0, 1), per_class=6)
X_NAN = X_GOOD.copy()
X_NAN[[2, 5], 1] = [np.nan, np.inf]

BAD_FILES = {
    "missing file": (lambda tmp_path: tmp_path / "nowhere.npz", "not found"),
    "directory": (lambda tmp_path: tmp_path, "is not a file"),
    "unknown extension": (_text("bad.txt", "1,2,0\n"), r"unknown extension '\.txt'.*\.npz, \.csv"),
    "missing key": (_npz(X=X_GOOD, labels=Y_GOOD), r"missing array\(s\) y.*\[X, labels\]"),
    "X not 2-D": (_npz(X=X_GOOD[:, 0], y=Y_GOOD), r"X must be 2-D.*shape \(12,\).*reshape"),
    "length mismatch": (_npz(X=X_GOOD, y=Y_GOOD[:-1]), "X has 12 rows but y has 11"),
    "NaN in X": (_npz(X=X_NAN, y=Y_GOOD), r"NaN or inf in rows 2, 5 \(0-based\)"),
    "string X": (_npz(X=X_GOOD.astype(str), y=Y_GOOD), "real numbers"),
    "non-integer label": (
        _npz(X=X_GOOD, y=Y_GOOD + 0.5),
        r"must be integers, but rows 0, 1, .* and 2 more hold non-integer values \(first: 0\.5\)",
    ),
    "negative label": (
        _npz(X=X_GOOD, y=Y_GOOD - 1),
        r"must be >= 0, but rows 0, 1, 2, 3, 4, 5 \(0-based\) hold negative values \(first: -1\)",
    ),
    "NaN label": (_npz(X=X_GOOD, y=np.where(Y_GOOD == 1, np.nan, 0.0)), "label is NaN or inf"),
    "single-sample class": (
        _npz(X=X_GOOD[:7], y=np.r_[Y_GOOD[:6], 4]),
        r"class 4 has only 1 sample\(s\) \(row 6 \(0-based\)\).*at least 2 per class",
    ),
    "one class": (_npz(X=X_GOOD, y=np.zeros(12, int)), "only one class .*label 0"),
    "pickled object array": (_npz(X=X_GOOD.astype(object), y=Y_GOOD), "must be numeric arrays"),
    "not an archive": (_text("bad.npz", "hello, world\n"), "not a readable .npz archive"),
    "non-numeric cell": (
        _text("bad.csv", "x,y,label\n1,2,0\n3,abc,1\n"),
        "line 3, column 2: 'abc' is not a number",
    ),
    "empty cell": (_text("bad.csv", "1,2,0\n3,,1\n"), "line 2, column 2: '' is not a number"),
    "ragged csv": (_text("bad.csv", "1,2,0\n3,4,5,1\n"), "line 2 has 4 columns, expected 3"),
    "inf in csv": (_text("bad.csv", "1,2,0\n3,4,0\n\ninf,1,1\n5,6,1\n"), "NaN or inf in line 4$"),
    "label only csv": (_text("bad.csv", "0\n1\n"), "at least one feature column"),
    "empty csv": (_text("bad.csv", "a,b,label\n\n"), "no data rows"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_raises_informative_error(tmp_path, case):
    write, pattern = BAD_FILES[case]
    path = write(tmp_path)
    with pytest.raises(DatasetError, match=pattern) as info:
        load_file(path)
    assert path.name in str(info.value)  # the message says which file


def test_bad_rows_list_is_truncated(tmp_path):
    X, y = labelled_data(per_class=20)
    X[:, 1] = np.nan
    path = tmp_path / "many.npz"
    np.savez(path, X=X, y=y)
    with pytest.raises(DatasetError, match=r"rows 0, 1, .*, 9 \(0-based\) and 30 more"):
        load_file(path)


def test_bad_task_and_split_arguments(tmp_path):
    path = _npz(X=X_GOOD, y=Y_GOOD)(tmp_path)
    with pytest.raises(InputError, match="task"):
        load_file(path, task="clustering")
    with pytest.raises(InputError, match="test_size"):
        load_file(path, test_size=0)


# ------------------------------------------------------------------ validation split
def test_train_validation_split_stratified_and_reproducible():
    ds = load_dataset("digits")
    X_tr, y_tr, X_val, y_val = train_validation_split(ds.X_train, ds.y_train, 0.2, seed=1)
    assert len(X_tr) + len(X_val) == len(ds.X_train) and len(X_val) == len(y_val)
    np.testing.assert_allclose(
        class_fractions(y_val, 10), class_fractions(y_tr, 10), atol=1.5 / len(y_val)
    )
    again = train_validation_split(ds.X_train, ds.y_train, 0.2, seed=1)
    np.testing.assert_array_equal(again[2], X_val)


def test_train_validation_split_regression_targets():
    X, y = np.arange(40.0).reshape(20, 2), np.linspace(0, 1, 20).reshape(20, 1)
    X_tr, y_tr, X_val, y_val = train_validation_split(X, y, 0.25, seed=0)
    assert X_val.shape == (5, 2) and y_val.shape == (5, 1)
    np.testing.assert_array_equal(X_val[:, 0] / 2, y_val[:, 0] * 19)  # rows stay paired


def test_train_validation_split_rejects_length_mismatch():
    with pytest.raises(DatasetError, match="lengths differ"):
        train_validation_split(np.zeros((5, 2)), np.zeros(4, int), 0.2, 0)


# ------------------------------------------------------------------ mini-batches
@pytest.mark.parametrize("n, batch_size", [(10, 3), (12, 4), (5, 8), (1, 1), (0, 4)])
def test_minibatches_cover_each_index_once(n, batch_size):
    batches = list(minibatches(n, batch_size, np.random.default_rng(0)))
    assert len(batches) == -(-n // batch_size)
    assert all(len(b) == batch_size for b in batches[:-1])
    joined = np.concatenate(batches) if batches else np.array([], dtype=int)
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def test_minibatches_reproducible_and_shuffled():
    def epoch(seed):
        return np.concatenate(list(minibatches(100, 32, np.random.default_rng(seed))))

    np.testing.assert_array_equal(epoch(7), epoch(7))
    assert not np.array_equal(epoch(7), epoch(8))
    assert not np.array_equal(epoch(7), np.arange(100))
    rng = np.random.default_rng(7)  # successive epochs from one generator differ
    first, second = (np.concatenate(list(minibatches(100, 32, rng))) for _ in range(2))
    assert not np.array_equal(first, second)


@pytest.mark.parametrize(
    "args", [(-1, 4, np.random.default_rng()), (10, 0, np.random.default_rng()), (10, 2, 0)]
)
def test_minibatches_bad_arguments(args):
    with pytest.raises(InputError):
        minibatches(*args)
