"""Checks of the torchdiffeq reference KirchhoffNet against exact answers.

Run: ``.venv/bin/python -m pytest benchmarks/test_torch_reference.py -q``
"""

import os
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import (  # noqa: E402
    ACTIVATIONS,
    DEVICE_FAMILIES,
    TorchKirchhoffNet,
    forward_numpy,
    loss_and_grad,
    num_device_params,
)

TIGHT = dict(method="dopri5", rtol=1e-10, atol=1e-10)


@pytest.fixture(autouse=True)
def _raise_on_float_errors():
    with np.errstate(all="raise"):
        yield


def _conductance_laplacian(src, dst, g, num_nodes):
    """Matrix M with dv/dt = M v for conductances g on edges src->dst (ground dropped)."""
    lap = np.zeros((num_nodes + 1, num_nodes + 1))
    for s, d, ge in zip(src, dst, g):
        lap[s, s] -= ge
        lap[d, d] -= ge
        lap[s, d] += ge
        lap[d, s] += ge
    return lap[1:, 1:]


def _naive_rhs(src, dst, params, family, v, capacitance):
    """Eq. (1) of DESIGN.md by a plain loop over edges, in numpy."""
    aux = np.concatenate([np.zeros((v.shape[0], 1)), v], axis=1)
    acts = {"identity": lambda x: x, "relu": lambda x: np.maximum(x, 0.0),
            "leaky_relu": lambda x: np.where(x > 0, x, 0.01 * x), "tanh": np.tanh,
            "softplus": lambda x: np.log1p(np.exp(x))}
    dv = np.zeros_like(aux)
    for e, (s, d) in enumerate(zip(src, dst)):
        vs, vd, p = aux[:, s], aux[:, d], params[:, e]
        if family == "conductance":
            i = p[0] * (vs - vd)
        elif family == "shifted_relu":
            i = p[1] * acts["relu"](vs - vd - p[0])
        elif family == "shifted_leaky_relu":
            i = p[1] * acts["leaky_relu"](vs - vd - p[0])
        elif family.startswith("difference_"):
            i = acts[family[len("difference_"):]](p[1] * (vs - vd) + p[0])
        else:
            i = acts[family[len("affine_"):]](p[0] * vs + p[1] * vd + p[2])
        dv[:, s] -= i
        dv[:, d] += i
    return dv[:, 1:] / capacitance


def _random_layer(rng, num_nodes, num_edges, family, duration, scale=0.5):
    src = rng.integers(0, num_nodes + 1, size=num_edges)
    dst = (src + rng.integers(1, num_nodes + 1, size=num_edges)) % (num_nodes + 1)
    params = rng.normal(0.0, scale, size=(num_device_params(family), num_edges))
    return {"src": src, "dst": dst, "params": params, "family": family,
            "duration": duration}


def test_device_families_listed():
    assert len(DEVICE_FAMILIES) == 3 + 2 * len(ACTIVATIONS)
    assert "affine_tanh" in DEVICE_FAMILIES and "difference_softplus" in DEVICE_FAMILIES
    with pytest.raises(ValueError, match="unknown device family"):
        num_device_params("affine_sigmoid")


@pytest.mark.parametrize("family", sorted(DEVICE_FAMILIES))
def test_rhs_matches_edge_loop(family):
    rng = np.random.default_rng(1)
    num_nodes = 6
    layer = _random_layer(rng, num_nodes, 20, family, 1.0)
    capacitance = rng.uniform(0.5, 2.0, size=num_nodes)
    net = TorchKirchhoffNet([layer], num_nodes, capacitance=capacitance)
    v = rng.normal(size=(4, num_nodes))
    with torch.no_grad():
        got = net.layers[0](torch.tensor(0.0), torch.as_tensor(v)).numpy()
    want = _naive_rhs(layer["src"], layer["dst"], layer["params"], family, v, capacitance)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_single_conductance_to_ground_decays_exponentially():
    g, duration = 0.7, 2.0
    layer = {"src": np.array([1]), "dst": np.array([0]), "params": np.array([[g]]),
             "family": "conductance", "duration": duration}
    x0 = np.array([[1.0], [-0.3]])
    out = forward_numpy([layer], 1, x0, **TIGHT)
    np.testing.assert_allclose(out, x0 * np.exp(-g * duration), rtol=1e-9, atol=1e-12)


