"""The Dask executor: hardware jobs on a local Dask cluster or an existing scheduler.

:class:`DaskRunner` is a :class:`~kirchhoff_sim.executors.Runner`: hand it to
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
:func:`~kirchhoff_sim.modelfile.received_net`), the inputs and the labels — each
sent once per map, as a task every job depends on — and per job a spec dict and a list of
trial indices. Dask pickles the tasks themselves (a reference to a module-level function
and those plain arguments), which is its in-cluster transport.

Why a distributed run equals the serial run *exactly*: trial ``i`` draws only from
``np.random.default_rng([seed, i])``, runs the same code on the same float64 data (the
model file stores every parameter bit for bit) and its results are put back in trial
order. Dask's worker processes start with one BLAS thread; the default explicit solvers
use sparse products and elementwise numpy only, whose results do not depend on threads.

Faults, and what each becomes (each bounded by ``connect_timeout``):

- a malformed address (``foo://``, ``tcp://``, ``tcp://host:notaport``) is refused when the
  runner is made, before anything is built
  (:class:`~kirchhoff_sim.errors.SchedulerConnectionError`);
- a peer that is not a Dask scheduler (an HTTP server, a silent listener) is found by
  :func:`probe_scheduler` before a ``Client`` exists: ``distributed``'s own handshake
  read has no timeout and trusts the peer's 8-byte frame length, so it would wait forever
  or try to allocate exabytes (:class:`~kirchhoff_sim.errors.SchedulerConnectionError`);
- a scheduler that goes away mid-run (:class:`~kirchhoff_sim.errors.ClusterLostError`,
  naming the first trial that did not run; the runner is closed);
- a worker that dies mid-run is not an error: the scheduler reruns its jobs on another
  worker or on the one its nanny restarts (up to ``distributed.scheduler.allowed-failures``
  times per job), the shared inputs are made again if their last copy died with it, and,
  the trials being seeded and pure, the result is unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import socket
import struct
import time
import warnings

import numpy as np
from distributed import Client, LocalCluster, Security
from distributed.client import CancelledError
from distributed.diagnostics.plugin import WorkerPlugin

from ..allocator import tune_allocator
from ..checks import as_int, as_positive
from ..errors import ClusterLostError, InputError, SchedulerConnectionError
from ..modelfile import net_to_bytes
from ..network import KirchhoffNet
from ..solvers.resources import check_workers
from ..executors import Runner

__all__ = ["DaskRunner", "probe_scheduler", "DEFAULT_CONNECT_TIMEOUT_SECONDS"]

DEFAULT_CONNECT_TIMEOUT_SECONDS = 5.0    # an unreachable or foreign peer fails after this
DEFAULT_WORKERS = 2
DEFAULT_THREADS_PER_WORKER = 1           # trials are numpy-bound: one thread per process
CLOSE_TIMEOUT_SECONDS = 10.0
SCHEMES = ("tcp", "tls")                 # the comms a scheduler address may name
ADDRESS_EXAMPLE = "tcp://10.0.0.5:8786"

# Dask's wire format: a message is an unsigned 64-bit byte count, then its frames (a frame
# count, each frame's length, the frames), all counts in the "Q" format distributed uses.
# A scheduler's handshake is a small dict (its compression, Python version and pickle
# protocol: 58 bytes with distributed 2026.8); anything larger is not one.
FRAME_COUNT = struct.Struct("Q")
MAX_HANDSHAKE_BYTES = 64 * 1024
MAX_HANDSHAKE_FRAMES = 16
RETRY_PAUSE_SECONDS = (0.05, 0.5)        # first and longest pause between refused connects
SCHEDULER_LOST = "scheduler-connection-lost"   # the reason Dask gives futures it cancels then


# ------------------------------------------------------------------ the scheduler's address
def _refuse(address, why: str) -> SchedulerConnectionError:
    return SchedulerConnectionError(f"cannot connect to the Dask scheduler at {address!r}: {why}")


def _parse_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a scheduler address.

    Accepts ``tcp://host:port``, ``tls://host:port`` and a bare ``host:port`` (read as
    ``tcp``); an IPv6 host goes in brackets, ``tcp://[::1]:8786``.

    Raises
    ------
    SchedulerConnectionError
        For another scheme, or a missing or malformed host or port.
    """
    text = address.strip()
    scheme, separator, location = text.partition("://")
    if not separator:
        scheme, location = "tcp", text
    if scheme not in SCHEMES:
        schemes = " or ".join(f"{name}://" for name in SCHEMES)
        raise _refuse(address, f"the scheme {scheme!r} is not one of a Dask scheduler's; "
                               f"use {schemes}, like {ADDRESS_EXAMPLE}")
    if location.startswith("["):                           # [IPv6]:port
        host, bracket, rest = location[1:].partition("]")
        port_text = rest[1:] if bracket and rest.startswith(":") else ""
    else:
        host, _, port_text = location.rpartition(":")
    if not host or re.search(r"[\s/\[\]@]", host):
        raise _refuse(address, f"it needs a host and a port, like {ADDRESS_EXAMPLE}")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise _refuse(address, f"the port {port_text!r} is not a number in 1–65535 "
                               f"(the scheduler listens on 8786 by default)")
    return scheme, host, int(port_text)


