"""The Dask executor: hardware jobs on a local Dask cluster or an existing scheduler.

:class:`DaskRunner` is a :class:`~kirchhoff_sim.hardware.executors.Runner`: hand it to
:func:`~kirchhoff_sim.hardware.montecarlo.monte_carlo`,
:func:`~kirchhoff_sim.hardware.montecarlo.mismatch_sweep` or
:func:`~kirchhoff_sim.hardware.montecarlo.quantisation_sweep` as ``executor=``::

    with DaskRunner(n_workers=2) as runner:              # a LocalCluster of processes
        result = monte_carlo(net, X, y, MonteCarloSpec(sigma_g=0.05, trials=200),
                             executor=runner)
    with DaskRunner("tcp://10.0.0.5:8786") as runner:    # an existing scheduler
        ...

What travels: the net as its model file's bytes (plain arrays and JSON,
:func:`~kirchhoff_sim.modelfile.net_to_bytes`; rebuilt once per worker process by
:func:`~kirchhoff_sim.hardware.trials.received_net`), the inputs and the
labels — each scattered to the workers once per map — and per task a spec dict and a
list of trial indices. Dask pickles the task itself (a reference to a module-level
function and those plain arguments), which is its in-cluster transport.

Why a distributed run equals the serial run *exactly*: trial ``i`` draws only from
``np.random.default_rng([seed, i])``, runs the same code on the same float64 data (the
model file stores every parameter bit for bit) and its results are put back in trial
order. Dask's worker processes start with one BLAS thread; the default explicit solvers
use sparse products and elementwise numpy only, whose results do not depend on threads.
"""

from __future__ import annotations

import logging

import numpy as np
from distributed import Client, LocalCluster

from ..checks import as_int, as_positive
from ..errors import InputError, SchedulerConnectionError
from ..modelfile import net_to_bytes
from ..network import KirchhoffNet
from .executors import Runner

__all__ = ["DaskRunner", "DEFAULT_CONNECT_TIMEOUT_SECONDS"]

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0    # an unreachable scheduler fails after this
DEFAULT_WORKERS = 2
DEFAULT_THREADS_PER_WORKER = 1           # trials are numpy-bound: one thread per process
CLOSE_TIMEOUT_SECONDS = 10.0


def _apply(fn, net, X, y, call):
    """Run one call on a worker (``call`` is passed as a dict, so its keys can never clash
    with ``Client.submit``'s own keywords such as ``key`` or ``workers``)."""
    return fn(net, X, y, **call)


class DaskRunner(Runner):
    """Robustness jobs on ``dask.distributed``: a local cluster, or an existing scheduler.

    Use it as a context manager (or call :meth:`start` and :meth:`close`).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``). Default: start a
        ``LocalCluster`` of worker *processes* (numpy holds the GIL between operations,
        so threads would not run trials in parallel).
    n_workers : int
        Workers of the local cluster (ignored with ``scheduler``).
    threads_per_worker : int
        Threads per local worker (ignored with ``scheduler``).
    connect_timeout : float
        Seconds to wait for the scheduler to answer and to have at least one worker.
    log_level : int
        Level of the local cluster's logs (default: errors only, so a ``--json`` run
        prints nothing else).

    Raises
    ------
    SchedulerConnectionError
        From :meth:`start`: the address is malformed, nothing answers there within
        ``connect_timeout``, or the scheduler has no worker.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int = DEFAULT_WORKERS,
                 threads_per_worker: int = DEFAULT_THREADS_PER_WORKER, *,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
                 log_level: int = logging.ERROR):
        n_workers = as_int(n_workers, "DaskRunner n_workers", minimum=1)
        threads_per_worker = as_int(threads_per_worker, "DaskRunner threads_per_worker", minimum=1)
        if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
            raise InputError(f"DaskRunner scheduler must be an address string like "
                             f"'tcp://host:8786', got {scheduler!r}")
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.connect_timeout = as_positive(connect_timeout, "DaskRunner connect_timeout (seconds)")
        self.log_level = log_level
        self.cluster = None
        self.client = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "DaskRunner":
        """Start the local cluster or connect to the scheduler; returns ``self``."""
        if self.client is not None:
            return self
        if self.scheduler is None:
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                                        processes=True, dashboard_address=None,
                                        silence_logs=self.log_level)
            self.client = Client(self.cluster, set_as_default=False)
            return self
        try:
            self.client = Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, ValueError, TypeError) as exc:   # OSError covers refused and timed out
            raise SchedulerConnectionError(
                f"cannot connect to the Dask scheduler at {self.scheduler!r} within "
                f"{self.connect_timeout:g} s: {exc}") from None
        try:
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise SchedulerConnectionError(
                f"the Dask scheduler at {self.scheduler!r} has no worker after "
                f"{self.connect_timeout:g} s ({exc}); start some with 'dask worker {self.scheduler}'"
            ) from None
        return self

    def close(self) -> None:
        """Disconnect, and stop the local cluster if this runner started it."""
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        if client is not None:
            client.close(timeout=CLOSE_TIMEOUT_SECONDS)
        if cluster is not None:
            cluster.close(timeout=CLOSE_TIMEOUT_SECONDS)

    def __enter__(self) -> "DaskRunner":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    def _require_client(self) -> Client:
        if self.client is None:
            raise InputError("DaskRunner is not started: use it as 'with DaskRunner(...) as runner:' "
                             "or call runner.start()")
        return self.client

    @property
    def address(self) -> str:
        """The scheduler's address (that of the local cluster when this runner started one)."""
        return self._require_client().scheduler.address

    @property
    def parallelism(self) -> int:
        """Worker threads in the cluster now."""
        return max(1, sum(self._require_client().nthreads().values()))

    @property
    def description(self) -> str:
        if self.client is None:
            return "dask (not started)"
        workers = self.client.nthreads()
        where = "local cluster" if self.cluster is not None else self.address
        return f"dask {where} ({len(workers)} workers, {sum(workers.values())} threads)"

    def __repr__(self) -> str:
        target = self.scheduler or f"LocalCluster({self.n_workers} × {self.threads_per_worker} threads)"
        return f"DaskRunner({target}, {'started' if self.client else 'not started'})"

    # ------------------------------------------------------------------ work
    def map_calls(self, fn, net, X, y, calls: list) -> list:
        """``[fn(net, X, y, **call) for call in calls]`` as one Dask task per call.

        The net (as model-file bytes), ``X`` and ``y`` are scattered to every worker once;
        results come back in the order of ``calls``. A failing task's exception is
        re-raised here, and the other tasks are cancelled.
        """
        client = self._require_client()
        data = net_to_bytes(net) if isinstance(net, KirchhoffNet) else bytes(net)
        shared = [client.scatter(value, broadcast=True, hash=False)
                  for value in (data, np.ascontiguousarray(X), np.ascontiguousarray(y))]
        futures = [client.submit(_apply, fn, *shared, call, pure=False) for call in calls]
        try:
            return client.gather(futures)
        finally:
            client.cancel(futures + shared)
