"""Helpers of the tests that inject faults into real Dask clusters: a hang guard, a
fault injector, and a scheduler in a subprocess that can be killed."""
import contextlib
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HANG_GUARD_SECONDS = 120.0         # generous: only turns a hang into a failure
SUBPROCESS_TIMEOUT_SECONDS = 180.0
POLL_SECONDS = 0.02


def within(seconds, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run in a thread, or a test failure if it has not returned
    after ``seconds`` (its exception, if any, is re-raised here)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:       # handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} hung for more than {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def when(condition, action, stop: threading.Event):
    """Run ``action()`` in a thread as soon as ``condition()`` holds (unless ``stop`` is
    set first); returns the thread and a list that collects its exceptions."""
    errors = []

    def watch():
        try:
            while not condition():
                if stop.wait(POLL_SECONDS):
                    raise AssertionError("the run ended before the fault could be injected")
            action()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, errors


def finished_jobs(client) -> int:
    """Jobs of a DaskRunner map whose result is held by a worker."""
    return sum(1 for key, holders in client.who_has().items()
               if str(key).startswith("_apply") and holders)


CLUSTER_SCRIPT = textwrap.dedent("""
    import logging, time
    from distributed import LocalCluster
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                           host="127.0.0.1", dashboard_address=None, silence_logs=logging.CRITICAL)
    print(cluster.scheduler_address, flush=True)
    time.sleep(600)
""")


@contextlib.contextmanager
def cluster_process():
    """A scheduler and one worker in a subprocess (so it can be killed): its address
    and the process."""
    process = subprocess.Popen([sys.executable, "-c", CLUSTER_SCRIPT], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        address = within(SUBPROCESS_TIMEOUT_SECONDS, process.stdout.readline).strip()
        assert address.startswith("tcp://127.0.0.1:"), address
        yield address, process
    finally:
        process.kill()
        process.wait(timeout=SUBPROCESS_TIMEOUT_SECONDS)
        process.stdout.close()


def with_the_worker_killed_once_busy(runner, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on a one-worker ``runner`` whose worker process is killed
    (SIGKILL) once a first job has finished and another is running; checks that it was
    killed and replaced, and returns ``fn``'s result."""
    import os
    import signal

    client = runner.client
    (pid,) = client.run(os.getpid).values()

    seen = set()

    def busy_after_first_result():
        # a job runs, and another ran before it: its result is held (finished_jobs) or it
        # was seen running at an earlier poll (a result the client has already gathered
        # and released is no longer held, so the first test alone can miss every window)
        running = {str(key) for keys in client.processing().values() for key in keys
                   if str(key).startswith("_apply")}
        earlier = bool(seen - running) or finished_jobs(client) >= 1
        seen.update(running)
        return bool(running) and earlier

    stop = threading.Event()
    killer, errors = when(busy_after_first_result, lambda: os.kill(pid, signal.SIGKILL), stop)
    try:
        result = within(HANG_GUARD_SECONDS, fn, *args, **kwargs)
    finally:
        stop.set()
        killer.join(HANG_GUARD_SECONDS)
    assert not errors
    assert pid not in client.run(os.getpid).values()     # the worker really was replaced
    return result