# ------------------------------------------------------------------ the handshake probe
class _Deadline:
    """The end of a probe that may take ``seconds`` from now (monotonic clock)."""

    def __init__(self, seconds: float):
        self.seconds, self.end = seconds, time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never quite 0 (a socket timeout of 0 would mean non-blocking)."""
        return max(self.end - time.monotonic(), 1e-3)

    def expired_after(self, pause: float) -> bool:
        return time.monotonic() + pause >= self.end


def _connect_socket(address: str, host: str, port: int, deadline: _Deadline) -> socket.socket:
    """A TCP connection to ``host:port``; a refused connection is retried until the
    deadline, since a scheduler that is still starting up refuses for a moment."""
    pause = RETRY_PAUSE_SECONDS[0]
    while True:
        try:
            return socket.create_connection((host, port), timeout=deadline.remaining())
        except ConnectionRefusedError:
            if deadline.expired_after(pause):
                raise _refuse(address, f"nothing listens there (connection refused for "
                                       f"{deadline.seconds:g} s)") from None
            time.sleep(pause)
            pause = min(2 * pause, RETRY_PAUSE_SECONDS[1])
        except socket.gaierror as exc:
            raise _refuse(address, f"the host {host!r} is not known ({exc.strerror})") from None
        except TimeoutError:
            raise _refuse(address, f"the connection timed out after {deadline.seconds:g} s") from None
        except OSError as exc:
            raise _refuse(address, exc.strerror or str(exc)) from None


def _receive(sock: socket.socket, n_bytes: int, address: str, deadline: _Deadline) -> bytes:
    """Exactly ``n_bytes`` from ``sock`` before the deadline, or a typed error if the peer
    stays silent or hangs up first."""
    data = bytearray()
    while len(data) < n_bytes:
        sock.settimeout(deadline.remaining())
        try:
            chunk = sock.recv(n_bytes - len(data))
        except TimeoutError:
            raise _refuse(address, f"it accepted the connection but sent no Dask handshake within "
                                   f"{deadline.seconds:g} s (an HTTP server, for one, waits like this "
                                   f"for a request); is it a Dask scheduler?") from None
        except OSError as exc:
            raise _refuse(address, f"the connection failed during the handshake: {exc}") from None
        if not chunk:
            raise _refuse(address, "it closed the connection during the handshake; is it a Dask scheduler?")
        data += chunk
    return bytes(data)


def _not_dask(address: str, first_bytes: bytes) -> SchedulerConnectionError:
    what = ("an HTTP server, not a Dask scheduler (the scheduler listens on 8786 by default, "
            "its HTTP dashboard on 8787)" if first_bytes.startswith(b"HTTP/") else "not a Dask scheduler")
    return _refuse(address, f"it is {what}: it answered {first_bytes!r}")


def _check_handshake(sock: socket.socket, address: str, deadline: _Deadline) -> None:
    """Read a Dask handshake from ``sock`` (at most :data:`MAX_HANDSHAKE_BYTES`) and check
    that its frame lengths add up."""
    length_bytes = _receive(sock, FRAME_COUNT.size, address, deadline)
    (length,) = FRAME_COUNT.unpack(length_bytes)
    if not 2 * FRAME_COUNT.size <= length <= MAX_HANDSHAKE_BYTES:
        raise _not_dask(address, length_bytes)
    message = _receive(sock, length, address, deadline)
    (n_frames,) = FRAME_COUNT.unpack_from(message)
    header_bytes = FRAME_COUNT.size * (1 + n_frames)
    if not (1 <= n_frames <= MAX_HANDSHAKE_FRAMES and header_bytes <= length) or (
            header_bytes + sum(struct.unpack_from(f"{n_frames}Q", message, FRAME_COUNT.size)) != length):
        raise _not_dask(address, length_bytes + message[:3 * FRAME_COUNT.size])


def probe_scheduler(address: str, timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
                    security: Security | None = None) -> None:
    """Check that a Dask scheduler answers at ``address``, reading at most 64 KiB in at
    most ``timeout`` seconds.

    A Dask server sends its handshake as soon as it accepts a connection. This reads it
    (through TLS for ``tls://``), checks its framing and hangs up without sending a byte,
    so a foreign server only sees a connection that closes. ``distributed``'s own
    ``connect()`` (2026.8) waits for that handshake without a timeout and allocates
    whatever byte count the peer's first 8 bytes give, so against a peer that is not a
    scheduler it waits forever or asks for exabytes: that is why :class:`DaskRunner`
    probes before it makes a ``Client``. The scheduler logs the probe, at info level, as
    a connection closed before the handshake completed.

    Parameters
    ----------
    address : str
        ``tcp://host:port``, ``tls://host:port`` or ``host:port``.
    timeout : float
        Seconds, > 0, for the whole probe: connecting (a refused connection is retried
        until then), the TLS handshake and the scheduler's handshake.
    security : distributed.Security, optional
        TLS settings for ``tls://`` (default: the Dask configuration's,
        ``distributed.comm.tls.*``).

    Raises
    ------
    SchedulerConnectionError
        The address is malformed; nothing listens there; the peer stays silent, hangs up
        or answers with something that is not a Dask handshake; or ``tls://`` without a
        client TLS configuration.
    InputError
        ``timeout`` is not a positive number.
    """
    scheme, host, port = _parse_address(address)
    deadline = _Deadline(as_positive(timeout, "probe_scheduler timeout (seconds)"))
    context = None
    if scheme == "tls":
        context = (security or Security()).get_connection_args("client")["ssl_context"]
        if context is None:
            raise _refuse(address, "tls:// needs the client's TLS certificates in the Dask configuration "
                                   "(distributed.comm.tls.ca-file, .client.cert and .client.key)")
    sock = _connect_socket(address, host, port, deadline)
    try:
        if context is not None:
            sock.settimeout(deadline.remaining())
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except TimeoutError:
                raise _refuse(address, f"the TLS handshake did not finish within {deadline.seconds:g} s") from None
            except OSError as exc:       # ssl.SSLError included
                raise _refuse(address, f"the TLS handshake failed: {exc}") from None
        _check_handshake(sock, address, deadline)
    finally:
        sock.close()


# ------------------------------------------------------------------ the runner
def _shared(value):
    """A value every task of a map needs, made by a task of its own rather than
    scattered: the scheduler keeps the task, so a copy lost with its worker is made again
    (a scattered value lost with its last worker cannot be, and fails the run)."""
    return value


class _TunedAllocator(WorkerPlugin):
    """:func:`~kirchhoff_sim.allocator.tune_allocator` in each worker of a local cluster
    (its nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` otherwise makes every solver step
    page-fault its temporaries back in: 6× slower on a digits training shard)."""

    def setup(self, worker) -> None:
        tune_allocator()


def _apply(fn, item, *shared):
    """Run one job on a worker: ``fn(*shared, item)`` (the shared futures are top-level
    arguments, which Dask resolves to their values)."""
    return fn(*shared, item)


class DaskRunner(Runner):
    """Jobs on ``dask.distributed`` (Monte Carlo trials, ngspice samples, training shards,
    inference chunks): a local cluster, or an existing scheduler.

    Use it as a context manager (or call :meth:`start` and :meth:`close`).

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``, ``tls://host:8786`` or
        ``host:8786``). Default: start a ``LocalCluster`` of worker *processes* (numpy
        holds the GIL between operations, so threads would not run trials in parallel),
        whose allocator is tuned (:mod:`~kirchhoff_sim.allocator`; the workers of an
        existing cluster get that from ``--preload kirchhoff_sim.allocator``).
    n_workers : int
        Workers of the local cluster, at least 1 (ignored with ``scheduler``).
    threads_per_worker : int
        Threads per local worker, at least 1 (ignored with ``scheduler``).
    connect_timeout : float
        Seconds, > 0, for each of: the probe of the scheduler's handshake
        (:func:`probe_scheduler`), the ``Client``'s connection, waiting for a first worker,
        and the client's attempts to reconnect to a scheduler it lost.
    log_level : int
        Level of the local cluster's logs (default: errors only, so a ``--json`` run
        prints nothing else).

    Raises
    ------
    InputError
        ``n_workers`` or ``threads_per_worker`` is not an integer ≥ 1, ``connect_timeout``
        is not a positive number, or ``scheduler`` is not a string.
    SchedulerConnectionError
        The ``scheduler`` address is malformed (here, before anything is built); or, from
        :meth:`start`, nothing answers there within ``connect_timeout``, the peer is not a
        Dask scheduler, or the scheduler has no worker.
    ClusterLostError
        From :meth:`map_calls` (and so from ``monte_carlo`` and the sweeps): the
        scheduler went away during the run.
    """

    def __init__(self, scheduler: str | None = None, n_workers: int = DEFAULT_WORKERS,
                 threads_per_worker: int = DEFAULT_THREADS_PER_WORKER, *,
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
                 log_level: int = logging.ERROR):
        n_workers = (check_workers(n_workers, "DaskRunner n_workers") if scheduler is None
                     else as_int(n_workers, "DaskRunner n_workers", minimum=1))
        threads_per_worker = as_int(threads_per_worker, "DaskRunner threads_per_worker", minimum=1)
        if scheduler is not None and not (isinstance(scheduler, str) and scheduler.strip()):
            raise InputError(f"DaskRunner scheduler must be an address string like "
                             f"{ADDRESS_EXAMPLE!r}, got {scheduler!r}")
        if scheduler is not None:
            scheduler = scheduler.strip()
            _parse_address(scheduler)     # refuse a malformed address before building anything
        self.scheduler = scheduler
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.connect_timeout = as_positive(connect_timeout, "DaskRunner connect_timeout (seconds)")
        self.log_level = log_level
        self.cluster = None
        self.client = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "DaskRunner":
        """Start the local cluster or connect to the scheduler; returns ``self``.

        Raises
        ------
        SchedulerConnectionError
            See the class; nothing is left half-built when it is raised.
        """
        if self.client is not None:
            return self
        if self.scheduler is None:
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=self.threads_per_worker,
                                        processes=True, dashboard_address=None,
                                        silence_logs=self.log_level)
            self.client = Client(self.cluster, set_as_default=False)
            # the runner owns these processes: tune their allocator, now and in every worker
            # that replaces a lost one (a registered plugin is set up on each new worker)
            self.client.register_plugin(_TunedAllocator(), name="kirchhoff-sim-allocator")
            return self
        probe_scheduler(self.scheduler, self.connect_timeout)
        try:
            # The peer is known to speak Dask now. (The Client's own handshake read is
            # still unbounded, which matters only if the scheduler stops answering between
            # the two connections.) The Client closes itself before it raises an OSError
            # (refused, timed out, closed) or an ImportError (the scheduler refused it).
            self.client = Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, ImportError) as exc:
            raise _refuse(self.scheduler, f"{exc} (within {self.connect_timeout:g} s)") from None
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
        """Disconnect, and stop the local cluster if this runner started it (each within
        10 s)."""
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
    def share(self, value):
        """A future of ``value``, made by a task of its own rather than scattered: the
        scheduler keeps the task, so a copy lost with its worker is made again (a
        scattered value lost with its last worker cannot be, and fails the run)."""
        if isinstance(value, np.ndarray):
            value = np.ascontiguousarray(value)
        with warnings.catch_warnings():
            # Dask warns of a large task graph (a big net's model file, 14 MiB for the
            # MNIST-sized one) and suggests scattering it; that goes once per run, and a
            # task, unlike a scattered value, is made again if its worker is lost
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return self._require_client().submit(_shared, value, pure=False)

    def share_net(self, net):
        """A future of the net's model-file bytes (plain arrays and JSON)."""
        return self.share(net_to_bytes(net) if isinstance(net, KirchhoffNet) else bytes(net))

    def release(self, *handles) -> None:
        client = self.client
        futures = [h for h in handles if hasattr(h, "key")]
        if client is not None and client.status == "running" and futures:
            client.cancel(futures)

    def imap(self, fn, shared: tuple, items, window: int | None = None):
        """``fn(*shared, item)`` as one Dask task per item, yielded in order.

        At most ``window`` tasks (default twice the cluster's threads) are out at once. A
        failing task's exception is re-raised here and the tasks still out are cancelled.
        A worker lost mid-run is not a failure: the scheduler reruns its tasks on the
        others (``retries`` is left at 0, since it only repeats tasks that *raised*, and a
        pure job that raised would raise again).

        Raises
        ------
        ClusterLostError
            The scheduler went away (or cancelled the tasks) before every result arrived;
            the message names how many jobs had come back and the first that did not (its
            first trial, for Monte Carlo calls).
        """
        client = self._require_client()
        address = client.scheduler.address
        window = max(1, 2 * self.parallelism if window is None else int(window))
        total = len(items) if hasattr(items, "__len__") else None
        pending, done, lost = collections.deque(), 0, None
        try:
            for item in items:
                pending.append((item, client.submit(_apply, fn, item, *shared, pure=False)))
                while len(pending) >= window:
                    yield pending[0][1].result()
                    pending.popleft()
                    done += 1
            while pending:
                yield pending[0][1].result()
                pending.popleft()
                done += 1
            return
        except CancelledError as exc:
            # A job submitted while the client was already reconnecting to a lost
            # scheduler is cancelled without a reason ("unknown") when the client gives
            # up and closes: a client that is not running means the scheduler went away,
            # whatever the word on the cancellation.
            reason = getattr(exc, "reason", None) if client.status == "running" else SCHEDULER_LOST
            lost = _cluster_lost(address, done, total, pending, reason)
        except OSError:
            if client.status == "running":        # a task's own OSError: re-raise it
                raise
            lost = _cluster_lost(address, done, total, pending, SCHEDULER_LOST)
        finally:
            if client.status == "running" and pending:
                client.cancel([future for _, future in pending])
        # The client would keep trying to reconnect for connect_timeout, then log that it
        # failed: close it now (start() connects again), without the log of that retry
        # being cancelled.
        with _quiet_reconnect_cancellation():
            self.close()
        raise lost


class _DropCancellation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


@contextlib.contextmanager
def _quiet_reconnect_cancellation():
    """Hide the traceback ``distributed.client`` logs when closing a client cancels its
    attempt to reconnect to a lost scheduler (the loss is already reported)."""
    logger, dropper = logging.getLogger("distributed.client"), _DropCancellation()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def _cluster_lost(address: str, done: int, total: int | None, pending, reason: str | None) -> ClusterLostError:
    """The error for a run whose jobs were cancelled (``reason``, Dask's word for why)
    after the first ``done`` of ``total`` jobs (None: not known) had come back;
    ``pending`` holds ``(item, future)`` of the jobs still out."""
    if reason in (None, SCHEDULER_LOST):
        what = f"the Dask scheduler at {address} went away during the run"
    elif reason == "scheduler-restart":
        what = f"the Dask cluster at {address} was restarted during the run"
    else:
        what = f"the Dask cluster at {address} cancelled the run's jobs ({reason})"
    first = pending[0][0] if pending else None
    first_trial = ((first.get("trial_indices") or [None])[0] if isinstance(first, dict) else None)
    where = (f", the first unfinished one starting at trial {first_trial}" if first_trial is not None
             else f", the first unfinished one being job {done}" if pending
             else ", but not all of their results had arrived")
    of = f" of {total}" if total is not None else ""
    return ClusterLostError(
        f"{what}: {done}{of} jobs had finished{where}; run it again",
        address=address, finished_jobs=done, total_jobs=total,
        first_unfinished_trial=first_trial)
