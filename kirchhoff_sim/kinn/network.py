"""Kirchhoff neural cells (KINN) as a circuit: cells, cascades and the nets they make.

A **Kirchhoff neural cell** is one node with a capacitor ``C`` to ground, a leak
conductance ``G`` to ground and a voltage-controlled current source ``I`` into it; KCL
at the node is the cell's whole law (Chen et al., "Kirchhoff-Inspired Neural Networks
for Evolving High-Order Perception", arXiv 2603.23977, abstract)::

    C dv/dt = −G·v + I

A **cascade** of ``n`` cells (one per *stage*) is a channel: stage 0 is driven by the
channel's input current, stage ``j ≥ 1`` by a transconductance ``K_j`` from stage
``j−1``'s voltage (a VCCS senses a voltage without loading it), an ``n``-th-order
linear system. The channel's output is a learned combination of its stage voltages,
``u = Σ_j α_j v_j``.

A :class:`KinnNet` is a bank of ``M`` such channels (width ``M``, ``n`` stages each,
``N = n·M`` nodes), run through ``L`` time windows the way a KirchhoffNet runs its
layers. The input ``x`` ``(B, d)``, ``d ≤ M``, is the initial voltage of stage 0 of the
first ``d`` channels (every other node starts at 0 V), and the read-out is the output
``u`` of the first ``n_out`` channels at ``T``. In window ``l`` the channels' inputs are
driven by a bank of nonlinear transconductors reading the channels' own outputs::

    I_m(t) = φ( Σ_k W_l[m, k]·u_k(t) + b_l[m] )          (into stage 0 of channel m)

So the cells (``C``, ``G``, ``K``, ``α``) are one physical bank that carries the state —
the representation — from window to window, and each window switches in its own
weights ``W_l``, ``b_l``. This is the "state-variable architecture" of the paper's
abstract in circuit form; what we had to infer (the paper's method section is not
available to us) is listed in the README.

Every parameter is a real number: ``C = exp(log_c)`` and ``G = exp(log_g)`` are positive
by construction, so each stage is stable for every step; ``K``, ``α``, ``W`` and ``b``
take either sign (a transconductor's output can be reversed).

Units are normalised as everywhere in this package (DESIGN.md §5): volts ``V0``,
capacitances ``C0``, conductances ``G0``, time ``C0/G0``.

The module gives the net and its per-window **assembly** — the object our transient
solvers integrate (:meth:`rhs`), and whose vector–Jacobian and Jacobian–vector products
the discrete adjoints use (:meth:`vjp`, :meth:`jvp`) — so the explicit solvers of
:mod:`kirchhoff_sim.solvers` simulate a KINN and differentiate through it unchanged.
"""

from __future__ import annotations

import numpy as np

from ..checks import as_choice, as_int, as_real_array
from ..devices import activation as get_activation
from ..errors import InputError, ParameterError
from ..network import FlatParameters, as_batch, check_finite_inputs

__all__ = ["KinnNet", "KinnAssembly", "KinnWindow", "CELL_PARAMETERS", "PHI_AT_ZERO_ACTIVATIONS",
           "require_kinn"]

#: the per-cell parameter arrays, each ``(n, M)`` (``k`` is ``(n−1, M)``), in their order
#: after the windows' ``W`` and ``b`` in :attr:`KinnNet.parameters`
CELL_PARAMETERS = ("log_c", "log_g", "k", "alpha")

#: size bounds of a KinnNet (its W alone is windows·width² numbers)
MAX_WIDTH, MAX_STAGES, MAX_WINDOWS, MAX_PARAMETERS = 1 << 14, 1 << 10, 1 << 12, 10 ** 8

#: activations with φ(0) = 0: a switched-off transconductor then drives nothing, which the
#: SPICE compiler's gating relies on (softplus, with φ(0) = ln 2, is refused)
PHI_AT_ZERO_ACTIVATIONS = ("identity", "tanh", "relu", "leaky_relu")


