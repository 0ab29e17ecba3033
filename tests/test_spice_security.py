"""Nothing in a netlist, nor an init file, makes ngspice run a command or read a file.

Every refused syntax is first shown to be live — plain ``ngspice -b`` really runs its
``shell touch SENTINEL`` (or reads the file) — and then refused by the runner with both
back ends, the sentinel still absent. All of it runs the real ngspice and libngspice.
ngspice lower-cases the text of a control line, so sentinels live in lower-case folders.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kirchhoff_sim.errors import NetlistRejectedError, UnsafeNameError
from kirchhoff_sim.spice import run_netlist
from kirchhoff_sim.spice import runner
from kirchhoff_sim.spice.rawfile import parse_raw

BACKENDS = ["subprocess", "shared"]
REPO = Path(__file__).resolve().parents[1]
RC = "R1 a 0 1k\nC1 a 0 1u IC=1\n.tran 1u 1m uic\n"
SECRET = (0.123456, 0.654321)       # the numbers of a file that filesource must not read


@pytest.fixture
def folder():
    """A fresh lower-case folder for sentinels and included files."""
    path = Path(tempfile.mkdtemp(prefix="kspice_", dir="/tmp"))
    assert str(path) == str(path).lower()
    yield path
    shutil.rmtree(path)


def payloads(folder: Path, write_included_files: bool = True) -> dict:
    """Netlists that run ``shell touch <folder>/sentinel`` in plain ngspice 39."""
    sentinel = folder / "sentinel"
    touch = f"shell touch {sentinel}"
    if write_included_files:
        (folder / "inc.cir").write_text(f"* included\n.control\n{touch}\n.endc\n")
        (folder / "lib.lib").write_text(f"* library\n.lib sect\n.control\n{touch}\n.endc\n.endl sect\n")
    return {
        "control block": f"t\n{RC}.control\n{touch}\n.endc\n.end\n",
        "control block after end": f"t\n{RC}.end\n.control\n{touch}\n.endc\n",
        "star-hash comment": f"t\n*# {touch}\n{RC}.end\n",
        "indented star-hash": f"t\n   *# {touch}\n{RC}.end\n",
        "tab star-hash": f"t\n\t*#{touch}\n{RC}.end\n",
        "dollar-hash comment": f"t\n$# {touch}\n{RC}.end\n",
        "semicolon-hash comment": f"t\n;# {touch}\n{RC}.end\n",
        "star-hash in a subcircuit": f"t\n.subckt s a\n*# {touch}\nR9 a 0 1\n.ends\n{RC}.end\n",
        "star-hash after crlf": f"t\r\n*# {touch}\r\n{RC}.end\n",
        "ng_script header": f"*ng_script\n{touch}\n{RC}.end\n",
        "include": f"t\n.include {folder / 'inc.cir'}\n{RC}.end\n",
        "include on the title line": f".include {folder / 'inc.cir'}\n{RC}.end\n",
        "lib": f"t\n.lib {folder / 'lib.lib'} sect\n{RC}.end\n",
    }


CASES = sorted(payloads(Path("/tmp/unused"), write_included_files=False))


def plain_ngspice(netlist: str, folder: Path, *args, env=None) -> subprocess.CompletedProcess:
    path = folder / "plain.cir"
    path.write_text(netlist)
    return subprocess.run(["ngspice", "-b", *args, str(path)], cwd=folder, capture_output=True,
                          text=True, timeout=60, env=env)


@pytest.mark.parametrize("case", CASES)
def test_each_command_syntax_is_live_in_plain_ngspice_and_refused_by_both_back_ends(case, folder):
    netlist = payloads(folder)[case]
    sentinel = folder / "sentinel"
    plain_ngspice(netlist, folder)
    assert sentinel.exists(), f"control experiment: plain ngspice did not run the {case} payload"
    sentinel.unlink()
    for backend in BACKENDS:
        with pytest.raises(UnsafeNameError, match="refused"):
            run_netlist(netlist, backend=backend)
        assert not sentinel.exists()


def run_python(script: str, *, cwd, env=None) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter (a new libngspice), kirchhoff_sim importable."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_shared_back_end_itself_would_run_a_star_hash_line(folder):
    # control experiment for libngspice: the same load and run as the runner's, without its check
    sentinel = folder / "sentinel"
    netlist = payloads(folder)["star-hash comment"]
    script = textwrap.dedent(f"""\
        from kirchhoff_sim.spice import shared
        with shared.session() as ngspice:
            ngspice.load({netlist!r})
            ngspice.run(30.0, 30.0)
        """)
    completed = run_python(script, cwd=folder)
    assert completed.returncode == 0, completed.stderr
    assert sentinel.exists()


@pytest.fixture
def secret_file(folder):
    path = folder / "secret.txt"
    path.write_text(f"0 {SECRET[0]}\n1 {SECRET[1]}\n")
    return path


def filesource_netlist(path) -> str:
    return (f"filesource\nA1 %vd([a 0]) src\n.model src filesource(file=\"{path}\" amploffset=[0] "
            f"amplscale=[1] timeoffset=0 timescale=1 timerelative=false amplstep=false)\n"
            f"R1 a 0 1k\n.tran 1m 1\n.end\n")


def test_filesource_reads_a_file_in_plain_ngspice_but_is_refused(secret_file, folder):
    netlist = filesource_netlist(secret_file)
    completed = plain_ngspice(netlist, folder, "-r", str(folder / "out.raw"))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    (plot,) = [p for p in parse_raw((folder / "out.raw").read_bytes()) if p.name.startswith("Transient")]
    voltage = plot.values[[name for name, _ in plot.variables].index("v(a)")]
    assert voltage[0] == pytest.approx(SECRET[0]) and voltage[-1] == pytest.approx(SECRET[1])
    for backend in BACKENDS:
        with pytest.raises(UnsafeNameError, match="XSPICE"):
            run_netlist(netlist, backend=backend)
    # and without the quotes, or as a digital d_source: refused all the same
    with pytest.raises(UnsafeNameError, match="file"):
        run_netlist(f"t\n.model src filesource(file={secret_file})\n{RC}.end\n")
    with pytest.raises(UnsafeNameError, match="XSPICE"):
        run_netlist(f"t\nA2 [d] src2\n.model src2 d_source(input_file={secret_file})\n{RC}.end\n")


def test_past_the_check_the_subprocess_back_end_still_loads_no_code_model(secret_file):
    # defence in depth: ngspice runs without spinit, so the XSPICE code models (filesource
    # among them) are not even loaded; the private back end is called to skip the check
    with pytest.raises(NetlistRejectedError) as caught:
        runner._run_subprocess(filesource_netlist(secret_file), 60.0, shutil.which("ngspice"))
    assert str(SECRET[0]) not in str(caught.value)


@pytest.mark.parametrize("line, match", [
    (".options filetype=ascii", "option 'filetype'"),
    (".csparam p=1", "csparam"),
    (".exec", "exec"),
    (".endc", ".control"),
    (".osdi /tmp/m.osdi", "osdi"),
    ("N1 a 0 vamodel", "OSDI"),
    (".model m numd(level=1)", "numd"),
    ("R2 a 0 `echo 1`", "backquote"),
    ("R2 a 0 1\x00k", "control character"),
    ("+ 1k", "continuation"),
    (".param p=\"x\"", "quote"),
    ("shell ls", "shell"),
])
def test_other_syntax_outside_the_whitelist_is_refused(line, match):
    with pytest.raises(UnsafeNameError, match=match):
        run_netlist(f"t\n{line}\n{RC}.end\n")


def test_a_comment_cannot_hide_a_continuation_from_its_card(secret_file):
    # ngspice drops comments before joining '+' lines: the file= belongs to the .model
    netlist = f"t\n.model m d(is=1e-14\n* just a comment\n+ file={secret_file})\nD1 a 0 m\n{RC}.end\n"
    with pytest.raises(UnsafeNameError, match="line 2 .*file"):
        run_netlist(netlist)


def test_what_the_compiler_writes_passes_the_whitelist():
    from kirchhoff_sim import KirchhoffNet, Layer, devices as D, topology
    from kirchhoff_sim.spice import SpiceOptions, to_netlist

    edges = topology.fully_connected(3, repeat=(1, 1))
    rng = np.random.default_rng(0)
    layers = [Layer(edges, D.Diode(), 0.5, params=np.stack([np.full(len(edges), 1e-9),
                                                            np.full(len(edges), 0.2)])),
              Layer(edges, D.Conductance(), 0.5, params=rng.uniform(-1, 1, (1, len(edges))))]
    net = KirchhoffNet(layers, readout=2)
    for mode in ("behavioral", "primitive"):
        # diodes with r_s, clocks, switches, models, .save of branch currents, .meas
        netlist = to_netlist(net, [0.1, 0.2], mode=mode, options=SpiceOptions(save_branch_currents=True))
        assert run_netlist(netlist.text).time.size > 0


# ------------------------------------------------------------------ init files
def init_file(path: Path, sentinel: Path) -> None:
    path.write_text(f"* init file\nshell touch {sentinel}\n")


def test_the_subprocess_back_end_reads_no_user_or_system_init_file(folder):
    home, work, scripts = folder / "home", folder / "work", folder / "scripts"
    for path in (home, work, scripts):
        path.mkdir()
    init_file(home / ".spiceinit", folder / "from_home")
    init_file(work / ".spiceinit", folder / "from_cwd")
    init_file(work / "spice.rc", folder / "from_rc")
    init_file(scripts / "spinit", folder / "from_spinit")
    env = dict(os.environ, HOME=str(home), SPICE_SCRIPTS=str(scripts))
    # control experiment: plain ngspice, started in work/, sources all of them but spice.rc
    # (.spiceinit first), the system init file from SPICE_SCRIPTS
    plain_ngspice(f"t\n{RC}.end\n", work, env=env)
    assert (folder / "from_cwd").exists() and (folder / "from_spinit").exists()
    for name in ("from_cwd", "from_spinit"):
        (folder / name).unlink()
    completed = run_python(textwrap.dedent(f"""\
        from kirchhoff_sim.spice import run_netlist
        result = run_netlist({f"t{chr(10)}{RC}.end{chr(10)}"!r})
        assert result.time.size > 0
        assert "spinit" not in result.log       # the wanted 'no spinit' note is not logged
        """), cwd=work, env=env)
    assert completed.returncode == 0, completed.stderr
    assert not any((folder / name).exists() for name in ("from_home", "from_cwd", "from_rc", "from_spinit"))


@pytest.mark.parametrize("where", ["cwd", "home"])
def test_the_shared_back_end_refuses_to_start_with_a_spiceinit(folder, where):
    home, work = folder / "home", folder / "work"
    home.mkdir()
    work.mkdir()
    init_file((work if where == "cwd" else home) / ".spiceinit", folder / "sentinel")
    completed = run_python(textwrap.dedent(f"""\
        from kirchhoff_sim.errors import UnsafeInitFileError
        from kirchhoff_sim.spice import run_netlist
        try:
            run_netlist({f"t{chr(10)}{RC}.end{chr(10)}"!r}, backend="shared")
        except UnsafeInitFileError as exc:
            print(exc)
        """), cwd=work, env=dict(os.environ, HOME=str(home)))
    assert completed.returncode == 0, completed.stderr
    assert ".spiceinit" in completed.stdout and "subprocess" in completed.stdout
    assert not (folder / "sentinel").exists()
