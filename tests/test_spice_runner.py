"""ngspice runner: both back ends against exact RC decays, the raw parser, every error path.

Everything here runs the real ngspice (binary and libngspice); nothing is mocked.
"""

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from kirchhoff_sim.errors import (
    InputError,
    NetlistRejectedError,
    NgspiceCrashedError,
    NgspiceNotFoundError,
    SpiceConvergenceError,
    SpiceTimeoutError,
    UnsafeNameError,
)
from kirchhoff_sim.spice.runner import (
    INSTALL_COMMAND,
    SpiceResult,
    check_netlist_safe,
    ngspice_available,
    parse_raw,
    run_netlist,
)

BACKENDS = ["subprocess", "shared"]
TIGHT_OPTIONS = ".options reltol=1e-6 abstol=1e-12 vntol=1e-9"
DECAY_RTOL = 1e-5  # relative to the 1 V swing; ngspice reaches ~3e-8 with TIGHT_OPTIONS
BACKEND_AGREEMENT_ATOL = 1e-12  # same engine, same options: same arithmetic
TIMEOUT_SECONDS = 0.5
TIMEOUT_OVERRUN_SECONDS = 3.0  # allowed for killing / halting and cleaning up


@pytest.fixture(autouse=True)
def _raise_on_floating_point_errors():
    old = np.seterr(all="raise")
    yield
    np.seterr(**old)


# ------------------------------------------------------------------ netlists
def rc_discharge(resistance=1e3, capacitance=1e-6, t_stop=5e-3, t_step=1e-6, title="RC discharge"):
    """Capacitor at 1 V discharging through a resistor: v(t) = exp(-t / RC)."""
    return textwrap.dedent(
        f"""\
        {title}
        C1 n1 0 {capacitance:g} IC=1
        R1 n1 0 {resistance:g}
        {TIGHT_OPTIONS}
        .tran {t_step:g} {t_stop:g} uic
        .end
        """
    )


def many_rc_nodes(n_nodes):
    """n independent RC decays, node k with R = 1k + 10k * k / n (distinct time constants)."""
    lines = ["many independent RC nodes"]
    for k in range(n_nodes):
        lines += [f"C{k} n{k} 0 1u IC=1", f"R{k} n{k} 0 {many_rc_resistance(k, n_nodes):.12g}"]
    lines += [TIGHT_OPTIONS, ".tran 1u 2m uic", ".end"]
    return "\n".join(lines) + "\n"


def many_rc_resistance(k, n_nodes):
    return 1e3 + 1e4 * k / n_nodes


# dv/dt = v^2 with v(0) = 1 blows up at t = 1 s: ngspice must give up near there
BLOW_UP = textwrap.dedent(
    """\
    finite-time blow-up
    C1 n1 0 1 IC=1
    B1 0 n1 I=V(n1)*V(n1)
    .tran 1m 2 uic
    .end
    """
)

# 1 ns steps over 10 s: hours of work; tstart=9.9 s keeps it from storing anything
ENDLESS = textwrap.dedent(
    """\
    endless transient
    V1 a 0 SIN(0 1 1meg)
    R1 a b 1k
    C1 b 0 1n
    .tran 1n 10 9.9
    .end
    """
)


def run_python(script, env=None):
    """Run ``script`` in a fresh interpreter (a new libngspice) from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )


# ------------------------------------------------------------------ accuracy
@pytest.mark.parametrize("backend", BACKENDS)
def test_rc_discharge_matches_exponential(backend):
    resistance, capacitance = 1e3, 1e-6
    result = run_netlist(rc_discharge(resistance, capacitance), backend=backend)
    assert isinstance(result, SpiceResult)
    assert result.backend == backend
    assert result.elapsed > 0
    # ngspice writes no t = 0 point for a uic run; the first is the first step
    assert 0.0 < result.time[0] <= 1e-6
    assert result.time[-1] == pytest.approx(5e-3, rel=1e-12)
    assert np.all(np.diff(result.time) > 0)
    exact = np.exp(-result.time / (resistance * capacitance))
    swing = 1.0
    np.testing.assert_allclose(result.voltage("n1"), exact, rtol=0, atol=DECAY_RTOL * swing)
    assert set(result.vectors) == {"v(n1)"}
    assert result.vectors["v(n1)"].dtype == np.float64


def test_backends_agree():
    netlist = rc_discharge(2.2e3, 0.47e-6)
    by_subprocess = run_netlist(netlist, backend="subprocess")
    by_shared = run_netlist(netlist, backend="shared")
    np.testing.assert_allclose(by_shared.time, by_subprocess.time, rtol=0, atol=BACKEND_AGREEMENT_ATOL)
    assert by_shared.vectors.keys() == by_subprocess.vectors.keys()
    for name, values in by_subprocess.vectors.items():
        np.testing.assert_allclose(by_shared.vectors[name], values, rtol=0, atol=BACKEND_AGREEMENT_ATOL)


def test_shared_backend_runs_twice_in_a_row():
    """The second run must see its own circuit, not the first one's plot or options."""
    first = run_netlist(rc_discharge(1e3, 1e-6, title="first"), backend="shared")
    second = run_netlist(rc_discharge(4e3, 1e-6, t_stop=8e-3, title="second"), backend="shared")
    for result, tau, t_stop in ((first, 1e-3, 5e-3), (second, 4e-3, 8e-3)):
        assert result.time[-1] == pytest.approx(t_stop, rel=1e-12)
        np.testing.assert_allclose(result.voltage("n1"), np.exp(-result.time / tau), atol=DECAY_RTOL)


