"""Adam / AdamW against hand-written formulas and torch.optim; schedules; resuming."""

import math

import numpy as np
import pytest

from kirchhoff_sim.errors import InputError, TrainingDivergedError
from kirchhoff_sim.training.optim import (
    Adam,
    AdamW,
    ConstantSchedule,
    CosineSchedule,
    StepSchedule,
)

REFERENCE_RTOL = 1e-12  # same maths, different order of rounding


@pytest.fixture(autouse=True)
def _raise_on_floating_point_errors():
    old = np.seterr(all="raise")
    yield
    np.seterr(**old)


# ------------------------------------------------------------------ test problem
# A separable quadratic over two parameter arrays of different shapes:
#   f = sum_k 0.5 * sum(curv_k * (theta_k - target_k)^2),  grad_k = curv_k * (theta_k - target_k)
# with curvatures spanning three decades, so the per-coordinate scaling matters.
_rng = np.random.default_rng(1234)
TARGETS = [_rng.normal(size=(3, 4)), _rng.normal(size=(4,))]
CURVATURES = [10.0 ** _rng.uniform(-1, 2, size=(3, 4)), 10.0 ** _rng.uniform(-1, 2, size=(4,))]
START = [_rng.normal(size=(3, 4)), _rng.normal(size=(4,))]


def quadratic_grads(params):
    return [c * (p - t) for p, c, t in zip(params, CURVATURES, TARGETS)]


def fresh_params():
    return [p.copy() for p in START]


def reference_adam(params, n_steps, lr_of_step, beta1, beta2, eps, weight_decay, decoupled):
    """Kingma & Ba's Algorithm 1 with m_hat / v_hat written out, plus the two decays."""
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, n_steps + 1):
        lr = lr_of_step(t)
        grads = quadratic_grads(params)
        for k in range(len(params)):
            g = grads[k]
            if decoupled:
                params[k] = params[k] - lr * weight_decay * params[k]
            else:
                g = g + weight_decay * params[k]
            m[k] = beta1 * m[k] + (1 - beta1) * g
            v[k] = beta2 * v[k] + (1 - beta2) * g**2
            m_hat = m[k] / (1 - beta1**t)
            v_hat = v[k] / (1 - beta2**t)
            params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


VARIANTS = [  # (class, weight_decay)
    (Adam, 0.0),
    (Adam, 0.1),
    (AdamW, 0.01),
    (AdamW, 0.1),
]


@pytest.mark.parametrize("cls, weight_decay", VARIANTS)
def test_matches_reference_formulas(cls, weight_decay):
    lr, betas, eps, n_steps = 0.05, (0.8, 0.95), 1e-6, 8
    params = fresh_params()
    opt = cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    for _ in range(n_steps):
        opt.step(quadratic_grads(params))
    expected = reference_adam(
        START, n_steps, lambda t: lr, *betas, eps, weight_decay, decoupled=cls is AdamW
    )
    for got, want in zip(params, expected):
        np.testing.assert_allclose(got, want, rtol=REFERENCE_RTOL)
    assert opt.n_steps == n_steps


def test_defaults_are_torchs():
    adam, adamw = Adam(fresh_params()), AdamW(fresh_params())
    for opt in (adam, adamw):
        assert (opt.base_lr, opt.betas, opt.eps) == (1e-3, (0.9, 0.999), 1e-8)
    assert adam.weight_decay == 0.0 and adamw.weight_decay == 1e-2


def test_adam_and_adamw_differ_only_by_decay():
    a, b = fresh_params(), fresh_params()
    adam, adamw = Adam(a, lr=0.1), AdamW(b, lr=0.1, weight_decay=0.0)
    for _ in range(5):
        adam.step(quadratic_grads(a))
        adamw.step(quadratic_grads(b))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


# ------------------------------------------------------------------ it optimises
def rosenbrock_grad(x):
    a, b = x
    return np.array([-2 * (1 - a) - 400 * a * (b - a * a), 200 * (b - a * a)])


def test_adam_minimises_rosenbrock():
    x = np.array([-1.5, 2.0])
    opt = Adam([x], lr=0.02)
    for _ in range(3000):
        opt.step([rosenbrock_grad(x)])
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-3)


def test_adamw_decay_shrinks_towards_zero_when_gradients_vanish():
    # with zero gradients only the decoupled decay acts: theta * (1 - lr*wd)^n exactly
    x = np.array([1.0, -2.0])
    opt = AdamW([x], lr=0.1, weight_decay=0.5)
    for _ in range(10):
        opt.step([np.zeros(2)])
    np.testing.assert_allclose(x, np.array([1.0, -2.0]) * (1 - 0.05) ** 10, rtol=1e-14)


# ------------------------------------------------------------------ schedules
def test_constant_schedule():
    assert all(ConstantSchedule().lr(0.3, e) == 0.3 for e in range(20))


