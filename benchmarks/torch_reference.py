"""Reference KirchhoffNet stack (Gao et al., ICCAD'24): PyTorch + torchdiffeq.

This is the baseline the benchmarks measure kirchhoff_sim against. It re-implements
what the paper's code (``src/utils/circuit_block.py`` of zhengqigao/kirchhoffnet) does,
so that timings and gradients are compared with the method the paper actually used:

- the ODE right-hand side of DESIGN.md eq. (1), written the reference's way: prepend a
  zero ground column to the state ``(B, N) -> (B, N+1)``, gather ``v_src``/``v_dst``
  with fancy indexing, compute the edge currents ``i`` (B, E), then
  ``scatter_add_(-1, src, -i)`` and ``scatter_add_(-1, dst, +i)``, drop the ground
  column (and divide by the node capacitance, which the reference fixes at 1);
- one ``torchdiffeq.odeint`` call per layer over ``t = [0, duration]``, the state at
  the end of layer k being the initial state of layer k+1;
- gradients by ``torchdiffeq.odeint_adjoint`` (the continuous adjoint, the reference's
  default) or by plain backpropagation through the solver's operations.

Differences from the reference, all deliberate and harmless for comparisons: the time
grid has the state's dtype (the reference builds it with ``torch.Tensor``, i.e. float32,
even for float64 states), the edge parameters come in as numpy arrays instead of being
initialised here, and an optional per-node capacitance is supported.

It does not import kirchhoff_sim: it receives plain numpy arrays.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
import torchdiffeq

__all__ = [
    "ACTIVATIONS",
    "DEVICE_FAMILIES",
    "TorchKirchhoffNet",
    "forward_numpy",
    "loss_and_grad",
    "num_device_params",
]

ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, torch's default and the paper's
    "tanh": torch.tanh,
    "softplus": F.softplus,  # beta = 1, as in the reference
}

_BASE_FAMILIES = {"conductance": 1, "shifted_relu": 2, "shifted_leaky_relu": 2}
_PREFIXED_FAMILIES = {"difference_": 2, "affine_": 3}

DEVICE_FAMILIES = frozenset(_BASE_FAMILIES) | frozenset(
    prefix + act for prefix in _PREFIXED_FAMILIES for act in ACTIVATIONS
)


def num_device_params(family: str) -> int:
    """Number of parameter rows of a device family (see DESIGN.md section 1)."""
    if family in _BASE_FAMILIES:
        return _BASE_FAMILIES[family]
    for prefix, n_params in _PREFIXED_FAMILIES.items():
        if family.startswith(prefix) and family[len(prefix):] in ACTIVATIONS:
            return n_params
    raise ValueError(
        f"unknown device family {family!r}; expected one of {sorted(DEVICE_FAMILIES)}"
    )


def _edge_current_function(family: str):
    """Return ``current(p, vs, vd) -> i`` for a family; ``i`` flows from src to dst."""
    num_device_params(family)  # validates the name
    if family == "conductance":
        return lambda p, vs, vd: p[0] * (vs - vd)
    if family == "shifted_relu":
        return lambda p, vs, vd: p[1] * F.relu((vs - vd) - p[0])
    if family == "shifted_leaky_relu":
        return lambda p, vs, vd: p[1] * F.leaky_relu((vs - vd) - p[0])
    if family.startswith("difference_"):
        act = ACTIVATIONS[family[len("difference_"):]]
        return lambda p, vs, vd: act(p[1] * (vs - vd) + p[0])
    act = ACTIVATIONS[family[len("affine_"):]]
    return lambda p, vs, vd: act(p[0] * vs + p[1] * vd + p[2])


class _CircuitLayer(torch.nn.Module):
    """Right-hand side ``dv/dt = C^-1 A^T i(v)`` of one layer, as the reference writes it.

    Holds its parameters as ``self.param`` (an ``nn.Parameter`` of shape (n_params, E)),
    so ``odeint_adjoint`` finds them, and counts its evaluations in ``self.nfe``
    (including the ones the adjoint's backward solve makes).
    """

    def __init__(self, src, dst, params, family, duration, inverse_capacitance, dtype):
        super().__init__()
        src = np.asarray(src)
        dst = np.asarray(dst)
        params = np.asarray(params)
        n_params = num_device_params(family)
        if src.ndim != 1 or dst.shape != src.shape:
            raise ValueError(
                f"src and dst must be 1-D arrays of equal length, got shapes "
                f"{src.shape} and {dst.shape}"
            )
        if params.shape != (n_params, src.shape[0]):
            raise ValueError(
                f"family {family!r} needs params of shape ({n_params}, E={src.shape[0]}), "
                f"got {params.shape}"
            )
        if not float(duration) > 0.0:
            raise ValueError(f"layer duration must be positive, got {duration!r}")
        self.family = family
        self.duration = float(duration)
        self.register_buffer("src", torch.as_tensor(src, dtype=torch.int64))
        self.register_buffer("dst", torch.as_tensor(dst, dtype=torch.int64))
        if inverse_capacitance is None:
            self.inverse_capacitance = None
        else:
            self.register_buffer("inverse_capacitance", inverse_capacitance)
        self.param = torch.nn.Parameter(torch.as_tensor(params, dtype=dtype).clone())
        self._current = _edge_current_function(family)
        self.nfe = 0

    def forward(self, t, node_voltages):
        self.nfe += 1
        aux = torch.cat((torch.zeros_like(node_voltages[..., :1]), node_voltages), dim=-1)
        edge_currents = self._current(self.param, aux[..., self.src], aux[..., self.dst])
        result = torch.zeros_like(aux)
        result.scatter_add_(-1, self.src.expand_as(edge_currents), -edge_currents)
        result.scatter_add_(-1, self.dst.expand_as(edge_currents), edge_currents)
        dv_dt = result[..., 1:]
        if self.inverse_capacitance is not None:
            dv_dt = dv_dt * self.inverse_capacitance
        return dv_dt


class TorchKirchhoffNet(torch.nn.Module):
    """A multi-layer KirchhoffNet integrated layer by layer with torchdiffeq.

    Parameters
    ----------
    layers : list of dict
        Each with ``"src"``, ``"dst"`` (int arrays (E,), node indices in 0..num_nodes,
        0 = ground), ``"params"`` (float array (n_params, E)), ``"family"`` (one of
        ``DEVICE_FAMILIES``) and ``"duration"`` (float > 0, normalised time).
    num_nodes : int
        Number of non-ground nodes N; the state is (B, N), voltages of nodes 1..N.
    capacitance : ndarray (N,), optional
        Node capacitances to ground; ``None`` means all 1 (the reference's case).
    dtype : torch.dtype
        Dtype of the parameters and of the state.
    """

    def __init__(self, layers, num_nodes: int, capacitance=None, dtype=torch.float64):
        super().__init__()
        if not layers:
            raise ValueError("a KirchhoffNet needs at least one layer")
        self.num_nodes = int(num_nodes)
        self.dtype = dtype
        inverse_capacitance = None
        if capacitance is not None:
            capacitance = np.asarray(capacitance, dtype=np.float64)
            if capacitance.shape != (self.num_nodes,) or not np.all(capacitance > 0):
                raise ValueError(
                    f"capacitance must be a positive array of shape ({self.num_nodes},), "
                    f"got shape {capacitance.shape}"
                )
            inverse_capacitance = torch.as_tensor(1.0 / capacitance, dtype=dtype)
        circuit_layers = []
        for k, layer in enumerate(layers):
            missing = {"src", "dst", "params", "family", "duration"} - set(layer)
            if missing:
                raise ValueError(f"layer {k} lacks the keys {sorted(missing)}")
            for key in ("src", "dst"):
                nodes = np.asarray(layer[key])
                if nodes.size and (nodes.min() < 0 or nodes.max() > self.num_nodes):
                    raise ValueError(
                        f"layer {k}: {key} node indices must lie in 0..{self.num_nodes}"
                    )
            circuit_layers.append(
                _CircuitLayer(layer["src"], layer["dst"], layer["params"], layer["family"],
                              layer["duration"], inverse_capacitance, dtype)
            )
        self.layers = torch.nn.ModuleList(circuit_layers)

    @property
    def nfe(self) -> int:
        """Right-hand-side evaluations since the last ``reset_nfe``, over all layers."""
        return sum(layer.nfe for layer in self.layers)

    @property
    def nfe_per_layer(self) -> list[int]:
        return [layer.nfe for layer in self.layers]

    def reset_nfe(self) -> None:
        for layer in self.layers:
            layer.nfe = 0

    def forward(self, x0, method="dopri5", rtol=1e-6, atol=1e-6, step_size=None,
                adjoint=False):
        """Node voltages (B, N) at T = sum of the layer durations, from x0 (B, N)."""
        if x0.shape[-1] != self.num_nodes:
            raise ValueError(
                f"x0 must have {self.num_nodes} node voltages in its last axis, "
                f"got shape {tuple(x0.shape)}"
            )
        options = {"step_size": step_size} if step_size is not None else None
        state = x0
        for layer in self.layers:
            t = torch.tensor([0.0, layer.duration], dtype=x0.dtype, device=x0.device)
            if adjoint:
                trajectory = torchdiffeq.odeint_adjoint(
                    layer, state, t, rtol=rtol, atol=atol, method=method, options=options,
                    adjoint_params=(layer.param,),
                )
            else:
                trajectory = torchdiffeq.odeint(
                    layer, state, t, rtol=rtol, atol=atol, method=method, options=options
                )
            state = trajectory[-1]
        return state


def forward_numpy(layers, num_nodes, x0, capacitance=None, dtype=torch.float64, **kw):
    """Node voltages (B, N) at T for inputs x0 (B, N); ``kw`` go to ``forward``."""
    net = TorchKirchhoffNet(layers, num_nodes, capacitance=capacitance, dtype=dtype)
    with torch.no_grad():
        out = net(torch.as_tensor(np.asarray(x0), dtype=dtype), **kw)
    return out.numpy()


def loss_and_grad(layers, num_nodes, x0, labels, readout, method="dopri5", rtol=1e-6,
                  atol=1e-6, adjoint=True, dtype=torch.float64, capacitance=None,
                  step_size=None):
    """Cross-entropy loss of a KirchhoffNet classifier and its gradients.

    Parameters
    ----------
    x0 : ndarray (B, N)
        Initial node voltages.
    labels : int ndarray (B,)
        Class of each sample.
    readout : int ndarray (K,)
        Read-out nodes (1-based node numbers); their voltages at T are the logits.
    adjoint : bool
        True: ``torchdiffeq.odeint_adjoint`` (continuous adjoint, the reference's
        method); False: backpropagation through ``odeint``.

    Returns
    -------
    loss : float
        Mean cross-entropy over the batch.
    grads : list of ndarray
        d loss / d params for each layer, shape (n_params, E).
    grad_x0 : ndarray (B, N)
        d loss / d x0.
    """
    net = TorchKirchhoffNet(layers, num_nodes, capacitance=capacitance, dtype=dtype)
    x = torch.as_tensor(np.asarray(x0), dtype=dtype).clone().requires_grad_(True)
    readout_columns = torch.as_tensor(np.asarray(readout, dtype=np.int64) - 1)
    if readout_columns.min() < 0 or readout_columns.max() >= num_nodes:
        raise ValueError(f"readout nodes must lie in 1..{num_nodes}")
    out = net(x, method=method, rtol=rtol, atol=atol, step_size=step_size, adjoint=adjoint)
    loss = F.cross_entropy(out[:, readout_columns],
                           torch.as_tensor(np.asarray(labels), dtype=torch.int64))
    loss.backward()
    grads = [layer.param.grad.detach().numpy().copy() for layer in net.layers]
    return float(loss.detach()), grads, x.grad.detach().numpy().copy()


def _fully_connected_tanh_net(num_nodes=32, num_layers=2, duration=0.5, seed=0):
    """The timing net: an affine_tanh edge for every ordered pair of nodes 0..num_nodes."""
    rng = np.random.default_rng(seed)
    src, dst = np.nonzero(~np.eye(num_nodes + 1, dtype=bool))
    layers = [
        {"src": src, "dst": dst, "family": "affine_tanh", "duration": duration,
         "params": rng.normal(0.0, 0.5, size=(3, src.size))}
        for _ in range(num_layers)
    ]
    return layers, rng.normal(size=(256, num_nodes))


if __name__ == "__main__":
    import time

    layers, x0 = _fully_connected_tanh_net()
    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
          f"{torch.get_num_threads()} threads; fully connected 32 nodes, "
          f"{layers[0]['src'].size} edges/layer, {len(layers)} layers, batch {x0.shape[0]}")
    for dtype in (torch.float64, torch.float32):
        net = TorchKirchhoffNet(layers, 32, dtype=dtype)
        x = torch.as_tensor(x0, dtype=dtype)
        with torch.no_grad():
            net(x)  # warm-up
            times = []
            for _ in range(5):
                net.reset_nfe()
                start = time.perf_counter()
                net(x, method="dopri5", rtol=1e-6, atol=1e-6)
                times.append(time.perf_counter() - start)
        print(f"{str(dtype):14s} dopri5 rtol=atol=1e-6: nfe={net.nfe} "
              f"(per layer {net.nfe_per_layer}), best {min(times) * 1e3:.1f} ms, "
              f"median {np.median(times) * 1e3:.1f} ms")
