import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _raise_on_floating_point_errors():
    """Every test runs with ``np.seterr(all="raise")``: a NaN or overflow fails loudly."""
    old = np.seterr(all="raise")
    yield
    np.seterr(**old)
