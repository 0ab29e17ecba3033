"""Data sets for training: the benchmark sets and user files, split into train and test.

Every loader returns a :class:`Dataset` whose test split is made by scikit-learn's
``train_test_split`` — stratified by class for classification, with
``random_state=seed`` — so ``load_dataset("digits")`` always means "a stratified 25 %
test split (seed 0)" and two runs with the same seed see the same samples.

Built-in sets (see :data:`DATASET_NAMES`):

=========  ==================================================================  ===  ===
name       source                                                              d    K
=========  ==================================================================  ===  ===
moons      ``sklearn.datasets.make_moons``, noise 0.1                          2    2
circles    ``sklearn.datasets.make_circles``, noise 0.05, inner radius 0.5     2    2
digits     ``sklearn.datasets.load_digits`` (1,797 real 8×8 images, shipped    64   10
           with scikit-learn), pixels scaled from 0..16 to [0, 1]
=========  ==================================================================  ===  ===

User files (:func:`load_file`) are ``.npz`` archives with arrays ``X`` ``(n, d)`` and
``y`` ``(n,)``, read with ``allow_pickle=False``, or ``.csv`` files with the features in
the first columns and the label (or regression target) in the last, with an optional
header row. Any problem with a file raises :class:`~kirchhoff_sim.errors.DatasetError`
naming the file and, where it helps, the row, line or column at fault.
"""

from __future__ import annotations

import csv
import io
import numbers
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from ..errors import DatasetError, InputError
from ..flows import POTENTIALS

DEFAULT_TEST_SIZE = 0.25
MOONS_NOISE = 0.1  # std of the Gaussian noise: the two moons overlap a little
CIRCLES_NOISE = 0.05
CIRCLES_FACTOR = 0.5  # inner circle's radius relative to the outer one
DIGITS_MAX_PIXEL = 16.0  # load_digits pixels count the set bits of a 4×4 block: 0..16
MIN_SAMPLES_PER_CLASS = 2  # a stratified split puts each class on both sides
MAX_ROWS_LISTED = 10  # bad rows named in an error message before "and N more"
MAX_SAMPLES = 10 ** 8  # points a synthetic set may be asked for (the package's bound on counts)

TASKS = ("classification", "regression")
FILE_FORMATS = (".npz", ".csv")
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned int, float: dtype.kind codes


