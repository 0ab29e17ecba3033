"""How the hardware reports write figures: signed changes, SI prefixes, strict-JSON numbers."""

from __future__ import annotations

import numpy as np

from ..units import format_si

__all__ = ["format_si", "format_signed", "json_float"]


def format_signed(value: float) -> str:
    """``+0.0123``; a rounding-size negative prints as +0.0000, not -0.0000."""
    text = f"{value:+.4f}"
    return "+0.0000" if text == "-0.0000" else text


def json_float(value) -> float | None:
    """``value`` as a float for a JSON document, None when it has none (None, NaN, ±inf:
    strict JSON has no NaN, and e.g. a trial whose every sample ran away has no loss)."""
    return float(value) if value is not None and np.isfinite(value) else None