class KinnWindow:
    """One time window of a :class:`KinnNet`: its duration and its share of the work.

    ``num_edges`` counts the device evaluations of one right-hand side (``M·M``
    transconductances of ``W`` and ``3·n·M`` cell terms), the figure the resource
    estimates of :mod:`kirchhoff_sim.solvers.resources` scale with.
    """

    def __init__(self, duration: float, num_edges: int):
        self.duration = float(duration)
        self.num_edges = int(num_edges)
        self.groups = ()


class KinnNet(FlatParameters):
    """A bank of ``width`` KINN channels of ``stages`` cells, run through time windows.

    Parameters
    ----------
    width : int
        Channels ``M`` (≥ the input width ``inputs`` and ≥ ``outputs``).
    stages : int
        Cells per channel ``n`` (≥ 1): the order of each channel's linear dynamics.
    inputs : int
        Input features ``d``: written as the initial voltage of stage 0 of channels
        ``0..d−1``.
    outputs : int
        Read-out channels ``n_out``: the outputs ``u`` of channels ``0..n_out−1`` at ``T``.
    durations : sequence of float
        The windows' durations (normalised time, each > 0); one window per entry.
    activation : str
        φ, one of :data:`PHI_AT_ZERO_ACTIVATIONS` (default ``"tanh"``).
    seed : int
        Seeds the initial parameters: ``W`` ~ N(0, 1/M), ``b = 0``; ``C = 1``,
        ``G = 1`` (``log_c = log_g = 0``); ``K = 1``; ``α`` = 1 on the last stage and 0
        on the others, so a fresh channel reads its highest-order state.

    Attributes
    ----------
    W : ndarray, shape (L, M, M)
        Window weights (normalised transconductances).
    b : ndarray, shape (L, M)
        Window biases (normalised volts at the transconductor input).
    log_c, log_g : ndarray, shape (n, M)
        Logarithms of the stage capacitances and leak conductances.
    k : ndarray, shape (n−1, M)
        Inter-stage transconductances (stage ``j`` from stage ``j−1`` is ``k[j−1]``).
    alpha : ndarray, shape (n, M)
        Output weights of the stage voltages.

    Raises
    ------
    InputError
        A size, duration, seed or activation that is not as above, or more than
        :data:`MAX_PARAMETERS` parameters (width ≤ :data:`MAX_WIDTH`, stages ≤
        :data:`MAX_STAGES`, windows ≤ :data:`MAX_WINDOWS`).
    """

    def __init__(self, width: int, stages: int, inputs: int, outputs: int, durations=(1.0,),
                 activation: str = "tanh", seed: int = 0):
        self.width = as_int(width, "width", minimum=1, maximum=MAX_WIDTH)
        self.stages = as_int(stages, "stages", minimum=1, maximum=MAX_STAGES)
        self.num_inputs = as_int(inputs, "inputs", minimum=1)
        self.num_outputs = as_int(outputs, "outputs", minimum=1)
        seed = as_int(seed, "seed", minimum=0)
        if self.num_inputs > self.width or self.num_outputs > self.width:
            raise InputError(f"a KINN of width {self.width} cannot take {self.num_inputs} inputs and "
                             f"{self.num_outputs} outputs: both must be ≤ the width")
        self.durations = durations = _checked_durations(durations)
        if len(durations) * self.width * (self.width + 1) + 4 * self.stages * self.width > MAX_PARAMETERS:
            raise InputError(f"a KINN of width {self.width}, {self.stages} stages and {len(durations)} windows has "
                             f"more than {MAX_PARAMETERS:.0e} parameters")
        try:
            as_choice(activation, "KINN activation", PHI_AT_ZERO_ACTIVATIONS)
        except InputError as exc:
            raise InputError(f"{exc} (φ(0) = 0, so that a switched-off window drives nothing)") from None
        self.activation = get_activation(activation)
        rng = np.random.default_rng(seed)
        M, n, L = self.width, self.stages, len(durations)
        self.W = rng.normal(0.0, 1.0 / np.sqrt(M), (L, M, M))
        self.b = np.zeros((L, M))
        self.log_c = np.zeros((n, M))
        self.log_g = np.zeros((n, M))
        self.k = np.ones((n - 1, M))
        self.alpha = np.zeros((n, M))
        self.alpha[-1] = 1.0
        self._assemblies = None

    # ------------------------------------------------------------------ structure
    @property
    def num_nodes(self) -> int:
        """``N = n·M`` cell nodes (node ``1 + j·M + m`` is stage ``j`` of channel ``m``)."""
        return self.stages * self.width

    @property
    def num_windows(self) -> int:
        return len(self.durations)

    @property
    def T(self) -> float:
        """Read-out time, the sum of the windows' durations."""
        return float(self.durations.sum())

    @property
    def layer_boundaries(self) -> np.ndarray:
        """Start and end times of the windows, shape ``(L + 1,)``."""
        return np.concatenate([[0.0], np.cumsum(self.durations)])

    @property
    def layers(self) -> list[KinnWindow]:
        """The windows, as the solvers' resource estimates see layers."""
        M, n = self.width, self.stages
        return [KinnWindow(d, M * M + 3 * n * M) for d in self.durations]

    @property
    def capacitance(self) -> np.ndarray:
        """Stage capacitances ``C`` ``(n, M)`` (normalised, > 0)."""
        return np.exp(self.log_c)

    @property
    def conductance(self) -> np.ndarray:
        """Stage leak conductances ``G`` ``(n, M)`` (normalised, > 0)."""
        return np.exp(self.log_g)

    # ------------------------------------------------------------------ parameters
    @property
    def parameters(self) -> list[np.ndarray]:
        """The live parameter arrays: ``W_0, b_0, …, W_{L−1}, b_{L−1}`` then
        :data:`CELL_PARAMETERS` (the flat vector's order)."""
        windows = [a for l in range(self.num_windows) for a in (self.W[l], self.b[l])]
        return windows + [getattr(self, name) for name in CELL_PARAMETERS]


    def set_flat_params(self, flat) -> None:
        """Write a flat parameter vector (the order of :attr:`parameters`) in place.

        Raises
        ------
        ParameterError
            Wrong length, or a non-finite entry (checked before anything changes).
        """
        flat = as_real_array(flat, "KINN parameters", finite=False, error=ParameterError)
        if flat.shape != (self.num_params,):
            raise ParameterError(f"expected {self.num_params} KINN parameters, got shape {flat.shape}")
        if not np.all(np.isfinite(flat)):
            raise ParameterError(f"KINN parameter {int(np.argmin(np.isfinite(flat)))} is not finite")
        offset = 0
        for p in self.parameters:
            p[...] = flat[offset:offset + p.size].reshape(p.shape)
            offset += p.size

    def window_gradient_views(self, grads: list[np.ndarray], window: int) -> list[np.ndarray]:
        """The pieces of a gradient list (shaped like :attr:`parameters`) that window
        ``window``'s assembly accumulates into: its ``W``, its ``b``, and the shared cell
        arrays (the same objects for every window, so all windows add to them)."""
        return [grads[2 * window], grads[2 * window + 1], *grads[2 * self.num_windows:]]

    # ------------------------------------------------------------------ states
    def check_input_width(self, width: int) -> None:
        """Refuse an input of ``width`` features that this net cannot take (InputError)."""
        if width != self.num_inputs:
            raise InputError(f"input has {width} features but the KINN takes {self.num_inputs}")

    def checked_inputs(self, x) -> np.ndarray:
        """``x`` as a float ``(B, d)`` array, checked whole: entry points that work in
        mini-batches or chunks call this first, so that a bad sample is named by its row
        of the whole input and refused before any work (or training step) is done.

        Raises
        ------
        InputError
            Not a real ``(B, d)`` (or ``(d,)``) array of finite numbers of this width
            (booleans and complex numbers are refused).
        """
        x = as_batch(x)
        self.check_input_width(x.shape[1])
        check_finite_inputs(x)
        return x

    def initial_state(self, x) -> np.ndarray:
        """Node voltages at ``t = 0`` for input ``x`` ``(B, d)``: shape ``(N+1, B)``,
        row 0 ground, the input on stage 0 of channels ``0..d−1``.

        Raises
        ------
        InputError
            As :meth:`checked_inputs`.
        """
        x = self.checked_inputs(x)
        state = np.zeros((self.num_nodes + 1, x.shape[0]))
        state[1:1 + self.num_inputs] = x.T
        return state

    def stage_voltages(self, V: np.ndarray) -> np.ndarray:
        """A state ``V`` ``(N+1, B)`` (row 0 ground) as stage voltages ``(n, M, B)`` (a view).

        Raises
        ------
        InputError
            ``V`` is not a real ``(N+1, B)`` array.
        """
        V = as_real_array(V, "a KINN state", finite=False)    # a float64 array passes through: still a view
        if V.ndim != 2 or V.shape[0] != self.num_nodes + 1:
            raise InputError(f"a KINN state is ({self.num_nodes + 1}, B), got {V.shape}")
        return V[1:].reshape(self.stages, self.width, V.shape[1])

    def stages_of(self, node_voltages: np.ndarray) -> np.ndarray:
        """Node voltages ``(B, N)`` (a solution's ``final_state``, one save time of its
        ``node_voltages``) as stage voltages ``(n, M, B)``.

        Raises
        ------
        InputError
            Not a real ``(B, N)`` array.
        """
        node_voltages = as_real_array(node_voltages, "KINN node voltages", finite=False)
        if node_voltages.ndim != 2 or node_voltages.shape[1] != self.num_nodes:
            raise InputError(f"KINN node voltages are (B, {self.num_nodes}), got {node_voltages.shape}")
        return node_voltages.T.reshape(self.stages, self.width, node_voltages.shape[0])

    def channel_outputs(self, v: np.ndarray) -> np.ndarray:
        """``u = Σ_j α_j v_j`` ``(M, B)`` of stage voltages ``v`` ``(n, M, B)``."""
        return np.einsum("jm,jmb->mb", self.alpha, v)

    def drive_inputs(self, u: np.ndarray) -> np.ndarray:
        """Every window's drive summing-node voltages ``z_l = W_l u + b_l`` ``(L, M, B)``
        of channel outputs ``u`` ``(M, B)``."""
        return np.einsum("lmk,kb->lmb", self.W, u) + self.b[:, :, None]

    def outputs(self, final_state: np.ndarray) -> np.ndarray:
        """The read-out ``(B, n_out)``, ``u`` of the read-out channels, of node voltages
        ``(B, N)`` (InputError if not that shape)."""
        return self.channel_outputs(self.stages_of(final_state))[:self.num_outputs].T

    def assemblies(self, dtype=None) -> list["KinnAssembly"]:
        """One assembly per window (built once; they read the live parameters).

        Raises
        ------
        InputError
            ``dtype`` other than float64: a KINN runs in double precision only.
        """
        from ..solvers.precision import require_float64

        require_float64(dtype, "a KINN", "its cells' cascade is checked against ngspice in double precision")
        if self._assemblies is None:
            self._assemblies = [KinnAssembly(self, l) for l in range(self.num_windows)]
        return self._assemblies

    def __repr__(self) -> str:
        return (f"KinnNet(width={self.width}, stages={self.stages}, inputs={self.num_inputs}, "
                f"outputs={self.num_outputs}, windows={self.num_windows}, T={self.T:g}, "
                f"activation={self.activation.name!r}, params={self.num_params})")