# ----------------------------------------------------------------------- the container
@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Dataset:
    """A data set split into a training and a test part.

    Attributes
    ----------
    name : str
        Built-in name or the file's stem.
    X_train : ndarray, shape (n_train, d), float64
    y_train : ndarray
        Classification: shape ``(n_train,)``, int64 class indices ``0..K-1``.
        Regression: shape ``(n_train, k)``, float64 targets.
    X_test : ndarray, shape (n_test, d), float64
    y_test : ndarray, shape (n_test,) or (n_test, k)
        As ``y_train``.
    n_classes : int or None
        ``K`` for classification, ``None`` for regression.
    classes : ndarray, shape (K,), int64, or None
        The original label of each class index: ``classes[y_train[i]]`` is the label
        sample ``i`` had in the source. ``None`` for regression.

    Notes
    -----
    The arrays are stored as read-only views, so a training loop cannot change the data
    set by accident; index them (``X_train[batch]``) to get writable copies.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None
    classes: np.ndarray | None = None

    def __post_init__(self):
        # other real dtypes are widened losslessly (float32 data trains like float64);
        # complex, strings and objects are left for _check_dataset to refuse
        for name in ("X_train", "X_test", "y_train", "y_test"):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                if value.dtype.kind == "f" and value.dtype != np.float64:
                    object.__setattr__(self, name, value.astype(np.float64))
                elif value.dtype.kind in "iu" and value.dtype != np.int64 and name.startswith("y") \
                        and self.n_classes is not None:
                    object.__setattr__(self, name, value.astype(np.int64))
        _check_dataset(self)
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                view = value.view()  # freeze a view, not the caller's own array
                view.flags.writeable = False
                object.__setattr__(self, f.name, view)

    @property
    def n_features(self) -> int:
        """Number of input features ``d``."""
        return self.X_train.shape[1]

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return TASKS[0] if self.n_classes is not None else TASKS[1]


def _check_dataset(ds: Dataset) -> None:
    """Raise DatasetError unless the fields of ``ds`` have consistent shapes and dtypes."""

    def fail(msg):
        raise DatasetError(f"Dataset {ds.name!r}: {msg}")

    for label, X in (("X_train", ds.X_train), ("X_test", ds.X_test)):
        if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != np.float64:
            fail(f"{label} must be a 2-D float64 array, got {_describe_array(X)}")
    if ds.X_train.shape[1] != ds.X_test.shape[1]:
        fail(f"X_train has {ds.X_train.shape[1]} features but X_test has {ds.X_test.shape[1]}")
    for label, X, y in (("train", ds.X_train, ds.y_train), ("test", ds.X_test, ds.y_test)):
        if not isinstance(y, np.ndarray) or len(y) != len(X):
            fail(f"y_{label} must be an array with {len(X)} rows, got {_describe_array(y)}")
        if ds.n_classes is None:
            if y.ndim != 2 or y.dtype != np.float64:
                fail(f"regression y_{label} must be 2-D float64 (n, k), got {_describe_array(y)}")
        else:
            if y.ndim != 1 or y.dtype != np.int64:
                fail(f"class labels y_{label} must be 1-D int64, got {_describe_array(y)}")
            if y.size and (y.min() < 0 or y.max() >= ds.n_classes):
                fail(f"y_{label} holds labels outside 0..{ds.n_classes - 1}")
    if ds.n_classes is None:
        if ds.y_train.shape[1] != ds.y_test.shape[1]:
            fail("y_train and y_test have different numbers of targets")
        if ds.classes is not None:
            fail("a regression data set has no classes")
    elif ds.classes is not None and ds.classes.shape != (ds.n_classes,):
        fail(f"classes has shape {ds.classes.shape}, expected ({ds.n_classes},)")


def _describe_array(a) -> str:
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} dtype {a.dtype}"
    return type(a).__name__


# ----------------------------------------------------------------------- built-in sets
def _make_moons(n_samples: int, noise: float | None, seed: int):
    noise = MOONS_NOISE if noise is None else noise
    return sk_datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)


def _make_circles(n_samples: int, noise: float | None, seed: int):
    noise = CIRCLES_NOISE if noise is None else noise
    return sk_datasets.make_circles(
        n_samples=n_samples, noise=noise, factor=CIRCLES_FACTOR, random_state=seed
    )


def _load_digits(n_samples: int, noise: float | None, seed: int):
    # A fixed, real data set: n_samples and seed play no part in producing it
    # (the seed still drives the split), and there is no noise level to set.
    if noise is not None:
        raise DatasetError("'digits' is a fixed data set: it takes no noise level")
    X, y = sk_datasets.load_digits(return_X_y=True)
    return X / DIGITS_MAX_PIXEL, y


_BUILTIN = {"moons": _make_moons, "circles": _make_circles, "digits": _load_digits}
DATASET_NAMES = tuple(_BUILTIN)


def load_dataset(
    name: str,
    *,
    n_samples: int = 2000,
    noise: float | None = None,
    test_size: float = DEFAULT_TEST_SIZE,
    seed: int = 0,
) -> Dataset:
    """Load a built-in classification set, split into stratified train and test parts.

    Parameters
    ----------
    name : {"moons", "circles", "digits"}
    n_samples : int
        Number of points drawn for the synthetic sets, 1 .. :data:`MAX_SAMPLES`; ignored
        by ``"digits"``, which always has its 1,797 images.
    noise : float or None
        Standard deviation of the Gaussian noise of the synthetic sets; ``None`` takes
        :data:`MOONS_NOISE` or :data:`CIRCLES_NOISE`. Must be ``None`` for ``"digits"``.
    test_size : float
        Fraction of the samples in the test part, in (0, 1).
    seed : int
        Seeds both the synthetic points and the split.

    Returns
    -------
    Dataset
        ``X`` float64 of shape ``(n, d)``; ``y`` int64 class indices of shape ``(n,)``.

    Raises
    ------
    DatasetError
        Unknown name (the message lists the valid ones), or a split that cannot be
        stratified (too few samples).
    InputError
        ``n_samples``, ``noise``, ``test_size`` or ``seed`` out of range.
    """
    make = _BUILTIN.get(name) if isinstance(name, str) else None
    if make is None:
        raise DatasetError(f"unknown data set {name!r}; valid names are {', '.join(DATASET_NAMES)}")
    if not _is_int(n_samples) or not 1 <= n_samples <= MAX_SAMPLES:
        raise InputError(f"n_samples must be an integer in 1 .. {MAX_SAMPLES:.0e}, got {n_samples!r}")
    if noise is not None and not (_is_real(noise) and np.isfinite(noise) and noise >= 0):
        raise InputError(f"noise must be a finite number >= 0 or None, got {noise!r}")
    _check_split_args(test_size, seed, "test_size")
    X, y = make(n_samples, noise, seed)
    return _classification_dataset(name, X.astype(np.float64), y, test_size, seed)


# ------------------------------------------------------------- toy densities (flows)
def _two_spirals(n, rng):
    # FFJORD's "2spirals" (Grathwohl et al., ICLR 2019), as the reference's testbench
    n_half = n // 2
    angle = np.sqrt(rng.uniform(size=(n_half, 1))) * 540.0 * (2.0 * np.pi) / 360.0
    arm = np.hstack((-np.cos(angle) * angle + rng.uniform(size=(n_half, 1)) * 0.5,
                     np.sin(angle) * angle + rng.uniform(size=(n_half, 1)) * 0.5))
    x = np.vstack((arm, -arm)) / 3.0
    return x + rng.normal(size=x.shape) * 0.1


def _pinwheel(n, rng, classes=5, radial_std=0.3, tangential_std=0.1, rate=0.25):
    # the pinwheel of Johnson et al. (NeurIPS 2016), as FFJORD and the reference draw it
    per_class = n // classes
    features = rng.normal(size=(classes * per_class, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(classes), per_class)
    angles = np.linspace(0, 2 * np.pi, classes, endpoint=False)[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)]).T.reshape(-1, 2, 2)
    return 2.0 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))


def _eight_gaussians(n, rng, scale=4.0, std=0.5):
    # eight unit-direction centres at radius 4, std 0.5, then divided by 1.414 (FFJORD's)
    r = 1.0 / np.sqrt(2.0)
    centres = scale * np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)])
    return (rng.normal(size=(n, 2)) * std + centres[rng.randint(8, size=n)]) / 1.414


#: the 2-D toy densities of the paper's flows (reference ``utils/testbench.py``):
#: name → ``draw(n, rng) -> (n, 2)``
DENSITIES = {
    "twomoon": lambda n, rng: sk_datasets.make_moons(n_samples=n, noise=0.1, random_state=rng)[0],
    "circles": lambda n, rng: sk_datasets.make_circles(n_samples=n, noise=0.06, factor=0.5, random_state=rng)[0],
    "pinwheel": _pinwheel,
    "8gaussians": _eight_gaussians,
    "2spirals": _two_spirals,
    "swissroll": lambda n, rng: sk_datasets.make_swiss_roll(n_samples=n, noise=1.0, random_state=rng)[0][:, [0, 2]] / 5.0,
}
DENSITY_NAMES = tuple(DENSITIES)
#: the paper's potentials (:data:`kirchhoff_sim.flows.POTENTIALS`), fitted by reverse KL:
#: they have no data, and their points are draws of the flow's base density N(0, I)
POTENTIAL_NAMES = tuple(POTENTIALS)
#: everything ``train --flow --task`` takes
FLOW_TASK_NAMES = DENSITY_NAMES + POTENTIAL_NAMES


def load_density(name: str, *, n_samples: int = 4096, test_size: float = DEFAULT_TEST_SIZE,
                 seed: int = 0) -> Dataset:
    """A 2-D toy density for a flow, split into train and test points.

    Parameters
    ----------
    name : one of :data:`FLOW_TASK_NAMES`
        ``twomoon`` (``make_moons``, noise 0.1), ``circles`` (``make_circles``, noise 0.06,
        factor 0.5), ``pinwheel``, ``8gaussians``, ``2spirals``, ``swissroll`` (its x and z
        coordinates / 5) — the reference's test benches (4,096 points each there); or a
        potential, ``potential1``/``potential2``, whose points are base draws ``N(0, I)``.
    n_samples : int
    test_size : float
    seed : int

    Returns
    -------
    Dataset
        ``X`` ``(n, 2)``; a density has no targets, so ``y`` is ``(n, 0)``.

    Raises
    ------
    DatasetError
        Unknown name.
    InputError
        ``n_samples``, ``test_size`` or ``seed`` out of range.
    """
    draw = DENSITIES.get(name) if isinstance(name, str) else None
    if isinstance(name, str) and name in POTENTIAL_NAMES:
        draw = lambda n, rng: rng.standard_normal((n, 2))     # noqa: E731
    if draw is None:
        raise DatasetError(f"unknown density {name!r}; valid names are {', '.join(FLOW_TASK_NAMES)}")
    if not _is_int(n_samples) or not 10 <= n_samples <= MAX_SAMPLES:
        raise InputError(f"n_samples must be an integer in 10 .. {MAX_SAMPLES:.0e}, got {n_samples!r}")
    _check_split_args(test_size, seed, "test_size")
    X = np.asarray(draw(int(n_samples), np.random.RandomState(seed)), dtype=np.float64)
    X_train, X_test = train_test_split(X, test_size=test_size, random_state=seed)
    return Dataset(name, X_train, np.zeros((len(X_train), 0)), X_test, np.zeros((len(X_test), 0)), None)


def _classification_dataset(name, X, labels, test_size, seed) -> Dataset:
    classes, y = np.unique(labels, return_inverse=True)
    X_tr, X_te, y_tr, y_te = _split(X, y.astype(np.int64), test_size, seed, y, name)
    return Dataset(name, X_tr, y_tr, X_te, y_te, len(classes), classes.astype(np.int64))


def _split(X, y, fraction, seed, stratify, source):
    """sklearn's train_test_split, with its ValueErrors turned into DatasetErrors."""
    try:
        return train_test_split(X, y, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        kind = "a stratified split" if stratify is not None else "a split"
        raise DatasetError(
            f"{source}: cannot make {kind} of {len(X)} samples with fraction {fraction}: {exc}"
        ) from exc


# ----------------------------------------------------------------------- user files
def load_file(
    path,
    *,
    test_size: float = DEFAULT_TEST_SIZE,
    seed: int = 0,
    task: str = "classification",
) -> Dataset:
    """Load a data set from an ``.npz`` or ``.csv`` file and split it into train and test.

    Parameters
    ----------
    path : str or path-like
        ``.npz``: arrays ``X`` of shape ``(n, d)`` and ``y`` of shape ``(n,)`` (or
        ``(n, k)`` for regression); read without pickle, so object arrays are refused.
        ``.csv``: comma-separated numbers, one sample per line, features first and the
        label or target last. The first line is taken as a header when none of its
        cells is a number. Blank lines are skipped.
    test_size : float
        Fraction of the samples in the test part, in (0, 1).
    seed : int
        ``random_state`` of the split.
    task : {"classification", "regression"}
        Classification labels must be non-negative integers (``3.0`` is fine, ``3.5``
        is not); they are renumbered ``0..K-1`` in increasing order and the original
        values kept in :attr:`Dataset.classes`. The split is stratified, so every
        class needs at least two samples. Regression targets are float64 ``(n, k)``
        and the split is not stratified.

    Returns
    -------
    Dataset
        Named after the file's stem.

    Raises
    ------
    DatasetError
        The file is missing, unreadable or of an unknown extension; ``X`` or ``y`` is
        missing or has the wrong shape; ``X`` has NaN/inf (the rows are named); a CSV
        cell is not a number (line and column are named); labels are negative or not
        integers, fewer than two classes, or a class with fewer than two samples.
    InputError
        ``test_size``, ``seed`` or ``task`` out of range.
    """
    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    _check_split_args(test_size, seed, "test_size")
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise DatasetError(f"data file {str(path)!r} {what}")
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise DatasetError(
            f"{path.name}: unknown extension {path.suffix!r}; "
            f"supported formats are {', '.join(FILE_FORMATS)}"
        )
    X, y, line_numbers = reader(path)
    rows = _RowNamer(path.name, line_numbers)
    X = _checked_features(X, rows)
    if len(y) != len(X):
        raise DatasetError(f"{path.name}: X has {len(X)} rows but y has {len(y)}")
    if task == "regression":
        y = _checked_targets(y, rows)
        X_tr, X_te, y_tr, y_te = _split(X, y, test_size, seed, None, path.name)
        return Dataset(path.stem, X_tr, y_tr, X_te, y_te, None)
    labels = _checked_labels(y, rows)
    return _classification_dataset(path.stem, X, labels, test_size, seed)


class _RowNamer:
    """Names bad rows in error messages: file lines for CSV, 0-based indices for npz."""

    def __init__(self, file_name: str, line_numbers: np.ndarray | None):
        self.file_name = file_name
        self.line_numbers = line_numbers

    def __call__(self, bad_rows: np.ndarray) -> str:
        shown = [int(i) for i in bad_rows[:MAX_ROWS_LISTED]]
        if self.line_numbers is None:
            word = "row" if len(bad_rows) == 1 else "rows"
            text = f"{word} {', '.join(map(str, shown))} (0-based)"
        else:
            word = "line" if len(bad_rows) == 1 else "lines"
            text = f"{word} {', '.join(str(self.line_numbers[i]) for i in shown)}"
        if len(bad_rows) > MAX_ROWS_LISTED:
            text += f" and {len(bad_rows) - MAX_ROWS_LISTED} more"
        return text

    def error(self, message: str) -> DatasetError:
        return DatasetError(f"{self.file_name}: {message}")


def _checked_features(X: np.ndarray, rows: _RowNamer) -> np.ndarray:
    """X as float64 (n, d) after checking its shape, type and finiteness."""
    if X.ndim != 2:
        hint = " (for one feature, store X.reshape(-1, 1))" if X.ndim == 1 else ""
        raise rows.error(f"X must be 2-D (n_samples, n_features), got shape {X.shape}{hint}")
    if X.dtype.kind not in _NUMERIC_KINDS:
        raise rows.error(f"X must hold real numbers, got dtype {X.dtype}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise rows.error(f"X is empty (shape {X.shape})")
    X = X.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise rows.error(f"X has NaN or inf in {rows(bad)}")
    return X


def _checked_targets(y: np.ndarray, rows: _RowNamer) -> np.ndarray:
    """Regression targets as float64 (n, k)."""
    if y.ndim not in (1, 2) or y.dtype.kind not in _NUMERIC_KINDS:
        raise rows.error(
            f"regression targets y must be real (n,) or (n, k), got {_describe_array(y)}"
        )
    y = y.astype(np.float64).reshape(len(y), -1)
    bad = np.flatnonzero(~np.isfinite(y).all(axis=1))
    if bad.size:
        raise rows.error(f"y has NaN or inf in {rows(bad)}")
    return y


def _checked_labels(y: np.ndarray, rows: _RowNamer) -> np.ndarray:
    """Class labels as int64 (n,) after checking they are integers >= 0 with two or
    more classes of two or more samples each."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]  # a column vector of labels is still one label per sample
    if y.ndim != 1:
        raise rows.error(f"class labels y must be 1-D (n_samples,), got shape {y.shape}")
    if y.dtype.kind not in _NUMERIC_KINDS:
        raise rows.error(f"class labels must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y))
        if bad.size:
            raise rows.error(f"label is NaN or inf in {rows(bad)}")
        bad = np.flatnonzero(y != np.round(y))
        if bad.size:
            raise rows.error(
                f"class labels must be integers, but {rows(bad)} hold non-integer values "
                f"(first: {y[bad[0]].item()!r}); use task='regression' for real targets"
            )
    bad = np.flatnonzero(y < 0)
    if bad.size:
        raise rows.error(
            f"class labels must be >= 0, but {rows(bad)} hold negative values "
            f"(first: {y[bad[0]].item()!r})"
        )
    labels = y.astype(np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise rows.error(
            f"only one class (label {classes[0]}) found; classification needs at least 2"
        )
    rare = np.flatnonzero(counts < MIN_SAMPLES_PER_CLASS)
    if rare.size:
        label, count = classes[rare[0]], counts[rare[0]]
        others = ""
        if rare.size > 1:
            others = f" (so do classes {', '.join(map(str, classes[rare[1:]]))})"
        raise rows.error(
            f"class {label} has only {count} sample(s) ({rows(np.flatnonzero(labels == label))})"
            f"{others}; a stratified split needs at least {MIN_SAMPLES_PER_CLASS} per class"
        )
    return labels


def _read_npz(path: Path):
    """(X, y, None) from an .npz archive; None: rows are named by 0-based index."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # np.load falls back to unpickling unknown files, which allow_pickle=False
        # refuses with a ValueError: either way the file is not an npz archive
        raise DatasetError(f"{path.name}: not a readable .npz archive ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError(
            f"{path.name}: holds a single .npy array, not an .npz archive with X and y"
        )
    with archive:
        missing = [key for key in ("X", "y") if key not in archive.files]
        if missing:
            raise DatasetError(
                f"{path.name}: missing array(s) {', '.join(missing)}; the archive holds "
                f"[{', '.join(archive.files)}], expected X (n, d) and y (n,)"
            )
        try:
            return archive["X"], archive["y"], None
        except ValueError as exc:  # object arrays would need pickle
            raise DatasetError(f"{path.name}: X and y must be numeric arrays ({exc})") from exc


def _read_csv(path: Path):
    """(X, y, line_numbers) from a CSV file; line_numbers are 1-based file lines."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: drop a spreadsheet's BOM
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path.name}: not UTF-8 text (byte {exc.start})") from exc
    reader = csv.reader(io.StringIO(text))
    lines = [(reader.line_num, cells) for cells in reader if any(c.strip() for c in cells)]
    if lines and all(_to_float(c) is None for c in lines[0][1]):
        header_line, header = lines.pop(0)
    else:
        header_line, header = None, None
    if not lines:
        raise DatasetError(f"{path.name}: no data rows")
    n_columns = len(header) if header is not None else len(lines[0][1])
    shape_line = header_line if header is not None else lines[0][0]
    if n_columns < 2:
        raise DatasetError(
            f"{path.name}: line {shape_line} has {n_columns} column; need at least one "
            "feature column and the label column"
        )
    values = np.empty((len(lines), n_columns))
    for row, (line_no, cells) in enumerate(lines):
        if len(cells) != n_columns:
            raise DatasetError(
                f"{path.name}: line {line_no} has {len(cells)} columns, "
                f"expected {n_columns} (as on line {shape_line})"
            )
        for col, cell in enumerate(cells):
            number = _to_float(cell)
            if number is None:
                raise DatasetError(
                    f"{path.name}: line {line_no}, column {col + 1}: {cell!r} is not a number"
                )
            values[row, col] = number
    line_numbers = np.array([line_no for line_no, _ in lines])
    return values[:, :-1], values[:, -1], line_numbers


def _to_float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


_READERS = {".npz": _read_npz, ".csv": _read_csv}


# ----------------------------------------------------------------------- splits, batches
def train_validation_split(X, y, fraction: float, seed: int):
    """Hold out a validation part of a training set.

    Parameters
    ----------
    X : array_like, shape (n, d)
    y : array_like, shape (n,) or (n, k)
        Integer class labels (1-D integer dtype) make the split stratified; anything
        else (regression targets) is split at random.
    fraction : float
        Fraction of the samples held out for validation, in (0, 1).
    seed : int
        ``random_state`` of the split.

    Returns
    -------
    X_tr : ndarray, shape (n - n_val, d)
    y_tr : ndarray, shape (n - n_val,) or (n - n_val, k)
    X_val : ndarray, shape (n_val, d)
    y_val : ndarray, shape (n_val,) or (n_val, k)

    Raises
    ------
    DatasetError
        ``X`` and ``y`` differ in length, or the split cannot be stratified.
    InputError
        ``fraction`` or ``seed`` out of range.
    """
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or y.ndim == 0 or len(X) != len(y):
        raise DatasetError(f"X has shape {X.shape} but y has shape {y.shape}: lengths differ")
    _check_split_args(fraction, seed, "fraction")
    stratify = y if y.ndim == 1 and y.dtype.kind in "iu" else None
    X_tr, X_val, y_tr, y_val = _split(X, y, fraction, seed, stratify, "train_validation_split")
    return X_tr, y_tr, X_val, y_val


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Shuffled mini-batches of the indices ``0..n-1``: one epoch.

    The permutation is drawn from ``rng`` when this function is called, so the same
    seed gives the same batches. Every index appears exactly once; the last batch is
    shorter when ``batch_size`` does not divide ``n``.

    Parameters
    ----------
    n : int
        Number of samples.
    batch_size : int
        Samples per batch (>= 1).
    rng : numpy.random.Generator

    Returns
    -------
    iterator of ndarray, each shape (batch_size,) int64 (the last possibly shorter)

    Raises
    ------
    InputError
        ``n`` < 0, ``batch_size`` < 1, or ``rng`` not a Generator.
    """
    if not _is_int(n) or n < 0:
        raise InputError(f"n must be an integer >= 0, got {n!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    order = rng.permutation(n)
    return (order[start : start + batch_size] for start in range(0, n, batch_size))


# ----------------------------------------------------------------------- argument checks
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def dataset_of_model(meta: dict, data=None, seed=None) -> Dataset:
    """The data a model was trained on, from its model file's metadata (``source``).

    Parameters
    ----------
    meta : dict
        The metadata of :func:`~kirchhoff_sim.modelfile.read_model_file`.
    data : path, optional
        Use this data file instead (its own split).
    seed : int, optional
        Split seed instead of the one recorded at training.

    Raises
    ------
    InputError
        The metadata names no task and no data file, and ``data`` is not given.
    """
    source = meta.get("source") if isinstance(meta, dict) else None
    source = source or {}
    if not isinstance(source, dict):
        raise InputError(f"the model's data source metadata is malformed: {source!r:.80}")
    recorded_seed = source.get("seed", 0)
    if not _is_int(recorded_seed) or recorded_seed < 0:
        raise InputError(f"the model's recorded split seed {recorded_seed!r} is not an integer >= 0")
    seed = recorded_seed if seed is None else seed
    if data:
        return load_file(data, seed=seed)
    task, path, options = source.get("task"), source.get("data"), source.get("dataset_options", {})
    for name, value, kind in (("task", task, str), ("data", path, str), ("dataset_options", options, dict)):
        if value is not None and not isinstance(value, kind):
            raise InputError(f"the model's data source {name} is {value!r:.80}, expected a {kind.__name__}")
    if task and meta.get("flow") is not None:           # a flow, trained on a toy density
        unknown = set(options) - {"n_samples", "test_size"}
        if unknown:
            raise InputError(f"the model's dataset_options name unknown options {sorted(unknown)}")
        return load_density(task, seed=seed, **options)
    if task:
        unknown = set(options) - {"n_samples", "noise", "test_size"}
        if unknown:
            raise InputError(f"the model's dataset_options name unknown options {sorted(unknown)}")
        return load_dataset(task, seed=seed, **options)
    if path:
        return load_file(path, seed=seed)
    raise InputError("the model file does not say which data it was trained on; give --data FILE")


def _check_split_args(fraction, seed, fraction_name: str) -> None:
    if not (_is_real(fraction) and 0 < fraction < 1):
        raise InputError(f"{fraction_name} must be a fraction in (0, 1), got {fraction!r}")
    if not _is_int(seed) or seed < 0:
        raise InputError(f"seed must be an integer >= 0, got {seed!r}")