def test_shared_backend_serialises_threads():
    """libngspice is one simulator per process; concurrent callers must queue, not mix."""
    taus = [1e-3, 2e-3, 3e-3, 4e-3]
    with ThreadPoolExecutor(max_workers=len(taus)) as pool:
        futures = [
            pool.submit(run_netlist, rc_discharge(tau / 1e-6, 1e-6, title=f"tau {tau}"), backend="shared")
            for tau in taus
        ]
        results = [future.result() for future in futures]
    for tau, result in zip(taus, results):
        np.testing.assert_allclose(result.voltage("n1"), np.exp(-result.time / tau), atol=DECAY_RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_nodes_are_parsed_in_order(backend):
    n_nodes = 300
    result = run_netlist(many_rc_nodes(n_nodes), backend=backend)
    assert len(result.vectors) == n_nodes
    for k in range(n_nodes):
        tau = many_rc_resistance(k, n_nodes) * 1e-6
        np.testing.assert_allclose(result.voltage(f"N{k}"), np.exp(-result.time / tau), atol=DECAY_RTOL)


def test_vector_names_are_canonical_in_both_backends():
    netlist = textwrap.dedent(
        """\
        names of every kind
        .subckt divider in out
        R1 in mid 1k
        R2 mid out 1k
        .ends
        V1 1 0 SIN(0 1 1k)
        X1 1 Out divider
        L1 Out 0 1m
        R3 Out 0 1k
        .save all @r3[i] @r9[i]
        .op
        .tran 10u 1m
        .end
        """
    )
    # @r9[i] does not exist: ngspice warns "unrecognized variable" and it is dropped
    expected = {"v(1)", "v(out)", "v(x1.mid)", "i(v1)", "i(l1)", "@r3[i]"}
    results = [run_netlist(netlist, backend=backend) for backend in BACKENDS]
    for result in results:
        assert set(result.vectors) == expected  # the .op plot is skipped
        assert result.time[-1] == pytest.approx(1e-3, rel=1e-12)
        np.testing.assert_allclose(result.vectors["@r3[i]"], result.voltage("out") / 1e3, atol=1e-15)
    for name in expected:
        np.testing.assert_allclose(results[0].vectors[name], results[1].vectors[name], atol=1e-15)


# ------------------------------------------------------------------ raw parser
def synthetic_raw(plot_name, names, values, points_in_header=None):
    """Bytes of a binary raw file with one plot; values has shape (n_points, n_vars)."""
    n_points, n_vars = values.shape
    header = [
        "Title: synthetic",
        "Date: today",
        f"Plotname: {plot_name}",
        "Flags: real",
        f"No. Variables: {n_vars}",
        f"No. Points: {n_points if points_in_header is None else points_in_header}",
        "Variables:",
    ]
    header += [f"\t{i}\t{name}\t{'time' if i == 0 else 'voltage'}" for i, name in enumerate(names)]
    header += ["Binary:", ""]
    return "\n".join(header).encode() + values.astype("<f8").tobytes()


def test_parse_raw_reads_several_plots():
    rng = np.random.default_rng(0)
    op_values = rng.normal(size=(1, 2))
    tran_values = rng.normal(size=(7, 3))
    raw = synthetic_raw("Operating Point", ["v(a)", "v(b)"], op_values) + synthetic_raw(
        "Transient Analysis", ["time", "v(a)", "v(b)"], tran_values
    )
    op_plot, tran_plot = parse_raw(raw)
    assert op_plot.name == "Operating Point"
    assert tran_plot.variables == [("time", "time"), ("v(a)", "voltage"), ("v(b)", "voltage")]
    np.testing.assert_array_equal(op_plot.values, op_values.T)
    np.testing.assert_array_equal(tran_plot.values, tran_values.T)
    assert tran_plot.values.flags.c_contiguous


def test_parse_raw_reads_an_aborted_run_with_stale_point_count():
    # ngspice leaves "No. Points: 0" when a run aborts; the data runs to the end
    values = np.arange(12.0).reshape(4, 3)
    raw = synthetic_raw("Transient Analysis", ["time", "v(a)", "v(b)"], values, points_in_header=0)
    (plot,) = parse_raw(raw)
    np.testing.assert_array_equal(plot.values, values.T)


def test_parse_raw_refuses_complex_data():
    raw = synthetic_raw("AC Analysis", ["frequency", "v(a)"], np.ones((2, 2))).replace(
        b"Flags: real", b"Flags: complex"
    )
    with pytest.raises(Exception, match="complex"):
        parse_raw(raw)


# ------------------------------------------------------------------ result helpers
def test_resample_interpolates_onto_a_grid():
    result = run_netlist(rc_discharge(), backend="subprocess")
    grid = np.linspace(1e-6, 5e-3, 101)
    resampled = result.resample(grid)
    np.testing.assert_array_equal(resampled.time, grid)
    assert resampled.vectors.keys() == result.vectors.keys()
    # the output grid is fine (dt <= 1 us), so linear interpolation error is ~1e-7
    np.testing.assert_allclose(resampled.voltage("n1"), np.exp(-grid / 1e-3), atol=DECAY_RTOL)
    assert resampled.log == result.log and resampled.backend == result.backend


@pytest.mark.parametrize(
    "grid",
    [
        np.array([1e-3, 6e-3]),  # beyond tstop
        np.array([0.0, 1e-3]),  # t = 0 is not in a uic run
        np.array([2e-3, 1e-3]),  # decreasing
        np.array([[1e-3, 2e-3]]),  # not 1-D
        np.array([1e-3, np.nan]),
    ],
)
def test_resample_refuses_grids_outside_the_run(grid):
    result = run_netlist(rc_discharge(), backend="subprocess")
    with pytest.raises(InputError):
        result.resample(grid)


def test_resample_explains_the_missing_initial_point():
    result = run_netlist(rc_discharge(), backend="subprocess")
    with pytest.raises(InputError, match="uic"):
        result.resample(np.linspace(0.0, 5e-3, 11))


def test_voltage_lookup_is_case_insensitive_and_lists_names_on_failure():
    result = run_netlist(rc_discharge(), backend="subprocess")
    np.testing.assert_array_equal(result.voltage("N1"), result.voltage("v(n1)"))
    with pytest.raises(InputError, match=r"'v\(n2\)'.*v\(n1\)"):
        result.voltage("n2")


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("backend", BACKENDS)
def test_syntax_error_is_rejected_with_ngspice_lines(backend):
    netlist = rc_discharge().replace(".tran", "Q7 n1 n2 n3 nomodel\n.tran")
    with pytest.raises(NetlistRejectedError) as caught:
        run_netlist(netlist, backend=backend)
    message = str(caught.value)
    assert "could not find a valid modelname" in message
    assert "q7 n1 n2 n3 nomodel" in message  # ngspice echoes the offending line
    assert "DRAM" not in message  # quotes the relevant lines, not the whole log
    assert len(message.splitlines()) <= 16


@pytest.mark.parametrize("backend", BACKENDS)
def test_singular_matrix_is_rejected(backend):
    netlist = "voltage source loop\nV1 a 0 1\nV2 a 0 2\nR1 a 0 1k\n.tran 1u 1m\n.end\n"
    with pytest.raises(NetlistRejectedError, match="singular"):
        run_netlist(netlist, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_netlist_without_transient_is_rejected(backend):
    with pytest.raises(NetlistRejectedError, match=r"\.tran"):
        run_netlist("no analysis\nR1 a 0 1k\nV1 a 0 1\n.end\n", backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_blow_up_raises_convergence_error(backend):
    with pytest.raises(SpiceConvergenceError, match="(?i)timestep too small; time = 0.99"):
        run_netlist(BLOW_UP, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_stops_the_run(backend):
    import time

    started = time.perf_counter()
    with pytest.raises(SpiceTimeoutError, match="0.5 s"):
        run_netlist(ENDLESS, backend=backend, timeout=TIMEOUT_SECONDS)
    assert time.perf_counter() - started < TIMEOUT_SECONDS + TIMEOUT_OVERRUN_SECONDS
    # the back end is usable again afterwards
    result = run_netlist(rc_discharge(), backend=backend)
    np.testing.assert_allclose(result.voltage("n1"), np.exp(-result.time / 1e-3), atol=DECAY_RTOL)


# what to_netlist wrote for the example of issue #13 A (nodes 1, 2; a Diode 1->2 with
# i_s 1e-9, n*Vt 0.025852, r_s 0; a Conductance 2->0 of 1; C = 1; 5 V on node 1; T = 1;
# normalised scale), kept as text so that it stays a failing netlist whatever the device
# library's diode expression becomes
STIFF_DIODE = textwrap.dedent(
    """\
    KirchhoffNet
    .options method=trap maxord=2 reltol=1e-06 abstol=1e-12 vntol=1e-09 chgtol=1e-15 trtol=1.0 temp=27.0 tnom=27.0
    C1 n1 0 1.0 IC=5.0
    C2 n2 0 1.0 IC=0.0
    B1 n1 n2 I=(1e-09*(exp((V(n1)-V(n2))/0.025852)-1))
    B2 n2 0 I=(1.0*(V(n2)-0))
    .tran 1e-06 1.0 0 0.001 uic
    .end
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stiff_diode_at_t0_is_a_convergence_failure_not_a_singular_circuit(backend):
    # ngspice says "singular matrix: check node n1" and "Timestep too small" at the start,
    # but n1 has a capacitor to ground: the matrix is numerically, not structurally, singular
    with pytest.raises(SpiceConvergenceError) as caught:
        run_netlist(STIFF_DIODE, backend=backend)
    message = str(caught.value)
    assert "did not converge" in message and "n1" in message
    assert "no DC path" not in message


def test_a_floating_resistor_is_still_a_singular_circuit():
    # the same log as the stiff diode's, at a node without a capacitor: structural
    netlist = "floating\nC1 a 0 1 IC=1\nR1 a 0 1\nR2 b c 1\n.tran 1m 1 uic\n.end\n"
    with pytest.raises(NetlistRejectedError, match="singular at node c .*no DC path"):
        run_netlist(netlist)


def test_an_expression_outside_its_domain_is_a_convergence_failure():
    netlist = "log of a negative\nC1 a 0 1 IC=1\nB1 a 0 I=ln(V(a)-1)\n.tran 1m 1 uic\n.end\n"
    with pytest.raises(SpiceConvergenceError, match=r"outside its domain \(ln of -1 in element b1\)"):
        run_netlist(netlist)


def test_an_overflow_is_a_convergence_failure_that_says_so():
    # v' = 800 v from 1 V: e^800 overflows a double before T = 1
    netlist = "runaway\nC1 a 0 1 IC=1\nB1 a 0 I=(-800.0*(V(a)-0))\n.tran 1m 1 uic\n.end\n"
    with pytest.raises(SpiceConvergenceError, match=r"stopped at t = 0\.8\d* s\): a behavioural expression overflowed"):
        run_netlist(netlist)


def fake_ngspice(tmp_path, body):
    """A stand-in for a broken ngspice *binary* (not for ngspice's behaviour)."""
    path = tmp_path / "ngspice"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_a_binary_missing_its_shared_library_says_so(tmp_path):
    loader = ("ngspice: error while loading shared libraries: libngspice-missing.so.0: "
              "cannot open shared object file: No such file or directory")
    ngspice = fake_ngspice(tmp_path, f"echo '{loader}' >&2\nexit 127")
    with pytest.raises(NgspiceNotFoundError) as caught:
        run_netlist(rc_discharge(), ngspice_path=ngspice)
    message = str(caught.value)
    assert "exit status 127" in message and "shared library" in message
    assert "libngspice-missing.so.0" in message and INSTALL_COMMAND in message
    assert "rejected" not in message


def test_a_crashed_binary_names_its_signal(tmp_path):
    ngspice = fake_ngspice(tmp_path, "echo 'Circuit: rc discharge'\nkill -SEGV $$")
    with pytest.raises(NgspiceCrashedError) as caught:
        run_netlist(rc_discharge(), ngspice_path=ngspice)
    message = str(caught.value)
    assert "SIGSEGV" in message and "crashed" in message and "Circuit: rc discharge" in message
    assert "rejected" not in message


def test_missing_binary_names_the_install_command(tmp_path):
    missing = tmp_path / "no-such-ngspice"
    with pytest.raises(NgspiceNotFoundError) as caught:
        run_netlist(rc_discharge(), ngspice_path=str(missing))
    assert INSTALL_COMMAND in str(caught.value)
    assert "sudo apt-get install -y ngspice libngspice0-dev" in str(caught.value)


def test_missing_shared_library_names_the_install_command(tmp_path):
    """A fresh process whose PySpice is pointed at a library file that does not exist."""
    script = textwrap.dedent(
        """\
        from kirchhoff_sim.errors import NgspiceNotFoundError
        from kirchhoff_sim.spice.runner import run_netlist
        for attempt in range(2):  # the second attempt must fail the same typed way
            try:
                run_netlist("t\\nR1 a 0 1\\n.tran 1u 1m\\n.end\\n", backend="shared")
            except NgspiceNotFoundError as exc:
                print(exc)
        """
    )
    env = dict(os.environ, NGSPICE_LIBRARY_PATH=str(tmp_path / "libngspice-missing.so"))
    completed = run_python(script, env=env)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 2
    assert all(INSTALL_COMMAND in line for line in lines)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "spectre"}, "backend"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"backend": "shared", "ngspice_path": "/usr/bin/ngspice"}, "subprocess"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        run_netlist(rc_discharge(), **kwargs)


def test_ngspice_is_available():
    assert ngspice_available()
    assert ngspice_available("shared")


# ------------------------------------------------------------------ safety
@pytest.mark.parametrize("backend", BACKENDS)
def test_control_block_with_shell_is_refused_and_never_runs(backend, tmp_path):
    marker = tmp_path / "pwned_runner_test"
    netlist = rc_discharge().replace(".end", f".control\nshell touch {marker}\n.endc\n.end")
    with pytest.raises(UnsafeNameError, match="line 6"):
        run_netlist(netlist, backend=backend)
    assert not marker.exists()


@pytest.mark.parametrize(
    "line",
    [
        "  .CONTROL",
        "\t.control",
        "shell touch /tmp/x",
        "  .Shell rm -rf x",
        "*ng_script",
        ".include /tmp/models.lib",
        ".inc models.lib",
        ".LIB models.lib typical",
        ".osdi model.osdi",
    ],
)
def test_unsafe_lines_are_refused_with_their_line_number(line):
    netlist = f"title\nR1 a 0 1k\n{line}\n.tran 1u 1m\n.end\n"
    with pytest.raises(UnsafeNameError, match="line 3"):
        check_netlist_safe(netlist)


def test_carriage_return_cannot_hide_a_control_line():
    with pytest.raises(UnsafeNameError):
        check_netlist_safe("title\rR1 a 0 1k\r.control\rshell ls\r.endc\r.end\r")


def test_ordinary_dot_commands_are_allowed():
    check_netlist_safe(
        textwrap.dedent(
            """\
            fine
            * a comment mentioning .control and shell is not a command
            .model dmod D(IS=1e-14)
            .param r=1k
            .ic V(n1)=1
            .options method=gear reltol=1e-6
            .save v(n1) @b1[i]
            Shell1 a b c d swmod
            .tran 1u 1m uic
            .end
            """
        )
    )


def test_shared_backend_prints_no_pyspice_noise():
    """A fresh process: no 'Unsupported Ngspice version', no echoed ngspice stderr, no cffi errors."""
    # a floating capacitor: ngspice warns "singular matrix" on its way to a good result
    netlist = "floating capacitor\nV1 a 0 1\nR1 a 0 1k\nC1 b c 1u\n.tran 1u 1m\n.end\n"
    script = textwrap.dedent(
        f"""\
        import logging
        logging.basicConfig(level=logging.WARNING)
        from kirchhoff_sim.spice.runner import run_netlist
        result = run_netlist({netlist!r}, backend="shared")
        assert "singular matrix" in result.log
        print("ok")
        """
    )
    completed = run_python(script)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
    assert completed.stderr == ""
