"""Continuous normalising flows: a KirchhoffNet as a generative model (DESIGN.md §9).

A net whose every non-ground node carries one coordinate of the data (``x ∈ R^N``) is an
invertible map: the node voltages at ``T`` are a sample when the initial voltages are
drawn from the base density ``N(0, I)``. Along a trajectory the log-density obeys

    d(log p)/dt = −tr ∂f/∂v,      f = C⁻¹Aᵀi(v, θ)

(Chen et al., *Neural ODEs*, NeurIPS 2018, eq. 4), and the trace comes from the exact
O(E) diagonal of the Jacobian (:meth:`LayerAssembly.jacobian_trace
<kirchhoff_sim.assembly.LayerAssembly.jacobian_trace>`): one pass over the edges per
evaluation, like the right-hand side itself, whatever N — no per-dimension autograd loop
and no stochastic trace estimator. The log-density is an **augmented state**, row
``N + 1`` of the ``(N+2, B)`` state an explicit Runge–Kutta solver integrates with the
node voltages (:class:`FlowField`), so the step control sees it as torchdiffeq's does
for the reference code, and its gradient is the same discrete adjoint as training's:
:func:`~kirchhoff_sim.solvers.explicit.rk_step_adjoint` on the augmented field, whose
vector–Jacobian product adds the trace's (:meth:`LayerAssembly.trace_vjp
<kirchhoff_sim.assembly.LayerAssembly.trace_vjp>`).

Directions. Sampling runs the layers forward (base → data). The density of data runs
them in **reverse** (data → base): the layers in reverse order, each integrated over
its duration with the field ``−f`` — a reverse pass of the net, valid for every device
family (negating parameters only reverses the field of a family whose current is odd
in them). With ``Δ`` the change of log-density along a run (the augmented state's
final value),

    log p(x) = log N(z₀) − Δ_reverse(x)        (density of data)
    log p(x(z)) = log N(z) + Δ_forward(z)      (density of a sample)

as the reference's ``main_gen.py`` computes them. Reversing a dissipative circuit is
anti-dissipative: the reverse pass is only as stable as the trained field allows over
its finite duration (the reference has the same property).

Cost per sample and evaluation: the right-hand side (E edge evaluations) plus the trace
(E slope evaluations); its adjoint adds E second derivatives. For the reference's
784-node MNIST generator that is O(E) per stage, against O(N·E) for the exact trace by
automatic differentiation (one backward pass per dimension).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .solvers import Dopri5
from .solvers.base import LayerTape, Stats, VOLTAGE_LIMIT, gershgorin
from .solvers.resources import ResourceLimits, estimate_resources
from .solvers.simulate import MAX_BATCH, _Context
from .checks import as_int
from .network import as_batch, check_finite_inputs

__all__ = ["FlowField", "FlowRun", "FlowGradient", "flow", "log_likelihood", "nll_gradient",
           "sample", "base_log_density", "Potential", "POTENTIALS", "reverse_kl", "reverse_kl_gradient"]


def base_log_density(z: np.ndarray) -> np.ndarray:
    """``log N(z; 0, I)`` per row of ``z`` ``(B, N)``: the flows' base density, ``(B,)``."""
    z = np.asarray(z, dtype=float)
    return -0.5 * np.sum(z * z, axis=1) - 0.5 * z.shape[1] * math.log(2.0 * math.pi)