def _checked_durations(durations) -> np.ndarray:
    """The windows' durations as a float ``(L,)`` array of finite times > 0 with a finite
    sum; a bad entry is named by its index and value, never by printing the list."""
    durations = np.atleast_1d(as_real_array(durations, "durations", finite=False))
    if durations.ndim != 1 or not 0 < len(durations) <= MAX_WINDOWS:
        raise InputError(f"durations must be a sequence of 1 to {MAX_WINDOWS} times (one window each), "
                         f"got shape {durations.shape}")
    bad = np.flatnonzero(~np.isfinite(durations) | (durations <= 0))
    if bad.size:
        raise InputError(f"durations must be finite times > 0: entry {bad[0]} is {float(durations[bad[0]])!r}"
                         + (f" ({bad.size} bad entries)" if bad.size > 1 else ""))
    with np.errstate(over="ignore"):                           # an infinite sum is refused next
        total = durations.sum()
    if not np.isfinite(total):
        raise InputError(f"durations must have a finite sum; {len(durations)} durations sum to {total}")
    return durations


def require_kinn(net, caller: str, alternative: str) -> None:
    """Refuse anything but a :class:`KinnNet` at ``caller``, saying what takes it instead
    (``alternative``), rather than failing later on an attribute a KINN alone has.

    Raises
    ------
    InputError
        ``net`` is not a KinnNet.
    """
    if not isinstance(net, KinnNet):
        raise InputError(f"{caller} takes a KinnNet, got {type(net).__name__}; "
                         f"for a KirchhoffNet use {alternative}")


