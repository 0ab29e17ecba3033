"""Dask faults (issue #13, part D): each becomes one typed error in bounded time, or none.

Every peer is real and listens on 127.0.0.1 only: a bare TCP listener, ``http.server``
servers, ``distributed`` schedulers (in this process, or in a subprocess that is killed),
a ``LocalCluster`` whose worker process is killed. Nothing is mocked. What bounds each
fault is the timeout passed in (``connect_timeout``); :func:`within` only detects a hang,
so a regression fails instead of blocking the suite.
"""

import contextlib
import http.server
import json
import logging
import math
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from distributed import LocalCluster, Security

from kirchhoff_sim.errors import ClusterLostError, InputError, SchedulerConnectionError
from kirchhoff_sim.hardware import MonteCarloSpec, SerialRunner, monte_carlo
from kirchhoff_sim.hardware.distributed import DaskRunner, probe_scheduler
from kirchhoff_sim.hardware.trials import run_trials
from kirchhoff_sim.modelfile import save_net
from kirchhoff_sim.training import datasets
from kirchhoff_sim.training.models import build_net
from kirchhoff_sim.training.trainer import TrainConfig

from faults import (HANG_GUARD_SECONDS, POLL_SECONDS, SUBPROCESS_TIMEOUT_SECONDS, cluster_process, finished_jobs, when,
                    with_the_worker_killed_once_busy, within)

REPO = Path(__file__).resolve().parents[1]
LOCALHOST = "127.0.0.1"
CONNECT_TIMEOUT_SECONDS = 1.0      # the bound under test for every foreign peer
LOST_CLUSTER_TIMEOUT_SECONDS = 2.0
MOONS_SAMPLES = 200                # 50 test samples
TEST_SAMPLES = 40
LOST_SCHEDULER_JOBS = 200          # one trial each (~0.1 s): the run is far from done when killed
FINISHED_BEFORE_KILL = 2
WORKER_LOSS_TRIALS = 24
MAX_PROBE_ALLOCATION_BYTES = 4 * 2**20   # a peer announcing a 1 GiB frame must not get it

MALFORMED_ADDRESSES = [
    ("not an address", "needs a host and a port"),
    ("foo://", "the scheme 'foo'"),
    ("http://127.0.0.1:8786", "the scheme 'http'"),
    ("tls://", "needs a host and a port"),
    ("tcp://", "needs a host and a port"),
    ("tcp://:8786", "needs a host and a port"),
    ("tcp://host:notaport", "the port 'notaport'"),
    ("tcp://host:0", "the port '0'"),
    ("tcp://host:65536", "the port '65536'"),
    ("tcp://[::1]", "the port ''"),
]


# ------------------------------------------------------------------ helpers
def start_runner(address, timeout=CONNECT_TIMEOUT_SECONDS):
    return DaskRunner(address, connect_timeout=timeout).start()


@contextlib.contextmanager
def tcp_peer(on_connection=None):
    """A TCP server on 127.0.0.1 that calls ``on_connection(conn)`` for each connection
    it accepts (``None``: never accept; the kernel still completes the connection)."""
    listener = socket.create_server((LOCALHOST, 0))
    connections = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:                    # the listener was closed: stop
                return
            connections.append(conn)
            on_connection(conn)

    if on_connection is not None:
        threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://{LOCALHOST}:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in connections:
            conn.close()