class FlowField:
    """One layer's augmented field: node voltages and the log-density, for an explicit
    Runge–Kutta solver.

    The state is ``(N+2, B)``: rows ``0..N`` the node voltages (ground first, as the
    assembler's), row ``N+1`` the log-density. ``direction`` is +1 (the layer's own
    field ``f``) or −1 (``−f``, the reverse pass). The log-density row does not feed
    back, so its capacitance is 1 and its cotangent enters only through the trace.

    Parameters
    ----------
    assembly : LayerAssembly
    direction : {1, -1}
    """

    def __init__(self, assembly, direction: int = 1):
        if direction not in (1, -1):
            raise InputError(f"a flow field's direction is 1 or -1, got {direction!r}")
        self.assembly, self.direction = assembly, direction
        self.inv_capacitance = np.concatenate([assembly.inv_capacitance, [[1.0]]])

    def _voltages(self, Y):
        n = self.assembly.num_nodes + 2
        if np.ndim(Y) != 2 or np.shape(Y)[0] != n:
            raise InputError(f"a flow's state must have shape (N+2, B) = ({n}, B), got {np.shape(Y)}")
        return Y[:-1]

    def rhs(self, Y: np.ndarray) -> np.ndarray:
        """``(±f(V), ∓tr ∂f/∂v)`` stacked, ``(N+2, B)``."""
        V = self._voltages(Y)
        out = np.empty_like(Y, dtype=float)
        out[:-1] = self.direction * self.assembly.rhs(V)
        out[-1] = -self.direction * self.assembly.jacobian_trace(V)
        return out

    def vjp(self, Y: np.ndarray, nu: np.ndarray, theta_bar: list | None = None) -> np.ndarray:
        """Transposed Jacobian of the augmented field (before ``C⁻¹``, as
        :meth:`LayerAssembly.vjp <kirchhoff_sim.assembly.LayerAssembly.vjp>`): ``ν``
        ``(N+2, B)`` is the cotangent of ``(F, log-density rate)``."""
        V = self._voltages(Y)
        out = np.zeros_like(Y, dtype=float)
        out[:-1] = self.assembly.vjp(V, self.direction * nu[:-1], theta_bar)
        out[:-1] += self.assembly.trace_vjp(V, -self.direction * nu[-1], theta_bar)
        return out

    def gershgorin(self, Y, stats):
        """The Gershgorin bound the solvers use to tell stiffness from a blow-up; the
        reverse field is never called stable (it is the negated, anti-dissipative one)."""
        radius, stable = gershgorin(self.assembly, self._voltages(Y), stats)
        return radius, stable and self.direction == 1


@dataclass
class FlowRun:
    """A flow run over all layers.

    Attributes
    ----------
    state : ndarray, shape (B, N)
        Node voltages at the end of the run (data for a forward run, base points for a
        reverse one).
    log_density_change : ndarray, shape (B,)
        ``Δ``: the augmented state's change along the run.
    stats : Stats
    tapes : list
        Per layer **in the net's order**, ``(LayerTape, FlowField)`` of the run (states
        recorded only when asked for).
    solver : object
    reverse : bool
    """

    state: np.ndarray
    log_density_change: np.ndarray
    stats: Stats
    tapes: list = field(repr=False)
    solver: object = None
    reverse: bool = False


def _checked_solver(solver):
    solver = Dopri5() if solver is None else solver
    if not hasattr(solver, "integrate_layer"):
        raise InputError(f"solver must be a kirchhoff_sim solver (Dopri5(), RK4(dt), ...), got {solver!r}")
    if getattr(solver, "implicit", False):
        raise InputError(f"a flow integrates its log-density with the node voltages on an explicit "
                         f"Runge–Kutta step; {solver!r} is implicit: use Dopri5, RK4, Heun or Euler")
    return solver


def _checked_points(net, x, what: str) -> np.ndarray:
    x = as_batch(x)
    check_finite_inputs(x)
    if x.shape[1] != net.num_nodes:
        raise InputError(f"{what} must have one column per node of the flow (N = {net.num_nodes}), "
                         f"got {x.shape[1]}")
    if net.input_nodes is not None and not np.array_equal(net.input_nodes, np.arange(1, net.num_nodes + 1)):
        raise InputError("a flow writes a point on every node 1..N in order; this net has its own input nodes")
    return x