class KinnAssembly:
    """Window ``l`` of a :class:`KinnNet` as the solvers see a layer.

    ``F(V)`` is the vector of KCL currents into the cell nodes ``(N+1, B)``::

        F_j = −G_j v_j + K_j v_{j−1}  (j ≥ 1),   F_0 = −G_0 v_0 + φ(W_l u + b_l)

    and ``dV/dt = C⁻¹ F``. Because ``C`` is learned here (a KirchhoffNet's is not), the
    products follow the explicit adjoints' convention: :meth:`vjp` receives
    ``ν = C⁻¹ k̄`` and :meth:`jvp`'s result is multiplied by ``C⁻¹``, so the ``log C``
    terms are ``−Σ_b ν·F`` and ``−F·(d log C)``.
    """

    def __init__(self, net: KinnNet, window: int):
        self.net = net
        self.window = window
        self.num_nodes = net.num_nodes

    # the cells' C is a parameter: read it at every call, like every other parameter
    @property
    def capacitance(self) -> np.ndarray:
        return self.net.capacitance.ravel()

    @property
    def inv_capacitance(self) -> np.ndarray:
        return np.concatenate([[0.0], np.exp(-self.net.log_c).ravel()])[:, None]

    def _pieces(self, V):
        net = self.net
        v = net.stage_voltages(V)
        u = net.channel_outputs(v)
        z = net.W[self.window] @ u + net.b[self.window][:, None]
        return v, u, z

    def currents(self, V: np.ndarray) -> np.ndarray:
        """``F(V)`` as ``(n, M, B)`` stage currents."""
        net = self.net
        v, _, z = self._pieces(V)
        F = -net.conductance[:, :, None] * v
        F[1:] += net.k[:, :, None] * v[:-1]
        F[0] += net.activation.value(z)
        return F

    def _pad(self, F3: np.ndarray) -> np.ndarray:
        out = np.zeros((self.num_nodes + 1, F3.shape[2]))
        out[1:] = F3.reshape(self.num_nodes, F3.shape[2])
        return out

    def rhs(self, V: np.ndarray) -> np.ndarray:
        """``dV/dt = C⁻¹ F(V)``, shape ``(N+1, B)`` (ground row zero)."""
        return self._pad(self.currents(V)) * self.inv_capacitance

    def vjp(self, V: np.ndarray, nu: np.ndarray, theta_bar: list | None = None) -> np.ndarray:
        """``(∂F/∂V)ᵀν`` ``(N+1, B)``; with ``theta_bar`` (window ``W``, ``b`` and the cell
        arrays, :meth:`KinnNet.window_gradient_views`) the parameter terms are *added*.

        ``ν`` must be ``C⁻¹ k̄`` (the class docstring) for the ``log C`` term to be right.
        """
        net = self.net
        v, u, z = self._pieces(V)
        n3 = net.stage_voltages(nu)
        G = net.conductance[:, :, None]
        v_bar = -G * n3
        v_bar[:-1] += net.k[:, :, None] * n3[1:]
        _, slope = net.activation.value_and_slope(z)
        mu = n3[0] * slope
        u_bar = net.W[self.window].T @ mu
        v_bar += net.alpha[:, :, None] * u_bar[None]
        if theta_bar is not None:
            W_bar, b_bar, logc_bar, logg_bar, k_bar, alpha_bar = theta_bar
            W_bar += mu @ u.T
            b_bar += mu.sum(axis=1)
            F = -G * v
            F[1:] += net.k[:, :, None] * v[:-1]
            F[0] += net.activation.value(z)
            logc_bar -= np.einsum("jmb,jmb->jm", n3, F)
            logg_bar -= G[:, :, 0] * np.einsum("jmb,jmb->jm", n3, v)
            k_bar += np.einsum("jmb,jmb->jm", n3[1:], v[:-1])
            alpha_bar += np.einsum("jmb,mb->jm", v, u_bar)
        return self._pad(v_bar)

    def jvp(self, V: np.ndarray, v_dot: np.ndarray, theta_dot: list | None = None) -> np.ndarray:
        """``(∂F/∂V)·v̇ + (∂F/∂θ)·θ̇`` ``(N+1, B)`` (``log C`` term as the class docstring)."""
        net = self.net
        v, u, z = self._pieces(V)
        vd = net.stage_voltages(v_dot)
        G = net.conductance[:, :, None]
        W = net.W[self.window]
        phi, slope = net.activation.value_and_slope(z)
        out = -G * vd
        out[1:] += net.k[:, :, None] * vd[:-1]
        z_dot = W @ net.channel_outputs(vd)
        if theta_dot is not None:
            W_dot, b_dot, logc_dot, logg_dot, k_dot, alpha_dot = theta_dot
            z_dot = z_dot + W_dot @ u + b_dot[:, None] + W @ np.einsum("jm,jmb->mb", alpha_dot, v)
            F = -G * v
            F[1:] += net.k[:, :, None] * v[:-1]
            F[0] += phi
            out -= logc_dot[:, :, None] * F
            out -= (logg_dot[:, :, None] * G) * v
            out[1:] += k_dot[:, :, None] * v[:-1]
        out[0] += slope * z_dot
        return self._pad(out)

    def gershgorin(self, V: np.ndarray, stats):
        """Gershgorin's discs of ``J = C⁻¹∂F/∂v`` at ``V``, as
        :func:`kirchhoff_sim.solvers.base.gershgorin` reports them: ``(radius, stable)``."""
        net = self.net
        _, _, z = self._pieces(V)
        _, slope = net.activation.value_and_slope(z)                        # (M, B)
        stats.n_fevals += 1
        stats.n_jevals += 1
        C, G, W = net.capacitance, net.conductance, net.W[self.window]
        # stage j ≥ 1 rows: −G_j/C_j on the diagonal, K/C_j off it; stage 0 rows also hold
        # φ'(z_m)·W_mk·α_jk/C_0m for every node (j, k), its own (0, m) on the diagonal
        own = np.diagonal(W) * net.alpha[0]                                 # (M,)
        reach = (np.abs(W) @ np.abs(net.alpha).T).sum(axis=1) - np.abs(own)  # (M,)
        diag = np.broadcast_to(-(G / C)[:, :, None], (net.stages,) + slope.shape).copy()
        diag[0] += slope * (own / C[0])[:, None]
        off = np.zeros_like(diag)
        off[1:] = (np.abs(net.k) / C[1:])[:, :, None]
        off[0] = np.abs(slope) * (reach / C[0])[:, None]
        return float(np.max(np.abs(diag) + off)), bool(np.all(diag + off <= 0))