def test_step_schedule_values():
    lr, gamma, step_size = 0.1, 0.5, 3
    schedule = StepSchedule(step_size, gamma)
    got = [schedule.lr(lr, e) for e in range(10)]
    assert got == [lr * gamma ** (e // step_size) for e in range(10)]
    assert got[:3] == [0.1] * 3 and got[3] == 0.05 and got[9] == 0.1 * 0.125


def test_cosine_schedule_values():
    lr, eta_min, t_max = 0.1, 1e-3, 10
    schedule = CosineSchedule(t_max, eta_min)
    for e in range(t_max + 1):
        want = eta_min + (lr - eta_min) * (1 + math.cos(math.pi * e / t_max)) / 2
        assert schedule.lr(lr, e) == pytest.approx(want, rel=1e-15)
    assert schedule.lr(lr, 0) == lr
    assert schedule.lr(lr, t_max) == pytest.approx(eta_min, rel=1e-12)
    assert schedule.lr(lr, t_max // 2) == pytest.approx((lr + eta_min) / 2, rel=1e-12)


def test_optimiser_lr_follows_set_epoch():
    opt = Adam(fresh_params(), lr=0.2, schedule=StepSchedule(2, 0.1))
    assert opt.lr == 0.2
    opt.set_epoch(2)
    assert opt.lr == pytest.approx(0.02)
    with pytest.raises(InputError, match="epoch"):
        opt.set_epoch(-1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: StepSchedule(0),
        lambda: StepSchedule(2.5),
        lambda: StepSchedule(2, gamma=0.0),
        lambda: CosineSchedule(0),
        lambda: CosineSchedule(5, eta_min=-1.0),
    ],
)
def test_bad_schedule_arguments(make):
    with pytest.raises(InputError):
        make()


# ------------------------------------------------------------------ resuming
def _train(opt, params, epochs, steps_per_epoch=3):
    for epoch in epochs:
        opt.set_epoch(epoch)
        for _ in range(steps_per_epoch):
            opt.step(quadratic_grads(params))


@pytest.mark.parametrize("cls, weight_decay", VARIANTS)
def test_state_dict_round_trip_through_npz_is_bit_identical(cls, weight_decay, tmp_path):
    kwargs = dict(lr=0.05, weight_decay=weight_decay, schedule=CosineSchedule(6, 1e-3))
    straight = fresh_params()
    _train(cls(straight, **kwargs), straight, range(6))

    first = fresh_params()
    opt = cls(first, **kwargs)
    _train(opt, first, range(3))
    state = opt.state_dict()
    for key, value in state.items():  # only arrays and JSON-able scalars
        assert isinstance(value, (np.ndarray, bool, int, float)), key
    np.savez(tmp_path / "ckpt.npz", *first, **state)

    with np.load(tmp_path / "ckpt.npz", allow_pickle=False) as ckpt:
        resumed_params = [ckpt["arr_0"].copy(), ckpt["arr_1"].copy()]
        # a differently configured optimiser: load_state_dict restores the hyper-parameters
        resumed = cls(resumed_params, lr=1.0, weight_decay=0.0, schedule=kwargs["schedule"])
        resumed.load_state_dict(dict(ckpt))
    assert resumed.n_steps == 9 and resumed.epoch == 2
    _train(resumed, resumed_params, range(3, 6))
    for a, b in zip(straight, resumed_params):
        np.testing.assert_array_equal(a, b)


def test_state_dict_is_a_copy():
    params = fresh_params()
    opt = Adam(params, lr=0.1)
    opt.step(quadratic_grads(params))
    state = opt.state_dict()
    saved = state["exp_avg_0"].copy()
    opt.step(quadratic_grads(params))
    np.testing.assert_array_equal(state["exp_avg_0"], saved)


def test_load_state_dict_rejects_mismatches():
    state = AdamW(fresh_params()).state_dict()
    with pytest.raises(InputError, match="saved by AdamW"):
        Adam(fresh_params()).load_state_dict(state)
    with pytest.raises(InputError, match="parameter arrays"):
        AdamW([np.zeros(3)]).load_state_dict(state)
    with pytest.raises(InputError, match="shape"):
        AdamW([np.zeros((4, 3)), np.zeros(4)]).load_state_dict(state)
    del state["step"]
    with pytest.raises(InputError, match="missing key"):
        AdamW(fresh_params()).load_state_dict(state)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_gradient_raises_and_leaves_state_alone(bad):
    params = fresh_params()
    opt = Adam(params, lr=0.1)
    opt.step(quadratic_grads(params))
    before, state = [p.copy() for p in params], opt.state_dict()
    grads = quadratic_grads(params)
    grads[1][2] = bad
    with pytest.raises(TrainingDivergedError, match=r"grads\[1\] has 1 NaN/inf"):
        opt.step(grads)
    for p, q in zip(params, before):
        np.testing.assert_array_equal(p, q)
    assert opt.n_steps == state["step"] == 1
    np.testing.assert_array_equal(opt.exp_avg[0], state["exp_avg_0"])


def test_overflowing_update_raises_and_leaves_params_alone():
    x = np.array([-1e308, 0.0])
    opt = Adam([x], lr=1e308)
    with pytest.raises(TrainingDivergedError, match="non-finite"):
        opt.step([np.array([1.0, 1.0])])
    np.testing.assert_array_equal(x, [-1e308, 0.0])
    assert opt.n_steps == 0


def test_shape_mismatch_raises():
    params = fresh_params()
    opt = AdamW(params)
    message = r"grads\[0\] has shape \(4, 3\) but params\[0\] has shape \(3, 4\)"
    with pytest.raises(InputError, match=message):
        opt.step([np.zeros((4, 3)), np.zeros(4)])
    with pytest.raises(InputError, match="1 gradients for 2"):
        opt.step([np.zeros((3, 4))])


@pytest.mark.parametrize(
    "params, kwargs, match",
    [
        ([], {}, "empty"),
        ([np.zeros(3, dtype=int)], {}, "floating-point"),
        ([np.zeros(3)], {"lr": -1.0}, "lr"),
        ([np.zeros(3)], {"betas": (0.9, 1.0)}, "betas"),
        ([np.zeros(3)], {"eps": -1e-8}, "eps"),
        ([np.zeros(3)], {"weight_decay": np.nan}, "weight_decay"),
    ],
)
def test_bad_constructor_arguments(params, kwargs, match):
    with pytest.raises(InputError, match=match):
        Adam(params, **kwargs)


def test_same_array_twice_is_refused():
    x = np.zeros(3)
    with pytest.raises(InputError, match="twice"):
        Adam([x, x])