def flow(net, x, reverse: bool = False, solver=None, record_states: bool = False,
         voltage_limit: float = VOLTAGE_LIMIT, limits: ResourceLimits | None = None) -> FlowRun:
    """Run ``net`` as a flow on a batch of points, with the log-density as augmented state.

    Parameters
    ----------
    net : KirchhoffNet
        Every non-ground node carries one coordinate.
    x : array_like, shape (B, N)
        Start points: base points for a forward run, data for a reverse one.
    reverse : bool
        Run the layers in reverse order with the field ``−f`` (data → base).
    solver : explicit solver, optional
        Default :func:`~kirchhoff_sim.Dopri5` (rtol 1e-7, atol 1e-9); the error norm covers
        the log-density too.
    record_states : bool
        Keep every step's augmented state (what :func:`nll_gradient` needs).

    Returns
    -------
    FlowRun

    Raises
    ------
    InputError
        Points of the wrong width, an implicit solver.
    ResourceLimitError
        The run exceeds ``limits`` (estimated before any work).
    SimulationError
        The run failed (a divergence names its layer, time and step).
    """
    solver = _checked_solver(solver)
    x = _checked_points(net, x, "flow points")
    limits = ResourceLimits() if limits is None else limits
    estimate_resources(net, x.shape[0], solver, 1, record_states).check(limits)
    B = x.shape[0]
    Y = np.zeros((net.num_nodes + 2, B))
    Y[1:-1] = x.T
    stats = Stats()
    ctx = _Context(stats, None, 1 if record_states else 0, float(voltage_limit))
    order = range(len(net.layers) - 1, -1, -1) if reverse else range(len(net.layers))
    tapes = [None] * len(net.layers)
    t = 0.0
    for k in order:
        field_k = FlowField(net.assemblies()[k], -1 if reverse else 1)
        t_end = t + net.layers[k].duration
        tape = LayerTape(times=[t], states=[Y] if record_states else None, coefficients=None, layer=k)
        ctx.layer, ctx.tape = k, tape
        Y = solver.integrate_layer(field_k, Y, t, t_end, ctx)
        tapes[k] = (tape, field_k)
        t = t_end
    return FlowRun(Y[1:-1].T.copy(), Y[-1].copy(), stats, tapes, solver, reverse)