def test_linear_conductance_net_matches_matrix_exponential():
    rng = np.random.default_rng(2)
    num_nodes = 5
    src, dst = np.nonzero(~np.eye(num_nodes + 1, dtype=bool))
    g = rng.uniform(0.1, 1.0, size=src.size)
    capacitance = rng.uniform(0.5, 2.0, size=num_nodes)
    layers = [{"src": src, "dst": dst, "params": g[None, :], "family": "conductance",
               "duration": 0.4},
              {"src": src[::2], "dst": dst[::2], "params": g[None, ::2],
               "family": "conductance", "duration": 0.6}]
    x0 = rng.normal(size=(3, num_nodes))
    out = forward_numpy(layers, num_nodes, x0, capacitance=capacitance, **TIGHT)
    want = x0.T
    for layer in layers:
        m = _conductance_laplacian(layer["src"], layer["dst"], layer["params"][0],
                                   num_nodes) / capacitance[:, None]
        want = scipy.linalg.expm(layer["duration"] * m) @ want
    np.testing.assert_allclose(out, want.T, rtol=1e-8, atol=1e-9)


def test_fixed_step_rk4_converges_to_dopri5():
    rng = np.random.default_rng(3)
    layers = [_random_layer(rng, 4, 12, "affine_tanh", 0.5) for _ in range(2)]
    x0 = rng.normal(size=(2, 4))
    ref = forward_numpy(layers, 4, x0, **TIGHT)
    out = forward_numpy(layers, 4, x0, method="rk4", step_size=0.01)
    np.testing.assert_allclose(out, ref, atol=1e-8)


def test_nfe_counts_rhs_evaluations():
    rng = np.random.default_rng(4)
    layers = [_random_layer(rng, 4, 12, "conductance", 0.5, scale=1.0)]
    net = TorchKirchhoffNet(layers, 4)
    with torch.no_grad():
        net(torch.zeros(1, 4, dtype=torch.float64), method="euler", step_size=0.1)
    assert net.nfe == 5  # 5 Euler steps over [0, 0.5]
    net.reset_nfe()
    assert net.nfe_per_layer == [0]


def _classifier_problem():
    # Smooth devices only: across a relu kink dopri5's error control makes the computed
    # output jump by ~1e-8 even at rtol=atol=1e-10, which ruins finite differences.
    rng = np.random.default_rng(5)
    num_nodes = 5
    layers = [_random_layer(rng, num_nodes, 10, "affine_tanh", 0.5),
              _random_layer(rng, num_nodes, 8, "difference_softplus", 0.3, scale=0.8)]
    x0 = rng.normal(size=(3, num_nodes))
    labels = np.array([0, 2, 1])
    readout = np.array([3, 4, 5])
    return layers, num_nodes, x0, labels, readout


def _loss(layers, num_nodes, x0, labels, readout):
    logits = forward_numpy(layers, num_nodes, x0, **TIGHT)[:, readout - 1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def test_loss_and_grad_adjoint_backprop_and_finite_differences_agree():
    layers, num_nodes, x0, labels, readout = _classifier_problem()
    loss_a, grads_a, gx_a = loss_and_grad(layers, num_nodes, x0, labels, readout,
                                          adjoint=True, **TIGHT)
    loss_b, grads_b, gx_b = loss_and_grad(layers, num_nodes, x0, labels, readout,
                                          adjoint=False, **TIGHT)
    assert loss_a == pytest.approx(loss_b, rel=1e-12)
    assert loss_a == pytest.approx(_loss(layers, num_nodes, x0, labels, readout), rel=1e-12)
    for ga, gb, layer in zip(grads_a, grads_b, layers):
        assert ga.shape == layer["params"].shape
        np.testing.assert_allclose(ga, gb, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(gx_a, gx_b, rtol=1e-5, atol=1e-8)

    eps = 1e-5
    for k, layer in enumerate(layers):
        fd = np.zeros_like(layer["params"])
        for idx in np.ndindex(*layer["params"].shape):
            losses = []
            for sign in (1.0, -1.0):
                perturbed = [dict(lay) for lay in layers]
                params = layer["params"].copy()
                params[idx] += sign * eps
                perturbed[k]["params"] = params
                losses.append(_loss(perturbed, num_nodes, x0, labels, readout))
            fd[idx] = (losses[0] - losses[1]) / (2 * eps)
        np.testing.assert_allclose(grads_a[k], fd, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(grads_b[k], fd, rtol=1e-5, atol=1e-7)
    fd_x = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        xp, xm = x0.copy(), x0.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd_x[idx] = (_loss(layers, num_nodes, xp, labels, readout)
                     - _loss(layers, num_nodes, xm, labels, readout)) / (2 * eps)
    np.testing.assert_allclose(gx_a, fd_x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gx_b, fd_x, rtol=1e-5, atol=1e-7)


def test_bad_inputs_raise():
    layer = {"src": np.array([1]), "dst": np.array([0]), "params": np.ones((2, 1)),
             "family": "conductance", "duration": 1.0}
    with pytest.raises(ValueError, match="shape"):
        TorchKirchhoffNet([layer], 1)
    layer["params"] = np.ones((1, 1))
    layer["dst"] = np.array([3])
    with pytest.raises(ValueError, match="node indices"):
        TorchKirchhoffNet([layer], 1)
