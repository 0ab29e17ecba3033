import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _raise_on_floating_point_errors():
    """Every test runs with ``np.seterr(all="raise")``: a NaN or overflow fails loudly."""
    old = np.seterr(all="raise")
    yield
    np.seterr(**old)


# ------------------------------------------------------------------ the sky130 cells, characterised once
@pytest.fixture(scope="session")
def sky130():
    from kirchhoff_sim.cells import pdk

    return pdk.locate_pdk()


@pytest.fixture(scope="session")
def cell_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cell_cache")


@pytest.fixture(scope="session")
def characterised(sky130, cell_cache):
    """The tt / 27 °C characterisation, measured in ngspice once per session (a fresh
    cache, so the run measures rather than trusting a file from an earlier run)."""
    from kirchhoff_sim.cells import characterise as ch

    mp = pytest.MonkeyPatch()
    mp.setenv(ch.CACHE_VARIABLE, str(cell_cache))
    try:
        yield ch.characterise("tt", 27.0, pdk=sky130)
    finally:
        mp.undo()