def _pieces(B: int, max_batch) -> list:
    if max_batch is None or B <= max_batch:
        return [slice(0, B)]
    n = -(-B // max_batch)
    bounds = [k * B // n for k in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def log_likelihood(net, x, solver=None, max_batch: int | None = MAX_BATCH) -> np.ndarray:
    """``log p(x)`` of data under the flow, ``(B,)`` (natural log, density in the node
    voltages' normalised units): a reverse run to the base, ``log N(z₀) − Δ``.

    ``max_batch`` splits a large batch into pieces on their own step grids, as
    :func:`~kirchhoff_sim.simulate` does.
    """
    x = _checked_points(net, x, "data")
    max_batch = None if max_batch is None else as_int(max_batch, "max_batch", minimum=1)
    out = np.empty(x.shape[0])
    for rows in _pieces(x.shape[0], max_batch):
        run = flow(net, x[rows], reverse=True, solver=solver)
        out[rows] = base_log_density(run.state) - run.log_density_change
    return out


def sample(net, n_samples: int, rng=None, solver=None, max_batch: int | None = MAX_BATCH):
    """``n_samples`` points of the flow and their log-density: ``(x (n, N), log p (n,))``.

    Base points are drawn from ``N(0, I)`` with ``rng`` (a ``numpy.random.Generator`` or a
    seed) and run forward; ``log p(x) = log N(z) + Δ``.
    """
    n_samples = as_int(n_samples, "n_samples", minimum=1)
    max_batch = None if max_batch is None else as_int(max_batch, "max_batch", minimum=1)
    rng = np.random.default_rng(rng)
    z = rng.standard_normal((n_samples, net.num_nodes))
    x = np.empty_like(z)
    logp = np.empty(n_samples)
    for rows in _pieces(n_samples, max_batch):
        run = flow(net, z[rows], solver=solver)
        x[rows] = run.state
        logp[rows] = _sample_log_density(z[rows], run)
    return x, logp


@dataclass
class FlowGradient:
    """A flow's loss on a batch and its gradients.

    Attributes
    ----------
    loss : float
        ``−mean_b log p(x_b)`` (:func:`nll_gradient`) or the mean of
        :func:`reverse_kl` (:func:`reverse_kl_gradient`).
    params : list of ndarray
        ``∂loss/∂θ``, one ``(n_params, E_g)`` array per group, like ``net.parameters``.
    inputs : ndarray, shape (B, N)
        ``∂loss/∂x`` (the batch's start points).
    log_likelihood : ndarray, shape (B,)
        The log-density of the data points, or of the flow's samples.
    stats : Stats
        Work of the forward runs and the backward sweeps together.
    """

    loss: float
    params: list
    inputs: np.ndarray
    log_likelihood: np.ndarray
    stats: Stats

    @property
    def flat(self) -> np.ndarray:
        return np.concatenate([g.ravel() for g in self.params])


def nll_gradient(net, x, solver=None, max_batch: int | None = MAX_BATCH) -> FlowGradient:
    """Negative log-likelihood of data ``x`` ``(B, N)`` and its exact gradient.

    A reverse run records its augmented states; the cotangent at its end is
    ``∂loss/∂z₀ = z₀/B`` (the base's ``−∇log N``) and ``∂loss/∂Δ = 1/B``; the discrete
    adjoint of the augmented scheme (:meth:`FlowField.vjp`) carries it back over the
    layers in the net's order (the reverse run's last layer first). Exact for the
    discretisation: it matches finite differences of :func:`log_likelihood` on the same
    step grid to round-off.

    Returns
    -------
    FlowGradient
    """
    def at_base(run, x_rows):
        z0 = run.state
        log_p = base_log_density(z0) - run.log_density_change
        return -log_p, log_p, z0, 0.0
    return _flow_gradient(net, _checked_points(net, x, "data"), True, at_base, solver, max_batch)


def _flow_gradient(net, x, reverse: bool, score, solver, max_batch) -> FlowGradient:
    """The mean of a per-point loss at the end of a flow run and its exact gradient.

    ``score(run, x_rows)`` gives, for one piece of the batch, the per-point loss ``ℓ``,
    the points' log-density, ``∂ℓ/∂(end state)`` ``(b, N)`` and any direct ``∂ℓ/∂x``
    ``(b, N)`` (or 0); ``∂ℓ/∂Δ`` is 1 for both losses here. The cotangent is swept back
    by the discrete adjoint of the recorded run, its last layer first.
    """
    max_batch = None if max_batch is None else as_int(max_batch, "max_batch", minimum=1)
    B = x.shape[0]
    theta_bar = [np.zeros_like(p) for p in net.parameters]
    offsets = np.cumsum([0] + [len(layer.groups) for layer in net.layers])
    inputs_bar = np.empty_like(x)
    losses, log_p = np.empty(B), np.empty(B)
    stats = Stats()
    # the run's layers last first: the net's order for a reverse run, reversed for a forward one
    backward = range(len(net.layers)) if reverse else range(len(net.layers) - 1, -1, -1)
    for rows in _pieces(B, max_batch):
        run = flow(net, x[rows], reverse=reverse, solver=solver, record_states=True)
        stats.add(run.stats)
        losses[rows], log_p[rows], state_bar, direct = score(run, x[rows])
        y_bar = np.zeros((net.num_nodes + 2, run.state.shape[0]))
        y_bar[1:-1] = state_bar.T / B
        y_bar[-1] = 1.0 / B
        for k in backward:
            tape, field_k = run.tapes[k]
            y_bar = run.solver.adjoint_layer(field_k, tape, y_bar, theta_bar[offsets[k]:offsets[k + 1]], stats)
        inputs_bar[rows] = y_bar[1:-1].T + direct / B
    return FlowGradient(float(losses.mean()), theta_bar, inputs_bar, log_p, stats)


# ------------------------------------------------------- potentials (reverse KL)
@dataclass(frozen=True)
class Potential:
    """An unnormalised 2-D target density ``p(x) ∝ exp(−U(x))`` a flow is fitted to by
    reverse KL (no data: the flow's own samples are scored against ``U``).

    Attributes
    ----------
    name : str
    energy : callable
        ``U(x)`` of points ``(B, 2)``, ``(B,)`` (unchecked; calling the potential checks).
    gradient : callable
        ``∇U(x)``, ``(B, 2)`` (unchecked; :meth:`grad` checks).
    """

    name: str
    energy: object = field(repr=False)
    gradient: object = field(repr=False)

    def __call__(self, x) -> np.ndarray:
        """``U(x)`` of points ``(B, 2)``, ``(B,)``; raises InputError for other points or
        a user energy that does not give one finite value a point."""
        x = _plane_points(x, self.name)
        return _checked_output(self.energy(x), (len(x),), self.name, "energy")

    def grad(self, x) -> np.ndarray:
        """``∇U(x)`` of points ``(B, 2)``, ``(B, 2)``, checked as :meth:`__call__`."""
        x = _plane_points(x, self.name)
        return _checked_output(self.gradient(x), x.shape, self.name, "gradient")


def _plane_points(x, name: str) -> np.ndarray:
    x = as_batch(x)
    if x.shape[1] != 2:
        raise InputError(f"the potential {name} takes points (B, 2), got {x.shape}")
    return x


def _checked_output(value, shape, name: str, what: str) -> np.ndarray:
    value = np.asarray(value)
    if value.shape != shape or value.dtype.kind not in "fiu":
        raise InputError(f"the potential {name}'s {what} gave {value.dtype}{value.shape}, expected float{shape}")
    value = value.astype(float)
    if not np.all(np.isfinite(value)):
        raise InputError(f"the potential {name}'s {what} is not finite at {int(np.sum(~np.isfinite(value)))} "
                         f"value(s)")
    return value


def _ring_energy_parts(x):
    r = np.sqrt(np.sum(x * x, axis=1))
    lobes = np.stack([-0.5 * ((x[:, 0] - 2.0) / 0.6) ** 2, -0.5 * ((x[:, 0] + 2.0) / 0.6) ** 2])
    return r, lobes, np.logaddexp(lobes[0], lobes[1])


def _ring_energy(x):
    r, _, log_lobes = _ring_energy_parts(x)
    return 0.5 * ((r - 2.0) / 0.4) ** 2 - log_lobes


def _ring_gradient(x):
    # U1's ring term is a cone at r = 0 (no gradient there): 0, the central difference's value
    r, lobes, log_lobes = _ring_energy_parts(x)
    w = np.exp(lobes - log_lobes)              # each lobe's share of exp(−U)'s mixture
    radial = np.divide((r - 2.0) / 0.16, r, out=np.zeros_like(r), where=r > 0)
    g = radial[:, None] * x
    g[:, 0] += (w[0] * (x[:, 0] - 2.0) + w[1] * (x[:, 0] + 2.0)) / 0.36
    return g


def _wave_energy(x):
    return 0.5 * ((x[:, 1] - np.sin(0.5 * np.pi * x[:, 0])) / 0.4) ** 2


def _wave_gradient(x):
    d = (x[:, 1] - np.sin(0.5 * np.pi * x[:, 0])) / 0.16
    return np.column_stack([-d * 0.5 * np.pi * np.cos(0.5 * np.pi * x[:, 0]), d])


#: the paper's two potential functions, U₁ and U₂ of Rezende & Mohamed (*Variational
#: inference with normalizing flows*, ICML 2015, Table 1), as its ``main_den.py`` uses them
POTENTIALS = {
    "potential1": Potential("potential1", _ring_energy, _ring_gradient),
    "potential2": Potential("potential2", _wave_energy, _wave_gradient),
}


def _checked_potential_flow(net, potential, z):
    """The potential (by name or object) and the base points of a 2-D flow, checked."""
    potential = _checked_potential(potential)
    z = _checked_points(net, z, "base points")
    if net.num_nodes != 2:
        raise InputError(f"the potentials are 2-D; this flow has {net.num_nodes} nodes")
    return potential, z


def _checked_potential(potential) -> Potential:
    if isinstance(potential, str):
        found = POTENTIALS.get(potential)
        if found is None:
            raise InputError(f"unknown potential {potential!r}; valid names are {', '.join(POTENTIALS)}")
        return found
    if not isinstance(potential, Potential):
        raise InputError(f"potential must be a name ({', '.join(POTENTIALS)}) or a Potential, got {potential!r:.80}")
    return potential


def reverse_kl(net, potential, z, solver=None, max_batch: int | None = MAX_BATCH) -> np.ndarray:
    """``log q(x) + U(x)`` per base point: the 2-D flow's samples ``x`` of ``z`` ``(B, 2)``
    scored against the potential, ``(B,)`` in nats. Its mean is ``KL(q ‖ p) − log Z`` (``Z`` the
    potential's unknown normaliser), the loss the reference's ``main_den.py`` minimises.

    Raises
    ------
    InputError
        An unknown potential, a flow that is not 2-D, bad or non-finite points, a
        potential whose energy or gradient is not one finite value (pair) a point.
    ResourceLimitError, SimulationError
        As :func:`flow`.
    """
    potential, z = _checked_potential_flow(net, potential, z)
    max_batch = None if max_batch is None else as_int(max_batch, "max_batch", minimum=1)
    out = np.empty(z.shape[0])
    for rows in _pieces(z.shape[0], max_batch):
        run = flow(net, z[rows], solver=solver)
        out[rows] = _kl_score(potential)(run, z[rows])[0]
    return out


def reverse_kl_gradient(net, potential, z, solver=None, max_batch: int | None = MAX_BATCH) -> FlowGradient:
    """The mean of :func:`reverse_kl` over base points ``z`` ``(B, 2)`` and its exact gradient.

    A forward run records its augmented states; the cotangent at its end is
    ``∂loss/∂x = ∇U(x)/B`` and ``∂loss/∂Δ = 1/B``, swept back over the layers last
    first by the same discrete adjoint as :func:`nll_gradient` (exact for the step grid).
    :attr:`FlowGradient.log_likelihood` holds the samples' ``log q(x)``, and
    :attr:`FlowGradient.inputs` ``∂loss/∂z`` (the base density's ``∇log N`` included).

    Raises
    ------
    InputError, ResourceLimitError, SimulationError
        As :func:`reverse_kl`.
    """
    potential, z = _checked_potential_flow(net, potential, z)
    return _flow_gradient(net, z, False, _kl_score(potential), solver, max_batch)


def _sample_log_density(z, run) -> np.ndarray:
    """``log q`` of a forward run's samples of base points ``z``: ``log N(z) + Δ``."""
    return base_log_density(z) + run.log_density_change


def _kl_score(potential):
    """:func:`_flow_gradient`'s ``score`` of the reverse KL: ``log q(x) + U(x)``."""
    def score(run, z_rows):
        log_q = _sample_log_density(z_rows, run)
        return log_q + potential(run.state), log_q, potential.grad(run.state), -z_rows
    return score


# ------------------------------------------------------------------------ figures
PLOT_SAMPLES = 2000        # points of the flow drawn in the sample panel
PLOT_GRID = 80             # density evaluated on a PLOT_GRID × PLOT_GRID grid


def plot_flow(net, data, solver=None, seed: int = 0, samples: int = PLOT_SAMPLES, grid: int = PLOT_GRID,
              potential=None):
    """Data (or a potential's target), samples of the flow and its density, side by side
    (a 2-D flow only).

    Parameters
    ----------
    net : KirchhoffNet
        A flow with two nodes.
    data : array_like, shape (n, 2)
        Points of the data set (the first panel, and the window of the others).
    potential : str or Potential, optional
        A flow fitted to a potential: the first panel is its target ``exp(−U)`` over the
        window ``[-4, 4]²`` instead of the data.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    InputError
        A flow that is not 2-D.
    """
    from .hardware.plots import _figure

    if net.num_nodes != 2:
        raise InputError(f"plot_flow draws 2-D flows; this one has {net.num_nodes} nodes")
    data = _checked_points(net, data, "data")
    if potential is None:
        low, high = data.min(axis=0), data.max(axis=0)
        pad = 0.15 * (high - low)
        low, high = low - pad, high + pad
    else:
        potential = _checked_potential(potential)
        low, high = np.array([-4.0, -4.0]), np.array([4.0, 4.0])
    points, _ = sample(net, samples, rng=seed, solver=solver)
    gx, gy = np.meshgrid(np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid))
    mesh = np.column_stack([gx.ravel(), gy.ravel()])
    density = np.exp(log_likelihood(net, mesh, solver=solver)).reshape(gx.shape)
    if potential is None:
        first = ("data", lambda ax: ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.5))
    else:
        target = np.exp(-potential(mesh)).reshape(gx.shape)
        first = (f"target exp(-U), {potential.name}",
                 lambda ax: ax.pcolormesh(gx, gy, target, shading="auto", cmap="viridis"))
    fig = _figure(12, 4)
    for k, (title, draw) in enumerate((
            first,
            (f"{samples} samples of the flow", lambda ax: ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5,
                                                                      color="tab:orange")),
            ("density p(x)", lambda ax: ax.pcolormesh(gx, gy, density, shading="auto", cmap="viridis")))):
        ax = fig.add_subplot(1, 3, k + 1)
        draw(ax)
        ax.set_title(title)
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
    fig.tight_layout()
    return fig


def write_flow_plot(net, data, path, **kw):
    """:func:`plot_flow` saved as a PNG, atomically; returns the path."""
    from .fileio import atomic_write
    from .hardware.plots import PLOT_DPI

    figure = plot_flow(net, data, **kw)
    return atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=PLOT_DPI))
