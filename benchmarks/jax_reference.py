"""A KirchhoffNet in JAX + diffrax: the strongest stack a researcher would pick instead
(issue #14's baseline), written the way a JAX user would write it.

The state is ``(N, B)`` (a row a node, as ours), ground prepended as a zero row; one
layer's vector field gathers ``V[src]``, ``V[dst]``, evaluates the device and scatters
with ``jax.ops.segment_sum``; each layer is one ``diffrax.diffeqsolve`` over the whole
batch (one step grid, as ours), Dopri5 with a ``PIDController``. The error norm is
diffrax's default RMS over the whole state (our ``norm="batch"``) or ours, the RMS per
sample maximised over the batch (``norm="sample"``). The controller can be diffrax's
default (an I controller) or Hairer's PI controller as we run it (α = 0.17, β = 0.04 →
``pcoeff = 0.2``, ``icoeff = 0.65``, since diffrax's factor is
``err^-(pcoeff+icoeff)/5 · err_prev^(pcoeff/5)`` for Dopri5's error order 5).
Gradients: ``jax.grad`` through ``diffeqsolve`` with diffrax's default adjoint,
``RecursiveCheckpointAdjoint`` (an exact discrete adjoint, like ours).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

CONTROLLERS = {"diffrax": dict(pcoeff=0.0, icoeff=1.0), "hairer_pi": dict(pcoeff=0.2, icoeff=0.65)}


def sample_norm(x):
    """Ours: the RMS over nodes of each sample (column), maximised over the batch."""
    return jnp.max(jnp.sqrt(jnp.mean(x * x, axis=0)))


def rms_norm(x):
    """diffrax's default (our ``norm="batch"``)."""
    return jnp.sqrt(jnp.mean(x * x))


def _response(family):
    if family == "shifted_relu":
        return lambda vs, vd, p: p[1][:, None] * jnp.maximum(vs - vd - p[0][:, None], 0.0)
    if family == "affine_tanh":
        return lambda vs, vd, p: jnp.tanh(p[0][:, None] * vs + p[1][:, None] * vd + p[2][:, None])
    raise ValueError(f"no JAX response for {family}")


class JaxNet:
    """The layers of a :class:`kirchhoff_sim.KirchhoffNet` (one family a layer) in JAX.

    Parameters
    ----------
    net : KirchhoffNet
    family : {"shifted_relu", "affine_tanh"}
    dtype : jnp.float64 or jnp.float32
    """

    def __init__(self, net, family, dtype=jnp.float64):
        if any(len(layer.groups) != 1 for layer in net.layers):
            raise ValueError("the JAX reference takes one device family a layer")
        self.dtype = dtype
        self.num_nodes = net.num_nodes
        self.inv_c = jnp.asarray(1.0 / np.asarray(net.capacitance, float), dtype)[:, None]
        self.readout = np.asarray(net.readout) - 1
        self.layers = [(jnp.asarray(l.groups[0].src), jnp.asarray(l.groups[0].dst), l.duration) for l in net.layers]
        self.params = [jnp.asarray(l.groups[0].params, dtype) for l in net.layers]
        self.response = _response(family)

    def field(self, src, dst):
        n = self.num_nodes
        response, inv_c = self.response, self.inv_c

        def f(t, y, p):
            V = jnp.concatenate([jnp.zeros((1, y.shape[1]), y.dtype), y])
            i = response(V[src], V[dst], p)
            node = jax.ops.segment_sum(i, dst, num_segments=n + 1) - jax.ops.segment_sum(i, src, num_segments=n + 1)
            return node[1:] * inv_c
        return f

    def forward(self, params, y0, rtol, atol, norm, controller="hairer_pi"):
        """Final state ``(N, B)`` and the totals over layers of accepted and attempted steps."""
        y, steps, attempts = y0, 0, 0
        for (src, dst, duration), p in zip(self.layers, params):
            solution = diffrax.diffeqsolve(
                # times in the state's dtype: Python floats would make diffrax promote a
                # float32 state to float64 (x64 is on)
                diffrax.ODETerm(self.field(src, dst)), diffrax.Dopri5(), jnp.asarray(0.0, self.dtype),
                jnp.asarray(duration, self.dtype), None, y, args=p,
                stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=norm,
                                                          **CONTROLLERS[controller]),
                saveat=diffrax.SaveAt(t1=True), max_steps=100_000)
            y = solution.ys[-1]
            steps = steps + solution.stats["num_accepted_steps"]
            attempts = attempts + solution.stats["num_steps"]
        return y, steps, attempts

    def initial_state(self, net, x):
        return jnp.asarray(net.initial_state(x)[1:], self.dtype)


def cross_entropy(readout, labels):
    """Mean softmax cross-entropy, ``readout`` ``(B, K)`` (as kirchhoff_sim's)."""
    logp = jax.nn.log_softmax(readout, axis=1)
    return -jnp.mean(logp[jnp.arange(readout.shape[0]), labels])


def make_functions(jnet, rtol, atol, norm, controller="hairer_pi"):
    """jit-compiled ``forward(params, y0)`` and ``loss_and_grad(params, y0, labels)``."""
    def final(params, y0):
        return jnet.forward(params, y0, rtol, atol, norm, controller)

    def loss(params, y0, labels):
        y, _, _ = final(params, y0)
        return cross_entropy(y[jnet.readout].T, labels)

    return jax.jit(final), jax.jit(jax.value_and_grad(loss))
