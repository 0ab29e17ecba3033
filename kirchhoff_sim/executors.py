"""Executors: where jobs run — the Runner interface and the serial runner.

A runner maps a job ``fn(*shared, item)`` over items and yields the results in the
order of the items (:meth:`Runner.imap`); ``shared`` holds values sent once
(:meth:`Runner.share`, :meth:`Runner.share_net`). :class:`SerialRunner` runs every job
here, on the objects themselves; :class:`~kirchhoff_sim.hardware.distributed.DaskRunner`
(in its own module, because Dask takes a while to import) sends the net as its model
file's bytes (:func:`~kirchhoff_sim.modelfile.received_net` turns them back into it) and
runs the jobs on a Dask cluster. The jobs of this package — Monte Carlo trials
(:mod:`~kirchhoff_sim.hardware.trials`), training shards
(:mod:`~kirchhoff_sim.training.data_parallel`), inference chunks
(:mod:`~kirchhoff_sim.inference`) and ngspice samples
(:func:`~kirchhoff_sim.spice.validate`) — depend only on their arguments, plain data
bit for bit the same wherever they run, which is why a distributed run equals the serial
run exactly.
"""

from __future__ import annotations

from .errors import InputError

__all__ = ["Runner", "SerialRunner", "as_runner"]


class Runner:
    """Where jobs run. A subclass implements :meth:`imap` (and, for a cluster,
    :meth:`share`, :meth:`share_net` and :meth:`release`); :meth:`map_calls` is shared.

    The one interface every distributed run of the package goes through: Monte Carlo
    trials, ngspice samples, training shards (:mod:`~kirchhoff_sim.training.data_parallel`)
    and inference chunks (:mod:`~kirchhoff_sim.inference`). A job is ``fn(*shared, item)``
    with ``shared`` the handles of values sent once (:meth:`share`, :meth:`share_net`) and
    ``item`` the job's own small argument.
    """

    #: short description for reports
    description = "runner"

    @property
    def parallelism(self) -> int:
        """How many jobs can run at once."""
        return 1

    def share(self, value):
        """A handle that jobs take in place of ``value``, which goes to the cluster once
        (here: ``value`` itself)."""
        return value

    def share_net(self, net):
        """A handle on the net for jobs (here: the net itself; a cluster gets its model-file
        bytes, which :func:`~kirchhoff_sim.hardware.trials.received_net` turns back into it)."""
        return net

    def release(self, *handles) -> None:
        """Drop shared values no job needs any more (here: nothing to do)."""

    def imap(self, fn, shared: tuple, items, window: int | None = None):
        """``fn(*shared, item)`` for each of ``items``, yielded in the order of ``items``.

        ``window`` bounds the jobs submitted but not yet yielded (a cluster's; default
        twice :attr:`parallelism`), so that a lazy ``items`` (chunks of a memory-mapped
        array) is read only as fast as the results are consumed.

        Raises
        ------
        Exception
            The first failing job's own error (the later jobs are abandoned).
        ClusterLostError
            A runner whose cluster went away before every job had run; a job whose
            machine went away but that could run again elsewhere is not a failure, since
            jobs are pure (they depend only on their arguments).
        """
        for item in items:
            yield fn(*shared, item)

    def map_calls(self, fn, net, X, y, calls: list) -> list:
        """``[fn(net, X, y, **call) for call in calls]``, in order, wherever they run; the
        net, ``X`` and ``y`` are shared once (see :meth:`imap` for the errors)."""
        shared = (fn, self.share_net(net), self.share(X), self.share(y))
        try:
            return list(self.imap(_call, shared, calls, window=max(len(calls), 1)))
        finally:
            self.release(*shared[1:])


def _call(fn, net, X, y, call):
    """One call of :meth:`Runner.map_calls` (``call`` is a dict, so that its keys can never
    clash with ``Client.submit``'s own keywords such as ``key`` or ``workers``)."""
    return fn(net, X, y, **call)


class SerialRunner(Runner):
    """Runs every job here, one after the other, on the net object itself."""

    description = "serial"


def as_runner(executor) -> Runner:
    """``executor``, or a :class:`SerialRunner` for ``None``."""
    if executor is None:
        return SerialRunner()
    if not hasattr(executor, "map_calls"):
        raise InputError(f"executor must be a Runner (SerialRunner, DaskRunner), got {type(executor).__name__}")
    return executor