@contextlib.contextmanager
def http_peer(handler):
    server = http.server.ThreadingHTTPServer((LOCALHOST, 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://{LOCALHOST}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """Waits for a request, as every HTTP server does (Dask's bytes never complete one)."""

    def log_message(self, *args):
        pass


class AnswerAtOnceHandler(QuietHandler):
    """Answers before reading a request, as a server's error page for a bad request does."""

    def handle(self):
        self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


@contextlib.contextmanager
def captured_logs(name="distributed"):
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def moons():
    return datasets.load_dataset("moons", n_samples=MOONS_SAMPLES, seed=0)


@pytest.fixture(scope="module")
def net():
    return build_net(2, 2, hidden=2, layers=2, seed=0)


@pytest.fixture(scope="module")
def data(moons):
    return moons.X_test[:TEST_SAMPLES], moons.y_test[:TEST_SAMPLES]


@pytest.fixture(scope="module")
def model_file(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "moons.npz"
    save_net(net, path, metadata={
        "training": {"config": asdict(TrainConfig(epochs=1, batch_size=32, lr=3e-2, seed=0)),
                     "history": [], "dataset": "moons", "epochs_done": 0},
        "source": {"task": "moons", "data": None, "seed": 0,
                   "dataset_options": {"n_samples": MOONS_SAMPLES}}})
    return path


@pytest.fixture(scope="module")
def tls_security(tmp_path_factory):
    """A self-signed certificate serving as CA, scheduler and client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_SECONDS)
    return Security(tls_ca_file=str(cert), tls_client_cert=str(cert), tls_client_key=str(key),
                    tls_scheduler_cert=str(cert), tls_scheduler_key=str(key), require_encryption=True)


@contextlib.contextmanager
def scheduler_only(**options):
    """A scheduler without workers, in this process, on 127.0.0.1."""
    cluster = LocalCluster(n_workers=0, processes=False, host=LOCALHOST, dashboard_address=None,
                           silence_logs=logging.ERROR, **{"protocol": "tcp", **options})
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


# ------------------------------------------------------------------ malformed addresses
@pytest.mark.parametrize("address, fragment", MALFORMED_ADDRESSES)
def test_a_malformed_address_is_refused_before_anything_is_built(address, fragment):
    with pytest.raises(SchedulerConnectionError, match=f"cannot connect.*{fragment}"):
        DaskRunner(address)


def test_malformed_addresses_leave_no_stall_and_no_traceback_at_exit(model_file):
    # In a subprocess so that interpreter shutdown, where a half-built Client used to
    # print its __del__ traceback after a 10 s stall, is part of what is checked.
    script = textwrap.dedent("""
        import json, sys
        from kirchhoff_sim import cli
        from kirchhoff_sim.hardware.distributed import DaskRunner
        model, addresses = sys.argv[1], json.loads(sys.argv[2])
        for address in addresses:
            try:
                DaskRunner(address, connect_timeout=1.0).start()
            except Exception as exc:
                print(type(exc).__name__, flush=True)
            status = cli.main(["montecarlo", model, "--scheduler", address, "--trials", "1"])
            print(status, flush=True)
    """)
    addresses = [address for address, _ in MALFORMED_ADDRESSES]
    done = subprocess.run([sys.executable, "-c", script, str(model_file), json.dumps(addresses)],
                          capture_output=True, text=True, cwd=REPO, timeout=SUBPROCESS_TIMEOUT_SECONDS)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SchedulerConnectionError", "2"] * len(addresses)
    lines = done.stderr.splitlines()
    assert len(lines) == len(addresses), done.stderr      # one line each, nothing at exit
    for line, (address, fragment) in zip(lines, MALFORMED_ADDRESSES):
        assert line.startswith("kirchhoff-sim montecarlo: error: cannot connect to the Dask scheduler")
        assert repr(address) in line and fragment in line


# ------------------------------------------------------------------ runner options
@pytest.mark.parametrize("n_workers", [0, -1, 1.5, "2", True, None, math.nan])
def test_a_local_cluster_needs_a_whole_positive_number_of_workers(n_workers):
    with pytest.raises(InputError, match="DaskRunner n_workers must be an integer >= 1"):
        DaskRunner(n_workers=n_workers)


@pytest.mark.parametrize("options, fragment", [
    ({"threads_per_worker": 0}, "threads_per_worker"),
    ({"connect_timeout": 0}, "connect_timeout"),
    ({"connect_timeout": -1.0}, "connect_timeout"),
    ({"connect_timeout": math.inf}, "connect_timeout"),
    ({"connect_timeout": "5"}, "connect_timeout"),
    ({"scheduler": 8786}, "address string"),
])
def test_other_runner_options_are_checked(options, fragment):
    with pytest.raises(InputError, match=fragment):
        DaskRunner(**options)


# ------------------------------------------------------------------ peers that are not schedulers
def test_a_silent_peer_fails_after_the_connect_timeout():
    with tcp_peer() as address, pytest.raises(SchedulerConnectionError, match="sent no Dask handshake within 1 s"):
        within(HANG_GUARD_SECONDS, start_runner, address)


def test_an_http_server_waiting_for_a_request_fails_after_the_connect_timeout():
    with http_peer(QuietHandler) as address, \
            pytest.raises(SchedulerConnectionError, match="sent no Dask handshake within 1 s"):
        within(HANG_GUARD_SECONDS, start_runner, address)


def test_an_http_answer_is_refused_as_not_a_scheduler():
    with http_peer(AnswerAtOnceHandler) as address, \
            pytest.raises(SchedulerConnectionError, match="is an HTTP server, not a Dask scheduler.*HTTP/1.1"):
        within(HANG_GUARD_SECONDS, start_runner, address)


def test_a_peer_announcing_a_huge_frame_gets_no_memory():
    # distributed itself would allocate the announced 1 GiB (or, for "HTTP/1.1" read as a
    # length, 3 EiB: a MemoryError); the probe reads 8 bytes and refuses.
    def announce(conn):
        conn.sendall(struct.pack("Q", 2**30))

    with tcp_peer(announce) as address:
        tracemalloc.start()
        try:
            with pytest.raises(SchedulerConnectionError, match="not a Dask scheduler"):
                within(HANG_GUARD_SECONDS, start_runner, address)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < MAX_PROBE_ALLOCATION_BYTES


def test_a_peer_that_hangs_up_is_refused():
    with tcp_peer(lambda conn: conn.close()) as address, \
            pytest.raises(SchedulerConnectionError, match="closed the connection during the handshake"):
        within(HANG_GUARD_SECONDS, start_runner, address)


def test_nothing_listening_fails_after_the_connect_timeout():
    with tcp_peer() as address:
        pass                                # the port is free again
    with pytest.raises(SchedulerConnectionError, match="nothing listens there.*1 s"):
        within(HANG_GUARD_SECONDS, start_runner, address)


# ------------------------------------------------------------------ real schedulers
def test_a_scheduler_answers_the_probe_and_without_workers_is_refused():
    with scheduler_only() as address:
        probe_scheduler(address, CONNECT_TIMEOUT_SECONDS)
        with pytest.raises(SchedulerConnectionError, match="has no worker after 1 s"):
            within(HANG_GUARD_SECONDS, start_runner, address)


def test_tls_needs_certificates_and_a_tls_scheduler_answers_with_them(tls_security):
    with scheduler_only(protocol="tls", security=tls_security) as address:
        with pytest.raises(SchedulerConnectionError, match="tls:// needs the client's TLS certificates"):
            probe_scheduler(address, CONNECT_TIMEOUT_SECONDS)
        within(HANG_GUARD_SECONDS, probe_scheduler, address, CONNECT_TIMEOUT_SECONDS, tls_security)
    with tcp_peer() as address, \
            pytest.raises(SchedulerConnectionError, match="TLS handshake did not finish within 1 s"):
        within(HANG_GUARD_SECONDS, probe_scheduler, address.replace("tcp://", "tls://"),
               CONNECT_TIMEOUT_SECONDS, tls_security)


# ------------------------------------------------------------------ faults mid-run
def test_a_scheduler_killed_mid_run_is_a_typed_error_naming_the_trial(net, data):
    spec = MonteCarloSpec(sigma_g=0.1, trials=LOST_SCHEDULER_JOBS)
    calls = [{"spec": spec.to_dict(), "trial_indices": [i]} for i in range(LOST_SCHEDULER_JOBS)]
    with cluster_process() as (address, process), captured_logs() as records:
        runner = within(HANG_GUARD_SECONDS, start_runner, address, LOST_CLUSTER_TIMEOUT_SECONDS)
        client = runner.client
        stop = threading.Event()
        killer, errors = when(lambda: finished_jobs(client) >= FINISHED_BEFORE_KILL, process.kill, stop)
        try:
            with pytest.raises(ClusterLostError, match=f"the Dask scheduler at {address} went away") as lost:
                within(HANG_GUARD_SECONDS, runner.map_calls, run_trials, net, *data, calls)
        finally:
            stop.set()
            killer.join(HANG_GUARD_SECONDS)
    assert not errors
    error = lost.value
    assert error.address == address and error.total_jobs == LOST_SCHEDULER_JOBS
    assert 0 <= error.finished_jobs < LOST_SCHEDULER_JOBS
    assert f"starting at trial {error.first_unfinished_trial};" in str(error)
    assert runner.client is None                   # closed: no reconnection left running
    assert not [r for r in records if r.name == "distributed.client" and r.exc_info]


def test_jobs_submitted_after_the_scheduler_died_are_reported_as_its_loss(net, data):
    # The client, reconnecting, still accepts jobs; when it gives up it cancels them with
    # no reason ("unknown"): that is the scheduler's loss, not a cancellation by the cluster.
    spec = MonteCarloSpec(sigma_g=0.1, trials=2)
    calls = [{"spec": spec.to_dict(), "trial_indices": [i]} for i in range(2)]
    with cluster_process() as (address, process), captured_logs() as records:
        runner = within(HANG_GUARD_SECONDS, start_runner, address, LOST_CLUSTER_TIMEOUT_SECONDS)
        client = runner.client
        process.kill()
        process.wait(timeout=HANG_GUARD_SECONDS)
        within(HANG_GUARD_SECONDS, wait_until, lambda: client.status != "running")
        with pytest.raises(ClusterLostError, match=f"the Dask scheduler at {address} went away") as lost:
            within(HANG_GUARD_SECONDS, runner.map_calls, run_trials, net, *data, calls)
    assert lost.value.finished_jobs == 0 and "starting at trial 0;" in str(lost.value)
    assert runner.client is None
    assert not [r for r in records if r.name == "distributed.client" and r.exc_info]


def wait_until(condition):
    while not condition():
        time.sleep(POLL_SECONDS)


def test_a_worker_killed_mid_run_is_rerun_and_the_result_is_unchanged(net, data):
    # One worker: its nanny restarts it, and the inputs every job needs must be made
    # again (a scattered copy would be lost with it).
    spec = MonteCarloSpec(sigma_g=0.2, readout_noise=0.1, trials=WORKER_LOSS_TRIALS, seed=3)
    serial = monte_carlo(net, *data, spec, executor=SerialRunner())
    with DaskRunner(n_workers=1, connect_timeout=LOST_CLUSTER_TIMEOUT_SECONDS) as runner:
        distributed = with_the_worker_killed_once_busy(runner, monte_carlo, net, *data, spec, executor=runner)
    assert np.array_equal(serial.accuracies, distributed.accuracies)
    assert np.array_equal(serial.losses, distributed.losses)
    assert np.array_equal(serial.predictions, distributed.predictions)
    assert serial.nominal_loss == distributed.nominal_loss
